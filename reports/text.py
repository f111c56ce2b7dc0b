"""Plain-text tables for the terminal: `study.py list`, `show` and the comparison `compare` prints at the end.

Each formatter takes the plain data of `reports/listing.py` or `rows.comparison_rows` and returns the text, so
the data and the words are tested apart. Nothing here reads the store or knows the config defaults: `show_text`
is handed the objective's defaults by the caller (reports/ does not import simclr/).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from comparison import regimes
from errors import UserError
from reports import intervals
from reports.protocol import protocol_text
from storage import schema


def metric_name(objective: str | None) -> str:
    """What a study's objective value is: our objectives (every study with an `objective` attr) return a
    validation top-1; a study made with plain Optuna in the same store returns whatever its author chose."""
    return "val top-1" if objective else "value"


def list_table(rows: Sequence[dict[str, Any]]) -> str:
    """`study.py list`: one line per study (reports.study_list rows), best value by each study's direction."""
    width = max(4, *(len(r["name"]) for r in rows))
    lines = [f"{'name':<{width}}  {'objective':<12}  {'preset':<7}  {'trials':>6}  {'complete':>8}  {'best':>7}  role"]
    for r in rows:
        best = "" if r["best_value"] is None else f"{r['best_value']:.2f}"
        lines.append(
            f"{r['name']:<{width}}  {r['objective']:<12}  {r['preset']:<7}  {r['trials']:>6}  "
            f"{r['states'].get('COMPLETE', 0):>8}  {best:>7}  {r['role']}"
        )
    return "\n".join(lines)


def show_text(data: dict[str, Any], defaults: dict[str, Any]) -> str:
    """`study.py show NAME`: settings, the config keys that differ from `defaults` (the objective's default
    config; {} for a study not made by study.py), then one line per trial (reports.study_details data)."""
    lines = [_show_header(data)]
    if data["sampler"]:
        pruner = dict(data["pruner"] or {})
        lines.append(
            f"sampler {data['sampler'].get('name')} (seed {data['sampler'].get('seed')}); pruner "
            f"{pruner.pop('name', '-')} {' '.join(f'{k}={v}' for k, v in pruner.items())}"
        )
    lines.append(f"space: {space_text(data['user_attrs'])}")
    changed = {k: v for k, v in (data["config"] or {}).items() if defaults.get(k) != v}
    lines.append("config (differs from the defaults): " + (" ".join(f"{k}={v}" for k, v in changed.items()) or "-"))
    states = ", ".join(f"{n} {s.lower()}" for s, n in data["states"].items()) or "none"
    best = data["best_trial"]
    best_text = f"; best #{best['number']} {best['value']:.2f}" if best else ""
    lines.append(f"trials: {data['n_trials']} ({states}){best_text}")
    if data["trials"]:
        header = f"{'#':>4}  {'state':<8}  {'value':>7}  {'test':>7}  {'steps':>6}  {'lr':>8}  {'seconds':>8}"
        lines.append(f"{header}  params / error")  # lr: the peak rate trained with (lr per 256 images x batch)
        lines += [_trial_line(t) for t in data["trials"]]
    return "\n".join(lines)


def _show_header(data: dict[str, Any]) -> str:
    return (
        f"study {data['name']}: objective {data['objective'] or '-'}, preset {data['preset'] or '-'}, "
        f"{data['direction']} {metric_name(data['objective'])}" + (f", role {data['role']}" if data["role"] else "")
    )


def _trial_line(t: dict[str, Any]) -> str:
    ua = t["user_attrs"]
    # a pruned trial's Optuna value is its last intermediate value (e.g. kNN), not a probe accuracy: hidden
    value = "" if t["value"] is None or t["state"] != "COMPLETE" else f"{t['value']:.2f}"
    test = ua.get(schema.TEST_TOP1)
    params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
    extra = f"  [{ua[schema.ERROR]}]" if ua.get(schema.ERROR) else ""
    lr = ua.get(schema.EFFECTIVE_LR)
    return (
        f"{t['number']:>4}  {t['state']:<8}  {value:>7}  {'' if test is None else f'{test:.2f}':>7}  "
        f"{ua.get(schema.STEPS, ''):>6}  {'' if lr is None else f'{lr:.4g}':>8}  {ua.get(schema.SECONDS, ''):>8}  "
        f"{params}{extra}"
    )


def space_text(attrs: dict[str, Any]) -> str:
    """The searched space from a study's `space` attr, one `name kind [low, high]` or `name choice [...]` each."""
    try:
        space = schema.space_from_json(attrs[schema.SPACE])
    except (KeyError, TypeError, ValueError):
        return "(unknown)"
    if not space:
        return "(none)"
    parts = []
    for key, dist in space.items():
        kind = type(dist).__name__.replace("Distribution", "").lower()
        if hasattr(dist, "choices"):
            parts.append(f"{key} choice {list(dist.choices)}")
        else:
            parts.append(f"{key} {kind} [{dist.low:g}, {dist.high:g}]{' log' if dist.log else ''}")
    return "; ".join(parts)


COMPARISON_RULE = (
    "val top-1: the final epoch's, in every regime; each regime shows its trial with the best val top-1. Test "
    f"top-1 of that trial with a 95% bootstrap interval over test images ({intervals.N_RESAMPLES:,} resamples, "
    f"seed {intervals.SEED}), the gain's paired (the same images for both trials); no interval where a trial "
    "did not store its per-image results. Over seeds: the mean of the selected configuration's runs (its trial and "
    "its re-runs with the next seeds) with a two-level bootstrap interval (runs, then test images)."
)


