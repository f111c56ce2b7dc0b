"""The one place that touches Optuna's private attributes and table layout. Each has no public equivalent in Optuna 5:

- `Trial._trial_id`: a live trial's storage id, needed to read its system attrs (the heartbeat's retry history,
  the grid sampler's grid id) through the storage API; `Trial` exposes neither the id nor those attrs.
- `Study._study_id`, `FrozenStudy._study_id`: the storage id of a study, needed for the storage API calls
  (`get_all_trials(study_id)`); `FrozenStudy` has no public id, and the name lookup costs a query per study.
- `_CachedStorage._backend`: Optuna wraps an RDBStorage in a cache layer that has no `url`; the report shows
  the store's URL (password masked), which only the wrapped RDBStorage knows.
- The RDB tables (`study_summaries`): `study.py list` needs per study only its trial counts and best value, but
  the storage API reads every trial with its params, attrs and intermediate values (seven queries per study:
  0.5 s for 50 studies of 20 trials). Six aggregate queries over the tables give the same in milliseconds. They
  run only on the migration revisions they were written against; any other store uses the public API.
- Trial system attrs that Optuna writes for itself, read (and for a retry, written) under its own keys: the grid
  point GridSampler gave a trial (`grid_id`) and the retry chain RetryHeartbeatStaleTrialCallback records
  (`failed_trial`, `retry_history`): `grid_id`, `is_retry`, `retried_trial`, `retry_system_attrs`.
- The logger of Optuna's optimize loop, a private module's (`optimize_logger`).
- `enqueue_trial`'s "fixed_params" system attr: a queued trial has no params until a worker starts it, so
  `show` reads what it will run from there (`trial_params`).
- Heartbeats: `RDBStorage._get_stale_trial_ids` is the one moment a stale trial is known before Optuna fails it
  (after that its attrs are read-only): `MarkingRDBStorage` lets the store write why it failed there; the
  heartbeat table (`heartbeat_ages`) says how long each running trial has been silent, which no API tells.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import optuna

# Alembic revisions whose tables hold the columns `study_summaries` reads (trial_values.value_type came in
# v3.0.0.c; v3.0.0.d and v3.2.0.a added nothing these queries touch). Optuna 5.0's head is v3.2.0.a.
SUMMARY_REVISIONS = ("v3.0.0.c", "v3.0.0.d", "v3.2.0.a")


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def study_id(study: optuna.Study | Any) -> int:
    """The storage id of an `optuna.Study` or a `FrozenStudy` (both keep it as `_study_id`)."""
    return study._study_id


# GridSampler's system attr: the index of the trial's grid point. Shared grids need it (which points were
# started, which one a trial landed on, how many points count toward a budget); no public API says which point a
# trial is, and its params alone cannot tell a retry of a point from a second trial on it.
_GRID_ID = "grid_id"
# RetryHeartbeatStaleTrialCallback's system attrs on the WAITING retry it queues: the first trial of the chain,
# and every trial of the chain, oldest first. Optuna reads them only through experimental static methods (a
# warning on every call) and offers no way to queue such a retry ourselves (an interrupted trial, a grid point).
_FAILED_TRIAL, RETRY_HISTORY = "failed_trial", "retry_history"
# The module whose logger warns "Trial N failed with value nan." (optuna/study/_optimize.py, a private module).
_OPTIMIZE_LOGGER = "optuna.study._optimize"


def grid_id(trial: optuna.trial.FrozenTrial) -> int | None:
    """The grid point GridSampler gave a trial, None for a trial of another sampler (or not sampled yet)."""
    value = trial.system_attrs.get(_GRID_ID)
    return None if value is None else int(value)


def is_retry(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial is a retry (queued by the heartbeat's RetryHeartbeatStaleTrialCallback or `queue_retry`):
    it continues a point of its chain's first trial rather than taking a grid point of its own."""
    return _FAILED_TRIAL in trial.system_attrs


def retried_trial(trial: optuna.Trial) -> int | None:
    """The number of the trial a running retry continues (the last of its retry history), None when it is not a
    retry. Reads the live trial's system attrs through the storage: `optuna.Trial` exposes none."""
    history = trial.storage.get_trial(trial_id(trial)).system_attrs.get(RETRY_HISTORY) or []
    return int(history[-1]) if history else None


def trial_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's params; for a queued (WAITING) trial not yet started, the values `enqueue_trial` fixed for it."""
    if trial.params or trial.state != optuna.trial.TrialState.WAITING:
        return dict(trial.params)
    return dict(trial.system_attrs.get("fixed_params") or {})


