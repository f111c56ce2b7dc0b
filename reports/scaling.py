"""The data-scale law: linear-probe top-1 against the number n of unlabeled pretraining images, fitted, then tested
on sizes it did not see (Hestness et al. 2017, "Deep learning scaling is predictable, empirically"; Alabdulmohsin
et al. 2022, "Revisiting neural scaling laws": judge a law by its extrapolation, not by its fit).

In error e = 100 - top1 (percent): power e(n) = e_inf + b * n**(-alpha), 0 <= e_inf <= 100, b >= 0, 0 < alpha <= 2
(ALPHA_MIN <= alpha in practice; 100 - e_inf is the ceiling of top-1), or log-linear e(n) = c - d * ln(n), the
fallback. Weighted least squares over every seed run; power by its closed form at fixed alpha, profiled over alpha
(grid, then golden section), chosen only if its AICc is lower by more than AICC_MARGIN and not degenerate. Refused:
too few sizes or runs, and no trend (pure noise). Intervals: bootstrap of the seed runs within each size. The
back-test refits without the largest one or two sizes. Returns plain JSON: floats, None where there is no number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SIZES = 4  # distinct sizes needed to fit
MIN_RUNS_AT_LARGEST = 2
BACKTEST_MIN_SIZES = 3  # a back-test refit needs 3 sizes: one more than the log-linear law's 2 parameters
AICC_MARGIN = 2.0  # power must beat log-linear's AICc by more than this (Burnham & Anderson: < 2 is no evidence)
ALPHA_MIN, ALPHA_MAX = 1e-3, 2.0
ALPHA_GRID = np.geomspace(ALPHA_MIN, ALPHA_MAX, 60)
GOLDEN_STEPS = 40  # the bracket shrinks to 0.618**40 ~ 4e-9 of a grid step
VAR_FLOOR = 1e-4  # (0.01 points)^2: one image in 10,000 test images, the resolution of a reported top-1
CURVE_POINTS = 60
Z = 1.96  # a 95% interval's normal quantile
TOLERANCE_POINTS, TOLERANCE_SE = 2.0, 3.0  # a back-test miss is tolerated up to max(2 points, 3 standard errors)
PARAM_NAMES = {"power": ("e_inf", "b", "alpha"), "loglinear": ("c", "d")}


@dataclass(frozen=True)
class _Runs:
    """Seed runs sorted by size: (m,) images and errors, the (k,) distinct sizes, each run's size index (m,)."""

    n: np.ndarray
    err: np.ndarray
    sizes: np.ndarray
    group: np.ndarray
    counts: np.ndarray  # (k,) runs at each size


@dataclass(frozen=True)
class _Fit:
    model: str
    params: np.ndarray  # (p,) fitted on the runs
    boot: np.ndarray  # (B, p) fitted on each bootstrap resample
    aicc: dict[str, float | None]
    criterion: str
    tails: tuple[float, float]  # the percentiles of a 95% interval, from _tails


def _as_runs(runs: Sequence[tuple[float, float]]) -> _Runs:
    table = np.asarray([(float(n), float(top1)) for n, top1 in runs], dtype=float).reshape(-1, 2)
    n, top1 = table[:, 0], table[:, 1]
    if not np.isfinite(table).all() or (n <= 0).any() or ((top1 < 0) | (top1 > 100)).any():
        raise ValueError("runs: need (n_images > 0, top1 percent in [0, 100]) pairs of finite numbers")
    table = table[np.argsort(n, kind="stable")]
    sizes, group = np.unique(table[:, 0], return_inverse=True)
    return _Runs(table[:, 0], 100.0 - table[:, 1], sizes, group, np.bincount(group, minlength=len(sizes)))


def _num(x: Any) -> float | None:
    return x if np.isfinite(x := float(x)) else None


