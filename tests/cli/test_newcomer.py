"""A new user's path: data found once (--data-dir, inherited by a probe), create checks what it can, setup
problems stop before the first trial, progress in a log file, the learning curve stored, results out of the store
(export, CSV, --best, enqueue), checkpoints that do not pile up, global options anywhere, a closed pipe."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import torchvision

from objectives.run import keep_best_checkpoints
from storage import open_artifacts, schema
from tests.helpers import REPO, check_refused, run_cli, show, tiny_sets


def create(url: str, name: str, objective: str, *args) -> None:
    r = run_cli("create", "--objective", objective, "--name", name, "--storage", url, "--sampler", "random", *args)
    assert r.rc == 0, r.err


def sets_without_data_dir(objective: str, data_dir: Path) -> list[str]:
    return [s for s in tiny_sets(objective, data_dir) if not s.startswith("data_dir=")]


# ---------------------------------------------------------------------------------------------------------
# finding the data


def test_data_dir_is_one_option_and_a_probe_inherits_its_encoder_studys_data_settings(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    sets = [*sets_without_data_dir("simclr", data_dir), "probe_fraction=0.9"]
    create(url, "ssl", "simclr", "--preset", "smoke", "--data-dir", data_dir, "--set", *sets)
    assert show(url, "ssl")["config"]["data_dir"] == str(data_dir)
    assert run_cli("optimize", "ssl", "--trials", "1", "--device", "cpu", "--storage", url).rc == 0
    # the README's sequence: no --data-dir, no --preset: both come from ssl
    create(url, "probe-ssl", "linear_probe", "--set", "encoder=best:ssl")
    probe = show(url, "probe-ssl")
    assert probe["preset"] == "smoke"
    assert probe["config"]["data_dir"] == str(data_dir) and probe["config"]["probe_fraction"] == 0.9
    assert probe["config"]["probe_epochs"] == 30  # smoke's probe budget
    # told otherwise: --set wins over the inherited value
    create(url, "probe-2", "linear_probe", "--set", "encoder=best:ssl", "probe_fraction=0.5")
    assert show(url, "probe-2")["config"]["probe_fraction"] == 0.5


def test_study_data_environment_variable(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("STUDY_DATA", str(data_dir))
    url = f"sqlite:///{tmp_path / 's.db'}"
    create(url, "s", "supervised")
    assert show(url, "s")["config"]["data_dir"] == str(data_dir)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--data-dir", "/no/such/place/data"], "data_dir /no/such/place/data does not exist"),
        (["--set", "pretrain_data=banana"], "cifar10, cifar100 or folder:PATH"),
        (["--set", "pretrain_data=folder:/no/such/dir"], "no such directory"),
    ],
)
def test_create_refuses_data_it_cannot_find(tmp_path, extra, fragment):
    url = f"sqlite:///{tmp_path / 's.db'}"
    r = run_cli("create", "--objective", "simclr", "--storage", url, *extra)
    check_refused(r, fragment)
    assert not (tmp_path / "s.db").exists() and not Path("/no").exists()


def test_create_refuses_an_encoder_trial_that_is_not_there_or_not_complete(filled_store, tmp_path):
    shutil.copy(filled_store.path, tmp_path / "c.db")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for encoder, fragment in [
        ("trial:ssl:99", "has no trial 99"),
        ("trial:nope:0", "no study named 'nope'"),
        ("best:nope", "no study named 'nope'"),
    ]:
        check_refused(
            run_cli("create", "--objective", "linear_probe", "--storage", url, "--set", f"encoder={encoder}"), fragment
        )
    study = optuna.load_study(study_name="scratch", storage=url)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    failed = study.trials[-1].number
    check_refused(
        run_cli("create", "--objective", "finetune", "--storage", url, "--set", f"encoder=trial:scratch:{failed}"),
        "is FAIL, not COMPLETE",
    )


# ---------------------------------------------------------------------------------------------------------
# setup problems stop before the first trial


def test_an_unwritable_cache_dir_stops_optimize_with_one_line_and_no_trial(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    blocker = tmp_path / "a-file"
    create(url, "p", "linear_probe", "--set", *tiny_sets("linear_probe", data_dir), f"cache_dir={blocker}/cache")
    blocker.write_text("not a directory")  # writable at create (create_checks refuses it then), not any more
    r = run_cli("optimize", "p", "--trials", "3", "--device", "cpu", "--storage", url)
    check_refused(r, "--set cache_dir=DIR")
    assert show(url, "p")["n_trials"] == 0


def test_an_unwritable_work_dir_stops_optimize(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    (tmp_path / "f").write_text("x")
    create(url, "s", "supervised", "--set", *tiny_sets("supervised", data_dir))
    r = run_cli("optimize", "s", "--device", "cpu", "--work-dir", tmp_path / "f" / "w", "--storage", url)
    check_refused(r, "--work-dir DIR")
    assert show(url, "s")["n_trials"] == 0


def test_missing_cifar_archives_are_named_in_one_line_before_any_trial(tmp_path):
    url, empty = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "nodata"
    empty.mkdir()
    create(url, "ssl", "simclr", "--set", f"data_dir={empty}", "download=false")  # pretrains on 10, probes on 100
    r = run_cli("optimize", "ssl", "--device", "cpu", "--storage", url)
    check_refused(r, "cifar10 and cifar100 not found: put cifar-10-python.tar.gz (")
    assert "cifar-100-python.tar.gz" in r.err and str(empty.resolve()) in r.err
    assert show(url, "ssl")["n_trials"] == 0


# ---------------------------------------------------------------------------------------------------------
# progress and learning curves


@pytest.mark.slow
def test_optimize_into_a_log_file_writes_a_line_per_epoch_and_per_trial(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    sets = [s for s in tiny_sets("supervised", data_dir) if "epochs" not in s]
    create(url, "s", "supervised", "--set", *sets, "epochs=3")
    log = tmp_path / "log"
    with open(log, "w") as f:  # not a terminal, as `optimize ... > log 2>&1`
        argv = ["optimize", "s", "--trials", "2", "--device", "cpu", "--threads", "1", "--storage", url]
        rc = subprocess.run(
            [sys.executable, str(REPO / "study.py"), *argv], stdout=f, stderr=subprocess.STDOUT
        ).returncode
    text = log.read_text()
    assert rc == 0, text
    for trial in (0, 1):
        for epoch in (1, 2, 3):
            line = next(x for x in text.splitlines() if f"trial {trial} epoch {epoch}/3" in x)
            assert "loss" in line and "val_top1" in line and "img/s" in line and "eta" in line
        assert f"Trial {trial} finished" in text
    r = run_cli("optimize", "s", "--trials", "1", "--device", "cpu", "--progress", "none", "--storage", url)
    assert r.rc == 0 and "epoch" not in r.err


def test_each_trial_stores_its_learning_curve(filled_store):
    for name, monitor in (("ssl", "knn_top1"), ("scratch", "val_top1"), ("probe-best", "val_top1")):
        for trial in show(filled_store.url, name)["trials"]:
            history = trial["user_attrs"][schema.HISTORY]
            assert [h["epoch"] for h in history] == list(range(1, len(history) + 1)) and history
            assert all(h["loss"] > 0 and monitor in h for h in history), (name, history)
            if name != "probe-best":
                assert all(h["lr"] >= 0 and h["images_per_second"] > 0 for h in history)


# ---------------------------------------------------------------------------------------------------------
# getting results out


def test_export_writes_a_state_dict_that_torchvision_resnet18_loads(filled_store, tmp_path):
    out = tmp_path / "encoder.pt"
    r = run_cli("export", "ssl", "--out", out, "--storage", filled_store.url)
    assert r.rc == 0, r.err
    model = torchvision.models.resnet18()  # the README's three lines
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load(out, weights_only=True))
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    info = json.loads(out.with_suffix(".json").read_text())
    best = show(filled_store.url, "ssl")["best_trial"]
    assert info["trial"] == best["number"] and info["scores"]["val_top1"] == pytest.approx(best["value"])
    assert info["config"]["temperature"] == best["params"]["temperature"] and info["stem"] == "cifar"
    r = run_cli("export", "ssl", "--trial", "1", "--out", tmp_path / "one.pt", "--storage", filled_store.url)
    assert r.rc == 0 and json.loads((tmp_path / "one.json").read_text())["trial"] == 1
    check_refused(
        run_cli("export", "probe-best", "--out", tmp_path / "x.pt", "--storage", filled_store.url), "no checkpoint"
    )
    check_refused(
        run_cli("export", "ssl", "--trial", "7", "--out", tmp_path / "x.pt", "--storage", filled_store.url),
        "has no trial 7",
    )


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_written_for_the_user_follow_the_umask(filled_store, tmp_path, umask_022):
    """Exported encoders and the report are the user's files, readable as any file they write (0666 & ~umask =
    0644 here), not a temporary file's 0600."""
    r = run_cli("export", "ssl", "--out", tmp_path / "encoder.pt", "--storage", filled_store.url)
    assert r.rc == 0, r.err
    r = run_cli("report", "ssl", "--out", tmp_path / "report.html", "--storage", filled_store.url)
    assert r.rc == 0, r.err
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"encoder.pt": 0o644, "encoder.json": 0o644, "report.html": 0o644}


