"""The report's prediction section: each data-scale curve's fitted law (reports/prediction.py), said in the same
lines `study.py predict` prints, with its parameters, back-test and figure; then accuracy against compute
(reports/compute.py). A law that fails its back-test says so in red and shows no extrapolated number.

Called by reports/html.py with its page (anything with `add(*html)` and `figure(fig)`)."""

from __future__ import annotations

import html
from typing import Any

from reports.prediction_figures import compute_figure, scaling_figure

METHOD = (
    "Test error against pretraining images, fitted by weighted least squares over every seed run: a saturating "
    "power law, error = e_inf + b n^-alpha, or the simpler log-linear law when the data cannot tell them apart. "
    "Intervals: 95%, a bootstrap over the seed runs at each size. The back-test refits without the largest size "
    "(and without the two largest) and checks the prediction there; a law that misses is not extrapolated."
)
COMPUTE = (
    "Each regime's full cost: every trial of the study that selected it (its whole search) and of the study that "
    "trained its encoder (SimCLR's or the same-data supervised search); ImageNet pretraining is torchvision's and "
    "not counted. FLOPs count training images x epochs x 3 (forward and backward), two views an image for SimCLR, "
    "one forward per image a probe extracts; evaluation passes are left out alike. Seeds and label-fraction "
    "re-runs give intervals and curves, not the number: not counted."
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(columns: list[str], rows: list[list[str]], cls: str, text: tuple[int, ...] = (0,)) -> str:
    """A table whose cells are HTML already; columns `text` left-aligned."""
    align = lambda i: ' class="text"' if i in text else ""  # noqa: E731
    head = "".join(f"<th{align(i)}>{_e(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f"<td{align(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _interval(value: dict[str, Any]) -> str:
    lo, hi = value.get("lo"), value.get("hi")
    bounds = "" if lo is None or hi is None else f' <span class="ci">[{lo:.3g}, {hi:.3g}]</span>'
    return f"{value['value']:.4g}{bounds}"


def _law(page: Any, info: dict[str, Any]) -> None:
    fit = info["fit"]
    lines = info["lines"]
    failed = fit["status"] == "fit" and not fit["answers_shown"]
    red = ' style="color:#b00"'
    items = "".join(f"<li{red if failed and 'failed its back-test' in line else ''}>{_e(line)}</li>" for line in lines)
    page.add(f'<ul class="note-lines">{items}</ul>')
    if fit["status"] == "fit":
        params = [[_e(name), _interval(value)] for name, value in fit["params"].items()]
        page.add(_table(["parameter", "value [95%]"], params, "law"))
    page.figure(scaling_figure(info))


def section(page: Any, scaling: list[dict[str, Any]], compute: list[dict[str, Any]]) -> None:
    if scaling:
        page.add('<h2 id="prediction">Prediction: the data-scale law</h2>', f'<p class="meta">{_e(METHOD)}</p>')
        for info in scaling:
            _law(page, info)
    if compute:
        rows = [
            [
                _e(p["label"]),
                f"{p['test_top1']:.2f}",
                f"{p['seconds'] / 60:.1f} min",
                f"{p['flops']:.3g}",
                "yes" if p["pareto_seconds"] else "",
                _e(", ".join(p["studies"]) + (f"; {p['note']}" if p["note"] else "")),
            ]
            for p in compute
        ]
        columns = ["regime", "test top-1", "time", "FLOPs", "Pareto (time)", "studies counted"]
        page.add('<h2 id="compute">Accuracy against compute</h2>', f'<p class="meta">{_e(COMPUTE)}</p>')
        page.add(_table(columns, rows, "compute", text=(0, len(columns) - 1)))
        page.figure(compute_figure(compute))
