"""The comparison's plan, derived from the regime table: its studies, their typed settings and budgets, and what a
resumed run checks against a stored study."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from comparison import regimes
from comparison.plan import BUDGETS, Request, plan
from comparison.resume import spec_difference
from objectives import build_spec
from objectives.enqueue import enqueue_recipe


def test_plan_splits_sets_and_scales_the_grid():
    steps = plan(Request.of("p", preset="smoke", sets=["data_fraction=0.5", "resolution=64", "lr=0.1"], trials=2))
    by_role = {s.role: s for s in steps}
    assert [s.name for s in steps] == [
        "p-hparams",
        "p-scale",
        "p-supervised-pretrain",
        "p-probe-simclr",
        "p-finetune-simclr",
        "p-probe-supervised",
        "p-finetune-supervised",
        "p-probe-imagenet",
        "p-finetune-imagenet",
        "p-probe-random",
        "p-scratch",
        "p-probe-simclr-cifar10",
    ]
    assert by_role["simclr_scale"].spec().space["data_fraction"].choices == (0.05, 0.15, 0.5)
    assert by_role["simclr_scale"].trials == 3 and by_role["simclr_hparams"].trials == 2
    assert by_role["simclr_hparams"].spec().config["data_fraction"] == 0.5
    assert "lr" not in by_role["simclr_hparams"].spec().space  # fixed by --set: searched nowhere
    assert by_role["probe_imagenet"].spec().config["resolution"] == 64
    assert "resolution" not in by_role["scratch"].spec().config
    assert by_role["probe_simclr_in_domain"].spec().config["probe_data"] == "cifar10"  # the pretraining set
    in_folder = plan(Request.of("p", preset="smoke", sets=["pretrain_data=folder:/imgs", "probe_data=cifar10"]))
    assert {s.role: s for s in in_folder}["probe_simclr_in_domain"].spec().config["probe_data"] == "folder:/imgs"
    default = plan(Request.of("p", preset="default"))
    assert default[1].spec().space["data_fraction"].choices == (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    assert {s.trials for s in default[3:]} == {BUDGETS["default"].regime}


def test_spec_difference():
    step = plan(Request.of("p", preset="smoke"))[1]
    assert spec_difference(step.spec(), step.spec()) is None
    other = plan(Request.of("p", preset="smoke", sets=["epochs=2"]))[1].spec()
    assert spec_difference(step.spec(), other) == "epochs: stored 5, this command 2"
    several = plan(Request.of("q", preset="smoke", sets=["epochs=2", "knn_k=7"]))[1].spec()
    assert spec_difference(step.spec(), several) == "comparison: stored 'p', this command 'q' (and 2 more)"
    probe = {p.role: p for p in plan(Request.of("p", preset="smoke"))}["probe_simclr"]
    assert spec_difference(probe.spec("best:p-scale"), probe.spec(), ignore=["encoder"]) is None


def test_each_representation_is_fine_tuned_as_scratch_is_trained():
    """Fine-tuning rows (SimCLR's encoder, ImageNet's) get scratch's search space, trial budget, epochs and sampler
    seed: a fine-tuned row against scratch compares all weights trained in both."""
    by_role = {s.role: s for s in plan(Request.of("p", preset="smoke"))}
    scratch = by_role["scratch"].spec()
    for role, encoder in (("finetune", "best:p-hparams"), ("finetune_imagenet", "imagenet")):
        planned = by_role[role]
        spec = planned.spec()
        assert spec.objective == "finetune" and spec.config["encoder"] == encoder
        assert set(spec.space) == set(scratch.space) and planned.trials == by_role["scratch"].trials
        assert spec.config["epochs"] == scratch.config["epochs"] and spec.sampler == scratch.sampler
    assert by_role["finetune"].probes_simclr and not by_role["finetune_imagenet"].probes_simclr


def test_every_gain_says_what_it_compares():
    said = {regime.role: regime.compares() for regime in regimes.REGIMES}
    assert said["probe_simclr"] == "gain: linear probe (frozen encoder) vs training from scratch"
    assert said["finetune"] == "gain: fine-tuning (all weights) vs training from scratch"
    assert said[regimes.BASELINE] == ""


def test_the_regime_table_holds_together():
    """Roles unique; every planned regime's objective registered, its encoder known, its knobs sizing's, its
    resolution key one of its objective's keys; one baseline."""
    from comparison.sizing import Knobs
    from objectives import registry
    from simclr.config import objective_keys

    assert len(set(regimes.ROLES)) == len(regimes.ROLES)
    assert [r.role for r in regimes.REGIMES if r.baseline is None and not r.check] == [regimes.BASELINE]
    assert all(regimes.BY_ROLE[role].compares() for role in regimes.CHECKS)  # a check says what it checks
    for regime in regimes.REGIMES:
        info = registry.get(regime.objective)
        assert (regime.encoder is not None) == info.takes_encoder, regime.role
        assert regime.encoder in (None, "imagenet", "random", *regimes.ENCODER_STUDY)
        assert regime.resolution in objective_keys(regime.objective)
        for key, knob in regime.knobs:
            assert key in objective_keys(regime.objective) and knob in Knobs.__dataclass_fields__


def test_the_same_data_supervised_arm_sees_simclrs_images_epochs_and_trial_budget():
    """Labels vs no labels on equal data: the arm pretrains on the images SimCLR's search does (data settings and
    seed), for as many epochs, with as many trials, and its encoder is probed and fine-tuned as SimCLR's is."""
    by_role = {s.role: s for s in plan(Request.of("p", preset="smoke", sets=["data_fraction=0.5"]))}
    arm, search = by_role["supervised_pretrain"], by_role["simclr_hparams"]
    assert arm.objective == "supervised_pretrain" and arm.trials == search.trials and not arm.grid
    same = ("data_fraction", "pretrain_data", "seed", "epochs", "probe_fraction", "probe_epochs", "monitor_size")
    assert {k: arm.spec().config[k] for k in same} == {k: search.spec().config[k] for k in same}
    for role, simclr in (("probe_supervised", "probe_simclr"), ("finetune_supervised", "finetune")):
        planned = by_role[role]
        assert planned.spec().config["encoder"] == "best:p-supervised-pretrain"
        assert planned.spec().space == by_role[simclr].spec().space and planned.trials == by_role[simclr].trials
    assert "CIFAR-10 labels" in regimes.BY_ROLE["probe_supervised"].labels


@pytest.mark.parametrize("preset", ["smoke", "default", "paper"])
def test_every_search_starts_from_its_recipe_and_grids_queue_nothing(preset):
    for planned in plan(Request.of("p", preset=preset)):
        spec = planned.spec("random" if planned.encoder else None)
        study = optuna.create_study()
        queued = enqueue_recipe(study, spec) if not planned.grid else {}
        waiting = study.get_trials(states=(TrialState.WAITING,))
        if planned.grid:
            assert waiting == [], planned.name
            continue
        # every searched key queued at the preset's value: a preset outside its own search range fails here
        assert queued == {k: spec.config[k] for k in spec.space} and len(queued) >= 2, planned.name
        assert len(waiting) == 1 and study.ask(spec.space).params == queued  # the next trial runs the recipe


def test_a_recipe_value_outside_the_searched_range_is_left_to_the_sampler():
    spec = build_spec("simclr", preset="smoke", params=["batch_size=choice:64,256"])  # the preset's 128 is not a choice
    study = optuna.create_study()
    queued = enqueue_recipe(study, spec)
    assert "batch_size" not in queued and queued["lr"] == spec.config["lr"]
    assert enqueue_recipe(study, spec) == queued and len(study.get_trials()) == 1  # queued once