def test_show_csv_is_the_trials_table(filled_store):
    r = run_cli("show", "ssl", "--csv", "--storage", filled_store.url)
    assert r.rc == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out)))
    trials = show(filled_store.url, "ssl")["trials"]
    assert [int(row["number"]) for row in rows] == [t["number"] for t in trials]
    assert [row["state"] for row in rows] == [t["state"] for t in trials]
    assert [float(row["params_temperature"]) for row in rows] == [t["params"]["temperature"] for t in trials]
    assert [float(row["user_attrs_test_top1"]) for row in rows] == [t["user_attrs"]["test_top1"] for t in trials]
    assert all(float(row["duration"]) > 0 for row in rows)
    assert json.loads(rows[0]["user_attrs_history"])[0]["epoch"] == 1


def test_show_best_prints_set_options_that_recreate_the_best_config(filled_store, tmp_path):
    r = run_cli("show", "ssl", "--best", "--storage", filled_store.url)
    assert r.rc == 0, r.err
    argv = shlex.split(r.out)
    assert argv[0] == "--set"
    url = f"sqlite:///{tmp_path / 'again.db'}"
    create(url, "again", "simclr", *argv)
    best = show(filled_store.url, "ssl")
    merged = {**best["config"], **best["best_trial"]["params"]}
    assert show(url, "again")["config"] == merged
    assert run_cli("show", "ssl", "--best", "--csv", "--storage", filled_store.url).rc == 2


