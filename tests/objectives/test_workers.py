"""Several `study.py optimize` workers on one store (SQLite, journal file, PostgreSQL when
$STUDY_TEST_POSTGRES_URL is set) share the work: every requested trial runs exactly once, no grid point twice,
no trial left RUNNING, no "database is locked". The study is created first, in one process (DESIGN.md, pitfalls).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter

import optuna
import pytest

from storage import open_storage, schema
from tests.helpers import REPO, run_cli
from tests.objectives.workers import create, delete_studies, store_for, trials, unique_name, wait_all, worker

pytestmark = pytest.mark.slow  # end-to-end: several processes or a whole study each

KINDS = ["sqlite", "journal", "postgres"]
N_WORKERS = 3
GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # probe_lr: 6 grid points


def check_workers(done) -> None:
    for d in done:
        assert d.rc == 0, d.err[-3000:]
        assert "Traceback" not in d.err, d.err[-3000:]
        assert "locked" not in d.err.lower(), d.err[-3000:]


@pytest.mark.parametrize("kind", KINDS)
def test_grid_points_run_exactly_once(kind, tmp_path, data_dir):
    store = store_for(kind, tmp_path)
    name = unique_name("grid")
    try:
        create(
            store,
            name,
            "linear_probe",
            data_dir,
            "--sampler",
            "grid",
            "--pruner",
            "none",
            "--param",
            f"probe_lr=choice:{','.join(map(str, GRID))}",
            sets=("encoder=random",),
        )
        # every worker asks for the whole grid: together they must run each point once and stop
        done = wait_all([worker(store, name, "--trials", str(len(GRID))) for _ in range(N_WORKERS)])
        check_workers(done)
        all_trials = trials(store, name)
        complete = [t for t in all_trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert sorted(t.params["probe_lr"] for t in complete) == sorted(GRID)  # each point once, none missing
        others = [t for t in all_trials if t.state != optuna.trial.TrialState.COMPLETE]
        # two workers asking at the same instant for the last point: the later trial gives way before training
        assert all(
            t.state == optuna.trial.TrialState.FAIL and t.user_attrs[schema.ERROR].startswith("grid exhausted")
            for t in others
        ), [(t.number, t.state.name, t.user_attrs.get(schema.ERROR)) for t in others]
        print(f"{kind}: {len(GRID)} grid points, {N_WORKERS} workers: {len(complete)} complete, {len(others)} gave way")
    finally:
        if kind == "postgres":
            delete_studies(store, [name])


@pytest.mark.parametrize("kind", KINDS)
def test_tpe_workers_run_every_requested_trial(kind, tmp_path, data_dir):
    store = store_for(kind, tmp_path)
    name = unique_name("tpe")
    per_worker = 2
    try:
        create(store, name, "linear_probe", data_dir, "--pruner", "none", sets=("encoder=random",))
        done = wait_all([worker(store, name, "--trials", str(per_worker)) for _ in range(N_WORKERS)])
        check_workers(done)
        all_trials = trials(store, name)
        assert Counter(t.state.name for t in all_trials) == {"COMPLETE": N_WORKERS * per_worker}
        assert sorted(t.number for t in all_trials) == list(range(N_WORKERS * per_worker))
        # workers seeded alike used to draw the same parameters: each trial now has its own draws
        points = {tuple(sorted(t.params.items())) for t in all_trials}
        assert len(points) == N_WORKERS * per_worker, [t.params for t in all_trials]
        print(f"{kind}: {N_WORKERS} TPE workers x {per_worker} trials: {len(all_trials)} complete")
    finally:
        if kind == "postgres":
            delete_studies(store, [name])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_total_trials_holds_across_workers(kind, tmp_path, data_dir):
    """Three workers given --total-trials 4 and no --trials: together they run exactly 4 counted trials; a trial
    that a race started beyond them ends at once, FAIL "budget taken" (nothing ran, not counted)."""
    store = store_for(kind, tmp_path)
    name = unique_name("total")
    total = 4
    try:
        create(store, name, "linear_probe", data_dir, "--pruner", "none", sets=("encoder=random",))
        done = wait_all([worker(store, name, "--total-trials", str(total)) for _ in range(N_WORKERS)])
        check_workers(done)
        all_trials = trials(store, name)
        states = Counter(t.state.name for t in all_trials)
        assert states["COMPLETE"] == total, states
        extra = [t for t in all_trials if t.state.name != "COMPLETE"]
        assert all(t.user_attrs[schema.ERROR].startswith(schema.BUDGET_TAKEN) for t in extra), extra
        print(f"{kind}: {N_WORKERS} workers, --total-trials {total}: {total} complete, {len(extra)} gave way")
    finally:
        if kind == "postgres":
            delete_studies(store, [name])


def test_sqlite_busy_timeout_waits_for_a_writer(tmp_path):
    """A write while another connection holds the database's write lock waits (busy timeout), it does not fail
    with "database is locked" at once (sqlite3's default timeout is 5 s; Optuna workers may hold it longer)."""
    url = f"sqlite:///{tmp_path / 'b.db'}"
    storage = open_storage(url, create=True)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "busy")
    assert storage.engine.url.database == str(tmp_path / "b.db")
    with storage.engine.connect() as connection:  # the timeout the driver was given
        raw = connection.connection.dbapi_connection
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] >= 60_000

    locker = sqlite3.connect(tmp_path / "b.db", isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    hold = 1.5
    threading.Timer(hold, lambda: locker.execute("COMMIT")).start()
    started = time.monotonic()
    storage.set_study_user_attr(study_id, "written", True)  # blocks until the lock is released
    waited = time.monotonic() - started
    locker.close()
    assert waited >= hold - 0.2
    assert storage.get_study_user_attrs(study_id)["written"] is True


def test_dashboard_and_report_read_while_two_workers_write(tmp_path, data_dir):
    """optuna-dashboard's API polled every 0.2 s and `study.py report --json` in a loop, on the SQLite store two
    workers are writing: no worker error, every trial completes, every read answers."""
    from tests.helpers import free_port, get

    store = store_for("sqlite", tmp_path)
    create(store, "rw", "linear_probe", data_dir, "--pruner", "none", sets=("encoder=random",))
    port = free_port()
    dashboard = subprocess.Popen(
        [sys.executable, str(REPO / "study.py"), "dashboard", "--port", str(port), "--storage", store.url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    reports: list = []
    stop = threading.Event()

    def report_loop() -> None:  # `study.py report --json` in process: no interpreter start between two reads
        while not stop.is_set():
            reports.append(run_cli("report", "--json", "--storage", store.url))
            time.sleep(0.5)

    polls: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get(f"{base}/api/studies", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert dashboard.poll() is None and time.monotonic() < deadline, dashboard.communicate(timeout=5)
                time.sleep(0.2)
        (summary,) = json.loads(body)["study_summaries"]
        workers = [worker(store, "rw", "--trials", "4") for _ in range(2)]
        reader = threading.Thread(target=report_loop)
        reader.start()
        while any(w.poll() is None for w in workers):
            for path in ("/api/studies", f"/api/studies/{summary['study_id']}"):
                status, body = get(base + path, timeout=30)
                polls.append(status)
                json.loads(body)
            time.sleep(0.2)
        done = wait_all(workers)
    finally:
        stop.set()
        dashboard.terminate()
        try:
            dashboard.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.communicate()
    reader.join(timeout=120)
    check_workers(done)
    assert Counter(t.state.name for t in trials(store, "rw")) == {"COMPLETE": 8}
    assert polls and set(polls) == {200}
    assert reports and all(r.rc == 0 and json.loads(r.out)["studies"] for r in reports), reports[-1].err
    print(f"{len(polls)} dashboard API reads and {len(reports)} reports while 2 workers wrote 8 trials")


@pytest.mark.parametrize("sampler", ["grid", "tpe", "random"])
def test_workers_share_the_grid_but_not_their_draws(sampler):
    """Each worker rebuilds the sampler from the store (objectives.open_study). Workers opened together used to
    draw the same parameters; a worker opened later used another seed, which reorders a grid, so grid trials ran
    some points twice and others never."""
    from objectives import build_spec, open_study
    from objectives.space import suggest

    params = [f"probe_lr=choice:{','.join(map(str, GRID))}"] if sampler == "grid" else []
    spec = build_spec("linear_probe", sampler=sampler, params=params)
    storage = optuna.storages.InMemoryStorage()
    schema.write_spec(optuna.create_study(storage=storage, study_name="s", direction="maximize"), spec)

    def run(study) -> None:
        study.optimize(lambda trial: suggest(trial, spec.space)["probe_lr"], n_trials=1)

    a, b = open_study(storage, "s")[0], open_study(storage, "s")[0]  # started together
    run(a)
    run(a)
    c = open_study(storage, "s")[0]  # started later, on a study with trials
    for study in (a, b, c, b):
        run(study)
    points = [tuple(sorted(t.params.items())) for t in a.get_trials(deepcopy=False)]
    assert len(points) == len(GRID) and len(set(points)) == len(GRID), points
