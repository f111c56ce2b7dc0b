"""Bootstrap intervals over test images against references: an explicit resampling of image indices (what the
binomial / multinomial draws stand for), the normal approximation for large n, and the exact cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports.intervals import bootstrap_ci, paired_bootstrap_ci, two_level_ci


def sample_hits(n: int, p: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def index_bootstrap(statistic, n: int, n_resamples: int = 2000, seed: int = 123) -> tuple[float, float]:
    """The textbook bootstrap: resample n image indices with replacement, the statistic of each, percentiles."""
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, n, n)) for _ in range(n_resamples)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("n, p", [(400, 0.7), (1000, 0.3), (250, 0.95)])
def test_matches_resampling_image_indices(n, p):
    hits = sample_hits(n, p, seed=n)
    reference = index_bootstrap(lambda idx: 100.0 * hits[idx].mean(), n)
    # Monte Carlo error of a 2.5% percentile from 2,000 resamples: ~0.06 standard deviations of the statistic
    sd = 100.0 * math.sqrt(hits.mean() * (1 - hits.mean()) / n)
    assert bootstrap_ci(hits) == pytest.approx(reference, abs=0.3 * sd)


@pytest.mark.parametrize("n, p_a, p_b, overlap", [(400, 0.6, 0.5, 0.8), (1000, 0.3, 0.35, 0.5)])
def test_paired_matches_resampling_the_same_indices(n, p_a, p_b, overlap):
    rng = np.random.default_rng(n)
    b = rng.random(n) < p_b
    a = np.where(rng.random(n) < overlap, b, rng.random(n) < p_a)  # correlated, as two models on one test set
    d = a.astype(float) - b
    reference = index_bootstrap(lambda idx: 100.0 * d[idx].mean(), n)
    sd = 100.0 * d.std() / math.sqrt(n)
    assert paired_bootstrap_ci(a, b) == pytest.approx(reference, abs=0.3 * sd)
    # pairing matters: resampling the two trials' images independently gives a wider interval here
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(2)
    unpaired = np.percentile(
        [100.0 * (a[rng_a.integers(0, n, n)].mean() - b[rng_b.integers(0, n, n)].mean()) for _ in range(2000)],
        [2.5, 97.5],
    )
    low, high = paired_bootstrap_ci(a, b)
    assert high - low < 0.8 * (unpaired[1] - unpaired[0])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.936])
def test_large_n_half_width_is_the_normal_approximation(p):
    n = 10_000
    hits = sample_hits(n, p, seed=3)
    observed = hits.mean()
    low, high = bootstrap_ci(hits)
    half_width = 100.0 * 1.96 * math.sqrt(observed * (1 - observed) / n)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    assert low < 100.0 * observed < high


def test_identical_trials_have_a_zero_gain_interval():
    hits = sample_hits(777, 0.6, seed=4)
    assert paired_bootstrap_ci(hits, hits.copy()) == (0.0, 0.0)


@pytest.mark.parametrize("hits, interval", [(np.ones(50, bool), (100.0, 100.0)), (np.zeros(9, bool), (0.0, 0.0))])
def test_all_or_nothing_has_no_spread(hits, interval):
    assert bootstrap_ci(hits) == interval


def test_seeded_so_deterministic():
    a, b = sample_hits(9973, 0.6, seed=5), sample_hits(9973, 0.5, seed=6)  # fine steps: seeds tell apart
    assert bootstrap_ci(a) == bootstrap_ci(a) and paired_bootstrap_ci(a, b) == paired_bootstrap_ci(a, b)
    assert bootstrap_ci(a, seed=1) != bootstrap_ci(a) and paired_bootstrap_ci(a, b, seed=1) != paired_bootstrap_ci(a, b)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones(3, bool), np.ones(4, bool)), "same test images"),
        ((np.ones(3, int), np.ones(3, bool)), "bool"),
        ((np.ones(0, bool), np.ones(0, bool)), "non-empty"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(*args)


def two_level_reference(runs, reference=None, n_resamples: int = 2000, seed: int = 321) -> tuple[float, float]:
    """The textbook two-level bootstrap, written out: draw runs with replacement, then n image indices shared by
    the drawn runs; the mean (gain) over the drawn runs."""
    rng = np.random.default_rng(seed)
    runs = np.stack(runs).astype(float) - (np.stack(reference).astype(float) if reference is not None else 0.0)
    s, n = runs.shape
    values = []
    for _ in range(n_resamples):
        picked, idx = rng.integers(0, s, s), rng.integers(0, n, n)
        values.append(100.0 * runs[picked][:, idx].mean())
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("rates", [(0.40, 0.42, 0.44), (0.30, 0.50, 0.70, 0.45), (0.6,)])
def test_two_level_interval_matches_resampling_runs_then_images(rates):
    runs = [sample_hits(800, p, seed=k) for k, p in enumerate(rates)]
    low, high = two_level_ci(runs)
    ref_low, ref_high = two_level_reference(runs)
    width = ref_high - ref_low
    assert low == pytest.approx(ref_low, abs=0.1 * width) and high == pytest.approx(ref_high, abs=0.1 * width)


def test_two_level_interval_carries_the_seed_spread():
    """Runs that disagree (30/50/70%) make the interval of their mean far wider than the images alone would: the
    image-only interval of the pooled hits misses the seed-to-seed variance."""
    runs = [sample_hits(2000, p, seed=k) for k, p in enumerate((0.3, 0.5, 0.7))]
    low, high = two_level_ci(runs)
    pooled_low, pooled_high = bootstrap_ci(np.concatenate(runs))
    assert low < 50.0 < high and (high - low) > 5 * (pooled_high - pooled_low)
    assert two_level_ci(runs) == (low, high)  # seeded


def test_two_level_gain_is_paired_run_by_run():
    runs = [sample_hits(600, 0.5, seed=k) for k in range(3)]
    assert two_level_ci(runs, runs) == (0.0, 0.0)  # a configuration against itself: no gain in any resample
    better = [r | (np.arange(600) % 10 == 0) for r in runs]  # +~5 points on the same images, every seed
    low, high = two_level_ci(better, runs)
    ref_low, ref_high = two_level_reference(better, runs)
    assert 0 < low < high < 10 and low == pytest.approx(ref_low, abs=0.5) and high == pytest.approx(ref_high, abs=0.5)
    with pytest.raises(ValueError, match="same seeds and test images"):
        two_level_ci(runs, runs[:2])
