"""95% bootstrap intervals over test images: for one trial's test top-1, and paired for the gain of one trial
over another evaluated on the same images (Efron & Tibshirani 1993, ch. 13: the percentile interval).

Resampling the n test images with replacement and counting top-1 hits is one draw of Binomial(n, p), p the
observed hit rate; so a resample is drawn as that count, not as n indices (2,000 resamples of 10,000 images
are then 2,000 numbers, not 20 million indices). Paired: every image is one of three outcomes (only `correct`
hits it, only `reference` does, both or neither), resampling images draws a Multinomial(n, shares of the
three), and the gain of a resample is (only correct - only reference) / n. Same distribution as resampling
indices for both trials at once, which is what makes the interval paired. numpy only, seeded: the same
inputs always give the same interval.

Over seed runs (`two_level_ci`): the mean test top-1 of several runs of one configuration varies with the seed and
with the test images. A two-level bootstrap (Davison & Hinkley 1997, sec. 2.4 and 3.8: resample the runs, then the
images) draws the runs with replacement and then the test images, the same images for every run since all runs
are scored on them (drawn by outcome, as above); paired with the reference's run of the same seed for a gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

N_RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def _hits(correct: Any, name: str) -> np.ndarray:
    hits = np.asarray(correct)
    if hits.ndim != 1 or hits.dtype != np.bool_ or hits.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-d bool array, got {hits.dtype} of shape {hits.shape}")
    return hits


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    correct: Any, *, n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """(low, high) of top-1 in percent: the percentile interval of `n_resamples` bootstrap resamples of the
    test images, given per-image top-1 hits `correct` (bool (N,))."""
    hits = _hits(correct, "correct")
    n = hits.size
    counts = np.random.default_rng(seed).binomial(n, hits.mean(), size=n_resamples)  # hits per resample
    return _percentile_interval(100.0 * counts / n, level)


def paired_bootstrap_ci(
    correct: Any, reference: Any, *, n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """(low, high) in points of top-1(correct) - top-1(reference), both per-image hits on the same test images
    in the same order, every resample taking the same images for both (ValueError for different lengths)."""
    a, b = _hits(correct, "correct"), _hits(reference, "reference")
    if a.size != b.size:
        raise ValueError(f"paired intervals need the same test images: {a.size} and {b.size} results")
    n = a.size
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    shares = np.array([only_a, only_b, n - only_a - only_b]) / n
    draws = np.random.default_rng(seed).multinomial(n, shares, size=n_resamples)  # (n_resamples, 3)
    return _percentile_interval(100.0 * (draws[:, 0] - draws[:, 1]) / n, level)


def two_level_ci(
    runs: Sequence[Any],
    reference: Sequence[Any] | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """(low, high) in percent of the mean top-1 over seed runs, each given as per-image hits on the same test
    images; with `reference` (the baseline's runs, paired run by run: the same seeds in the same order), of the mean
    gain in points. Each resample draws the runs with replacement, then the test images with replacement, the same
    images for every run, so the interval carries the seed-to-seed and the test-image variance.

    As for the paired interval, images are drawn by outcome: an image is its column of hits over the runs (and the
    reference's), and resampling n images is a Multinomial(n, shares of the distinct columns), at most 2^runs
    numbers a resample instead of n indices."""
    scores = np.stack([_hits(r, "run") for r in runs]).astype(np.int8)  # (S, N)
    if reference is not None:
        base = np.stack([_hits(r, "reference") for r in reference]).astype(np.int8)
        if base.shape != scores.shape:
            raise ValueError(f"paired runs need the same seeds and test images: {scores.shape} and {base.shape}")
        scores = scores - base  # per run and image: +1, 0 or -1
    n_runs, n_images = scores.shape
    columns, counts = np.unique(scores, axis=1, return_counts=True)  # (S, P) distinct outcomes, how many images each
    rng = np.random.default_rng(seed)
    runs_drawn = rng.multinomial(n_runs, [1.0 / n_runs] * n_runs, size=n_resamples)  # (B, S) how often each run
    images = rng.multinomial(n_images, counts / n_images, size=n_resamples)  # (B, P) how many images of each outcome
    total = ((runs_drawn @ columns.astype(np.float64)) * images).sum(axis=1)
    return _percentile_interval(100.0 * total / (n_runs * n_images), level)
