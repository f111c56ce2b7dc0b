"""The compare worker's coordination through the store, without training: a study created once whichever worker
gets there first, its encoder pinned once, and what a worker counts as ready or settled."""

from __future__ import annotations

import threading

import optuna

from comparison.plan import Request, plan
from comparison.regimes import HPARAMS, dependencies
from comparison.resume import is_ready
from comparison.worker import Worker, ensure_study
from objectives.run import RunOptions
from storage import open_storage, schema

N_WORKERS = 8


def _complete(study: optuna.Study, values: list[float]) -> None:
    spec = schema.read_spec(study.user_attrs)
    for value in values:
        params = {k: spec.config[k] for k in spec.space}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=spec.space, value=value))


def test_many_workers_reach_the_barrier_together_one_study_one_pin(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    planned = {p.role: p for p in plan(Request.of("cmp", preset="smoke"))}
    hparams = ensure_study(storage, planned[HPARAMS.role], None, url)
    hparams.get_trials()  # its recipe is queued; three trials complete, the second best
    _complete(hparams, [40.0, 70.0, 55.0])
    best = hparams.best_trial.number
    barrier = threading.Barrier(N_WORKERS)
    got: list[optuna.Study | None] = []

    def worker() -> None:
        mine = open_storage(url)  # a store of its own, as a process has
        barrier.wait()
        got.append(ensure_study(mine, planned["probe_simclr"], None, url))

    threads = [threading.Thread(target=worker) for _ in range(N_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [s for s in got if s is not None]
    assert 1 <= len(made) and len(got) == N_WORKERS  # the creator, and any that came once it was ready
    names = [s.study_name for s in storage.get_all_studies()]
    assert names.count("cmp-probe-simclr") == 1
    probe = optuna.load_study(study_name="cmp-probe-simclr", storage=url)
    assert probe.user_attrs[schema.ENCODER_TRIAL] == best and probe.user_attrs[schema.READY] is True
    assert [t.state.name for t in probe.get_trials()] == ["WAITING"]  # one recipe, queued once
    # any later worker loads it as it is
    assert ensure_study(open_storage(url), planned["probe_simclr"], None, url).user_attrs[schema.ENCODER_TRIAL] == best


def test_a_study_being_set_up_is_not_ready_and_older_studies_are():
    assert not is_ready({schema.READY: False, schema.OBJECTIVE: "simclr"}, has_trials=True)
    assert is_ready({schema.READY: True}, has_trials=False)
    assert not is_ready({}, has_trials=False)  # created a moment ago: no spec yet
    assert not is_ready({schema.OBJECTIVE: "simclr"}, has_trials=False)  # spec written, set-up not begun
    assert is_ready({schema.OBJECTIVE: "simclr", schema.TIME_PLAN: "{}"}, has_trials=False)  # before READY existed
    assert is_ready({schema.OBJECTIVE: "simclr"}, has_trials=True)


def test_a_worker_starts_a_study_only_once_what_it_waits_for_has_used_its_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    plans = plan(Request.of("cmp", preset="smoke", trials=2))
    worker = Worker(storage, plans, RunOptions(), url=url, artifacts_dir=None, say=print, time_plan=None)
    by_role = {p.role: p for p in plans}
    worker.look()
    ready = {p.role for p in plans if worker.ready(p)}
    assert ready == {p.role for p in plans if not dependencies("cmp")[p.name]}  # nothing waits on a missing study
    hparams = ensure_study(storage, by_role[HPARAMS.role], None, url)
    _complete(hparams, [40.0])  # 1 of 2 trials: the probe of its best encoder must wait
    worker.look()
    assert not worker.ready(by_role["probe_simclr"]) and worker.waits_for(by_role["probe_simclr"]) == ["cmp-hparams"]
    _complete(hparams, [60.0])
    hparams.get_trials()
    worker.look()
    assert worker.waits_for(by_role["probe_simclr"]) == [] and worker.ready(by_role["probe_simclr"])
    assert worker.ready(by_role["simclr_scale"])  # the scale curve at the search's pick


def test_a_study_whose_creator_stopped_while_setting_it_up_is_set_up_by_another_worker(tmp_path):
    """A creator killed between two writes leaves a study that is not ready: after `patience` another worker sets
    up what is missing (the recipe queued once, ready), instead of waiting for it forever."""
    from objectives.create import create_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    plans = plan(Request.of("cmp", preset="smoke", trials=2))
    scratch = next(p for p in plans if p.role == "scratch")
    create_study(storage, scratch.name, scratch.spec()).set_user_attr(schema.READY, False)  # then killed
    assert ensure_study(storage, scratch, None, url) is None  # not ready: left to its creator
    worker = Worker(storage, plans, RunOptions(), url=url, artifacts_dir=None, say=print, time_plan=None, patience=0)
    worker.look()
    assert worker.stuck(scratch) and worker.ready(scratch)
    study = ensure_study(storage, scratch, None, url, take_over=True)
    assert study.user_attrs[schema.READY] is True and [t.state.name for t in study.get_trials()] == ["WAITING"]
    assert ensure_study(storage, scratch, None, url, take_over=True).get_trials() == study.get_trials()  # once


def test_a_waiting_worker_says_what_it_waits_for_in_one_line():
    from comparison.worker import Status, waiting_line

    states = {"c-hparams": Status(True, True, 1, 3, 2), "c-scratch": Status(True, False)}
    blocked = {"c-hparams": ["c-hparams", "c-scale", "c-probe-simclr"], "c-scratch": ["c-scratch"]}
    assert waiting_line(blocked, states) == (
        "waiting (any ready study is taken meanwhile): c-hparams (2 trial(s) running on other workers) before "
        "c-scale, c-probe-simclr; c-scratch (being set up by another worker)"
    )
