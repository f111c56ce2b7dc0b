"""Which trials count toward a study's budget, read in the store, so that any number of workers together run a
study's budget exactly (`optimize --total-trials`, and every study of `compare`).

A trial counts when it finished (COMPLETE, PRUNED) or failed for a reason it would fail for again (diverged, out
of memory, a bad value). A trial that was interrupted, dequeued, lost its worker, gave way to an earlier trial on
a grid point or found the budget already taken does not: nothing of it is a result.

Exactly the budget, whatever the races: trials are ordered by their id in the store (assigned once, in creation
order, by the database), and a trial starts only when fewer than the budget of the trials created before it
count or may still count (RUNNING, WAITING). Two workers that both saw one trial left both create one; the
later one ends at once, FAIL "budget taken: ..." (nothing ran, not counted), and its worker stops. When an
earlier trial then fails without counting (its worker lost), the budget has a hole again, and the next worker
that looks fills it.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import schema

_NOT_RESULTS = (schema.GRID_TAKEN, schema.WORKER_LOST, schema.BUDGET_TAKEN)  # how such errors start
_LIVE = (TrialState.RUNNING, TrialState.WAITING)


def uses_budget(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget: finished, or failed for a reason it would fail for again (diverged, out of
    memory, a bad value: the same parameters with the same seed would fail again). A FAIL "interrupted" (Ctrl-C,
    SIGTERM), dequeued, whose worker was lost (killed: the heartbeat retry re-runs it), a grid point another
    worker held, or a trial that found the budget taken, does not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    error = str(trial.user_attrs.get(schema.ERROR) or "")
    return (
        trial.state == TrialState.FAIL
        and bool(error)
        and error not in (schema.INTERRUPTED, schema.DEQUEUED)
        and not error.startswith(_NOT_RESULTS)
    )


def taken_trials(study: optuna.Study) -> int:
    """Trials toward a study-wide total: those that use budget, and those running now (on any worker)."""
    trials = study.get_trials(deepcopy=False)
    return sum(uses_budget(t) or t.state == TrialState.RUNNING for t in trials)


def taken_before(storage: optuna.storages.BaseStorage, study_id: int, trial_id: int) -> int:
    """Trials of the study created before trial `trial_id` that count or may still count (RUNNING, WAITING)."""
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return sum(t._trial_id < trial_id and (uses_budget(t) or t.state in _LIVE) for t in trials)


def budget_taken(storage: optuna.storages.BaseStorage, study_id: int, trial_id: int, total: int) -> str:
    """Why trial `trial_id` must not run ("" when it may): `total` earlier trials have taken the budget."""
    before = taken_before(storage, study_id, trial_id)
    if before < total:
        return ""
    return (
        f"{schema.BUDGET_TAKEN}: {before} earlier trials took the study's {total} (another worker started one at "
        "the same moment; nothing ran, not counted)"
    )


def cancel_queued(storage: optuna.storages.BaseStorage, study_id: int, total: int) -> int:
    """End the queued (WAITING) trials of a study whose `total` is used: each would end "budget taken" the moment a
    worker started it, and none would start (the study is done), so a retry queued for a lost trial after another
    worker filled the hole would wait forever. Each is taken as a worker takes a queued trial (WAITING -> RUNNING,
    granted once), then ends FAIL "budget taken" (not counted). Returns how many it ended."""
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if sum(uses_budget(t) for t in trials) < total:
        return 0
    ended = 0
    for t in trials:
        if t.state == TrialState.WAITING and storage.set_trial_state_values(t._trial_id, TrialState.RUNNING):
            why = f"{schema.BUDGET_TAKEN}: the study's {total} trials were used before it started (not counted)"
            storage.set_trial_user_attr(t._trial_id, schema.ERROR, why)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            ended += 1
    return ended
