"""study.py end to end on generated CIFAR archives: create + optimize per objective, show --json, pruning,
best:STUDY encoders, grid and journal stores, delete, and every bad input of issue 3 (exit 2, one line on stderr,
no traceback, the store unchanged)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from storage import schema
from tests.helpers import REPO, check_refused, file_state, run_cli, show, tiny_sets

SCHEMA_ATTRS = set(schema.COMPLETE_TRIAL_ATTRS)


def store_snapshot(url: str) -> dict:
    """Study names -> [(number, state, params, user attrs)] read with Optuna directly."""
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    try:
        return {
            s.study_name: [
                (t.number, t.state.name, t.params, t.user_attrs) for t in storage.get_all_trials(s._study_id)
            ]
            for s in storage.get_all_studies()
        }
    finally:
        storage.engine.dispose()


@pytest.fixture
def store_copy(filled_store, tmp_path):
    """A copy of the filled store's database (no artifacts), for tests that must leave it unchanged."""
    path = tmp_path / "copy.db"
    shutil.copy(filled_store.path, path)
    return f"sqlite:///{path}", path


# ---------------------------------------------------------------------------------------------------------
# end to end


@pytest.mark.parametrize(
    "name, objective",
    [("ssl", "simclr"), ("probe-best", "linear_probe"), ("scratch", "supervised"), ("ft", "finetune")],
)
def test_show_json_after_optimize(filled_store, name, objective):
    data = show(filled_store.url, name)
    assert data["objective"] == objective and data["schema"] == schema.SCHEMA_VERSION
    assert data["direction"] == "maximize"
    assert all(d["name"].endswith("Distribution") for d in data["space"].values())
    assert data["n_trials"] == 2 and data["states"] == {"COMPLETE": 2}
    assert data["best_trial"]["value"] == max(t["value"] for t in data["trials"])
    for trial in data["trials"]:
        assert 0 <= trial["value"] <= 100
        assert set(trial["params"]) == set(data["space"])
        assert trial["intermediate_values"], "per-epoch values reported for pruning"
        assert all(0 <= v <= 100 for v in trial["intermediate_values"].values())
        attrs = trial["user_attrs"]
        assert SCHEMA_ATTRS <= set(attrs), SCHEMA_ATTRS - set(attrs)
        assert attrs[schema.VAL_TOP1] == pytest.approx(trial["value"], abs=1e-3)
        assert schema.ERROR not in attrs
        if objective in ("simclr", "supervised", "finetune"):
            assert (filled_store.artifacts / attrs[schema.CHECKPOINT]).is_file()
        if objective == "simclr":
            assert attrs[schema.N_PRETRAIN_IMAGES] == 10 and attrs[schema.DATA_FRACTION] == 0.5
            assert attrs[schema.TRIAL_ENCODER] == f"trial:ssl:{trial['number']}"
            assert trial["params"]["temperature"] in (0.2, 0.5)


def test_probe_over_best_study_used_its_best_checkpoint(filled_store):
    best = show(filled_store.url, "ssl")["best_trial"]["number"]
    probe = show(filled_store.url, "probe-best")
    assert probe["encoder"] == "best:ssl"
    assert {t["user_attrs"][schema.TRIAL_ENCODER] for t in probe["trials"]} == {f"trial:ssl:{best}"}
    ft = show(filled_store.url, "ft")
    assert {t["user_attrs"][schema.TRIAL_ENCODER] for t in ft["trials"]} == {"trial:ssl:0"}


def test_list(filled_store):
    r = run_cli("list", "--json", "--storage", filled_store.url)
    assert r.rc == 0
    rows = {row["name"]: row for row in json.loads(r.out)}
    assert {n: r["objective"] for n, r in rows.items()} == {
        "ssl": "simclr",
        "probe-best": "linear_probe",
        "scratch": "supervised",
        "ft": "finetune",
    }
    assert all(r["trials"] == 2 and r["best_value"] is not None for r in rows.values())
    text = run_cli("list", "--storage", filled_store.url)
    assert text.rc == 0 and "probe-best" in text.out
    text = run_cli("show", "ssl", "--storage", filled_store.url)
    assert text.rc == 0 and "COMPLETE" in text.out and "temperature" in text.out


