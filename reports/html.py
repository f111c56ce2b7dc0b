"""One self-contained HTML page: plotly.js inlined once in <head>, every figure a div plus a Plotly.newPlot call.

Nothing is fetched when the page is viewed: no external script, stylesheet or font, and a Content-Security-Policy
(`default-src 'none'`) makes the browser refuse any request a figure might still try (plotly.js carries map-tile
URLs it would only use for map traces). Store text reaches the page in two ways, both escaped: as HTML through
`html.escape`, and as figure JSON inside <script>, where `<`, `>` and `&` become \\u003c-style escapes so that a
study named `</script><img ...>` cannot end the script. ('unsafe-eval' is for the regl shaders of the WebGL
parallel-coordinates trace.)
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.io
import plotly.offline

from atomic import atomic_write
from reports import figures, prediction_html, rows, study_figures, study_info
from reports.protocol import protocol_text
from reports.text import COMPARISON_RULE, LABELS_RULE, seeds_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from reports.report import Report

CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
PLOTLY_CONFIG = '{"responsive": true, "displaylogo": false}'
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
.meta { color: #555; } .meta code { background: #f4f4f4; padding: 0 0.3em; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; } td.text, th.text { text-align: left; }
tr.missing td { color: #b00; } .ci { color: #555; display: block; } ul.note { margin: 0.5rem 0; }
table.comparison { width: 100%; } table.comparison th, table.comparison td.text { white-space: normal; }
table.comparison td:first-child { min-width: 12rem; }
td.status { white-space: normal; overflow-wrap: anywhere; min-width: 16rem; text-align: left; }
tr.protocol td { white-space: normal; color: #555; font-size: 0.8rem; border-top: none; }
table.scale th { white-space: normal; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr)); gap: 1rem; }
figure { margin: 0; min-width: 0; } .note { color: #777; font-style: italic; }
.figure { width: 100%; min-height: 380px; border: 1px solid #eee; }
.scroll { max-height: 420px; overflow: auto; border: 1px solid #eee; display: inline-block; max-width: 100%; }
tr.PRUNED td { color: #b86200; } tr.FAIL td { color: #b00; }
.trials thead tr:first-child th { position: static; border-bottom: none; }
"""


