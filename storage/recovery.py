"""Recovery users can see. A worker killed mid-trial (kill -9, a lost machine) leaves a RUNNING trial whose
heartbeat stops; once it has been silent for the grace period, the next worker that starts a trial fails it and
queues a retry (`queue_retry`, as Optuna's `RetryHeartbeatStaleTrialCallback` does: same parameters and user
attrs, so the retry resumes from the dead trial's checkpoint; the same function queues an interrupted trial
again). Here that is said and stored:

- the dead trial's "error" attr says why it failed, "worker lost (no heartbeat for 140 s)", written while it is
  still RUNNING (`mark_lost`), so `show`, the report and optuna-dashboard show it, and budgets do not count it;
- the worker that fails it prints one line: "trial 3: worker lost (no heartbeat for 140 s), retried as trial 5,
  resuming from epoch 2" (or "starting over", or "not retried" once --max-retry is used up);
- a worker started while such a trial is still inside its grace period says which trial it leaves running and
  when it would be retried (`running_lines`).
"""

from __future__ import annotations

import logging

import optuna

from storage import schema
from storage.optuna_private import RETRY_HISTORY, heartbeat_ages, rdb_backend, retry_system_attrs, retry_target

_NOT_COPIED = (schema.ERROR, schema.SECONDS, schema.RETRY_OF)  # of the trial before, not of its retry

log = logging.getLogger(__name__)


def mark_lost(storage: optuna.storages.BaseStorage, study: int, stale: list[int]) -> None:
    """Write why each stale trial is about to fail (MarkingRDBStorage.on_stale). Another worker may fail it first:
    then it keeps that worker's words."""
    ages = heartbeat_ages(storage, study)
    for trial_id in stale:
        silent = ages.get(trial_id, (None, None))[1]
        reason = schema.WORKER_LOST if silent is None else f"{schema.WORKER_LOST} (no heartbeat for {silent:.0f} s)"
        try:
            storage.set_trial_user_attr(trial_id, schema.ERROR, reason)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


def lost_line(trial: optuna.trial.FrozenTrial, retry: int | None, max_retry: int) -> str:
    """What became of a trial whose worker was lost, in one line."""
    reason = str(trial.user_attrs.get(schema.ERROR) or schema.WORKER_LOST)
    if retry is None:
        return f"trial {trial.number}: {reason}; not retried (its --max-retry {max_retry} retries are used up)"
    epoch = trial.user_attrs.get(schema.CHECKPOINT_EPOCH) if trial.user_attrs.get(schema.CHECKPOINT) else None
    resume = f"resuming from epoch {epoch}" if epoch else "starting over (no checkpoint)"
    return f"trial {trial.number}: {reason}, retried as trial {retry}, {resume}"


def queue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """Queue a WAITING copy of a finished trial, as Optuna's RetryHeartbeatStaleTrialCallback does for a dead
    worker's: same params, its user attrs (the resume checkpoint's id among them; not its error or seconds), its
    grid point, and the retry history that `note_retry` reads. Returns the retry's number."""
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in _NOT_COPIED}
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=retry_system_attrs(trial),
        )
    )
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return max(t.number for t in waiting if retry_target(t) == trial.number)


class RetryLostTrials:
    """The store's stale-trial callback: a retry, unless the trial's chain has had `max_retry` retries (Optuna's
    RetryHeartbeatStaleTrialCallback's rule), and the line that says what became of the trial."""

    def __init__(self, max_retry: int):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retries = len(retry_system_attrs(trial)[RETRY_HISTORY])  # the chain's trials so far, this one included
        retry = queue_retry(study, trial) if retries <= self.max_retry else None
        log.warning("%s", lost_line(trial, retry, self.max_retry))


def running_lines(storage: optuna.storages.BaseStorage, study: int) -> list[str]:
    """One line per RUNNING trial of the study that has sent a heartbeat: a worker started beside it (another
    worker's trial, or a lost one still inside its grace period) says what it leaves alone, and until when."""
    backend = rdb_backend(storage)
    grace_period = getattr(backend, "grace_period", None) or 0
    lines = []
    for number, silent in sorted(heartbeat_ages(storage, study).values()):
        if silent > grace_period:
            lines.append(f"trial {number}: no heartbeat for {silent:.0f} s; failed and retried at the next trial")
            continue
        lines.append(
            f"trial {number} is running (last heartbeat {silent:.0f} s ago): left to its worker; if that worker "
            f"was lost, the trial is retried in {grace_period - silent:.0f} s, by the next trial started after that"
        )
    return lines