def test_report_json_covers_the_studies(filled_store):
    r = run_cli("report", "--json", "--storage", filled_store.url)
    assert r.rc == 0, r.err
    assert {s["study"] for s in json.loads(r.out)["studies"]} == {"ssl", "probe-best", "scratch", "ft"}


def test_pruner_prunes_a_trial_that_reports_badly(filled_store, tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_cli(
        "create",
        "--objective",
        "linear_probe",
        "--name",
        "p",
        "--storage",
        url,
        "--pruner",
        "median:1:0",
        "--set",
        *tiny_sets("linear_probe", filled_store.data_dir),
        "encoder=random",
    )
    assert r.rc == 0, r.err
    study = optuna.load_study(study_name="p", storage=url)
    spec = schema.read_spec(study.user_attrs)
    params = {k: d.low for k, d in spec.space.items()}
    # a finished trial that was perfect at every epoch: anything real reports less at epoch 1
    study.add_trial(
        optuna.create_trial(
            params=params, distributions=spec.space, value=100.0, intermediate_values={1: 100.0, 2: 100.0, 3: 100.0}
        )
    )
    r = run_cli("optimize", "p", "--trials", "1", "--device", "cpu", "--storage", url)
    assert r.rc == 0, r.err
    trial = show(url, "p")["trials"][1]
    assert trial["state"] == "PRUNED"
    assert list(trial["intermediate_values"]) == ["1"] and trial["intermediate_values"]["1"] < 100
    assert trial["user_attrs"][schema.N_TRAIN_IMAGES] == 15


def test_grid_study_on_a_journal_store(filled_store, tmp_path):
    url = f"journal:{tmp_path / 'j.log'}"
    r = run_cli(
        "create",
        "--objective",
        "linear_probe",
        "--name",
        "g",
        "--storage",
        url,
        "--sampler",
        "grid",
        "--param",
        "probe_lr=choice:0.01,0.1",
        "--set",
        *tiny_sets("linear_probe", filled_store.data_dir),
    )
    assert r.rc == 0, r.err
    r = run_cli("optimize", "g", "--trials", "5", "--device", "cpu", "--storage", url)
    assert r.rc == 0, r.err
    data = show(url, "g")
    assert sorted(t["params"]["probe_lr"] for t in data["trials"]) == [0.01, 0.1]  # grid exhausted: 2, not 5
    assert all(t["state"] == "COMPLETE" for t in data["trials"])


def test_failed_trial_records_the_reason_and_the_worker_goes_on(filled_store, tmp_path, monkeypatch):
    import simclr.probe
    from errors import NonFiniteLoss

    def diverge(*args, **kwargs):
        raise NonFiniteLoss(1, 0, float("nan"))

    monkeypatch.setattr(simclr.probe, "evaluate_encoder", diverge)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert (
        run_cli(
            "create",
            "--objective",
            "linear_probe",
            "--name",
            "f",
            "--storage",
            url,
            "--sampler",
            "random",
            "--set",
            *tiny_sets("linear_probe", filled_store.data_dir),
        ).rc
        == 0
    )
    r = run_cli("optimize", "f", "--trials", "2", "--device", "cpu", "--storage", url)
    assert r.rc == 1  # it ran, but no trial completed
    trials = show(url, "f")["trials"]
    assert [t["state"] for t in trials] == ["FAIL", "FAIL"]
    assert all(t["user_attrs"][schema.ERROR].startswith("diverged") for t in trials)


def test_delete_removes_the_study_and_its_artifacts(filled_store, tmp_path):
    shutil.copy(filled_store.path, tmp_path / "d.db")
    shutil.copytree(filled_store.artifacts, tmp_path / "d_artifacts")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    ssl = {t["user_attrs"][schema.CHECKPOINT] for t in show(url, "ssl")["trials"]}
    scratch = {t["user_attrs"][schema.CHECKPOINT] for t in show(url, "scratch")["trials"]}
    r = run_cli("delete", "ssl", "--storage", url)  # probe-best and ft probe its encoder: refused, nothing deleted
    check_refused(r, "studies probe-best, ft probe an encoder of 'ssl'")
    assert show(url, "ssl")["n_trials"] == len(ssl) and all((tmp_path / "d_artifacts" / a).exists() for a in ssl)
    r = run_cli("delete", "ssl", "--force", "--storage", url)
    assert r.rc == 0, r.err
    assert "ssl" not in {row["name"] for row in json.loads(run_cli("list", "--json", "--storage", url).out)}
    assert all(not (tmp_path / "d_artifacts" / a).exists() for a in ssl)
    assert all((tmp_path / "d_artifacts" / a).exists() for a in scratch)
    assert run_cli("show", "ssl", "--storage", url).rc == 2


# ---------------------------------------------------------------------------------------------------------
# bad input: exit 2, one line, nothing changed


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["create", "--objective", "nope"], "invalid choice"),
        (["create", "--objective", "simclr", "--sampler", "nope"], "invalid choice"),
        (["create", "--objective", "simclr", "--pruner", "nope"], "unknown pruner"),
        (["create", "--objective", "simclr", "--preset", "nope"], "invalid choice"),
        (["create", "--objective", "simclr", "--name", "ssl"], "already exists"),
        (["create", "--objective", "simclr", "--set", "lr=abc"], "lr='abc': expected float"),
        (["create", "--objective", "simclr", "--set", "epochs=0"], "must be in (0, 10000]"),
        (["create", "--objective", "simclr", "--param", "lr=float:1:0"], "LOW 1.0 is above HIGH 0.0"),
        (["create", "--objective", "simclr", "--param", "lr=float:abc"], "SPEC must be"),
        (["create", "--objective", "simclr", "--set", "nope=1"], "unknown config key"),
        (
            ["create", "--objective", "simclr", "--role", "boss"],
            "unknown role 'boss'; choose from simclr_hparams, simclr_scale",
        ),
        (["create", "--objective", "simclr", "--param", "nope=float:0:1"], "unknown config key"),
        (["create", "--objective", "simclr", "--sampler", "grid", "--param", "lr=float:0.1:1"], "grid needs"),
        (["create", "--objective", "simclr", "--set", "lr=0.1", "--param", "lr=float:0.1:1"], "either fixed"),
        (["create", "--objective", "simclr", "--name", ""], "study name"),
        (["create", "--objective", "linear_probe", "--set", "encoder=best:nosuch"], "no study named 'nosuch'"),
        (["create", "--objective", "finetune", "--set", "encoder=/no/such.pt"], "no such checkpoint file"),
        (["create"], "--objective"),
        (["optimize", "nosuch"], "no study named 'nosuch'"),
        (["optimize", "ssl", "--trials", "0"], "--trials"),
        (["optimize", "ssl", "--trials", "x"], "invalid int"),
        (["optimize", "ssl", "--device", "tpu:0"], "unknown device"),
        (["optimize", "ssl", "--device", "cuda:99"], "cuda"),
        (["show", "nosuch"], "no study named 'nosuch'"),
        (["show"], "NAME"),
        (["delete", "nosuch"], "no study named 'nosuch'"),
        (["dashboard", "--port", "0"], "--port"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input(store_copy, argv, fragment):
    url, path = store_copy
    before, snapshot = file_state(path), store_snapshot(url)
    check_refused(run_cli(*argv, "--storage", url), fragment)
    assert file_state(path) == before
    assert store_snapshot(url) == snapshot
    assert not (path.parent / "copy_artifacts").exists()


def _not_a_store(tmp_path: Path, kind: str) -> tuple[str, Path]:
    if kind == "text":
        path = tmp_path / "notes.db"
        path.write_text("these are my notes\n")
        return f"sqlite:///{path}", path
    if kind == "other-sqlite":
        path = tmp_path / "other.db"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE photos (id INTEGER)")
        con.commit()
        con.close()
        return f"sqlite:///{path}", path
    if kind == "journal-garbage":
        path = tmp_path / "garbage.log"
        path.write_bytes(b'\x00\x01 not json\n{"op_code": 99}\n')
        return f"journal:{path}", path
    if kind == "missing-sqlite":
        return f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "missing.db"
    return f"journal:{tmp_path / 'missing.log'}", tmp_path / "missing.log"


@pytest.mark.parametrize("kind", ["text", "other-sqlite", "journal-garbage", "missing-sqlite", "missing-journal"])
@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["show", "x"],
        ["optimize", "x"],
        ["delete", "x"],
        ["dashboard"],
        ["create", "--objective", "simclr", "--name", "x"],
    ],
)
def test_not_a_study_database(tmp_path, kind, argv):
    if argv[0] == "create" and kind.startswith("missing"):
        pytest.skip("create makes a new store: that is its job")
    url, path = _not_a_store(tmp_path, kind)
    before = file_state(path)
    check_refused(run_cli(*argv, "--storage", url))
    assert file_state(path) == before  # not modified; not created where it did not exist
    assert sorted(p.name for p in tmp_path.iterdir()) == ([path.name] if before else [])


