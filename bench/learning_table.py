"""The tables of bench/learning.py, from its rows: final accuracy per (pretraining set, probe set), accuracy at
every judged epoch, and time to lightly's final in-domain kNN accuracy. Means and sample sd over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict

IMPLS = ("lightly", "ours", "random (ours)", "random (tv)")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:5.1f}"
    return f"{statistics.mean(values):5.1f} ± {statistics.stdev(values):3.1f}"


def _select(rows: list[dict], **match: object) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def final_table(rows: list[dict], epochs: dict[str, int]) -> list[str]:
    out = ["pretrain  probe       setting      encoder          linear top-1   kNN top-1    train s   seeds"]
    for pre in sorted({r["pretrain"] for r in rows}):
        for probe in sorted({r["probe"] for r in rows}):
            setting = "in-domain" if probe == pre else "new classes" if probe.startswith(pre) else "transfer"
            for impl in IMPLS:
                epoch = 0 if impl.startswith("random") else epochs[pre]
                sel = _select(rows, pretrain=pre, probe=probe, impl=impl, epoch=epoch)
                if not sel:
                    continue
                secs = [r["seconds"] for r in sel if "seconds" in r]
                out.append(
                    f"{pre:<9} {probe:<11} {setting:<12} {impl:<15} {_mean_sd([r['linear'] for r in sel]):>13} "
                    f"{_mean_sd([r['knn'] for r in sel]):>12} {statistics.mean(secs) if secs else 0:9.0f} {len(sel):>6}"
                )
    return out


def budget_table(rows: list[dict]) -> list[str]:
    """Every epoch that the linear probe judged: ours - lightly and ours - random (ours init), in points."""
    out = ["pretrain  probe       epoch  steps  lightly lin  ours lin  ours-lightly  ours-random  lightly-random"]
    random = defaultdict(list)
    for r in _select(rows, impl="random (ours)"):
        random[(r["pretrain"], r["probe"])].append(r["linear"])
    judged = sorted({(r["pretrain"], r["probe"], r["epoch"], r["steps"]) for r in rows if "linear" in r and r["epoch"]})
    for pre, probe, epoch, steps in judged:
        lin = {
            impl: [r["linear"] for r in _select(rows, pretrain=pre, probe=probe, impl=impl, epoch=epoch)]
            for impl in ("lightly", "ours")
        }
        if not all(lin.values()):
            continue
        light, ours, rand = (statistics.mean(v) for v in (lin["lightly"], lin["ours"], random[(pre, probe)]))
        out.append(
            f"{pre:<9} {probe:<11} {epoch:>5} {steps:>6} {light:12.1f} {ours:9.1f} {ours - light:+13.1f} "
            f"{ours - rand:+12.1f} {light - rand:+15.1f}"
        )
    return out


def time_table(rows: list[dict], epochs: dict[str, int]) -> list[str]:
    """Seconds of training until the in-domain kNN first reaches lightly's final in-domain kNN (mean over seeds)."""
    out = ["pretrain  target kNN  implementation  reached (seeds)  train s to target  whole run s"]
    for pre in sorted({r["pretrain"] for r in rows}):
        final = _select(rows, pretrain=pre, probe=pre, impl="lightly", epoch=epochs[pre])
        if not final:
            continue
        target = statistics.mean(r["knn"] for r in final)
        for impl in ("lightly", "ours"):
            per_seed = defaultdict(list)
            for r in _select(rows, pretrain=pre, probe=pre, impl=impl):
                per_seed[r["seed"]].append(r)
            reached, whole = [], []
            for seed_rows in per_seed.values():
                seed_rows.sort(key=lambda r: r["epoch"])
                whole.append(seed_rows[-1]["seconds"])
                hit = next((r["seconds"] for r in seed_rows if r["knn"] >= target), None)
                if hit is not None:
                    reached.append(hit)
            time_to = f"{statistics.mean(reached):.0f}" if reached else "not reached"
            out.append(
                f"{pre:<9} {target:9.1f}% {impl:<15} {len(reached)}/{len(per_seed):<13} {time_to:>17} "
                f"{statistics.mean(whole):12.0f}"
            )
    return out


def speed_lines(rows: list[dict], images: dict[str, int], epochs: dict[str, int], flop_per_view: float, peak: float):
    """Training throughput of each implementation (whole runs, evaluation excluded), as images/s and as a share
    of the measured matmul peak (training = 3 forward passes a view, two views an image)."""
    out = []
    for pre in sorted(images):
        rates = {}
        for impl in ("lightly", "ours"):
            runs = _select(rows, pretrain=pre, probe=pre, impl=impl, epoch=epochs[pre])
            if runs:
                rates[impl] = statistics.mean(images[pre] * epochs[pre] / r["seconds"] for r in runs)
        for impl, rate in rates.items():
            flops = 2 * rate * 3 * flop_per_view
            out.append(
                f"{pre:<9} {impl:<8} {rate:6.1f} images/s = {flops / 1e9:5.1f} GFLOP/s = "
                f"{100 * flops / peak:3.0f}% of the matmul peak ({peak / 1e9:.0f} GFLOP/s)"
            )
        if len(rates) == 2:
            out.append(f"{pre:<9} ours / lightly: {rates['ours'] / rates['lightly']:.2f}x")
    return out


def print_tables(rows: list[dict], epochs: dict[str, int], speed: list[str] = ()) -> None:
    for title, lines in (
        ("Final epoch (random encoders: before training)", final_table(rows, epochs)),
        ("Linear probe at every judged epoch (means over seeds, points)", budget_table(rows)),
        ("Time to lightly's final in-domain kNN accuracy", time_table(rows, epochs)),
        ("Training speed", list(speed)),
    ):
        print(f"\n## {title}")
        print("\n".join(lines))
