"""Crashes lose nothing: a worker killed with SIGKILL mid-pretraining is failed through the heartbeat and its retry
resumes from the last checkpoint artifact; files are written to a temporary name and renamed, so a crash never
leaves a truncated file that a later run trusts; an artifact whose upload failed leaves no metadata behind.

Covered elsewhere, not repeated here: SIGTERM ends the running trial as FAIL "interrupted" and drops its resume
checkpoint (test_cli.py::test_sigterm_fails_the_running_trial_cleanly); a retry resumes from an inherited
checkpoint, in process (test_objectives.py::test_retry_resumes_from_the_inherited_checkpoint); truncated, garbage
and code-executing feature cache entries are recomputed (tests/simclr/test_features.py::
test_corrupt_entry_is_recomputed); truncated and code-executing checkpoints are refused
(tests/simclr/test_models.py::test_corrupt_checkpoint_names_path, test_foreign_checkpoints_are_user_errors).
"""

from __future__ import annotations

import ast
import io
import signal
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from errors import UserError
from storage import schema, store
from storage.artifacts import AtomicFileSystemArtifactStore, open_artifacts, upload, write_unlisted
from tests.helpers import REPO, queue_retry_of_trial_0, run_cli, tiny_sets
from tests.objectives.workers import create, store_for, trials, wait_all, worker

pytestmark = pytest.mark.slow  # end-to-end: several processes or a whole study each

FAST_HEARTBEAT = ("--heartbeat", "1", "--grace-period", "2")


def test_kill_9_mid_pretraining_then_the_retry_resumes_after_the_checkpoint(tmp_path, data_dir):
    store = store_for("sqlite", tmp_path)
    epochs = 8
    create(
        store,
        "k",
        "simclr",
        data_dir,
        "--pruner",
        "none",
        sets=(f"epochs={epochs}", "checkpoint_every=3", "monitor_every=1"),
    )
    work_dir = ("--work-dir", str(tmp_path / "work"))  # a killed worker leaves its temporary checkpoint there
    victim = worker(store, "k", "--trials", "1", *FAST_HEARTBEAT, *work_dir)
    deadline = time.monotonic() + 120
    try:
        while True:  # until the trial has a checkpoint artifact (epoch 3), then kill -9 mid-epoch 4
            (running,) = trials(store, "k") or (None,)
            if running is not None and running.user_attrs.get(schema.CHECKPOINT_EPOCH):
                break
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.communicate()
    assert victim.returncode == -signal.SIGKILL

    (dead,) = trials(store, "k")
    assert dead.state == TrialState.RUNNING  # what a killed worker leaves behind
    epoch = dead.user_attrs[schema.CHECKPOINT_EPOCH]
    assert epoch < epochs, "the worker finished before it was killed"
    resume_id = dead.user_attrs[schema.CHECKPOINT]
    assert resume_id.startswith("resume-") and (store.artifacts / resume_id).is_file()

    time.sleep(2.5)  # past the grace period: the next worker finds the trial stale at its first trial
    (done,) = wait_all([worker(store, "k", "--trials", "1", *FAST_HEARTBEAT, *work_dir)])
    assert done.rc == 0, done.err[-3000:]
    assert "Traceback" not in done.err

    dead, retry = trials(store, "k")
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs[schema.ERROR].startswith("worker lost (no heartbeat for ")  # why, in the store
    said = f"trial {dead.number}: worker lost (no heartbeat for "  # and on the terminal of the worker that saw it
    assert said in done.err and f"s), retried as trial {retry.number}, resuming from epoch {epoch}\n" in done.err
    assert f"trial {retry.number} (retry of trial {dead.number}): resuming from epoch {epoch}" in done.err
    assert retry.state == TrialState.COMPLETE, retry.user_attrs
    assert retry.params == dead.params
    assert retry.user_attrs[schema.RETRY_OF] == dead.number
    assert retry.user_attrs[schema.RESUMED_FROM_EPOCH] == epoch
    assert min(retry.intermediate_values) == epoch + 1  # its first epoch is the one after the checkpoint
    assert sorted(retry.intermediate_values) == list(range(epoch + 1, epochs + 1))
    assert retry.user_attrs[schema.CHECKPOINT_EPOCH] == epochs
    final = retry.user_attrs[schema.CHECKPOINT]
    assert not final.startswith("resume-") and (store.artifacts / final).is_file()
    assert not (store.artifacts / resume_id).exists()  # the superseded resume checkpoint is gone
    print(f"killed trial {dead.number} after its epoch-{epoch} checkpoint; retry {retry.number} ran {epoch + 1}..")


# ---------------------------------------------------------------------------------------------------------
# files: written to a temporary name and renamed


class Crash(Exception):
    pass


_torch_save = torch.save


def half_then_crash(obj, f, *args, **kwargs):
    """torch.save that dies half-way through writing (what a kill or a full disk leaves)."""
    buffer = io.BytesIO()
    _torch_save(obj, buffer)
    data = buffer.getvalue()
    (f.write if hasattr(f, "write") else Path(f).write_bytes)(data[: len(data) // 2])
    raise Crash("killed while writing")


def test_a_crash_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from simclr.models import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(1000)})
    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(Crash):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_crash_while_caching_features_leaves_no_entry(tmp_path, monkeypatch):
    from simclr.device import runtime
    from simclr.features import cached_features
    from simclr.models import load_encoder

    encoder = load_encoder("random", seed=0)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    rt = runtime("cpu", "fp32")
    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(Crash):
        cached_features(encoder, images, key="k", cache_dir=tmp_path, rt=rt)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # nothing under the entry's name, no temporary file
    features = cached_features(encoder, images, key="k", cache_dir=tmp_path, rt=rt)
    assert features.shape == (4, 512) and len(list(tmp_path.iterdir())) == 1