class _Page:
    """Collects the body and numbers the figure divs."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n_figures = 0

    def add(self, *html_parts: str) -> None:
        self.parts.extend(html_parts)

    def figure(self, fig: go.Figure, caption: str | None = None) -> None:
        div_id = f"figure-{self.n_figures}"
        self.n_figures += 1
        spec = script_json(plotly.io.to_json(fig, validate=False))
        note = f'<figcaption class="note">{_e(caption)}</figcaption>' if caption else ""
        self.add(
            f'<figure><div class="figure" id="{div_id}"></div>{note}</figure>',
            f'<script>window.addEventListener("DOMContentLoaded",function(){{var f={spec};'
            f'Plotly.newPlot("{div_id}",f.data,f.layout,{PLOTLY_CONFIG});}});</script>',
        )


def script_json(text: str) -> str:
    """JSON made safe inside <script>: in JSON these characters only occur inside strings, where \\uXXXX is equal."""
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def render(report: Report) -> str:
    """The whole page as one string."""
    page = _Page()
    _header(page, report)
    if report.has_comparison:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in report.comparison:
            groups.setdefault(row.get("comparison", ""), []).append(row)
        for k, (prefix, group) in enumerate(groups.items()):
            _comparison(page, group, prefix if len(groups) > 1 else None, k)
    if report.labels:
        _labels(page, report.labels)
    if report.scale:
        _scale(page, report.scale)
    prediction_html.section(page, report.scaling, report.compute)
    if report.timing:
        _timing(page, report.timing)
    for index, study in enumerate(report.studies):
        _study(page, index, study, report.importances[study.name])
    plotly_js = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>simclr-study report</title>",
            f"<style>{STYLE}</style>",
            f'<script type="text/javascript">{plotly_js}</script>',
            "</head><body>",
            *page.parts,
            "</body></html>",
        ]
    )


def write_html(report: Report, path: str | Path) -> Path:
    """Render and write atomically (a reader never sees half a page); returns the path."""
    page = render(report).encode("utf-8")
    return atomic_write(path, lambda f: f.write(page))


# ----------------------------------------------------------------------------------------------- sections


def _header(page: _Page, report: Report) -> None:
    links = ", ".join(f'<a href="#study-{i}">{_e(s.name)}</a>' for i, s in enumerate(report.studies)) or "none"
    page.add(
        "<h1>simclr-study report</h1>",
        f'<p class="meta">made {_e(report.created.strftime("%Y-%m-%d %H:%M:%S %Z"))} from store '
        f"<code>{_e(report.storage)}</code><br>{len(report.studies)} studies: {links}</p>",
        '<p class="meta">Objective values are validation top-1 (%). Test accuracies are attributes of the trial '
        "selected on validation; the test set never selects anything.</p>",
    )


def _comparison(page: _Page, comparison: list[dict[str, Any]], prefix: str | None = None, index: int = 0) -> None:
    """One comparison's table and figure; `prefix` names it where the store holds several."""
    seeded = any((r.get("seeds") or {}).get("n", 0) > 1 for r in comparison)  # a column only when seeds ran
    columns = [
        "regime",
        "input",
        "test top-1 [95% CI]",
        "top-5",
        "gain vs scratch [95% CI]",
        *(["seeds: test top-1 / gain (mean ± sd)"] if seeded else []),
        "val top-1 (final epoch)",
        "best trial",
        "trials (c/p/f)",
        "status",
    ]
    body = []
    for r in comparison:
        scratch = r["regime"] == rows.SCRATCH and r["test_top1"] is not None
        gain = "reference" if scratch else _num(r["gain_top1"], "+") + _ci(r.get("gain_top1_ci"), "+")
        test = _num(r["test_top1"]) + _ci(r.get("test_top1_ci"))
        best = f"{_e(r['study'])} #{r['trial']}" if r["status"] == "ok" else ""
        status = "ok" if r["status"] == "ok" else f"missing: {_e(r['reason'])}"  # reasons are words, paths, URLs
        resolution = f"{r['resolution']}px" if r.get("resolution") else ""
        seeds = f"<td>{_e(_seeds_cell(r))}</td>" if seeded else ""
        body.append(
            f'<tr class="{_e(r["status"])}"><td class="text">{_e(r["label"])}</td><td>{resolution}</td>'
            f"<td>{test}</td><td>{_num(r['test_top5'])}</td><td>{gain}</td>{seeds}<td>{_num(r['val_top1'])}</td>"
            f'<td class="text">{best}</td><td>{r["n_trials"]} ({r["n_complete"]}/{r["n_pruned"]}/'
            f'{r["n_failed"]})</td><td class="status">{status}</td></tr>'
            f'<tr class="protocol"><td></td><td class="text" colspan="{len(columns) - 1}">'
            f"{_e(protocol_text(r.get('protocol') or {}, r.get('seeds')))}</td></tr>"
        )
    title = "Comparison" if prefix is None else f"Comparison {prefix}" if prefix else "Comparison of the other studies"
    page.add(
        f'<h2 id="comparison{f"-{index}" if index else ""}">{_e(title)}</h2>',
        f'<p class="meta">{_e(COMPARISON_RULE)}</p>',
        _table(columns, body, "comparison", text_columns=(0, len(columns) - 3, len(columns) - 1)),
    )
    page.figure(figures.comparison_figure([r for r in comparison if r["regime"] not in rows.CHECKS]))


def _spread(seeds: dict[str, Any] | None) -> str:
    if not seeds or not seeds.get("n"):
        return ""
    if seeds.get("sd") is None:
        return "1 seed"
    return f"{seeds['mean']:.2f} ± {seeds['sd']:.2f} ({seeds['n']} seeds)"


def _seeds_cell(r: dict[str, Any]) -> str:
    """ "42.10 ± 0.80 [40.2, 44.0] / +3.20 ± 1.10 [+1.0, +5.4] (3 seeds)": mean ± sd over the seed runs with the
    two-level interval where known; "1 seed" when the configuration ran once."""
    seeds, gain = r.get("seeds") or {}, r.get("gain_seeds") or {}
    if not seeds.get("n"):
        return ""
    if seeds["n"] == 1:
        return "1 seed"
    top1 = seeds_text(seeds).rsplit(" (n=", 1)[0]
    diff = seeds_text(gain, "+").rsplit(" (n=", 1)[0] if gain.get("n", 0) > 1 and gain.get("sd") is not None else "-"
    return f"{top1} / {diff} ({seeds['n']} seeds)"