@pytest.mark.parametrize(
    "url, list_fragment, create_fragment",
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot open store", "cannot open store"),
        ("mysql+nosuchdriver://u@localhost/db", "cannot open store", "cannot open store"),
        ("studies.db", "is not a URL", "is not a URL"),
        ("sqlite:////no/such/dir/s.db", "no study store at /no/such/dir/s.db", "directory /no/such/dir does not exist"),
    ],
)
def test_store_that_cannot_be_opened(url, list_fragment, create_fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_refused(run_cli("list", "--storage", url), list_fragment)
    check_refused(run_cli("create", "--objective", "simclr", "--storage", url), create_fragment)
    assert list(tmp_path.iterdir()) == []


def test_missing_data_stops_optimize_before_any_trial(store_copy, tmp_path):
    url, path = store_copy
    empty = tmp_path / "nodata"
    empty.mkdir()
    assert (
        run_cli(
            "create",
            "--objective",
            "supervised",
            "--name",
            "nodata",
            "--storage",
            url,
            "--set",
            f"data_dir={empty}",
            "download=false",
        ).rc
        == 0
    )
    before, snapshot = file_state(path), store_snapshot(url)
    r = run_cli("optimize", "nodata", "--storage", url, "--device", "cpu")
    check_refused(r, str(empty))
    assert "cifar-100-python.tar.gz" in r.err  # says which archive to put where
    assert file_state(path) == before and store_snapshot(url) == snapshot


def test_missing_imagenet_weights_offline(store_copy, tmp_path, monkeypatch):
    url, path = store_copy
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    data_dir = show(url, "scratch")["config"]["data_dir"]
    assert (
        run_cli(
            "create",
            "--objective",
            "linear_probe",
            "--name",
            "inet",
            "--storage",
            url,
            "--set",
            f"data_dir={data_dir}",
            "download=false",
            "encoder=imagenet",
        ).rc
        == 0
    )
    before, snapshot = file_state(path), store_snapshot(url)
    r = run_cli("optimize", "inet", "--storage", url, "--device", "cpu")
    # torch.hub announces the download attempt on stdout itself (simclr/models.py could silence it)
    check_refused(
        dataclasses.replace(r, out=r.out.replace(r.out.split("\n")[0], "", 1).strip()), "resnet18-f37072fd.pth"
    )
    assert str(tmp_path / "torch") in r.err
    assert file_state(path) == before and store_snapshot(url) == snapshot


# ---------------------------------------------------------------------------------------------------------
# real processes: exit codes, no traceback, no torch for the read commands, speed


def test_subprocess_exit_code_and_one_line(store_copy):
    url, path = store_copy
    before = file_state(path)
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "study.py"),
            "create",
            "--objective",
            "simclr",
            "--set",
            "lr=abc",
            "--storage",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr == "error: lr='abc': expected float\n" and p.stdout == ""
    p = subprocess.run(
        [sys.executable, str(REPO / "study.py"), "show", "nosuch", "--storage", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "STUDY_STORAGE": "x"},
    )
    assert p.returncode == 2 and p.stderr.startswith("error: no study named 'nosuch'") and p.stderr.count("\n") == 1
    assert file_state(path) == before


