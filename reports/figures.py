"""The plotly halves: each function turns one dict or list of rows from `reports/rows.py` into a Figure (one
study's figures: `reports/study_figures.py`).

Every string that came from the store (study names, parameter names, categorical choices) goes through `_text`
(html.escape): plotly renders a subset of HTML tags in labels and decodes entities, so escaped text shows as
typed and never becomes markup. Traces are grouped (one trace per state, lines separated by None) so that a
study of 1,000 trials is a handful of traces, not a thousand.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from comparison import regimes

COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#7f7f7f", "WAITING": "#7f7f7f"}
SERIES = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]  # one per study
HEIGHT = 380


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _layout(fig: go.Figure, title: str, x: str, y: str, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        height=HEIGHT,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
        **kwargs,
    )
    return fig


def comparison_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Test top-1 per regime with its 95% interval as an error bar where known; above each bar (and above its error
    bar, never across it) its value and gain over scratch; a missing regime has no bar, only a label."""
    labels = [_text(r["label"]) for r in rows]
    values = [r["test_top1"] for r in rows]
    hover = [_regime_hover(r) for r in rows]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            hovertext=hover,
            hoverinfo="text",
            marker_color="#1f77b4",
            cliponaxis=False,
            showlegend=False,
        )
    )
    cis = [(label, v, r.get("test_top1_ci")) for label, v, r in zip(labels, values, rows, strict=True)]
    cis = [(label, v, ci) for label, v, ci in cis if v is not None and ci is not None]
    if cis:  # whiskers only where an interval is known (a None in one error_y array still draws a flat one)
        fig.add_trace(
            go.Scatter(
                x=[c[0] for c in cis],
                y=[c[1] for c in cis],
                mode="markers",
                marker={"opacity": 0},
                showlegend=False,
                hoverinfo="skip",
                name="95% interval",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "color": "#444",
                    "array": [ci[1] - v for _, v, ci in cis],
                    "arrayminus": [v - ci[0] for _, v, ci in cis],
                },
            )
        )
    for label, row in zip(labels, rows, strict=True):
        if row["test_top1"] is None:
            why = "missing" if row["status"] == "missing" else "no test_top1"
            fig.add_annotation(x=label, y=0, text=why, showarrow=False, yshift=12, font={"color": "#d62728"})
    fig.add_trace(_value_labels(labels, rows, {label: ci[1] for label, _, ci in cis}))
    top = max([v for v in values if v is not None] + [ci[1] for _, _, ci in cis], default=1.0)
    fig.update_yaxes(range=[0, top * 1.3])  # room for the two-line labels above the highest whisker
    _layout(fig, "Test top-1 per regime (best trial by validation top-1)", "", "test top-1 (%)")
    return fig.update_layout(height=HEIGHT + 60)


def _value_labels(labels: list[str], rows: Sequence[dict[str, Any]], whisker_tops: dict[str, float]) -> go.Scatter:
    """Each bar's value and gain as text anchored at the top of its error bar (of the bar where it has none)."""
    shown = [(label, r) for label, r in zip(labels, rows, strict=True) if r["test_top1"] is not None]
    return go.Scatter(
        x=[label for label, _ in shown],
        y=[max(r["test_top1"], whisker_tops.get(label, r["test_top1"])) for label, r in shown],
        text=[_bar_text(r) for _, r in shown],
        mode="markers+text",
        marker={"size": 10, "opacity": 0},  # an invisible marker: the text keeps its radius (5 px) off the cap
        textposition="top center",
        textfont={"size": 11},
        cliponaxis=False,
        showlegend=False,
        hoverinfo="skip",
        name="value",
    )


def _bar_text(row: dict[str, Any]) -> str:
    """A regime's test top-1 and its gain over scratch, as written above its bar (two lines)."""
    if row["test_top1"] is None:
        return ""
    if row["regime"] == regimes.BASELINE:
        return f"{row['test_top1']:.2f}<br>(reference)"
    if row["gain_top1"] is None:
        return f"{row['test_top1']:.2f}"
    return f"{row['test_top1']:.2f}<br>{row['gain_top1']:+.2f} pts vs scratch"


def _regime_hover(row: dict[str, Any]) -> str:
    """Which trial a bar is (and its other scores), or why the regime is missing."""
    if row["status"] != "ok":
        return f"{_text(row['label'])}<br>missing: {_text(row['reason'])}"
    top5 = row["test_top5"] if row["test_top5"] is not None else "n/a"
    ci = row.get("test_top1_ci")
    return (
        f"{_text(row['label'])}<br>study {_text(row['study'])} trial #{row['trial']}<br>val top-1 "
        f"{row['val_top1']:.2f}<br>test top-5 {top5}"
        + (f"<br>test top-1 95% CI [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")
    )


