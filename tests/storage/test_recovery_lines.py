"""A lost worker's trial, seen: the store marks it "worker lost (no heartbeat for N s)" before Optuna fails it,
the failing worker prints what became of it (retried as trial M, resuming from epoch E), a worker started beside
a running trial says when that trial would be retried, and a lost trial does not use budget. The heartbeat's
clock is moved by rewriting the store's heartbeat row (no sleeping); the kill -9 end to end is in
tests/objectives/test_recovery.py."""

from __future__ import annotations

import logging
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from objectives.counting import uses_budget
from storage import Heartbeat, open_storage, schema
from storage.recovery import running_lines

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


@pytest.fixture
def running(tmp_path):
    """(study, storage, trial_id, db path): one RUNNING trial with a heartbeat and a checkpoint at epoch 2."""
    path = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{path}", create=True, heartbeat=Heartbeat(interval=60, grace_period=120))
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.1, 1.0)})
    trial.set_user_attr(schema.CHECKPOINT, "resume-abc")
    trial.set_user_attr(schema.CHECKPOINT_EPOCH, 2)
    study._storage.record_heartbeat(trial._trial_id)
    return study, storage, trial._trial_id, path


def silent_for(path, seconds: int) -> None:
    with sqlite3.connect(path) as con:  # the store's clock: as if the last heartbeat came `seconds` ago
        con.execute(f"UPDATE trial_heartbeats SET heartbeat = datetime('now', '-{seconds} seconds')")


def test_a_worker_beside_a_running_trial_says_when_it_would_be_retried(running):
    study, storage, _, path = running
    silent_for(path, 40)
    (line,) = running_lines(study._storage, study._study_id)
    assert line.startswith("trial 0 is running (last heartbeat 40 s ago)")
    assert "retried in 80 s" in line


def test_a_lost_workers_trial_is_marked_retried_and_said(running, caplog):
    study, storage, trial_id, path = running
    silent_for(path, 140)
    with caplog.at_level(logging.WARNING, logger="storage.recovery"):
        optuna.storages.fail_stale_trials(study)  # what the next worker's optimize does before its trial
    dead, retry = study.get_trials(deepcopy=False)
    assert dead.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert dead.user_attrs[schema.ERROR] == "worker lost (no heartbeat for 140 s)"
    assert not uses_budget(dead)  # its retry runs the point: the lost one does not count
    assert retry.params == dead.params and schema.ERROR not in retry.user_attrs  # its attrs, not its error
    assert retry.user_attrs[schema.CHECKPOINT] == "resume-abc"  # so it resumes from the dead trial's epoch
    said = [r.getMessage() for r in caplog.records if r.name == "storage.recovery"]
    assert said == ["trial 0: worker lost (no heartbeat for 140 s), retried as trial 1, resuming from epoch 2"]


def test_a_trial_out_of_retries_says_so(tmp_path, caplog):
    path = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{path}", create=True, heartbeat=Heartbeat(60, 120, max_retry=0))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    silent_for(path, 200)
    with caplog.at_level(logging.WARNING, logger="storage.recovery"):
        optuna.storages.fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    assert [r.getMessage() for r in caplog.records if r.name == "storage.recovery"] == [
        "trial 0: worker lost (no heartbeat for 200 s); not retried (its --max-retry 0 retries are used up)"
    ]


def test_optimize_help_states_the_recovery_defaults():
    from tests.helpers import run_cli

    out = " ".join(run_cli("optimize", "--help").out.split())
    for flag, default in (("--heartbeat", 60), ("--grace-period", 120), ("--max-retry", 3)):
        after = out[out.index(f"{flag} {flag[2:].upper().replace('-', '_')} ") :]  # its line, not the usage
        assert f"(default {default})" in after[: after.index("--", 2)], (flag, after[:300])


def test_total_trials_counts_the_study_not_the_worker(tmp_path, data_dir):
    """--total-trials N: the store's count of trials that use budget decides (Optuna's MaxTrialsCallback rule), so
    a worker without --trials runs until the study has N, and a later worker with the same N has nothing to do."""
    from tests.helpers import run_cli, show, tiny_sets

    url = f"sqlite:///{tmp_path / 's.db'}"
    sets = [*tiny_sets("linear_probe", data_dir), "encoder=random"]
    assert run_cli("create", "--objective", "linear_probe", "--name", "p", "--storage", url, "--set", *sets).rc == 0
    run = lambda *flags: run_cli("optimize", "p", "--device", "cpu", "--storage", url, *flags)  # noqa: E731
    assert run("--total-trials", "2").rc == 0
    assert [t["state"] for t in show(url, "p")["trials"]] == ["COMPLETE", "COMPLETE"]
    again = run("--total-trials", "2")
    assert again.rc == 0 and "its 2 trials are taken" in again.err and "nothing to do" in again.err
    assert run("--total-trials", "3", "--trials", "5").rc == 0  # the smaller of the two limits
    assert len(show(url, "p")["trials"]) == 3
    assert run_cli("optimize", "p", "--total-trials", "0", "--storage", url).err.startswith("error: --total-trials")