def test_read_commands_do_not_import_torch_and_are_fast(store_copy, tmp_path):
    url, _ = store_copy
    code = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
import study
t = time.perf_counter()
assert study.main(['list', '--storage', {url!r}]) == 0
assert study.main(['show', 'ssl', '--json', '--storage', {url!r}]) == 0
assert study.main(['create', '--objective', 'simclr', '--name', 'fast', '--storage', {url!r}]) == 0
assert study.main(['delete', 'fast', '--storage', {url!r}]) == 0
assert study.main(['report', '--json', '--storage', {url!r}]) == 0
print('SECONDS', time.perf_counter() - t, file=sys.stderr)
assert 'torch' not in sys.modules, 'torch imported'
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    seconds = []
    for _ in range(2):
        t = time.perf_counter()
        p = subprocess.run(
            [sys.executable, str(REPO / "study.py"), "list", "--storage", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        seconds.append(time.perf_counter() - t)
        assert p.returncode == 0
    assert min(seconds) < 2.0, seconds  # the whole process, interpreter start included


@pytest.mark.skipif(not os.environ.get("STUDY_TEST_POSTGRES_URL"), reason="STUDY_TEST_POSTGRES_URL not set")
def test_postgres_store_create_show_delete():
    url = os.environ["STUDY_TEST_POSTGRES_URL"]
    name = f"cli-test-{os.getpid()}-{time.time_ns()}"
    try:
        assert run_cli("create", "--objective", "linear_probe", "--name", name, "--storage", url).rc == 0
        data = show(url, name)
        assert data["objective"] == "linear_probe" and data["n_trials"] == 0
        check_refused(
            run_cli("create", "--objective", "linear_probe", "--name", name, "--storage", url), "already exists"
        )
    finally:
        run_cli("delete", name, "--storage", url)
    assert run_cli("show", name, "--storage", url).rc == 2


@pytest.mark.slow
def test_sigterm_fails_the_running_trial_cleanly_and_queues_it_again(filled_store, tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    # no checkpoint is due before epoch 1000: the only one the trial can leave is the one its stop writes
    changed = ("epochs=", "checkpoint_every=")
    sets = [s for s in tiny_sets("simclr", filled_store.data_dir) if not s.startswith(changed)]
    sets += ["epochs=200", "checkpoint_every=1000"]
    assert run_cli("create", "--objective", "simclr", "--name", "t", "--storage", url, "--set", *sets).rc == 0
    stop_after = lambda ready: _sigterm_when(url, ready)  # noqa: E731
    worker, err = stop_after(lambda trials: trials and len(trials[0].intermediate_values) >= 2)
    assert worker.returncode == 130, err
    assert "Traceback" not in err and err.rstrip().endswith("interrupted")
    assert "queued again" in err and "nan" not in err  # not Optuna's "The value nan is not acceptable"
    trial, retry = show(url, "t")["trials"]
    assert trial["state"] == "FAIL" and trial["user_attrs"][schema.ERROR] == "interrupted"
    # queued again with its parameters and its resume checkpoint (test_objectives: such a retry resumes from it)
    assert retry["state"] == "WAITING" and retry["params"] == trial["params"]
    checkpoint = retry["user_attrs"][schema.CHECKPOINT]
    assert checkpoint == trial["user_attrs"][schema.CHECKPOINT] and (tmp_path / "t_artifacts" / checkpoint).is_file()
    assert schema.ERROR not in retry["user_attrs"]
    stopped_at = max(map(int, trial["intermediate_values"]))  # the epoch SIGTERM waited for is kept, not recomputed
    assert retry["user_attrs"][schema.CHECKPOINT_EPOCH] == trial["user_attrs"][schema.CHECKPOINT_EPOCH] == stopped_at

    # the retry resumes from that epoch (and is stopped again once it has said so)
    resumed = lambda trials: len(trials) > 1 and schema.RESUMED_FROM_EPOCH in trials[1].user_attrs  # noqa: E731
    worker, err = stop_after(resumed)
    assert worker.returncode == 130, err
    assert show(url, "t")["trials"][1]["user_attrs"][schema.RESUMED_FROM_EPOCH] == stopped_at


def _sigterm_when(url: str, ready) -> tuple[subprocess.Popen, str]:
    """Start `optimize t`, send SIGTERM once ready(trials) holds, and wait for the worker to end."""
    command = [sys.executable, str(REPO / "study.py"), "optimize", "t", "--trials", "3", "--device", "cpu"]
    worker = subprocess.Popen(
        [*command, "--threads", "1", "--storage", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if ready(optuna.load_study(study_name="t", storage=url).trials):
                break
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.3)
        worker.terminate()  # SIGTERM
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    return worker, err
