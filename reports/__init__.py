"""Read-only reports over the store: tidy rows (`rows.py`) -> plotly figures (`figures.py`) -> one HTML file.

    report = build_report(storage, ["simclr-scale", "probe-imagenet"])   # or None for every study
    report.to_json()            # the numbers, for `study.py report --json`
    report.write_html("report.html")

Importing this package loads neither plotly nor torch; plotly is imported by `write_html` only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from reports import rows
from reports.rows import StudyData

__all__ = ["Report", "build_report", "report_json", "storage_label"]


@dataclass
class Report:
    """Everything the report shows, computed once from studies read once."""

    studies: list[StudyData]
    storage: str  # the store's URL with any password masked
    created: datetime
    comparison: list[dict[str, Any]]
    scale: list[dict[str, Any]]
    importances: dict[str, dict[str, Any]] = field(default_factory=dict)  # study name -> rows.importance_info

    @property
    def has_comparison(self) -> bool:
        return any(s.regime in rows.REGIMES for s in self.studies)

    def summaries(self) -> list[dict[str, Any]]:
        return [rows.study_summary(s, self.importances[s.name]) for s in self.studies]

    def to_json(self, *, trials: bool = False) -> dict[str, Any]:
        """Plain JSON-able numbers (non-finite floats as None); `trials=True` adds every trial's tidy row."""
        out: dict[str, Any] = {
            "created": self.created.isoformat(timespec="seconds"),
            "storage": self.storage,
            "studies": self.summaries(),
            "comparison": self.comparison if self.has_comparison else [],
            "scale": self.scale,
        }
        if trials:
            out["trials"] = rows.trial_rows(self.studies)
        return _finite_json(out)

    def write_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML page (plotly.js inlined once); returns the path."""
        from reports.html import write_html  # plotly only when a page is written

        return write_html(self, path)


def build_report(
    storage: str | BaseStorage, study_names: Sequence[str] | None = None, *, url: str | None = None
) -> Report:
    """Read the studies (all when `study_names` is None) once and compute every table of the report.

    `storage` is a storage URL or an opened optuna storage; `url` is what the header shows (default: the URL,
    or the storage's own URL where it has one), password masked. Unknown study names raise UserError.
    """
    studies = rows.load_studies(storage, study_names)
    studies.sort(key=_section_order)
    return Report(
        studies=studies,
        storage=storage_label(url or (storage if isinstance(storage, str) else _url_of(storage))),
        created=datetime.now(timezone.utc),
        comparison=rows.comparison_rows(studies),
        scale=rows.scale_rows(studies),
        importances={s.name: rows.importance_info(s) for s in studies},
    )


def report_json(storage: str | BaseStorage, study_names: Sequence[str] | None = None, **kwargs: Any) -> dict:
    return build_report(storage, study_names).to_json(**kwargs)


def storage_label(url: str) -> str:
    """The URL with its password replaced by ***, so a report can be shared."""
    return re.sub(r"(//[^/:@]*:)[^/@]*@", r"\1***@", url)


def _url_of(storage: BaseStorage) -> str:
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a cache layer
    return str(getattr(backend, "url", type(backend).__name__))


_ORDER = [*rows.SIMCLR_ROLES, *rows.REGIMES]  # pretraining first, then what is compared


def _section_order(study: StudyData) -> tuple[int, str]:
    regime = study.regime
    return (_ORDER.index(regime) if regime in _ORDER else len(_ORDER), study.name)


def _finite_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value
