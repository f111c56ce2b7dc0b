"""Budgets exact across workers (objectives.counting): which trials count, and a trial that finds the budget taken
by trials created before it."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from objectives.counting import budget_taken, cancel_queued, taken_before, uses_budget
from storage import open_storage, schema

DIST = {"x": FloatDistribution(0.0, 1.0)}


def _add(study: optuna.Study, state: TrialState, error: str | None = None) -> int:
    attrs = {schema.ERROR: error} if error else {}
    value = 1.0 if state == TrialState.COMPLETE else None
    trial = optuna.trial.create_trial(state=state, params={"x": 0.5}, distributions=DIST, user_attrs=attrs, value=value)
    study.add_trial(trial)
    return study.get_trials(deepcopy=False)[-1]._trial_id


@pytest.mark.parametrize(
    "state, error, counts",
    [
        (TrialState.COMPLETE, None, True),
        (TrialState.PRUNED, None, True),
        (TrialState.FAIL, "diverged: non-finite loss", True),  # it would fail again
        (TrialState.FAIL, schema.INTERRUPTED, False),
        (TrialState.FAIL, "worker lost (no heartbeat for 140 s)", False),
        (TrialState.FAIL, "budget taken: 3 earlier trials took the study's 3", False),
        (TrialState.FAIL, "grid exhausted: trial 2 holds this grid point", False),
        (TrialState.FAIL, None, False),  # a killed worker's, before it was marked
    ],
)
def test_which_trials_count(state, error, counts):
    attrs = {schema.ERROR: error} if error else {}
    trial = optuna.trial.create_trial(
        state=state, params={}, distributions={}, user_attrs=attrs, value=1.0 if state == TrialState.COMPLETE else None
    )
    assert uses_budget(trial) is counts


def test_a_trial_runs_only_while_earlier_trials_leave_budget(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(storage=storage, study_name="s")
    sid = study._study_id
    done = _add(study, TrialState.COMPLETE)
    lost = _add(study, TrialState.FAIL, "worker lost (no heartbeat for 9 s)")  # a hole: not counted
    queued = _add(study, TrialState.WAITING)  # a retry nobody has started yet: it may still count
    mine = _add(study, TrialState.RUNNING)
    later = _add(study, TrialState.RUNNING)  # created after mine: mine never waits for it
    assert taken_before(storage, sid, done) == 0 and taken_before(storage, sid, lost) == 1
    assert taken_before(storage, sid, mine) == 2 and taken_before(storage, sid, later) == 3
    assert budget_taken(storage, sid, mine, total=3) == ""  # 2 earlier trials of 3: it runs
    assert budget_taken(storage, sid, later, total=3).startswith("budget taken: 3 earlier trials took the study's 3")
    assert budget_taken(storage, sid, queued, total=1).startswith("budget taken: 1 earlier")


def test_a_retry_queued_after_the_budget_was_used_is_ended_not_left_waiting(tmp_path):
    """A lost trial's retry queued after another worker filled the hole: the study is done, nothing would start
    it, so the worker that finds the study done ends it, "budget taken" (not counted); before the budget is used a
    queued retry stays queued (it may still run)."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(storage=storage, study_name="s")
    sid = study._study_id
    _add(study, TrialState.COMPLETE)
    _add(study, TrialState.FAIL, "worker lost (no heartbeat for 9 s)")
    queued = _add(study, TrialState.WAITING)
    assert cancel_queued(storage, sid, total=2) == 0  # one trial counts of 2: the retry may still run
    assert storage.get_trial(queued).state == TrialState.WAITING
    _add(study, TrialState.COMPLETE)  # another worker filled the hole first
    assert cancel_queued(storage, sid, total=2) == 1
    retry = storage.get_trial(queued)
    assert retry.state == TrialState.FAIL and retry.user_attrs[schema.ERROR].startswith(schema.BUDGET_TAKEN)
    assert not uses_budget(retry) and sum(uses_budget(t) for t in study.get_trials()) == 2
    assert cancel_queued(storage, sid, total=2) == 0  # nothing left queued