def labels_figure(points: Sequence[dict[str, Any]]) -> go.Figure:
    """Label efficiency: test top-1 (left) and its gain over scratch (right) against the label fraction (log
    axis), one line per regime, the 95% two-level interval of each mean as whiskers."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("test top-1 (%)", "gain vs scratch (points)"))
    for k, regime in enumerate(dict.fromkeys(p["regime"] for p in points)):
        mine = [p for p in points if p["regime"] == regime]
        color = SERIES[k % len(SERIES)]
        for col, key, ci in ((1, "mean", "ci"), (2, "gain", "gain_ci")):
            shown = [p for p in mine if p[key] is not None]
            if not shown:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[100 * p["label_fraction"] for p in shown],
                    y=[p[key] for p in shown],
                    mode="lines+markers",
                    name=_text(mine[0]["label"]),
                    legendgroup=regime,
                    showlegend=col == 1,
                    line={"color": color},
                    error_y=_whiskers(shown, key, ci),
                    hovertemplate=f"{_text(mine[0]['label'])}<br>%{{x:g}}% of labels: %{{y:.2f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"}, row=1, col=2)
    _layout(fig, "Label efficiency (selected configuration, mean over seeds)", "", "")
    fig.update_xaxes(type="log", title_text="labels used (% of probe train)")
    fig.update_layout(legend={"orientation": "h", "y": -0.3}, height=HEIGHT + 60)
    return fig


def _whiskers(points: Sequence[dict[str, Any]], key: str, ci: str) -> dict[str, Any]:
    """error_y of a line: the interval where every point has one (else none: a partial array draws flat bars)."""
    if not all(p[ci] for p in points):
        return {"visible": False}
    return {
        "type": "data",
        "symmetric": False,
        "array": [p[ci][1] - p[key] for p in points],
        "arrayminus": [p[key] - p[ci][0] for p in points],
    }


def scale_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Validation top-1 against pretraining images (log x), one colour per study (each is one configuration): its
    best trial per fraction, that trial's test top-1 (dashed), and the spread over its complete trials."""
    rows = [r for r in rows if r["count"]]
    by_images = all(r["n_pretrain_images"] for r in rows)
    studies = list(dict.fromkeys(r["study"] for r in rows))
    fig = go.Figure()
    for k, study in enumerate(studies):
        prefix = f"{_text(study)}: " if len(studies) > 1 else ""  # one study: the legend needs no name
        _scale_traces(fig, [r for r in rows if r["study"] == study], by_images, SERIES[k % len(SERIES)], prefix)
    xs = sorted({r["n_pretrain_images"] if by_images else r["data_fraction"] for r in rows})
    ticks = [f"{x / 1000:g}k" if by_images and x >= 1000 else f"{x:g}" for x in xs]
    fig.update_xaxes(type="log", tickvals=xs, ticktext=ticks)  # the measured sizes, not log-axis minor ticks
    x_title = "pretraining images (log)" if by_images else "pretraining data fraction (log)"
    how = _scale_basis(rows)
    configurations = list(dict.fromkeys(r.get("configuration") for r in rows if r.get("configuration")))
    at = f"<br><sup>at {_text(configurations[0])}</sup>" if len(configurations) == 1 else ""
    return _layout(fig, f"SimCLR: linear-probe top-1 vs pretraining data, {how}{at}", x_title, "top-1 (%)")


def _scale_basis(rows: Sequence[dict[str, Any]]) -> str:
    """What the curve's points hold equal: optimiser steps (the count when all share one), or epochs."""
    equal = {r.get("equal", "epochs") for r in rows}
    if equal == {"steps"}:
        steps = sorted({int(r["steps"]) for r in rows if r.get("steps")})
        return "at equal optimiser steps" + (f" ({steps[0]:,})" if len(steps) == 1 else "")
    if equal == {"epochs"}:
        return "at equal epochs (points differ in compute)"
    return "mixed: equal steps and equal epochs"


def _scale_traces(fig: go.Figure, rows: list[dict[str, Any]], by_images: bool, color: str, prefix: str) -> None:
    """One study's curve: spread (markers with min-max bars), best val top-1, its test top-1 where recorded."""
    xs = [r["n_pretrain_images"] if by_images else r["data_fraction"] for r in rows]
    hover = [
        f"{_text(r['study'])}: fraction {r['data_fraction']:g}, {r['n_pretrain_images'] or '?'} images, "
        f"{r['count']} complete trials"
        for r in rows
    ]
    group = {"legendgroup": prefix or "study", "hovertext": hover}
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[r["mean"] for r in rows],
            mode="markers",
            name=f"{prefix}mean over trials (bar: min-max)",
            marker={"color": color, "size": 7, "opacity": 0.4},
            **group,
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [r["max"] - r["mean"] for r in rows],
                "arrayminus": [r["mean"] - r["min"] for r in rows],
                "color": color,
                "thickness": 1,
            },
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[r["best_value"] for r in rows],
            mode="lines+markers",
            name=f"{prefix}best trial: val top-1",
            line={"color": color},
            **group,
        )
    )
    tests = [r["test_top1"] for r in rows]
    if any(t is not None for t in tests):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=tests,
                mode="lines+markers",
                name=f"{prefix}best trial: test top-1",
                line={"color": color, "dash": "dash"},
                **group,
            )
        )
    seeded = [(x, r["seeds"]) for x, r in zip(xs, rows, strict=True) if (r.get("seeds") or {}).get("sd") is not None]
    if seeded:  # a band of mean ± sd over seeds where the point ran with several (compare's seeds_scale study)
        fig.add_trace(_seed_band(seeded, color, f"{prefix}mean ± sd over seeds", group["legendgroup"]))


def _seed_band(seeded: list[tuple[float, dict[str, Any]]], color: str, name: str, legendgroup: str) -> go.Scatter:
    """A filled band from mean - sd to mean + sd over seeds: along the upper edge, back along the lower."""
    band_x = [x for x, _ in seeded] + [x for x, _ in reversed(seeded)]
    band_y = [sd["mean"] + sd["sd"] for _, sd in seeded] + [sd["mean"] - sd["sd"] for _, sd in reversed(seeded)]
    return go.Scatter(
        x=band_x,
        y=band_y,
        fill="toself",
        mode="lines",
        line={"width": 0},
        fillcolor=color,
        opacity=0.15,
        name=name,
        legendgroup=legendgroup,
        hoverinfo="skip",
    )
