"""What a resumed comparison finds in the store: whether its studies hold what `compare` would create, what is
left of each budget, the SimCLR encoder to probe, the sized plan stored with the studies, and the wall time and
error recorded on each (comparison.run's module docstring says what counts toward a budget)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from comparison.plan import PlannedStudy, Request
from comparison.regimes import HPARAMS, SCALE
from errors import UserError
from objectives.counting import uses_budget
from storage import schema, store
from storage.optuna_private import grid_id


def spec_difference(stored: schema.StudySpec, wanted: schema.StudySpec, *, ignore: Sequence[str] = ()) -> str | None:
    """The first difference between a stored spec and the one compare would create (config keys in `ignore` are
    not compared), with the count of the others; None when they agree."""
    pairs: list[tuple[str, Any, Any]] = [
        (name, getattr(stored, name), getattr(wanted, name))
        for name in ("objective", "preset", "role", "comparison", "sampler", "pruner")
    ]
    pairs.append(("space", schema.space_to_json(stored.space), schema.space_to_json(wanted.space)))
    keys = sorted(set(stored.config) | set(wanted.config))
    pairs += [(key, stored.config.get(key), wanted.config.get(key)) for key in keys if key not in ignore]
    diffs = [f"{name}: stored {a!r}, this command {b!r}" for name, a, b in pairs if a != b]
    if not diffs:
        return None
    return diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")


def check_request(stored: dict | None, request: Request) -> None:
    """UserError naming the first difference between the request stored with a comparison's plan (by the worker
    that planned it) and this one's: every worker of one comparison runs one plan."""
    if not stored or "request" not in stored:  # a plan stored before requests were: check_existing compares specs
        return
    before, now = stored["request"], request.to_json()
    pairs = [("--preset", before.get("preset"), now["preset"]), ("--trials", before.get("trials"), now["trials"])]
    sets_before, sets_now = before.get("sets", {}), now["sets"]
    pairs += [(f"--set {key}", sets_before.get(key), sets_now.get(key)) for key in sorted({*sets_before, *sets_now})]
    diffs = [f"{name}: stored {_given(a)}, this command {_given(b)}" for name, a, b in pairs if a != b]
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise UserError(
            f"comparison {request.prefix!r} is planned in this store with other settings ({diffs[0]}{more}); start "
            "every worker with the same --preset, --set and --trials, or use another --prefix"
        )


def _given(value: Any) -> str:
    return "not given" if value is None else repr(value)


def tuned_values(storage: optuna.storages.BaseStorage, planned: PlannedStudy) -> tuple[dict[str, Any], str]:
    """The parameters a study tuned by a search runs with (Pretraining.tuned_by: the search's best trial's, the
    study's own grid keys left out) and "SEARCH #N"; ({}, "") when the search has no complete trial yet."""
    pretraining = planned.pretraining
    if pretraining is None or not pretraining.tuned_by:
        return {}, ""
    try:
        best = store.load_study(storage, f"{planned.comparison}-{pretraining.tuned_by}").best_trial
    except (ValueError, UserError):  # no complete trial, or no such study
        return {}, ""
    params = {k: v for k, v in best.params.items() if k not in planned.searched and k != "seed"}
    return params, f"{planned.comparison}-{pretraining.tuned_by} #{best.number}"


def check_existing(storage: optuna.storages.BaseStorage, plans: Sequence[PlannedStudy]) -> list[str]:
    """The plans' studies already in the store; UserError when one was made with other settings."""
    names = set(store.study_names(storage))
    searched = {p.pretraining.suffix: set(p.spec().space) for p in plans if p.pretraining is not None}
    existing = []
    for planned in plans:
        if planned.name not in names:
            continue
        try:
            stored = store.study_spec(storage, planned.name)
        except UserError as e:  # not a study of ours (it is in the store)
            raise UserError(f"{e}; use another --prefix") from None
        ignore: set[str] = {"encoder"} if planned.probes_simclr else set()  # chosen when the study was created
        if planned.pretraining is not None and planned.pretraining.tuned_by:  # so were the tuned parameters
            ignore |= searched.get(planned.pretraining.tuned_by, set())
        diff = spec_difference(stored, planned.spec(), ignore=ignore)
        if diff:
            raise UserError(
                f"study {planned.name!r} exists with other settings ({diff}); resume with the same --preset and --set, "
                "or start a new comparison with another --prefix"
            )
        existing.append(planned.name)
    return existing


def remaining(planned: PlannedStudy, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(trials that count, trials left to run): grid points for the scale study, trials for the others."""
    if planned.grid:
        done = len({grid_id(t) for t in trials if uses_budget(t)} - {None})
    else:
        done = sum(uses_budget(t) for t in trials)
    return done, max(0, planned.trials - done)


def work_left(storage: optuna.storages.BaseStorage | None, plans: Sequence[PlannedStudy]) -> bool:
    """Whether any study is missing or has budget left (else compare only writes the report)."""
    names = set(store.study_names(storage)) if storage is not None else set()
    for planned in plans:
        if planned.name not in names:
            return True
        trials = storage.get_all_trials(storage.get_study_id_from_name(planned.name), deepcopy=False)
        if remaining(planned, trials)[1] > 0:
            return True
    return False


def simclr_encoder(storage: optuna.storages.BaseStorage, prefix: str) -> str:
    """best:PREFIX-hparams, or best:PREFIX-scale when only that one has a complete trial (when neither has, the
    former: the probe study then records why it cannot run)."""
    for name in (f"{prefix}-{HPARAMS.suffix}", f"{prefix}-{SCALE.suffix}"):
        try:
            trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
        except KeyError:
            continue
        if any(t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value) for t in trials):
            return f"best:{name}"
    return f"best:{prefix}-{HPARAMS.suffix}"


def is_ready(attrs: dict[str, Any], has_trials: bool) -> bool:
    """Whether a study of the comparison is set up (schema.READY), so that other workers may run it. A study made
    before workers shared a plan has no such attr: ready once its spec is stored with a plan or a trial."""
    if schema.READY in attrs:
        return bool(attrs[schema.READY])
    return schema.OBJECTIVE in attrs and (schema.TIME_PLAN in attrs or has_trials)


def set_study_error(storage: optuna.storages.BaseStorage, name: str, reason: str) -> None:
    """Record (or with "" clear) why a study could not run; reports show it for a missing regime."""
    study_id = storage.get_study_id_from_name(name)
    if reason or storage.get_study_user_attrs(study_id).get(schema.STUDY_ERROR):
        storage.set_study_user_attr(study_id, schema.STUDY_ERROR, reason)


def stored_time_plan(storage: optuna.storages.BaseStorage | None, prefix: str) -> dict | None:
    """The sized plan stored on the comparison's studies (the first found), or None."""
    if storage is None:
        return None
    for study in storage.get_all_studies():
        if study.user_attrs.get(schema.COMPARISON) == prefix and study.user_attrs.get(schema.TIME_PLAN):
            return json.loads(study.user_attrs[schema.TIME_PLAN])
    return None


def add_wall_seconds(study: optuna.Study, seconds: float) -> None:
    """Wall time spent running the study, summed over every compare that ran it (the report's "actual")."""
    study.set_user_attr(schema.WALL_SECONDS, float(study.user_attrs.get(schema.WALL_SECONDS) or 0.0) + seconds)