def _labels(page: _Page, points: list[dict[str, Any]]) -> None:
    """The label-efficiency table (regime x label fraction) and its figure."""
    columns = [
        "comparison",
        "regime",
        "labels",
        "train images",
        "test top-1 [95% CI]",
        "gain vs scratch [95% CI]",
        "runs",
    ]
    body = [
        f'<tr><td class="text">{_e(p["comparison"])}</td><td class="text">{_e(p["label"])}</td>'
        f"<td>{100 * p['label_fraction']:g}%</td><td>{_num(p.get('n_train_images'))}</td>"
        f"<td>{_num(p['mean'])}{_ci(p['ci'])}</td>"
        f"<td>{'reference' if p['regime'] == rows.SCRATCH else _num(p['gain'], '+') + _ci(p['gain_ci'], '+')}</td>"
        f"<td>{p['n']}</td></tr>"
        for p in points
    ]
    page.add(
        '<h2 id="labels">Label efficiency</h2>',
        f'<p class="meta">{_e(LABELS_RULE)}</p>',
        _table(columns, body, "labels", text_columns=(0, 1)),
    )
    page.figure(figures.labels_figure(points))


def _scale(page: _Page, scale: list[dict[str, Any]]) -> None:
    seeded = any((r.get("seeds") or {}).get("n", 0) > 1 for r in scale)  # a column only when seeds ran
    columns = [
        "study",
        "data fraction",
        "pretraining images",
        "steps",
        "epochs",
        "images seen",
        "best val top-1",
        "its test top-1",
        *(["over seeds (mean ± sd)"] if seeded else []),
        "mean [min, max]",
        "trials (c/p/f)",
        "best trial",
    ]
    body = [
        f'<tr><td class="text">{_e(r["study"])}</td><td>{r["data_fraction"]:g}</td>'
        f"<td>{_num(r['n_pretrain_images'])}</td><td>{_num(r.get('steps'))}</td><td>{_num(r.get('epochs'))}</td>"
        f"<td>{_num(r.get('images_seen'))}</td><td>{_num(r['best_value'])}</td><td>{_num(r['test_top1'])}</td>"
        + (f"<td>{_e(_spread(r.get('seeds')))}</td>" if seeded else "")
        + f"<td>{_num(r['mean'])} [{_num(r['min'])}, {_num(r['max'])}]</td>"
        f"<td>{r['count'] + r['n_pruned'] + r['n_failed']} ({r['count']}/{r['n_pruned']}/{r['n_failed']})</td>"
        f'<td class="text">{"#" + str(r["trial"]) if r["trial"] is not None else ""}</td></tr>'
        for r in scale
    ]
    configurations = [
        f"{s}: at {c}" for s, c in dict.fromkeys((r["study"], r.get("configuration")) for r in scale) if c
    ]
    page.add(
        '<h2 id="scale">Data scale</h2>',
        *(f'<p class="meta">{_e(text)}</p>' for text in configurations),
        _table(columns, body, "scale", text_columns=(0, len(columns) - 1)),
    )
    if any(r["count"] for r in scale):
        page.figure(figures.scale_figure(scale))
    else:
        page.add('<p class="note">No complete SimCLR trial yet: no curve.</p>')


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f} min"


def _timing(page: _Page, timing: dict[str, Any]) -> None:
    budget = timing["budget_s"]
    cuts = "; ".join(timing["cuts"]) or "nothing (the preset's full plan fits)"
    workers, took = timing.get("workers", 1), _minutes(timing["actual_s"])
    shared = f" of work, {timing.get('path', '').removeprefix('on ')}" if workers > 1 else ""
    ran = f"{took} of worker time" if workers > 1 else f"{took} (the studies' runs)"
    lines = [
        f"time budget: {_minutes(budget) if budget else 'none (the preset full plan)'}; cut to fit: {cuts}",
        f"estimated {_minutes(timing['estimate_s'])}{shared} (before pruning); took {ran}, "
        f"{_minutes(timing.get('elapsed_s'))} from the first trial's start to the last one's end; planned on: "
        f"{timing['machine']}",
    ]
    body = [
        f'<tr><td class="text">{_e(r["study"])}</td><td>{_minutes(r["estimate_s"])}</td>'
        f"<td>{_minutes(r['actual_s'])}</td></tr>"
        for r in timing["rows"]
    ]
    page.add(
        '<h2 id="time">Time</h2>',
        *(f'<p class="meta">{_e(line)}</p>' for line in lines),
        _table(["study", "estimated", "actual"], body, "timing", text_columns=(0,)),
    )