def num(value: float | None, sign: str = "", ci: Sequence[float] | None = None) -> str:
    """ "42.10 [40.2, 44.0]": a number with its interval where known; "-" for none."""
    if value is None:
        return "-"
    return f"{value:{sign}.2f}{_interval(ci, sign)}"


def _interval(ci: Sequence[float] | None, sign: str = "") -> str:
    """ " [40.2, 44.0]" ("" for none)."""
    return "" if not ci else f" [{ci[0]:{sign}.1f}, {ci[1]:{sign}.1f}]"


LABELS_RULE = (
    "Each regime's configuration selected with all labels, trained (or probed) again on a nested, class-balanced "
    "fraction of probe-train's labels; probe-val and the test images stay whole. A point is the mean over its seed "
    "runs with a two-level bootstrap interval (runs, then test images; one run: over test images); the gain is paired "
    "by seed with scratch at the same fraction. The SimCLR probe's points below 100% probe the one selected encoder; "
    "its 100% point also re-pretrains with each seed."
)


def labels_table(points: Sequence[dict[str, Any]]) -> str:
    """The label-efficiency points as text: regime, labels, test top-1 [CI], gain [CI], runs ("" for none)."""
    if not points:
        return ""
    lines = ["label efficiency (test top-1 [95% CI] / gain vs scratch [95% CI], mean over runs):"]
    width = max(len(p["label"]) for p in points)
    for p in points:
        gain = "reference" if p["regime"] == regimes.BASELINE else num(p["gain"], "+", p["gain_ci"])
        fraction = f"{100 * p['label_fraction']:g}%"
        lines.append(
            f"  {p['label']:<{width}}  {fraction:>5}  {num(p['mean'], ci=p['ci']):>20}  {gain:>22}  n={p['n']}"
        )
    return "\n".join(lines)


def seeds_text(seeds: dict[str, Any], sign: str = "") -> str:
    """ "42.10 ± 0.80 [40.2, 44.0] (n=3)": mean ± sd over seed runs and the two-level interval where known."""
    ci = seeds.get("ci")
    return f"{seeds['mean']:{sign}.2f} ± {seeds['sd']:.2f}{_interval(ci, sign)} (n={seeds['n']})"


def comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison (rows.comparison_rows) for the terminal: test top-1 [95% CI], top-5, val top-1, gain over
    scratch [95% CI], trial counts, and the best trial or why the regime is missing; the rule under the table."""
    header = (
        "regime",
        "input",
        "test top-1 [95% CI]",
        "top-5",
        "val top-1 (final epoch)",
        "gain vs scratch [95% CI]",
        "seeds: mean ± sd",
        "trials (c/p/f)",
        "status",
    )
    table = [header]
    for r in rows:
        scratch = r["regime"] == regimes.BASELINE and r["status"] == "ok"
        gain = "reference" if scratch else num(r["gain_top1"], "+", r.get("gain_top1_ci"))
        status = f"ok: {r['study']} #{r['trial']}" if r["status"] == "ok" else f"missing: {r['reason']}"
        trials = f"{r['n_trials']} ({r['n_complete']}/{r['n_pruned']}/{r['n_failed']})"
        test = num(r["test_top1"], ci=r.get("test_top1_ci"))
        seeds = r.get("seeds") or {}
        spread = seeds_text(seeds) if seeds.get("sd") is not None else "-"
        resolution = f"{r['resolution']}px" if r.get("resolution") else "-"
        table.append(
            (r["label"], resolution, test, num(r["test_top5"]), num(r.get("val_top1")), gain, spread, trials, status)
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    for row in table:
        numbers = [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *numbers]
        lines.append("  ".join([*cells, row[-1]]))
    protocols = [f"  {r['label']}: {protocol_text(r.get('protocol') or {}, r.get('seeds'))}" for r in rows]
    return "\n".join([*lines, textwrap.fill(COMPARISON_RULE, width=110), "protocol:", *protocols])


def trials_csv(trials: Sequence[dict[str, Any]]) -> str:
    """`study.py show NAME --csv`: one row per trial with the columns of Optuna's `trials_dataframe` (number,
    value, datetime_start, datetime_complete, duration, params_*, user_attrs_*, state), which pandas reads with
    `pd.read_csv`. Lists and dicts (a trial's history) are written as JSON; durations in seconds."""
    import csv
    import io
    import json
    from datetime import datetime

    params = sorted({k for t in trials for k in t["params"]})
    attrs = sorted({k for t in trials for k in t["user_attrs"]})
    columns = ["number", "value", "datetime_start", "datetime_complete", "duration"]
    columns += [f"params_{k}" for k in params] + [f"user_attrs_{k}" for k in attrs] + ["state"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for t in trials:
        start, end = t.get("datetime_start"), t.get("datetime_complete")
        duration = (
            (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() if start and end else ""
        )
        cells = [t["number"], t["value"], start, end, duration]
        cells += [t["params"].get(k) for k in params]
        cells += [t["user_attrs"].get(k) for k in attrs]
        cells.append(t["state"])
        writer.writerow(["" if c is None else json.dumps(c) if isinstance(c, (list, dict)) else c for c in cells])
    return out.getvalue()


def best_sets(data: dict[str, Any]) -> str:
    """`study.py show NAME --best`: the best trial's whole config (the study's config with the trial's
    parameters merged in) as `--set KEY=VALUE ...`, shell-quoted, to pass back to `create`."""
    import shlex

    best = data["best_trial"]
    if best is None:
        raise UserError(f"study {data['name']!r} has no completed trial yet")
    config = {**(data["config"] or {}), **best["params"]}
    return "--set " + " ".join(
        shlex.quote(f"{k}={str(v).lower() if isinstance(v, bool) else v}") for k, v in config.items()
    )