def retry_target(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial a (queued or finished) retry continues, None when it is not a retry."""
    history = trial.system_attrs.get(RETRY_HISTORY) or []
    return int(history[-1]) if history else None


def retry_system_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The system attrs of a WAITING retry of a finished `trial`, as RetryHeartbeatStaleTrialCallback writes them:
    the trial's own (its grid id among them), the chain's first trial and the chain with `trial` last."""
    history = [*trial.system_attrs.get(RETRY_HISTORY, []), trial.number]
    return {**trial.system_attrs, _FAILED_TRIAL: history[0], RETRY_HISTORY: history}


def optimize_logger() -> logging.Logger:
    """The logger Optuna's optimize loop warns on about a trial that failed with a NaN value (objectives/run.py
    filters those it has already explained): its name is a private module's."""
    return logging.getLogger(_OPTIMIZE_LOGGER)


def rdb_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    """The RDBStorage behind `storage` (through Optuna's cache wrapper); None for other storages."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def storage_url(storage: optuna.storages.BaseStorage) -> str | None:
    """The URL of an RDB storage (through Optuna's cache wrapper), None for other storages."""
    backend = getattr(storage, "_backend", storage)
    url = getattr(backend, "url", None)
    return str(url) if url else None


def study_summaries(source: optuna.storages.BaseStorage | Any) -> list[dict[str, Any]] | None:
    """Per study of an RDB store (an opened storage, or a SQLAlchemy engine on its database), read with six
    queries whatever the number of studies and trials:

        {"name", "direction" ("maximize"|"minimize", of the first objective), "user_attrs",
         "states" ({"COMPLETE": n, ...}), "values" ([(trial number, first value)] of COMPLETE trials, finite only)}

    in study-id order (as `get_all_studies`). None when `source` is not an RDB store or its tables are at a
    revision not in SUMMARY_REVISIONS: the caller then reads the same through the public API.
    """
    if isinstance(source, optuna.storages.BaseStorage):
        backend = rdb_backend(source)
        if backend is None:
            return None
        source = backend.engine
    import sqlalchemy as sa

    try:
        with source.connect() as connection:
            return _read_summaries(sa, connection)
    except sa.exc.SQLAlchemyError:  # e.g. a pre-alembic store: the public API reads it (or says what is wrong)
        return None


def _read_summaries(sa: Any, connection: Any) -> list[dict[str, Any]] | None:
    """The queries of `study_summaries`; a row of a study created between them (not yet listed) is skipped."""
    t = _tables(sa)
    revisions = {row[0] for row in connection.execute(sa.select(t["alembic_version"].c.version_num))}
    if not revisions or not revisions <= set(SUMMARY_REVISIONS):
        return None
    summaries = {
        sid: {"name": name, "direction": "maximize", "user_attrs": {}, "states": {}, "values": []}
        for sid, name in connection.execute(sa.select(t["studies"].c.study_id, t["studies"].c.study_name))
    }
    directions = t["study_directions"]
    query = sa.select(directions.c.study_id, directions.c.direction).where(directions.c.objective == 0)
    for sid, direction in connection.execute(query):
        summaries.get(sid, {})["direction"] = str(direction).lower()
    attrs = t["study_user_attributes"]
    for sid, key, value in connection.execute(sa.select(attrs.c.study_id, attrs.c.key, attrs.c.value_json)):
        if sid in summaries:
            summaries[sid]["user_attrs"][key] = json.loads(value)
    trials, values = t["trials"], t["trial_values"]
    query = sa.select(trials.c.study_id, trials.c.state, sa.func.count()).group_by(trials.c.study_id, trials.c.state)
    for sid, state, count in connection.execute(query):
        if sid in summaries:
            summaries[sid]["states"][str(state)] = count
    query = (
        sa.select(trials.c.study_id, trials.c.number, values.c.value)
        .join(values, values.c.trial_id == trials.c.trial_id)
        .where(trials.c.state == "COMPLETE", values.c.objective == 0, values.c.value_type == "FINITE")
    )
    for sid, number, value in connection.execute(query):
        if sid in summaries:
            summaries[sid]["values"].append((number, value))
    return [summaries[sid] for sid in sorted(summaries)]


def _tables(sa: Any) -> dict[str, Any]:
    """Lightweight table handles (no metadata, no reflection): only the columns read. SQLAlchemy quotes the
    names each dialect reserves (`key` in MySQL)."""
    columns = {
        "alembic_version": ("version_num",),
        "studies": ("study_id", "study_name"),
        "study_directions": ("study_id", "direction", "objective"),
        "study_user_attributes": ("study_id", "key", "value_json"),
        "trials": ("trial_id", "study_id", "number", "state"),
        "trial_values": ("trial_id", "objective", "value", "value_type"),
    }
    return {name: sa.table(name, *(sa.column(c) for c in cols)) for name, cols in columns.items()}


class MarkingRDBStorage(optuna.storages.RDBStorage):
    """An RDBStorage that hands its stale trials to `on_stale(storage, study_id, trial_ids)` while they are still
    RUNNING (their attrs still writable), just before `optuna.storages.fail_stale_trials` fails them."""

    on_stale: Callable[[optuna.storages.RDBStorage, int, list[int]], None] | None = None

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        if stale and self.on_stale is not None:
            self.on_stale(self, study_id, stale)
        return stale


def heartbeat_ages(storage: optuna.storages.BaseStorage, study: int) -> dict[int, tuple[int, float]]:
    """{trial id: (trial number, seconds since its last heartbeat)} of the RUNNING trials of a study that have
    sent one, read from the store's clock as Optuna's stale check does. {} for a store without heartbeats."""
    import sqlalchemy
    import sqlalchemy.orm
    from optuna.storages._rdb import models

    backend = rdb_backend(storage)
    if backend is None or backend.heartbeat_interval is None:
        return {}
    trial, beat = models.TrialModel, models.TrialHeartbeatModel
    query = (
        sqlalchemy.select(trial.trial_id, trial.number, beat.heartbeat)
        .join(beat, beat.trial_id == trial.trial_id)
        .where(trial.study_id == study, trial.state == optuna.trial.TrialState.RUNNING)
    )
    with sqlalchemy.orm.Session(backend.engine) as session:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = session.execute(query).all()
    naive = lambda t: t.replace(tzinfo=None)  # noqa: E731  (PostgreSQL answers with a zone, SQLite without)
    return {tid: (number, (naive(now) - naive(at)).total_seconds()) for tid, number, at in rows}