def _study(page: _Page, index: int, study: rows.StudyData, importance: dict[str, Any]) -> None:
    summary = rows.study_summary(study)
    counts = summary["counts"]
    facts = [f"objective <b>{_e(study.objective or '?')}</b>"]
    facts += [f"role <b>{_e(study.role)}</b>"] if study.role else []
    facts += [f"encoder <code>{_e(study.encoder)}</code>"] if study.encoder else []
    facts += [
        f"{counts['total']} trials ({counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed, {counts['running']} running)"
    ]
    if summary["best"]:
        best = summary["best"]
        facts.append(f"best #{best['number']}: {_num(best['value'])}")
    page.add(f'<h2 id="study-{index}">Study {_e(study.name)}</h2>', f'<p class="meta">{" · ".join(facts)}</p>')
    notes: list[str] = []  # why a figure is not there, listed under the ones that are
    page.add('<div class="grid">')
    history = study_info.history_info(study)
    if history["numbers"]:
        page.figure(study_figures.history_figure(history))
    else:
        notes.append("No complete trial: no optimisation history.")
    if importance["importances"]:
        page.figure(study_figures.importance_figure(importance), caption=importance.get("caveat"))
    else:
        notes.append(f"Hyperparameter importance omitted: {importance['note']}.")
    parallel = study_info.parallel_info(study)
    if parallel["note"] is None:
        page.figure(study_figures.parallel_figure(parallel))
    else:
        notes.append(f"Parallel coordinates omitted: {parallel['note']}.")
    intermediate = study_info.intermediate_info(study)
    if intermediate["series"]:
        page.figure(study_figures.intermediate_figure(intermediate))
    else:
        notes.append("No intermediate values reported.")
    page.add("</div>")
    if notes:
        page.add('<ul class="note">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    page.add(_trial_table(study_info.table_info(study)))


def _trial_table(info: dict[str, Any]) -> str:
    text_columns = {1} | {i for i, c in enumerate(info["columns"]) if c == "error"}
    body = []
    for row in info["rows"]:
        cells = "".join(f"<td>{_cell(v)}</td>" if _is_number(v) else f'<td class="text">{_e(v)}</td>' for v in row)
        body.append(f'<tr class="{_e(row[1])}">{cells}</tr>')
    groups = "".join(f'<th colspan="{n}" class="text">{_e(name)}</th>' for name, n in info["groups"] if n)
    table = _table(info["columns"], body, "trials", text_columns=text_columns)
    return f'<div class="scroll">{table.replace("<thead>", f"<thead><tr>{groups}</tr>", 1)}</div>'


# ----------------------------------------------------------------------------------------------- cells


def _table(columns: Sequence[str], body: list[str], cls: str, text_columns: Sequence[int] | set[int] = ()) -> str:
    head = "".join(
        f'<th class="text">{_e(c)}</th>' if i in text_columns else f"<th>{_e(c)}</th>" for i, c in enumerate(columns)
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _num(value: float | int | None, sign: str = "") -> str:
    if value is None:
        return "&mdash;"
    if isinstance(value, int):
        return f"{value:{sign}d}"
    return f"{value:{sign}.2f}"


def _ci(interval: Sequence[float] | None, sign: str = "") -> str:
    """ " [low, high]" of a 95% interval, to one decimal, under the number (a narrow column); "" without one."""
    return "" if interval is None else f' <span class="ci">[{interval[0]:{sign}.1f}, {interval[1]:{sign}.1f}]</span>'


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _cell(value: float | int | None) -> str:
    """Numbers compactly: 2 decimals from 1 up, 4 significant digits below (learning rates)."""
    if value is None:
        return ""
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4g}"
