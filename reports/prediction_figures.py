"""The plotly halves of the prediction section: a scale curve's runs with its fitted law, band, back-test and the
levels it is asked to reach; and accuracy against compute, one point a regime, its Pareto front. The data come
from reports/prediction.py and reports/compute.py; store strings are escaped (reports.figures._text)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.figures import HEIGHT, _layout, _text

FIT, BAND, RUNS, HELD_OUT = "#1f77b4", "rgba(31,119,180,0.18)", "#444", "#d62728"


def scaling_figure(info: dict[str, Any]) -> go.Figure:
    """Test top-1 against pretraining images (log x): the seed runs, the fitted law with its 95% band (dashed past
    the largest size run; not drawn there at all when the law failed its back-test), the back-test's predictions
    at the sizes it held out, and the target and reference levels."""
    fit, runs = info["fit"], info["runs"]
    fig = go.Figure(
        go.Scatter(
            x=[r["n"] for r in runs],
            y=[r["top1"] for r in runs],
            mode="markers",
            marker={"color": RUNS, "size": 7},
            name="seed runs",
            hovertext=[f"{_text(r['study'])} #{r['trial']}" for r in runs],
        )
    )
    if fit["status"] == "fit":
        _law(fig, fit)
        _backtests(fig, fit)
    for level, name, dash in _levels(info):
        fig.add_hline(y=level, line={"color": "#888", "dash": dash, "width": 1}, annotation_text=name)
    title = f"{_text(info['study'])}: the data-scale law"
    if fit["status"] != "fit":
        title += f"<br><sup>{_text(fit['message'])}</sup>"
    elif not fit["answers_shown"]:
        title += "<br><sup style='color:#b00'>failed its back-test: no extrapolation shown</sup>"
    fig.update_xaxes(type="log")
    _layout(fig, title, "pretraining images (log)", "test top-1 (%)")
    return fig.update_layout(margin={"t": 70})


def _law(fig: go.Figure, fit: dict[str, Any]) -> None:
    curve, largest = fit["curve"], fit["largest"]
    shown = [i for i, n in enumerate(curve["n"]) if fit["answers_shown"] or n <= largest * (1 + 1e-9)]
    n = [curve["n"][i] for i in shown]
    for key in ("hi", "lo"):
        fig.add_trace(
            go.Scatter(
                x=n,
                y=[curve[key][i] for i in shown],
                mode="lines",
                line={"width": 0},
                fill="tonexty" if key == "lo" else None,
                fillcolor=BAND,
                name="95% band",
                showlegend=key == "lo",
                hoverinfo="skip",
            )
        )
    inside = [i for i in shown if curve["n"][i] <= largest * (1 + 1e-9)]
    beyond = [i for i in shown if curve["n"][i] >= largest * (1 - 1e-9)]
    for part, dash, name in ((inside, "solid", f"law ({fit['model']})"), (beyond, "dash", "extrapolation")):
        if part:
            fig.add_trace(
                go.Scatter(
                    x=[curve["n"][i] for i in part],
                    y=[curve["top1"][i] for i in part],
                    mode="lines",
                    line={"color": FIT, "dash": dash},
                    name=name,
                )
            )


def _backtests(fig: go.Figure, fit: dict[str, Any]) -> None:
    points = [(test["fit_on"], p) for test in fit["backtest"] for p in test["points"]]
    if not points:
        return
    fig.add_trace(
        go.Scatter(
            x=[p["n"] for _, p in points],
            y=[p["predicted"] for _, p in points],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [p["hi"] - p["predicted"] for _, p in points],
                "arrayminus": [p["predicted"] - p["lo"] for _, p in points],
            },
            mode="markers",
            marker={"symbol": "x", "color": HELD_OUT, "size": 9},
            name="back-test: predicted without these sizes",
            hovertext=[f"fit on {k} sizes: {p['error']:+.1f} points" for k, p in points],
        )
    )


def _levels(info: dict[str, Any]) -> list[tuple[float, str, str]]:
    levels = []
    if info.get("target") is not None:
        levels.append((info["target"], f"target {info['target']:g}%", "dot"))
    if info.get("reference"):
        levels.append((info["reference"]["top1"], _text(info["reference"]["label"]), "dash"))
    return levels


def compute_figure(points: Sequence[dict[str, Any]]) -> go.Figure:
    """Test top-1 (95% interval) against wall seconds and against training FLOPs (log x), one point a regime,
    named beside it; the Pareto front of each panel (no other point both more accurate and cheaper) joined."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1)
    for col, key in ((1, "seconds"), (2, "flops")):
        costs = [max(p[key], 1e-9) for p in points]
        for point, cost in zip(points, costs, strict=True):
            fig.add_trace(_compute_point(point, cost, key), row=1, col=col)
        front = sorted((p for p in points if p[f"pareto_{key}"]), key=lambda p: p[key])
        fig.add_trace(
            go.Scatter(
                x=[max(p[key], 1e-9) for p in front],
                y=[p["test_top1"] for p in front],
                mode="lines",
                line={"color": "#1f77b4", "dash": "dot"},
                name="Pareto front: no point both more accurate and cheaper",
                showlegend=col == 1,
            ),
            row=1,
            col=col,
        )
        low, high = math.log10(min(costs)), math.log10(max(costs))
        fig.update_xaxes(type="log", range=[low - 0.3, high + 0.9], row=1, col=col)  # room for the names
    _layout(fig, "Accuracy against compute (full cost: the search and the encoder's training)", "", "")
    fig.update_xaxes(title_text="wall seconds on this machine (log)", row=1, col=1)
    fig.update_xaxes(title_text="training FLOPs (log)", row=1, col=2)
    fig.update_yaxes(title_text="test top-1 (%)", row=1, col=1)
    return fig.update_layout(height=HEIGHT + 60)


def _compute_point(point: dict[str, Any], cost: float, key: str) -> go.Scatter:
    ci = point.get("test_top1_ci")
    bars = None
    if ci:
        bars = {
            "type": "data",
            "symmetric": False,
            "array": [ci[1] - point["test_top1"]],
            "arrayminus": [point["test_top1"] - ci[0]],
        }
    return go.Scatter(
        x=[cost],
        y=[point["test_top1"]],
        error_y=bars,
        mode="markers+text",
        text=[_text(point["label"])],
        textposition="middle right",
        cliponaxis=False,
        marker={"size": 9, "color": "#1f77b4" if point[f"pareto_{key}"] else "#999"},
        showlegend=False,
        hovertext=_text(f"{point['label']}: {', '.join(point['studies'])}. {point['note']}"),
    )