def _variance(err: np.ndarray, data: _Runs) -> np.ndarray:
    """(B, k) variance of the runs at each size, floored. Why a floor: from 2-3 runs a variance is itself very
    noisy (chi-square with 1-2 degrees of freedom), and a size whose runs agree by chance, or are identical, would
    get a near-infinite weight and pin the curve. Flooring at the median over sizes keeps real differences (small
    n noisier than large n) while no size weighs more than a typical one; VAR_FLOOR when every size agrees. A size
    with one run gets the floor."""
    var = np.full((err.shape[0], len(data.sizes)), np.nan)
    several = data.counts > 1
    for j in np.flatnonzero(several):
        var[:, j] = err[:, data.group == j].var(axis=1, ddof=1)
    median = np.median(var[:, several], axis=1, keepdims=True) if several.any() else 0.0
    floor = np.maximum(median, VAR_FLOOR)
    return np.where(np.isnan(var), floor, np.maximum(var, floor))


def _tails(data: _Runs) -> tuple[float, float]:
    """Percentiles of a 95% interval, expanded for few runs (Hesterberg 2015, "What teachers should know about the
    bootstrap", the expanded percentile interval): the bootstrap sees the spread of the runs only through their
    nu = sum(runs - 1) within-size degrees of freedom, so the tails are Phi(-t_nu) instead of Phi(-1.96), t_nu the
    Student-t quantile (Cornish-Fisher expansion, Abramowitz & Stegun 26.7.5). 3 runs at 6 sizes: 1.5% and 98.5%.
    Measured on pure noise (6 sizes x 3 runs, 300 draws): a trend in 9% of draws without it, 5.7% with it."""
    nu, z = max(int((data.counts - 1).sum()), 1), Z
    t = z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
    t += (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3)
    tail = 50.0 * math.erfc(t / math.sqrt(2.0))  # 100 Phi(-t)
    return tail, 100.0 - tail


def _weights(err: np.ndarray, data: _Runs) -> np.ndarray:
    return 1.0 / _variance(err, data)[:, data.group]  # (B, m)


def _resample(data: _Runs, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, m) errors: at every size, its runs drawn with replacement. The deviations from the size's mean are
    scaled by sqrt(r / (r - 1)) first (Davison & Hinkley 1997, ch. 3, several small samples), else a resampled mean
    of r runs varies (r - 1) / r times as much as the real one: with 3 runs a normal 95% band would cover ~89%."""
    out = np.empty((n_boot, len(data.err)))
    for j, count in enumerate(data.counts):
        at = np.flatnonzero(data.group == j)
        mean = data.err[at].mean()
        deviation = (data.err[at] - mean) * (np.sqrt(count / (count - 1)) if count > 1 else 0.0)
        out[:, at] = mean + deviation[rng.integers(0, count, size=(n_boot, count))]
    return out


def _power_at(alpha: np.ndarray, x_log: np.ndarray, err: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Least-squares (e_inf, b, wss) at each alpha, each (B, A), for alpha (B, A), x_log = ln(n / n_ref) (m,),
    err and w (B, m); b in units of n / n_ref. The constrained minimum of this convex quadratic is the free one
    when it is feasible, else it lies on an edge of the feasible set (b = 0, e_inf = 0 or e_inf = 100): each
    edge's own minimum is a candidate and the lowest feasible candidate wins."""
    x = np.exp(-alpha[..., None] * x_log)  # (B, A, m)
    w3, e3 = w[:, None, :], err[:, None, :]
    sw, se, see = w3.sum(-1), (w3 * e3).sum(-1), (w3 * e3 * e3).sum(-1)  # (B, 1)
    sx, sxx, sxe = (w3 * x).sum(-1), (w3 * x * x).sum(-1), (w3 * x * e3).sum(-1)  # (B, A)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * sxx - sx * sx
        free = ((sxx * se - sx * sxe) / det, (sw * sxe - sx * se) / det)
    zero, full = np.zeros_like(sx), np.full_like(sx, 100.0)
    a = np.stack([free[0], zero + np.clip(se / sw, 0.0, 100.0), zero, full])
    b = np.stack([free[1], zero, np.maximum(sxe / sxx, 0.0), np.maximum((sxe - 100.0 * sx) / sxx, 0.0)])
    wss = see - 2 * a * se - 2 * b * sxe + a * a * sw + 2 * a * b * sx + b * b * sxx
    feasible = (a >= 0) & (a <= 100) & (b >= 0) & np.isfinite(wss)
    best = np.where(feasible, wss, np.inf).argmin(0)[None]
    return tuple(np.take_along_axis(v, best, 0)[0] for v in (a, b, wss))


