"""The objectives as Optuna callables: FixedTrial runs of each, failures that end one trial, pruning, resuming."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from optuna.trial import FixedTrial, TrialState

from errors import NonFiniteLoss, UserError
from objectives import build_spec, make_objective
from objectives.common import reporter
from storage import schema, store
from storage.artifacts import open_artifacts, write_unlisted
from tests.helpers import fixed_params, queue_retry_of_trial_0, tiny_sets

TRIAL_ATTRS = set(schema.COMPLETE_TRIAL_ATTRS)


@pytest.mark.parametrize(
    "objective, extra",
    [
        ("simclr", []),
        ("linear_probe", ["encoder=random"]),
        ("supervised", []),
        ("finetune", ["encoder=random"]),
    ],
)
def test_fixed_trial(objective, extra, data_dir):
    spec = build_spec(objective, sets=tiny_sets(objective, data_dir) + extra)
    trial = FixedTrial(fixed_params(spec.space))
    value = make_objective(spec, device="cpu")(trial)
    assert 0 <= value <= 100
    attrs = trial.user_attrs
    assert TRIAL_ATTRS <= set(attrs), TRIAL_ATTRS - set(attrs)
    assert attrs[schema.VAL_TOP1] == pytest.approx(value, abs=1e-3)
    assert attrs[schema.N_TRAIN_IMAGES] == 15  # 5 classes x 4 images, 1 per class to probe-val
    assert attrs[schema.DEVICE].startswith("cpu ")
    assert schema.ERROR not in attrs
    config = {**spec.config, **trial.params}  # lr is per 256 images: the trial records the rate it trained with
    trained = config["lr"] * config["batch_size"] / 256 if objective != "linear_probe" else None
    assert attrs.get(schema.EFFECTIVE_LR) == (pytest.approx(trained) if trained else None)
    if objective == "simclr":
        assert attrs[schema.N_PRETRAIN_IMAGES] == 10 and attrs[schema.DATA_FRACTION] == 0.5
        assert attrs[schema.STEPS] == 10 // 5
        assert schema.CHECKPOINT not in attrs  # no store, no artifact


class _Raises:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def __call__(self, *args, **kwargs):
        raise self.exc


@pytest.mark.parametrize(
    "exc, reason",
    [
        (NonFiniteLoss(1, 3, float("nan")), "diverged: non-finite loss nan at epoch 1, step 3"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory: CUDA out of"),
        (
            RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: not enough memory: out of memory"),
            "out of memory",
        ),
        (UserError("batch_size larger than the data"), "batch_size larger than the data"),
    ],
)
def test_failure_ends_the_trial_with_a_reason(exc, reason, data_dir, monkeypatch):
    import simclr.supervised

    monkeypatch.setattr(simclr.supervised, "train_supervised", _Raises(exc))
    spec = build_spec("supervised", sets=tiny_sets("supervised", data_dir))
    trial = FixedTrial(fixed_params(spec.space))
    value = make_objective(spec, device="cpu")(trial)
    assert math.isnan(value)
    assert trial.user_attrs[schema.ERROR].startswith(reason)


def test_a_bug_is_not_swallowed(data_dir, monkeypatch):
    import simclr.supervised

    monkeypatch.setattr(simclr.supervised, "train_supervised", _Raises(RuntimeError("shape mismatch")))
    spec = build_spec("supervised", sets=tiny_sets("supervised", data_dir))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        make_objective(spec, device="cpu")(FixedTrial(fixed_params(spec.space)))


def test_interrupt_marks_the_trial(data_dir, monkeypatch):
    import simclr.supervised

    monkeypatch.setattr(simclr.supervised, "train_supervised", _Raises(KeyboardInterrupt()))
    spec = build_spec("supervised", sets=tiny_sets("supervised", data_dir))
    trial = FixedTrial(fixed_params(spec.space))
    with pytest.raises(KeyboardInterrupt):
        make_objective(spec, device="cpu")(trial)
    assert trial.user_attrs[schema.ERROR] == "interrupted"


def test_interrupt_fails_the_trial_queues_it_again_and_stops_the_study(data_dir, monkeypatch):
    """Ctrl-C ends the trial as FAIL "interrupted" and queues a WAITING copy with the same parameters (and its
    user attrs, minus the error), which the next optimize picks up first; no other trial starts."""
    import simclr.supervised

    raises = _Raises(KeyboardInterrupt())
    monkeypatch.setattr(simclr.supervised, "train_supervised", raises)
    spec = build_spec("supervised", sets=tiny_sets("supervised", data_dir))
    study = optuna.create_study(direction="maximize")
    objective = make_objective(spec, device="cpu")
    study.optimize(objective, n_trials=3)
    first, retry = study.trials
    assert (first.state, retry.state) == (TrialState.FAIL, TrialState.WAITING)
    assert first.user_attrs[schema.ERROR] == "interrupted" and objective.interrupted
    assert retry.params == first.params and schema.ERROR not in retry.user_attrs
    assert retry.system_attrs["retry_history"] == [0]

    monkeypatch.undo()  # the next worker runs for real: the queued trial, with the interrupted one's parameters
    study.optimize(make_objective(spec, device="cpu"), n_trials=1)
    assert study.trials[1].state == TrialState.COMPLETE and study.trials[1].params == first.params
    assert study.trials[1].user_attrs[schema.RETRY_OF] == 0 and len(study.trials) == 2


def test_failed_trials_do_not_stop_the_study(data_dir, monkeypatch):
    import simclr.supervised

    monkeypatch.setattr(simclr.supervised, "train_supervised", _Raises(NonFiniteLoss(1, 0, float("inf"))))
    spec = build_spec("supervised", sets=tiny_sets("supervised", data_dir), sampler="random")
    study = optuna.create_study(direction="maximize")
    study.optimize(make_objective(spec, device="cpu"), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs[schema.ERROR].startswith("diverged") for t in study.trials)


def test_reporter_prunes_only_when_told():
    trial = FixedTrial({})
    on_epoch = reporter(trial, "val_top1")
    on_epoch({"epoch": 1, "val_top1": 5.0})  # FixedTrial never prunes
    on_epoch({"epoch": 2})  # no value this epoch: nothing reported

    class Pruning:
        def __init__(self):
            self.reports = []
            self.user_attrs = {}

        def set_user_attr(self, key, value):
            self.user_attrs[key] = value

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    t = Pruning()
    on_epoch = reporter(t, "knn_top1")
    on_epoch({"epoch": 1, "knn_top1": 10.0, "loss": 3.0})
    on_epoch({"epoch": 2, "loss": 2.9})
    with pytest.raises(optuna.TrialPruned, match="epoch 3"):
        on_epoch({"epoch": 3, "knn_top1": 9.0})
    assert t.reports == [(1, 10.0), (3, 9.0)]


def test_probe_trial_is_pruned_below_the_median(data_dir):
    """A study whose only finished trial reported 100% at every epoch: the next one reports less at epoch 1 and
    the median pruner (1 startup trial, no warmup) stops it there."""
    spec = build_spec(
        "linear_probe", sets=tiny_sets("linear_probe", data_dir) + ["encoder=random"], pruner="median:1:0"
    )
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 0))
    params = fixed_params(spec.space)
    study.add_trial(
        optuna.create_trial(
            params=params, distributions=spec.space, value=100.0, intermediate_values={1: 100.0, 2: 100.0, 3: 100.0}
        )
    )
    study.enqueue_trial(params)
    study.optimize(make_objective(spec, device="cpu"), n_trials=1)
    trial = study.trials[1]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    assert trial.user_attrs[schema.N_TRAIN_IMAGES] == 15


def test_retry_resumes_from_the_inherited_checkpoint(data_dir, tmp_path):
    """What RetryHeartbeatStaleTrialCallback leaves after a killed worker: a WAITING trial with the dead trial's
    params and user attrs (the resume checkpoint's artifact id and epoch). The retry resumes after that epoch."""
    from simclr.config import make_config
    from simclr.pretrain import pretrain

    sets = [s for s in tiny_sets("simclr", data_dir) if not s.startswith("epochs=")] + ["epochs=2"]
    spec = build_spec("simclr", sets=sets)
    params = fixed_params(spec.space)
    storage = store.open_storage(f"sqlite:///{tmp_path / 'r.db'}", create=True)
    artifacts = open_artifacts(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(storage=storage, study_name="r", direction="maximize")
    schema.write_spec(study, spec)

    # the dead worker's run: 2 epochs planned, checkpoint after epoch 1, killed during epoch 2
    objective = make_objective(spec, device="cpu", storage=storage, artifacts=artifacts, study_name="r")
    config = make_config("simclr", {**spec.config, **params})
    train = objective.data.pretrain_set(config)

    def die(metrics):
        if metrics["epoch"] == 2:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        pretrain(
            config.pretrain,
            train,
            rt=objective.runtime(config),
            seed=0,
            checkpoint_dir=tmp_path,
            on_epoch=die,
        )
    resume_id = write_unlisted(artifacts, tmp_path / "last.pt")
    queue_retry_of_trial_0(study, params, spec.space, resume_id)

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert trial.user_attrs[schema.RETRY_OF] == 0
    assert trial.user_attrs[schema.RESUMED_FROM_EPOCH] == 1
    assert list(trial.intermediate_values) == [2]  # epoch 1 was not run again
    final = trial.user_attrs[schema.CHECKPOINT]
    assert not final.startswith("resume-") and (artifacts.base_path / final).is_file()
    assert not (artifacts.base_path / resume_id).exists()  # superseded resume checkpoint removed
    listed = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
    assert [m.artifact_id for m in listed] == [final]
