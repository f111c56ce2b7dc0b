"""The comparison's plan, derived from the regime table: its studies, their typed settings and budgets, and what a
resumed run checks against a stored study."""

from __future__ import annotations

from comparison import regimes
from comparison.plan import BUDGETS, Request, plan
from comparison.resume import spec_difference


def test_plan_splits_sets_and_scales_the_grid():
    steps = plan(Request.of("p", preset="smoke", sets=["data_fraction=0.5", "resolution=64", "lr=0.1"], trials=2))
    by_role = {s.role: s for s in steps}
    assert [s.name for s in steps] == [
        "p-scale",
        "p-hparams",
        "p-probe-simclr",
        "p-finetune-simclr",
        "p-probe-imagenet",
        "p-finetune-imagenet",
        "p-probe-random",
        "p-scratch",
    ]
    assert by_role["simclr_scale"].spec().space["data_fraction"].choices == (0.05, 0.15, 0.5)
    assert by_role["simclr_scale"].trials == 3 and by_role["simclr_hparams"].trials == 2
    assert by_role["simclr_hparams"].spec().config["data_fraction"] == 0.5
    assert "lr" not in by_role["simclr_hparams"].spec().space  # fixed by --set: searched nowhere
    assert by_role["probe_imagenet"].spec().config["resolution"] == 64
    assert "resolution" not in by_role["scratch"].spec().config
    default = plan(Request.of("p", preset="default"))
    assert default[0].spec().space["data_fraction"].choices == (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    assert {s.trials for s in default[2:]} == {BUDGETS["default"].regime}


def test_spec_difference():
    step = plan(Request.of("p", preset="smoke"))[1]
    assert spec_difference(step.spec(), step.spec()) is None
    other = plan(Request.of("p", preset="smoke", sets=["epochs=2"]))[1].spec()
    assert spec_difference(step.spec(), other) == "epochs: stored 5, this command 2"
    several = plan(Request.of("q", preset="smoke", sets=["epochs=2", "knn_k=7"]))[1].spec()
    assert spec_difference(step.spec(), several) == "comparison: stored 'p', this command 'q' (and 2 more)"
    probe = plan(Request.of("p", preset="smoke"))[2]
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
    assert [r.role for r in regimes.REGIMES if r.baseline is None] == [regimes.BASELINE]
    for regime in regimes.REGIMES:
        info = registry.get(regime.objective)
        assert (regime.encoder is not None) == info.takes_encoder, regime.role
        assert regime.encoder in (None, regimes.SIMCLR, "imagenet", "random")
        assert regime.resolution in objective_keys(regime.objective)
        for key, knob in regime.knobs:
            assert key in objective_keys(regime.objective) and knob in Knobs.__dataclass_fields__