def test_a_crash_while_writing_an_artifact_leaves_nothing(tmp_path, monkeypatch):
    artifacts = open_artifacts(override=tmp_path / "a")
    source = tmp_path / "ckpt.pt"
    source.write_bytes(b"x" * (3 << 20))  # several chunks
    chunks = []

    class Dying(io.BytesIO):
        def read(self, n=-1):
            if chunks:
                raise Crash("killed while copying")
            chunks.append(n)
            return super().read(n)

    with pytest.raises(Crash):
        artifacts.write("id-1", Dying(source.read_bytes()))
    assert list((tmp_path / "a").iterdir()) == []


@pytest.fixture
def study_with_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    storage = store.open_storage(url, create=True)
    study = optuna.create_study(storage=storage, study_name="u", direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Heartbeat ... supposed to be used with Study.optimize"
        trial = study.ask()
    return storage, study, trial, open_artifacts(url)


def test_a_failed_upload_leaves_no_metadata(study_with_trial, tmp_path, monkeypatch):
    storage, study, trial, artifacts = study_with_trial
    source = tmp_path / "ckpt.pt"
    source.write_bytes(b"weights")

    def disk_full(self, artifact_id, content_body):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(artifacts), "write", disk_full)
    with pytest.raises(UserError, match="No space left on device"):
        upload(artifacts, trial, source)
    with pytest.raises(UserError, match="No space left on device"):
        write_unlisted(artifacts, source)
    monkeypatch.undo()
    assert optuna.artifacts.get_all_artifact_meta(trial, storage=storage) == []
    assert not any(k.startswith("artifacts:") for k in storage.get_trial(trial._trial_id).system_attrs)
    assert list(artifacts.base_path.iterdir()) == []


def test_metadata_that_cannot_be_written_takes_the_file_back(study_with_trial, tmp_path, monkeypatch):
    storage, study, trial, artifacts = study_with_trial
    source = tmp_path / "ckpt.pt"
    source.write_bytes(b"weights")

    def store_down(*args, **kwargs):
        raise optuna.exceptions.StorageInternalError("connection lost")

    monkeypatch.setattr(storage, "set_trial_system_attr", store_down)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        upload(artifacts, trial, source)
    monkeypatch.undo()
    assert list(artifacts.base_path.iterdir()) == []  # no file that no metadata points at either
    assert optuna.artifacts.get_all_artifact_meta(trial, storage=storage) == []


def test_a_trial_whose_checkpoint_cannot_be_stored_fails_with_the_reason(tmp_path, data_dir, monkeypatch):
    """A full disk while uploading the final checkpoint: that trial is FAIL with the reason, the worker goes on,
    no checkpoint attr or artifact metadata points at a missing file."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    args = ("--name", "d", "--storage", url, "--sampler", "random", "--set", *tiny_sets("supervised", data_dir))
    assert run_cli("create", "--objective", "supervised", *args).rc == 0

    def disk_full(self, artifact_id, content_body):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AtomicFileSystemArtifactStore, "write", disk_full)
    r = run_cli("optimize", "d", "--trials", "2", "--device", "cpu", "--storage", url)
    assert r.rc == 1 and "Traceback" not in r.err, r.err  # ran, nothing completed
    storage = store.open_storage(url)
    for t in storage.get_all_trials(storage.get_study_id_from_name("d")):
        assert t.state == TrialState.FAIL
        assert "No space left on device" in t.user_attrs[schema.ERROR]
        assert not t.user_attrs.get(schema.CHECKPOINT)
        assert not any(k.startswith("artifacts:") for k in t.system_attrs)
    assert list((tmp_path / "d_artifacts").iterdir()) == []


def test_a_retry_does_not_trust_a_truncated_checkpoint(tmp_path, data_dir):
    """The inherited resume checkpoint is damaged (not by us: artifact writes are atomic): the retry starts
    over instead of loading it or failing."""
    from objectives import build_spec, make_objective
    from tests.helpers import fixed_params

    spec = build_spec(
        "simclr", sets=[s for s in tiny_sets("simclr", data_dir) if not s.startswith("epochs=")] + ["epochs=2"]
    )
    params = fixed_params(spec.space)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    storage, artifacts = store.open_storage(url, create=True), open_artifacts(url)
    study = optuna.create_study(storage=storage, study_name="r", direction="maximize")
    schema.write_spec(study, spec)
    bad = tmp_path / "bad.pt"
    torch.save({"epoch": 1, "w": torch.zeros(10_000)}, bad)
    bad.write_bytes(bad.read_bytes()[:-500])
    resume_id = write_unlisted(artifacts, bad)
    queue_retry_of_trial_0(study, params, spec.space, resume_id)
    study.optimize(make_objective(spec, device="cpu", storage=storage, artifacts=artifacts, study_name="r"), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert schema.RESUMED_FROM_EPOCH not in trial.user_attrs
    assert sorted(trial.intermediate_values) == [1, 2]  # from the start
    assert not (artifacts.base_path / resume_id).exists()


def test_every_torch_load_is_weights_only():
    """torch.load without weights_only=True would run code from a checkpoint or cache file (a pickle)."""
    calls = []
    for path in sorted(REPO.glob("**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                    calls.append((f"{path.relative_to(REPO)}:{node.lineno}", weights_only))
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [where for where, kw in calls if not (kw and isinstance(kw[0].value, ast.Constant) and kw[0].value.value)]
    assert unsafe == []
