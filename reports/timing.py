"""The time a comparison was planned to take and took: its `--time-budget`, the plan sized to fit it (what was
cut), the estimate per study and the wall time measured (study attrs `time_plan` and `wall_seconds`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reports.rows import StudyData
from storage import schema


def elapsed_seconds(studies: Sequence[StudyData]) -> float | None:
    """From the first trial's start to the last trial's end, over the studies: the comparison's wall time however
    many workers ran it (None when no trial finished)."""
    starts = [t.datetime_start for s in studies for t in s.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for s in studies for t in s.trials if t.datetime_complete is not None]
    if not starts or not ends:
        return None
    return max(0.0, (max(ends) - min(starts)).total_seconds())


def timing_info(studies: Sequence[StudyData]) -> dict[str, Any] | None:
    """{budget_s, cuts, knobs, machine, workers, path, elapsed_s, rows: [{study, estimate_s, actual_s}], estimate_s,
    actual_s}, or None when no study carries a time plan (studies made outside `compare`, or before it sized plans).
    `actual_s` sums each study's run time over every compare run and worker that ran it: with several workers it is
    worker time; `elapsed_s` is the wall time."""
    plan = None
    for study in studies:
        try:
            plan = json.loads(study.user_attrs.get(schema.TIME_PLAN) or "null")
        except ValueError:
            plan = None
        if isinstance(plan, dict):
            break
    if not isinstance(plan, dict):
        return None
    estimates = plan.get("estimate_s") or {}
    rows = []
    for study in studies:
        actual = study.user_attrs.get(schema.WALL_SECONDS)
        estimate = estimates.get(study.name)
        if estimate is None and actual is None:
            continue
        rows.append({"study": study.name, "estimate_s": estimate, "actual_s": actual})
    actual = [r["actual_s"] for r in rows if isinstance(r["actual_s"], (int, float))]
    workers = int(plan.get("workers") or 1)
    return {
        "workers": workers,
        "path": str(plan.get("path") or "").strip(),  # the estimate on the workers planned for, and the critical path
        "elapsed_s": elapsed_seconds(studies),
        "budget_s": plan.get("budget_s"),
        "cuts": list(plan.get("cuts") or []),
        "knobs": plan.get("knobs") or {},
        "machine": plan.get("machine") or "",
        "rows": rows,
        "estimate_s": sum(float(v) for v in estimates.values()),
        "actual_s": sum(actual) if actual else None,
    }
