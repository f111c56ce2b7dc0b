"""Read-only reports over the store: tidy rows (`rows.py`, `scale.py`, `labels.py`) -> plotly figures -> one HTML file.

    report = build_report(storage, ["simclr-scale", "probe-imagenet"])   # or None for every study
    report.to_json()            # the numbers, for `study.py report --json`
    reports.write_html(report, "report.html")

`study_list`, `study_details` (reports/listing.py) are what `study.py list` and `show` print (`reports/text.py`
formats them); `json_safe` makes any of these strict JSON. Importing this package loads neither plotly nor
torch; plotly is imported by `write_html` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from errors import UserError
from reports import compute, labels, prediction, rows, scale, study_info
from reports.listing import study_details, study_list
from reports.report import Report
from reports.rows import StudyData, json_safe
from reports.timing import timing_info
from storage import display_url
from storage.optuna_private import storage_url

__all__ = ["Report", "build_report", "json_safe", "report_json", "study_details", "study_list", "write_html"]


def write_html(report: Report, path: str | Path) -> Path:
    """Write the self-contained HTML page (plotly.js inlined once); returns the path."""
    from reports import html  # plotly only when a page is written

    return html.write_html(report, path)


def check_out(out: str) -> None:
    """An output file name whose directory exists (checked before anything is read or run)."""
    path = Path(out)
    if not out.strip() or path.name in ("", "..") or path.is_dir():
        raise UserError(f"--out {out!r}: give a file name, e.g. --out report.html")
    if not path.parent.is_dir():
        raise UserError(f"--out {out}: directory {path.parent} does not exist")


def write(report: Report, path: str | Path) -> Path:
    """Write the report's HTML page; the absolute path. UserError when the file cannot be written (the results
    stay in the store: `study.py report` writes the page again)."""
    try:
        return write_html(report, path).resolve()
    except OSError as e:  # read-only directory, full disk
        raise UserError(f"cannot write {path}: {e.strerror or e} (the results are stored: study.py report)") from None


def build_report(
    storage: str | BaseStorage,
    study_names: Sequence[str] | None = None,
    *,
    url: str | None = None,
    comparison: str | None = None,
) -> Report:
    """Read the studies (all when `study_names` is None) once and compute every table of the report.

    `storage` is a storage URL (opened read-only) or an opened optuna storage; `url` is what the header shows
    (default: the URL, or the storage's own URL where it has one, else its class), password masked. `comparison`
    keeps only the studies of that comparison (`compare --prefix`). Unknown study names or comparisons raise
    UserError.
    """
    studies = rows.load_studies(storage, study_names)
    if comparison is not None:
        studies = _of_comparison(studies, comparison)
    studies.sort(key=_section_order)
    comparison_rows = rows.comparisons(studies)
    shown = url or (storage if isinstance(storage, str) else storage_url(storage) or type(storage).__name__)
    return Report(
        studies=studies,
        storage=display_url(shown),
        created=datetime.now(timezone.utc),
        comparison=comparison_rows,
        scale=scale.scale_rows(studies),
        labels=labels.label_rows(studies, comparison_rows),
        scaling=prediction.scaling_rows(studies, comparison_rows),
        compute=compute.compute_rows(studies, comparison_rows),
        importances={s.name: study_info.importance_info(s) for s in studies},
        timing=timing_info(studies),
    )


def report_json(storage: str | BaseStorage, study_names: Sequence[str] | None = None, **kwargs: Any) -> dict:
    return build_report(storage, study_names).to_json(**kwargs)


def _of_comparison(studies: list[StudyData], prefix: str) -> list[StudyData]:
    kept = [s for s in studies if rows.comparison_of(s) == prefix]
    if not kept:
        held = sorted({rows.comparison_of(s) for s in studies} - {""})
        raise UserError(f"no study of comparison {prefix!r} in the store (comparisons: {', '.join(held) or 'none'})")
    return kept


_ORDER = [*rows.SIMCLR_ROLES, *rows.REGIMES]  # pretraining first, then what is compared


def _section_order(study: StudyData) -> tuple[int, str]:
    regime = study.regime
    return (_ORDER.index(regime) if regime in _ORDER else len(_ORDER), study.name)
