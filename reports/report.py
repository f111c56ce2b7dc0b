"""The report's contents: everything it shows, computed once (reports.build_report) from studies read once;
`to_json` gives the numbers, `reports.write_html` the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reports import rows
from reports.rows import StudyData, json_safe


@dataclass
class Report:
    """Everything the report shows, computed once from studies read once."""

    studies: list[StudyData]
    storage: str  # the store's URL with any password masked
    created: datetime
    comparison: list[dict[str, Any]]
    scale: list[dict[str, Any]]
    importances: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> study_info.importance_info
    timing: dict[str, Any] | None = None  # reports.timing.timing_info: budget, plan, estimated and actual time
    labels: list[dict[str, Any]] = field(default_factory=list)  # reports.labels.label_rows: label-efficiency points
    scaling: list[dict[str, Any]] = field(default_factory=list)  # reports.prediction.scaling_rows: the fitted laws
    compute: list[dict[str, Any]] = field(default_factory=list)  # reports.compute.compute_rows: accuracy vs cost

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
            "labels": self.labels,
            "scaling": self.scaling,
            "compute": self.compute,
            "timing": self.timing,
        }
        if trials:
            out["trials"] = rows.trial_rows(self.studies)
        return json_safe(out)
