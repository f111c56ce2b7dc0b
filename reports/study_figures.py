"""The plotly halves of one study's figures: each function draws one dict of `reports/study_info.py`.

Optimisation history, hyperparameter importances, parallel coordinates and intermediate values, in the style of
`reports/figures.py` (its `_text` escapes every string from the store, its `_layout` sets the common layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from reports.figures import COLORS, HEIGHT, _layout, _text

# Parallel coordinates: the axes end at 85% of the width, the colour bar starts at 93%: the last axis's title and
# ticks (half a label's width either side of it) stay clear of the bar.
PARALLEL_AXES_END = 0.85
PARALLEL_COLORBAR_X = 0.93
# The intermediate values' y axis: what each objective reports to the pruner (reports.study_info.reported_metric).
REPORTED = {"knn_top1": "kNN top-1 (%)", "val_top1": "val top-1 (%)"}


def history_figure(info: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    hover = [f"trial #{n}" for n in info["numbers"]]
    fig.add_trace(
        go.Scatter(
            x=info["numbers"],
            y=info["values"],
            mode="markers",
            name="objective (val top-1)",
            hovertext=hover,
            marker={"color": COLORS["COMPLETE"]},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=info["numbers"],
            y=info["best_so_far"],
            mode="lines",
            name="best so far",
            line={"color": "#d62728", "shape": "hv"},
        )
    )
    _integer_ticks(fig, info["numbers"])
    return _layout(fig, f"{_text(info['study'])}: optimisation history", "trial", "objective value")


def importance_figure(info: dict[str, Any]) -> go.Figure:
    """Horizontal bars, most important on top."""
    items = sorted(info["importances"].items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[_text(k) for k, _ in items],
            orientation="h",
            text=[f"{v:.2f}" for _, v in items],
            textposition="auto",
            marker_color=COLORS["COMPLETE"],
        )
    )
    return _layout(fig, f"{_text(info['study'])}: importance (PED-ANOVA)", "importance", "")


def parallel_figure(info: dict[str, Any]) -> go.Figure:
    """Parallel coordinates, objective first, lines coloured by it; log params on a log10 axis from one power of
    ten to the next, so its end ticks are on the axis (a tick outside the range is drawn past the axis end, over
    the labels); the axes leave the right edge to the colour bar."""
    objective = info["objective"]
    dimensions = [{"label": "objective", "values": objective}]
    for dim in info["dimensions"]:
        entry: dict[str, Any] = {"label": _text(dim["name"]), "values": dim["values"]}
        if dim["kind"] == "categorical":
            # parcoords draws tick text as plain text (no entity decoding, no tags): raw is both safe and right
            entry.update(tickvals=list(range(len(dim["labels"]))), ticktext=list(dim["labels"]))
        elif dim["log"] and dim["values"]:
            low, high = int(min(dim["values"]) // 1), int(-(-max(dim["values"]) // 1))
            high = max(high, low + 1)  # one value, or all on one power of ten: still an axis one decade long
            ticks = list(range(low, high + 1))
            entry.update(tickvals=ticks, ticktext=[f"1e{k}" for k in ticks], range=[low, high])
            entry.update(label=f"{_text(dim['name'])} (log)")
        dimensions.append(entry)
    colorbar = {"title": {"text": "objective", "side": "right"}, "thickness": 12, "x": PARALLEL_COLORBAR_X}
    line = {"color": objective, "colorscale": "Viridis", "showscale": True, "colorbar": colorbar}
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=line, domain={"x": [0, PARALLEL_AXES_END]}))
    fig.update_layout(
        title={"text": f"{_text(info['study'])}: parallel coordinates", "x": 0.01, "y": 0.98, "yanchor": "top"},
        height=HEIGHT,
        template="plotly_white",
        margin={"l": 60, "r": 30, "t": 90, "b": 30},  # t: the title, then the axis titles and their top ticks
    )
    return fig


def intermediate_figure(info: dict[str, Any]) -> go.Figure:
    """Reported values per step; one trace per state; pruned trials dashed and marked where they stopped. The y
    axis names what was reported (`info["metric"]`: kNN top-1 for pretraining, val top-1 for probes and supervised
    runs), "reported value" where the store does not say."""
    fig = go.Figure()
    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"):
        series = [s for s in info["series"] if s["state"] == state]
        if not series:
            continue
        xs: list[Any] = []
        ys: list[Any] = []
        hover: list[Any] = []
        for s in series:
            xs += [*s["steps"], None]
            ys += [*s["values"], None]
            hover += [f"trial #{s['number']} ({state.lower()})"] * len(s["steps"]) + [None]
        dash = "dot" if state == "PRUNED" else "solid"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{state.lower()} ({len(series)})",
                hovertext=hover,
                line={"color": COLORS[state], "dash": dash, "width": 1},
                opacity=0.7,
            )
        )
        if state == "PRUNED":
            fig.add_trace(
                go.Scatter(
                    x=[s["steps"][-1] for s in series],
                    y=[s["values"][-1] for s in series],
                    mode="markers",
                    name="pruned here",
                    marker={"symbol": "x", "color": COLORS[state], "size": 8},
                    hovertext=[f"trial #{s['number']} pruned after step {s['steps'][-1]}" for s in series],
                )
            )
    _integer_ticks(fig, [step for s in info["series"] for step in s["steps"]])
    metric = info.get("metric")
    y_title = REPORTED.get(metric, _text(metric)) if metric else "reported value"
    return _layout(fig, f"{_text(info['study'])}: intermediate values", "step (epoch)", y_title)


def _integer_ticks(fig: go.Figure, xs: Sequence[int]) -> None:
    """Trial numbers and steps are integers: no 0.5 ticks on short axes."""
    if xs and max(xs) - min(xs) < 10:
        fig.update_xaxes(dtick=1)