def _fit_power(data: _Runs, err: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, 3) rows (e_inf, b, alpha): the alpha profile on ALPHA_GRID, then golden-section search in ln(alpha)
    between the best grid point's neighbours."""
    x_log = np.log(data.n / data.sizes[0])  # n_ref = the smallest size: x in (0, 1], well conditioned

    def profile(log_alpha: np.ndarray) -> np.ndarray:
        return _power_at(np.exp(log_alpha)[:, None], x_log, err, w)[2][:, 0]

    grid = np.broadcast_to(ALPHA_GRID, (err.shape[0], len(ALPHA_GRID)))
    best = _power_at(grid, x_log, err, w)[2].argmin(1)
    lo = np.log(ALPHA_GRID[np.maximum(best - 1, 0)])
    hi = np.log(ALPHA_GRID[np.minimum(best + 1, len(ALPHA_GRID) - 1)])
    ratio = (np.sqrt(5.0) - 1) / 2
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = profile(c), profile(d)
    for _ in range(GOLDEN_STEPS):
        left = fc <= fd  # the minimum lies in [lo, d]
        lo, hi = np.where(left, lo, c), np.where(left, d, hi)
        new = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
        f_new = profile(new)
        c, d = np.where(left, new, d), np.where(left, c, new)
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
    alpha = np.stack([np.exp((lo + hi) / 2), ALPHA_GRID[best]], 1)  # keep the grid point if it is lower after all
    e_inf, b, wss = _power_at(alpha, x_log, err, w)
    pick = wss.argmin(1)[:, None]
    e_inf, b, alpha = (np.take_along_axis(v, pick, 1)[:, 0] for v in (e_inf, b, alpha))
    return np.stack([e_inf, b * data.sizes[0] ** alpha, alpha], 1)


