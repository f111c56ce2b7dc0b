"""What people browsing the store with optuna-dashboard see: the comparison as a note, the scale curve as a figure.

The only module of reports/ that writes to the store, and it writes study *system* attrs only, through
optuna-dashboard's own API (0.21: `save_note(study_or_trial, body)`, `save_plotly_graph_object(study, figure, *,
graph_object_id=None) -> str`); trials are never touched. The note keeps whatever a person wrote in it: only the
block between our start and end lines is replaced. The figure has a fixed id, so a new report overwrites it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage

from errors import UserError
from reports import rows, scale
from reports.text import COMPARISON_RULE
from storage import open_storage

if TYPE_CHECKING:
    from reports.report import Report

NOTE_START = "### Comparison (written by study.py)"
NOTE_END = "_End of the comparison written by study.py; text outside this block is kept._"
SCALE_FIGURE_ID = "simclr-study-scale-curve"


def md_text(value: Any) -> str:
    """Store text as literal Markdown: every ASCII punctuation mark backslash-escaped (CommonMark), one line."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(str(value).split()))


def comparison_markdown(report: Report) -> str:
    """The comparison table as a Markdown block (between NOTE_START and NOTE_END)."""
    lines = [
        NOTE_START,
        "",
        f"Made {report.created.strftime('%Y-%m-%d %H:%M UTC')}. {md_text(COMPARISON_RULE)} "
        "Gain = test top-1 minus from-scratch test top-1, in points.",
        "",
        "| regime | test top-1 [95% CI] | test top-5 | gain (pts) [95% CI] | val top-1 (final epoch) | best trial "
        "| trials (complete/pruned/failed) |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in report.comparison:
        counts = f"{r['n_trials']} ({r['n_complete']}/{r['n_pruned']}/{r['n_failed']})"
        if r["status"] != "ok":
            lines.append(f"| {md_text(r['label'])} | missing: {md_text(r['reason'])} | | | | | {counts} |")
            continue
        gain = "reference" if r["regime"] == rows.SCRATCH else _num(r["gain_top1"], "+") + _ci(r["gain_top1_ci"], "+")
        best = f"{md_text(r['study'])} \\#{r['trial']}"
        test = _num(r["test_top1"]) + _ci(r["test_top1_ci"])
        lines.append(
            f"| {md_text(r['label'])} | {test} | {_num(r['test_top5'])} | {gain} | {_num(r['val_top1'])} | {best} | "
            f"{counts} |"
        )
    return "\n".join([*lines, "", NOTE_END])


def merge_note(existing: str, block: str) -> str:
    """Replace our block in a note (or append it), keeping everything else a person wrote."""
    start, end = existing.find(NOTE_START), existing.find(NOTE_END)
    if start >= 0 and end > start:
        return existing[:start] + block + existing[end + len(NOTE_END) :]
    return f"{existing.rstrip()}\n\n{block}" if existing.strip() else block


def save_to_dashboard(storage: str | BaseStorage, report: Report) -> dict[str, list[str]]:
    """Write the comparison note on every study playing a regime and the scale curve on every scale study.

    Returns {"notes": [study names], "figures": [study names]}. `report` must have been built from `storage`.
    """
    import optuna_dashboard  # imported here: `report --json` needs neither it nor plotly

    from reports import figures

    storage = open_storage(storage) if isinstance(storage, str) else storage
    written: dict[str, list[str]] = {"notes": [], "figures": []}
    if report.has_comparison:
        block = comparison_markdown(report)
        for study in (s for s in report.studies if s.regime in rows.REGIMES):
            handle = optuna.load_study(study_name=study.name, storage=storage)
            optuna_dashboard.save_note(handle, merge_note(optuna_dashboard.get_note(handle), block))
            written["notes"].append(study.name)
    if any(r["count"] for r in report.scale):
        figure = figures.scale_figure(report.scale)
        for study in scale.scale_studies(report.studies):
            handle = optuna.load_study(study_name=study.name, storage=storage)
            optuna_dashboard.save_plotly_graph_object(handle, figure, graph_object_id=SCALE_FIGURE_ID)
            written["figures"].append(study.name)
    return written


def _num(value: float | None, sign: str = "") -> str:
    return "n/a" if value is None else f"{value:{sign}.2f}"


def _ci(interval: list[float] | None, sign: str = "") -> str:
    return "" if interval is None else f" \\[{interval[0]:{sign}.1f}, {interval[1]:{sign}.1f}\\]"


def serve(url: str | None, artifacts_dir: str | None, *, host: str, port: int, say) -> None:
    """Run optuna-dashboard on the store at `url` (never creating one) until Ctrl-C; UserError on a bad port."""
    import optuna_dashboard

    from storage import display_url, open_artifacts, resolve_url

    if not 0 < port < 65536:
        raise UserError(f"--port {port}: must be in 1-65535")
    check_port(host, port)
    storage = open_storage(url)  # refuses a store that does not exist (never creates an empty one)
    artifacts = open_artifacts(url, artifacts_dir, create=False)
    say(f"optuna-dashboard for {display_url(resolve_url(url))} on http://{host}:{port}/ (Ctrl-C stops)")
    try:
        optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=artifacts)
    except OSError as e:
        raise UserError(f"dashboard cannot listen on {host}:{port} ({e.strerror or e})") from None


def check_port(host: str, port: int) -> None:
    """Bind host:port as the dashboard's server will (wsgiref through bottle: SO_REUSEADDR, IPv6 for a host with a
    colon) and let it go: a busy port is one line before anything is printed, not an error after bottle's
    "Listening on ..."."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} is in use on {host} (another dashboard?); choose another: --port N"
                ) from None
            raise UserError(f"dashboard cannot listen on {host}:{port} ({e.strerror or e})") from None
