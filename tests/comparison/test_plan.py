"""The comparison's plan, derived from the regime table: its studies, their typed settings and budgets, and what a
resumed run checks against a stored study."""

from __future__ import annotations

from comparison.plan import BUDGETS, Request, plan
from comparison.resume import spec_difference


def test_plan_splits_sets_and_scales_the_grid():
    steps = plan(Request.of("p", preset="smoke", sets=["data_fraction=0.5", "resolution=64", "lr=0.1"], trials=2))
    by_role = {s.role: s for s in steps}
    assert [s.name for s in steps] == [
        "p-scale",
        "p-hparams",
        "p-probe-simclr",
        "p-probe-imagenet",
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