def _fit_loglinear(data: _Runs, err: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, 2) rows (c, d) of e = c - d ln n, weighted least squares."""
    log_n = np.log(data.n)
    mean_log = (w * log_n).sum(1, keepdims=True) / w.sum(1, keepdims=True)
    mean_err = (w * err).sum(1, keepdims=True) / w.sum(1, keepdims=True)
    d = -(w * (log_n - mean_log) * (err - mean_err)).sum(1) / (w * (log_n - mean_log) ** 2).sum(1)
    return np.stack([mean_err[:, 0] + d * mean_log[:, 0], d], 1)


FITTERS = {"power": _fit_power, "loglinear": _fit_loglinear}


def _error(model: str, params: np.ndarray, n: Any) -> np.ndarray:
    """(B, g) error in percent at sizes n (g,), for params (B, p); not clipped."""
    log_n = np.log(np.atleast_1d(np.asarray(n, dtype=float)))
    if model == "power":
        return params[:, :1] + params[:, 1:2] * np.exp(-params[:, 2:3] * log_n)
    return params[:, :1] - params[:, 1:2] * log_n


def _top1(model: str, params: np.ndarray, n: Any) -> np.ndarray:
    """(B, g) top-1 percent; a log-linear law extrapolated past 0% error is clipped to [0, 100]."""
    return 100.0 - np.clip(_error(model, params, n), 0.0, 100.0)


def _aicc(wss: float, m: int, p: int) -> float:
    """AICc of a Gaussian weighted least-squares fit: p parameters plus the common scale of the variances."""
    k = p + 1
    if m - k - 1 <= 0:
        return float("inf")
    return m * float(np.log(max(wss / m, 1e-300))) + 2 * k + 2 * k * (k + 1) / (m - k - 1)


def _degenerate(params: np.ndarray) -> str:
    e_inf, b, alpha = params
    if b <= 0:
        return "b = 0: no dependence on n"
    if alpha <= ALPHA_MIN * 1.01:
        return f"alpha at its lower bound {ALPHA_MIN:g}: a log-linear law in disguise"
    if alpha >= ALPHA_MAX * 0.99:
        return f"alpha at its upper bound {ALPHA_MAX:g}"
    return "e_inf at 100%: no accuracy at all" if e_inf >= 100 - 1e-9 else ""


def _fit(data: _Runs, err_star: np.ndarray) -> _Fit:
    """Both laws on the runs, the choice, and the chosen law refitted on each resample (B, m) of err_star."""
    w = _weights(data.err[None], data)
    params = {model: fit(data, data.err[None], w)[0] for model, fit in FITTERS.items()}
    aicc = {}
    for model, p in params.items():
        wss = float((w[0] * (data.err - _error(model, p[None], data.n)[0]) ** 2).sum())
        aicc[model] = _aicc(wss, len(data.err), len(p))
    degenerate = _degenerate(params["power"])
    gap = aicc["loglinear"] - aicc["power"]
    apart = "fits better" if gap < -AICC_MARGIN else "the data cannot tell them apart"
    model, why = ("power", f"power, lower by {gap:.1f}") if gap > AICC_MARGIN else ("loglinear", f"log-linear: {apart}")
    if degenerate:
        model, why = "loglinear", f"log-linear: the power fit is degenerate ({degenerate})"
    elif not np.isfinite(aicc["power"]):
        model, why = "loglinear", "log-linear: too few runs for the power law's AICc"
    scores = ", ".join(f"{k.replace('loglinear', 'log-linear')} {v:.1f}" for k, v in aicc.items() if np.isfinite(v))
    criterion = f"AICc of the weighted fits; power only if lower than log-linear's by more than 2 ({scores}) -> {why}"
    boot = FITTERS[model](data, err_star, _weights(err_star, data))
    return _Fit(model, params[model], boot, {k: _num(v) for k, v in aicc.items()}, criterion, _tails(data))


def _interval(values: np.ndarray, tails: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.percentile(values, tails, axis=0))


def _too_few(data: _Runs) -> dict[str, Any] | None:
    k, at_largest = len(data.sizes), int(data.counts[-1]) if len(data.sizes) else 0
    if k < MIN_SIZES:
        why = f"{k} size{'s' * (k != 1)}, need {MIN_SIZES}"
    elif at_largest < MIN_RUNS_AT_LARGEST:
        why = f"{at_largest} run{'s' * (at_largest != 1)} at the largest size, need {MIN_RUNS_AT_LARGEST}"
    else:
        return None
    return dict(status="not enough points", message=f"not enough points to fit: {why}", sizes=k, runs=len(data.n))


def _backtest(data: _Runs, k: int, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """Refit on the k smallest sizes; at each held-out size the prediction, its band, and the actual mean. The band
    covers the mean curve, the actual mean has its own standard error se (floored variance / runs), so `covered`
    widens each side of the band in quadrature by 1.96 se: a 95% interval for the observed mean."""
    keep = data.group < k
    sub = _Runs(data.n[keep], data.err[keep], data.sizes[:k], data.group[keep], data.counts[:k])
    fit = _fit(sub, _resample(sub, n_boot, rng))
    variance = _variance(data.err[None], data)[0]
    points = []
    for j in range(k, len(data.sizes)):
        n = data.sizes[j]
        predicted = float(_top1(fit.model, fit.params[None], n)[0, 0])
        lo, hi = (float(v[0]) for v in _interval(_top1(fit.model, fit.boot, n), fit.tails))
        actual = 100.0 - float(data.err[data.group == j].mean())
        se = float(np.sqrt(variance[j] / data.counts[j]))
        low = predicted - np.hypot(max(predicted - lo, 0.0), Z * se)
        high = predicted + np.hypot(max(hi - predicted, 0.0), Z * se)
        covered, tolerance = bool(low <= actual <= high), max(TOLERANCE_POINTS, TOLERANCE_SE * se)
        points.append(dict(n=float(n), predicted=predicted, lo=lo, hi=hi, actual=actual, error=predicted - actual))
        points[-1].update(covered=covered, tolerance=tolerance)
    return {"held_out": [float(n) for n in data.sizes[k:]], "fit_on": k, "model": fit.model, "points": points}


def _backtest_verdict(backtests: list[dict[str, Any]]) -> tuple[bool, str]:
    misses = []
    for test in backtests:
        for p in test["points"]:
            outside = [] if p["covered"] else ["outside its band"]
            if abs(p["error"]) > p["tolerance"]:
                outside.append(f"beyond the {p['tolerance']:.1f}-point tolerance")
            if outside:
                side = "high" if p["error"] > 0 else "low"
                miss = f"the prediction at {p['n']:,.0f} images was {abs(p['error']):.1f} points {side}"
                misses.append(f"refit on the {test['fit_on']} smallest sizes, {miss}, {' and '.join(outside)}")
    if misses:
        return False, "; ".join(misses) + "."
    worst = max(abs(p["error"]) for test in backtests for p in test["points"])
    fits = " and ".join(f"the {t['fit_on']} smallest" for t in backtests)
    note = f"refit on {fits} sizes, every held-out size was within its band and tolerance (largest miss {worst:.1f}"
    return True, note + " points)."


def _needed(model: str, params: np.ndarray, top1: float) -> np.ndarray:
    """(B,) images for the curve to reach top1: inf where it never does, 0 where it is there at any n."""
    goal = 100.0 - top1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if model == "power":
            e_inf, b, alpha = params.T
            log_n = (np.log(b) - np.log(goal - e_inf)) / alpha
            out = np.where(goal > e_inf, np.exp(log_n), np.inf)
            return np.where((b <= 0) & (goal > e_inf), 0.0, out)
        c, d = params.T
        return np.where(d > 0, np.exp((c - goal) / d), np.where(c <= goal, 0.0, np.inf))


def _to_level(fit: _Fit, level: float, n_max: float) -> dict[str, Any]:
    n = float(_needed(fit.model, fit.params[None], level)[0])
    lo, hi = (_num(v) for v in np.percentile(_needed(fit.model, fit.boot, level), fit.tails, method="inverted_cdf"))
    out = {"target": float(level), "n": n, "lo": lo, "hi": hi, "within_10x": bool(n <= 10 * n_max)}
    band = f" (95%: {lo:,.0f} to {hi:,.0f})" if hi is not None else ""
    band = band or (f" (95%: {lo:,.0f} or more)" if lo is not None else "")  # some resamples never get there
    if fit.model == "power" and 100.0 - fit.params[0] <= level:
        out.update(n=None, text=f"never: the fitted ceiling is {100.0 - fit.params[0]:.1f}%")
    elif n <= n_max:
        at_largest = _top1(fit.model, fit.params[None], n_max)[0, 0]
        out["text"] = f"already reached at the largest size ({n_max:,.0f} images: {at_largest:.1f}%), at {n:,.0f}{band}"
    elif not out["within_10x"]:
        at_10x = _top1(fit.model, fit.params[None], 10 * n_max)[0, 0]
        out.update(n=None, text=f"not within 10x (the curve reaches {at_10x:.1f}% at 10x)")
    else:
        out["text"] = f"{n:,.0f} images{band}"
    return out


def _answers(fit: _Fit, n_max: float, target: float | None, reference: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, n in (("at_2x", 2 * n_max), ("at_10x", 10 * n_max)):
        lo, hi = _interval(_top1(fit.model, fit.boot, n), fit.tails)
        top1 = float(_top1(fit.model, fit.params[None], n)[0, 0])
        out[key] = {"n": float(n), "top1": top1, "lo": float(lo[0]), "hi": float(hi[0])}
    for key, level in (("to_target", target), ("to_reference", reference)):
        if level is not None:
            out[key] = _to_level(fit, level, n_max)
    return out


def _curve(fit: _Fit, n_min: float, n_max: float) -> dict[str, list[float]]:
    """Top-1 and its 95% band on CURVE_POINTS log-spaced sizes from the smallest to 10x the largest. The band is
    of the bootstrap's parameters: it covers the mean curve, not single runs."""
    grid = np.geomspace(n_min, 10 * n_max, CURVE_POINTS)
    lo, hi = _interval(_top1(fit.model, fit.boot, grid), fit.tails)
    top1 = _top1(fit.model, fit.params[None], grid)[0]
    return {"n": grid.tolist(), "top1": top1.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def _params(fit: _Fit) -> dict[str, dict[str, float]]:
    lo, hi = _interval(fit.boot, fit.tails)
    rows = zip(PARAM_NAMES[fit.model], fit.params, lo, hi, strict=True)
    return {name: {"value": float(v), "lo": float(low), "hi": float(high)} for name, v, low, high in rows}


def _message(fit: _Fit, params: dict[str, dict[str, float]]) -> str:
    p = {name: v["value"] for name, v in params.items()}
    bands = ", ".join(f"{name} {v['lo']:.3g} to {v['hi']:.3g}" for name, v in params.items())
    if fit.model == "power":
        law = f"error = {p['e_inf']:.1f}% + {p['b']:.3g} n^-{p['alpha']:.2f}"
    else:
        law = f"error = {p['c']:.1f}% - {p['d']:.2f} ln n"
    return f"{law} (95%: {bands})"


def fit_scaling(
    runs: Sequence[tuple[float, float]],
    *,
    target: float | None = None,
    reference: float | None = None,
    n_boot: int = 400,
    seed: int = 0,
) -> dict[str, Any]:
    """The scaling law of (n_images, top1 percent) seed runs, several per size: {"status": "fit", ...} with the
    law, its bootstrap intervals, a curve band up to 10x the largest size, the back-test and the answers; or a
    refusal, {"status": "not enough points" | "no trend", "message": ...}. `target` and `reference` are top-1
    levels (percent) to find the images needed for. Seeded by `seed`: the same runs give the same numbers."""
    for name, level in (("target", target), ("reference", reference)):
        if level is not None and not 0 < level <= 100:
            raise ValueError(f"{name} must be a top-1 percent in (0, 100], got {level}")
    data = _as_runs(runs)
    refusal = _too_few(data)
    if refusal:
        return refusal
    rng = np.random.default_rng(seed)
    err_star = _resample(data, n_boot, rng)
    slope = _fit_loglinear(data, err_star, _weights(err_star, data))[:, 1]
    lo, hi = (float(v) for v in _interval(slope, _tails(data)))
    d = _fit_loglinear(data, data.err[None], _weights(data.err[None], data))[0, 1]
    trend = {"value": float(d), "lo": lo, "hi": hi}  # the log-linear slope d: points of error per e-fold of n
    counts = {"sizes": len(data.sizes), "runs": len(data.n), "largest": float(data.sizes[-1]), "trend": trend}
    if lo <= 0:
        where = "includes 0" if hi >= 0 else "lies below 0"
        why = f"log-linear slope 95% interval [{lo:.2f}, {hi:.2f}] {where}"
        message = f"no trend: error does not fall with pretraining images ({why})"
        return {"status": "no trend", "message": message} | counts
    fit = _fit(data, err_star)
    k, n_boot_back = len(data.sizes), max(n_boot // 2, 50)  # fewer resamples for the back-test's refits
    backtests = [_backtest(data, j, n_boot_back, rng) for j in (k - 1, k - 2) if j >= BACKTEST_MIN_SIZES]
    passed, note = _backtest_verdict(backtests)
    params = _params(fit)
    out = dict(status="fit", model=fit.model, criterion=fit.criterion, aicc=fit.aicc, **counts)
    out.update(message=_message(fit, params), params=params, curve=_curve(fit, data.sizes[0], data.sizes[-1]))
    out.update(backtest=backtests, backtest_passed=passed, backtest_note=note, answers_shown=passed)
    return out | {"answers": _answers(fit, float(data.sizes[-1]), target, reference)}
