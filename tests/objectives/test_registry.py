"""The objective registry: an objective declared in one record is all the tool needs. A toy pretraining objective
(rotation prediction, defined in this file only) is registered, then used as a user would: create -> optimize ->
show -> a linear probe over `best:` of it, with no production file knowing of it."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from torch import nn

from objectives import registry
from objectives.checkpoints import ResumableTrials
from objectives.common import set_attrs, set_test_metrics
from objectives.resources import DataObjective
from simclr.config import SECTIONS, Config, defaults
from simclr.device import Runtime
from storage import schema
from tests.helpers import run_cli, show, tiny_sets

TOY = "toy_rotation"


class RotationObjective(ResumableTrials, DataObjective):
    """Pretrain a CIFAR ResNet-18 to tell which of 0/90/180/270 degrees an image was rotated by (Gidaris et al.
    2018, a self-supervised task far simpler than SimCLR), checkpoint it in our encoder format, probe it. Its
    checkpoint hooks are the shared ones (objectives.checkpoints), not a copy."""

    name = TOY

    def _prepare(self, config: Config) -> None:
        super()._prepare(config)
        self.data.pretrain_set(config)

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        from simclr.data import probe_data_key, stats_for
        from simclr.models import Encoder, resnet18, save_checkpoint, weights_digest
        from simclr.probe import evaluate_encoder

        cfg, seed = config.pretrain, config.run.seed
        torch.manual_seed(seed)
        images = self.data.pretrain_set(config).images.float() / 255  # (N, 3, 32, 32)
        encoder, head = resnet18("cifar"), nn.Linear(512, 4)
        opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=cfg.lr, momentum=0.9)
        losses = []
        for epoch in range(cfg.epochs):
            k = torch.randint(0, 4, (len(images),))
            views = torch.stack([torch.rot90(x, int(r), dims=(1, 2)) for x, r in zip(images, k, strict=True)])
            loss = nn.functional.cross_entropy(head(encoder(views)), k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            trial.report(-loss.item(), epoch + 1)
        mean, std = stats_for(config.data.pretrain_data)
        with self.resumable(trial) as tmp:
            path = tmp / "last.pt"
            save_checkpoint(path, {"encoder": encoder.state_dict(), "stem": "cifar", "mean": mean, "std": std})
            self.upload_checkpoint(trial, path)
        splits = self.data.probe_splits(config)
        frozen = Encoder(encoder.eval(), "toy", "cifar", mean, std, None, weights_digest(encoder))
        result = evaluate_encoder(
            frozen, splits, config.probe, rt=rt, cache_dir=None, data_key=probe_data_key(config.data, seed), seed=seed
        )
        set_test_metrics(trial, result)
        n = len(splits["train"])
        set_attrs(trial, **{schema.N_TRAIN_IMAGES: n, schema.STEPS: cfg.epochs, "rotation_loss": losses[-1]})
        set_attrs(trial, **{schema.TRIAL_ENCODER: f"trial:{self.study_name}:{trial.number}"})
        return result.val_top1


@pytest.fixture
def toy():
    info = registry.register(
        registry.ObjectiveInfo(
            TOY,
            SECTIONS["simclr"],  # its config: the SimCLR sections (epochs, batch_size, lr, data_fraction, probe...)
            RotationObjective,
            "rotation prediction, then the linear probe (a test's toy)",
            presets={"smoke": {"epochs": 2}},  # says nothing of the other presets
            makes_encoders=True,
        )
    )
    yield info
    registry.unregister(TOY)


@pytest.mark.slow
def test_a_toy_objective_registered_from_a_test_runs_end_to_end(toy, tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 'toy.db'}"
    sets = [*tiny_sets("simclr", data_dir), "lr=0.05"]
    r = run_cli("create", "--objective", TOY, "--name", "rot", "--storage", url, "--sampler", "random", "--set", *sets)
    assert r.rc == 0, r.err
    r = run_cli("optimize", "rot", "--trials", "2", "--device", "cpu", "--storage", url)
    assert r.rc == 0, r.err
    shown = show(url, "rot")
    assert shown["user_attrs"][schema.OBJECTIVE] == TOY
    trials = [t for t in shown["trials"] if t["state"] == "COMPLETE"]
    assert len(trials) == 2 and all(t["user_attrs"][schema.CHECKPOINT] for t in trials)
    assert all(math.isfinite(t["user_attrs"]["rotation_loss"]) for t in trials)
    # its encoders are probed like SimCLR's: the registry is all the probe needs to know
    probe = ["encoder=best:rot", *tiny_sets("linear_probe", data_dir)]
    r = run_cli("create", "--objective", "linear_probe", "--name", "probe-rot", "--storage", url, "--set", *probe)
    assert r.rc == 0, r.err
    r = run_cli("optimize", "probe-rot", "--trials", "1", "--device", "cpu", "--storage", url)
    assert r.rc == 0, r.err
    (probed,) = show(url, "probe-rot")["trials"]
    best = optuna.load_study(study_name="rot", storage=url).best_trial.number
    assert probed["state"] == "COMPLETE" and probed["user_attrs"][schema.TRIAL_ENCODER] == f"trial:rot:{best}"


def test_a_registered_objective_gets_keys_presets_space_and_pruning(toy):
    r = run_cli("keys", TOY)
    assert r.rc == 0 and "temperature" in r.out  # its config sections' keys, as declared
    from objectives import build_spec

    spec = build_spec(TOY, preset="smoke")
    assert spec.config["epochs"] == 2 and spec.config == {**defaults(TOY), "epochs": 2}
    assert build_spec(TOY, preset="paper").config == defaults(TOY)  # no values for that preset: no KeyError
    assert {"lr", "batch_size"} <= set(spec.space)  # the declared search ranges
    assert spec.pruner["n_warmup_steps"] >= 1  # its pruning axis: epochs, never inside warm-up


def test_unknown_and_duplicate_objectives_are_refused(toy):
    with pytest.raises(ValueError, match="registered already"):
        registry.register(toy)
    assert run_cli("create", "--objective", "nope").rc == 2
    assert TOY in registry.NAMES and "nope" not in registry.NAMES


def test_every_built_in_record_is_complete():
    for info in registry.BUILT_IN:
        assert info.sections == SECTIONS[info.name] and info.help
        assert set(info.presets) == {"smoke", "default", "paper"}, info.name
        assert isinstance(info.factory, str) and ":" in info.factory
        first, last = info.report_axis(defaults(info.name))
        assert 1 <= first <= last
    assert [i.name for i in registry.BUILT_IN] == list(registry.NAMES)


def test_the_built_in_trials_carry_what_their_record_says(filled_store):
    for objective, name in (("simclr", "ssl"), ("supervised", "scratch")):
        info = registry.get(objective)
        trials = optuna.load_study(study_name=name, storage=filled_store.url).trials
        assert any(trial.state.name == "COMPLETE" for trial in trials), name  # something to check
        for trial in trials:
            if trial.state.name == "COMPLETE":
                missing = set(schema.COMPLETE_TRIAL_ATTRS) | set(info.trial_attrs)
                assert missing <= set(trial.user_attrs), (name, missing - set(trial.user_attrs))