def test_enqueue_queues_a_configuration_the_next_optimize_runs(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    create(url, "s", "supervised", "--set", *tiny_sets("supervised", data_dir))
    r = run_cli("enqueue", "s", "--set", "lr=0.05", "label_smoothing=0.1", "--storage", url)
    assert r.rc == 0, r.err
    assert "queued trial 0 in s: lr=0.05 label_smoothing=0.1" in r.err
    # a queued trial shows what it will run, in --json and in the table
    (queued,) = show(url, "s")["trials"]
    assert queued["state"] == "WAITING" and queued["params"] == {"lr": 0.05, "label_smoothing": 0.1}
    table = run_cli("show", "s", "--csv", "--storage", url).out.splitlines()
    header, row = table[0].split(","), table[1].split(",")
    assert row[header.index("params_lr")] == "0.05" and row[header.index("state")] == "WAITING"
    # and a second one can be taken back before a worker starts it
    assert run_cli("enqueue", "s", "--set", "lr=0.2", "--storage", url).rc == 0
    r = run_cli("dequeue", "s", "1", "--storage", url)
    assert r.rc == 0 and "dequeued trial 1 of s: lr=0.2" in r.err, r.err
    check_refused(run_cli("dequeue", "s", "1", "--storage", url), "is FAIL: only a queued (WAITING) trial")
    check_refused(run_cli("dequeue", "s", "7", "--storage", url), "has no trial 7")
    assert run_cli("optimize", "s", "--trials", "1", "--device", "cpu", "--storage", url).rc == 0
    trial, cancelled = show(url, "s")["trials"]
    assert cancelled["state"] == "FAIL" and cancelled["user_attrs"][schema.ERROR] == "dequeued"
    assert trial["state"] == "COMPLETE"
    assert (trial["params"]["lr"], trial["params"]["label_smoothing"]) == (0.05, 0.1)
    check_refused(run_cli("enqueue", "s", "--set", "epochs=3", "--storage", url), "epochs is fixed")
    check_refused(run_cli("enqueue", "s", "--set", "lr=50", "--storage", url), "outside the study's search range")
    check_refused(run_cli("enqueue", "s", "--set", "nope=1", "--storage", url), "unknown config key")


# ---------------------------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.slow
def test_only_the_best_k_checkpoints_are_kept(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    create(url, "s", "supervised", "--pruner", "none", "--set", *tiny_sets("supervised", data_dir))
    r = run_cli("optimize", "s", "--trials", "4", "--device", "cpu", "--keep-checkpoints", "2", "--storage", url)
    assert r.rc == 0, r.err
    trials = [t for t in show(url, "s")["trials"] if t["state"] == "COMPLETE"]
    ranked = sorted(trials, key=lambda t: (-t["value"], t["number"]))
    files = {p.name for p in (tmp_path / "s_artifacts").iterdir() if not p.name.startswith(".")}
    kept = {t["user_attrs"][schema.CHECKPOINT] for t in ranked[:2]}
    assert len(trials) == 4 and files == kept
    # a trial another study probes (trial:s:N) keeps its checkpoint, whatever its rank
    second = ranked[1]["number"]
    storage = optuna.storages.RDBStorage(url)
    probe = optuna.create_study(storage=storage, study_name="uses-second")
    probe.set_user_attr(schema.ENCODER, f"trial:s:{second}")
    study = optuna.load_study(study_name="s", storage=storage)
    assert keep_best_checkpoints(storage, study, open_artifacts(url), keep=1) == 0
    probe.set_user_attr(schema.ENCODER, "random")  # no longer probed: now it goes
    assert keep_best_checkpoints(storage, study, open_artifacts(url), keep=1) == 1
    assert {p.name for p in (tmp_path / "s_artifacts").iterdir() if not p.name.startswith(".")} == {
        ranked[0]["user_attrs"][schema.CHECKPOINT]
    }


def test_listed_artifacts_carry_a_pt_file_name(filled_store):
    storage = optuna.storages.get_storage(filled_store.url)
    for trial in optuna.load_study(study_name="ssl", storage=storage).trials:
        (meta,) = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
        assert meta.filename == f"ssl-trial{trial.number}-last.pt"


# ---------------------------------------------------------------------------------------------------------
# the command line itself


def test_global_options_before_or_after_the_command(filled_store):
    before = run_cli("--storage", filled_store.url, "list", "--json")
    after = run_cli("list", "--json", "--storage", filled_store.url)
    assert before.rc == after.rc == 0 and before.out == after.out and "ssl" in before.out


def test_a_closed_pipe_is_not_a_traceback(filled_store):
    command = f"{shlex.quote(sys.executable)} {REPO / 'study.py'} show ssl --storage {filled_store.url} | head -1"
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert r.stdout.startswith("study ssl") and r.stdout.count("\n") == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


@pytest.mark.parametrize("argv", [["enqueue", "foreign", "--set", "lr=0.1"], ["export", "foreign", "--out", "e.pt"]])
def test_a_study_not_made_by_study_py_is_one_line_not_a_traceback(tmp_path, argv):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="foreign").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    argv = [a if a != "e.pt" else str(tmp_path / "e.pt") for a in argv]
    check_refused(run_cli(*argv, "--storage", url), "was not created by study.py")
    assert len(optuna.load_study(study_name="foreign", storage=url).trials) == 1  # nothing queued
