"""The label-efficiency curves: each regime's test top-1, and its gain over scratch, against the fraction of
CIFAR-100 train labels it trained with (compare's PREFIX-labels-* studies, comparison.labels).

A point is the mean over its seed runs (the selected configuration run with seed, seed + 1, ...) with a two-level
bootstrap interval (seed runs, then test images: reports.intervals.two_level_ci; one run: the interval over test
images). The gain is paired by seed and fraction: seed k of a regime at fraction f against seed k of scratch at f,
on the same test images. The 100% point is the regime's row of the comparison table (its selected trial and seeds
study). Plain dicts; the figure is drawn by reports/figures.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from comparison import regimes
from reports import intervals, protocol
from reports.rows import StudyData, comparison_of, number_attr
from storage import schema

Runs = dict[int, tuple[float, "np.ndarray | None"]]  # seed -> (test top-1, per-image hits or None)
LABELS_ROLES = {regime.labels_role: regime.role for regime in regimes.LABEL_CURVED}


def _fraction_runs(studies: Sequence[StudyData], role: str) -> tuple[dict[float, Runs], dict[float, int]]:
    """{fraction: {seed: (test top-1, hits)}} of a labels study's complete trials, and the training images per
    fraction (the trials' n_train_images)."""
    runs: dict[float, Runs] = {}
    images: dict[float, int] = {}
    for study in (s for s in studies if s.role == role):
        for trial in study.complete():
            fraction = trial.params.get("label_fraction", study.config.get("label_fraction"))
            top1 = number_attr(trial, schema.TEST_TOP1)
            if fraction is None or top1 is None:
                continue
            seed = int(trial.params.get("seed", study.config.get("seed", 0)))
            runs.setdefault(float(fraction), {})[seed] = (top1, protocol.per_image_hits(trial))
            n = number_attr(trial, schema.N_TRAIN_IMAGES)
            if n is not None:
                images[float(fraction)] = int(n)
    return runs, images


def _interval(runs: list[np.ndarray | None], reference: list[np.ndarray | None] | None = None) -> list[float] | None:
    """Two-level interval of the mean (paired with `reference`); one run: over test images; None without hits."""
    every = runs + (reference or [])
    if not runs or any(h is None for h in every) or len({h.size for h in every}) != 1:
        return None
    if len(runs) > 1:
        return list(intervals.two_level_ci(runs, reference))
    if reference is None:
        return list(intervals.bootstrap_ci(runs[0]))
    return list(intervals.paired_bootstrap_ci(runs[0], reference[0]))


def _point(regime: str, fraction: float, mine: Runs, scratch: Runs) -> dict[str, Any]:
    tops = [top1 for top1, _ in mine.values()]
    common = sorted(set(mine) & set(scratch))
    gains = [mine[seed][0] - scratch[seed][0] for seed in common]
    baseline = regime == regimes.BASELINE
    return {
        "regime": regime,
        "label": regimes.BY_ROLE[regime].label,
        "label_fraction": fraction,
        "n": len(tops),
        "mean": statistics.fmean(tops) if tops else None,
        "sd": statistics.stdev(tops) if len(tops) > 1 else None,
        "ci": _interval([h for _, h in mine.values()]),
        "gain": None if baseline or not gains else statistics.fmean(gains),
        "gain_n": 0 if baseline else len(gains),
        "gain_ci": None
        if baseline or not common
        else _interval([mine[s][1] for s in common], [scratch[s][1] for s in common]),
    }


def _selected_images(row: dict[str, Any], studies: Sequence[StudyData]) -> int | None:
    """The training images of a regime's selected trial (its 100% point)."""
    _, trial = protocol.find_trial(studies, row.get("study"), row.get("trial"))
    n = number_attr(trial, schema.N_TRAIN_IMAGES) if trial else None
    return None if n is None else int(n)


def _comparison_curves(studies: Sequence[StudyData], table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    by_regime = {row["regime"]: row for row in table}
    curves: dict[str, dict[float, Runs]] = {}
    images: dict[str, dict[float, int]] = {}
    for labels_role, regime in LABELS_ROLES.items():
        runs, counts = _fraction_runs(studies, labels_role)
        if runs and regime in by_regime:
            full = protocol.seed_runs(by_regime[regime], studies)
            curves[regime] = {**runs, **({1.0: full} if full else {})}
            images[regime] = {**counts, 1.0: _selected_images(by_regime[regime], studies)}
    scratch = curves.get(regimes.BASELINE, {})
    out = []
    for regime, points in curves.items():
        for fraction in sorted(points):
            point = _point(regime, fraction, points[fraction], scratch.get(fraction, {}))
            point["n_train_images"] = images[regime].get(fraction)
            out.append(point)
    return out


def label_rows(studies: Sequence[StudyData], comparison: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per comparison, regime and label fraction where compare ran the labels studies (none otherwise),
    each naming its comparison like the comparison rows it extends."""
    out = []
    for prefix in dict.fromkeys(row.get("comparison", "") for row in comparison):
        members = [s for s in studies if comparison_of(s) == prefix]
        table = [row for row in comparison if row.get("comparison", "") == prefix]
        out += [{**row, "comparison": prefix} for row in _comparison_curves(members, table)]
    return out
