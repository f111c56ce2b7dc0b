"""Label efficiency: each regime's selected configuration trained (or probed) again on fewer labels, so the report
shows every gain as a curve over labels, which is where self-supervision is expected to pay.

For every regime of the table with a label curve (comparison.regimes: `Regime.label_curve`) a grid study
PREFIX-labels-<study> (role labels_<role>) over `label_fraction` x `seed`: the fractions of LABEL_FRACTIONS below 1
(the 100% point is the regime's own selected trial and its seeds), every seed the regime's seeds studies run
(seed, ..., seed + seeds - 1), every other key fixed to the selected trial's config, no pruning:

    probes          the selected probe settings on the very encoder the regime's study was pinned to
    fine-tuning     the selected configuration, fine-tuning that encoder
    scratch         the selected configuration from scratch

A label fraction is a nested, class-balanced subset of probe-train (simclr.data.load_probe_splits): probe-val and
the test images stay whole, so each point is selected and scored on the same images as the 100% one. The
configuration was selected with all labels: the curve says what that configuration does with fewer (a search per
fraction would cost the whole comparison again per point); the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.distributions import CategoricalDistribution

from comparison.plan import PlannedStudy
from comparison.regimes import LABEL_CURVED, Regime
from comparison.seeds import selected_config

# label fractions of CIFAR-100 train per preset (the SimCLR paper's 1% and 10%; smoke: one point below 100%)
LABEL_FRACTIONS: dict[str, tuple[float, ...]] = {
    "smoke": (0.25, 1.0),
    "default": (0.01, 0.1, 1.0),
    "paper": (0.01, 0.1, 1.0),
}
# the share of a trial's cost that does not shrink with the labels (data loading, probe-val and test passes,
# the features of val and test): a point at 1% of the labels still costs this much of a 100% trial
FIXED_SHARE = 0.3


def curve_fractions(preset: str) -> list[float]:
    """The label fractions a labels study runs: the preset's, below 1."""
    return [f for f in LABEL_FRACTIONS[preset] if f < 1]


def labels_seconds(
    plans: Sequence[PlannedStudy], estimate: dict[str, float], preset: str, seeds: int
) -> dict[str, tuple[float, int]]:
    """The labels studies' cost, per study: (seconds, trials). Per curved regime, one trial's share of its study for
    each (fraction, seed), at the fraction's share of the work plus FIXED_SHARE."""
    by_name = {planned.name: planned for planned in plans}
    prefix = plans[0].comparison
    fractions = curve_fractions(preset)
    per_trial = sum(FIXED_SHARE + (1 - FIXED_SHARE) * f for f in fractions) * max(seeds, 1)
    out = {}
    for regime in LABEL_CURVED:
        planned = by_name.get(f"{prefix}-{regime.study}")
        if planned is not None and fractions:
            seconds = per_trial * estimate[planned.name] / planned.trials
            out[f"{prefix}-labels-{regime.study}"] = (seconds, len(fractions) * max(seeds, 1))
    return out


def _labels_plan(storage, regime: Regime, prefix: str, preset: str, seeds: int) -> PlannedStudy | None:
    config = selected_config(storage, f"{prefix}-{regime.study}")
    fractions = curve_fractions(preset)
    if config is None or not fractions or float(config.pop("label_fraction", 1.0)) != 1.0:
        return None  # no selection yet, or the user fixed the comparison's label fraction: no curve
    base = int(config.pop("seed"))
    space = {
        "label_fraction": CategoricalDistribution(fractions),
        "seed": CategoricalDistribution([base + k for k in range(max(seeds, 1))]),
    }
    n = len(fractions) * max(seeds, 1)
    name, role = f"{prefix}-labels-{regime.study}", regime.labels_role
    return PlannedStudy(name, regime.objective, role, n, preset, prefix, config, space, "grid", "none")


def label_plans(storage: optuna.storages.BaseStorage, prefix: str, preset: str, seeds: int) -> list[PlannedStudy]:
    """The labels studies of a comparison whose curved regimes have a selected configuration."""
    plans = [_labels_plan(storage, regime, prefix, preset, seeds) for regime in LABEL_CURVED]
    return [p for p in plans if p is not None]
