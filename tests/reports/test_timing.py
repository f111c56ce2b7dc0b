"""The report's time section: budget, cuts, estimate vs actual per study, from the studies' attrs."""

from __future__ import annotations

import json

from reports.html import _Page, _timing
from reports.rows import StudyData
from reports.timing import timing_info
from storage import schema

PLAN = {
    "budget_s": 900.0,
    "cuts": ["SimCLR epochs 5 -> 3"],
    "knobs": {"simclr_epochs": 3},
    "estimate_s": {"c-scale": 300.0, "c-scratch": 240.0, "c-seeds-*": 0.0},
    "machine": "Xeon",
}


def _study(name: str, **attrs) -> StudyData:
    return StudyData(name=name, user_attrs=attrs, direction="maximize")


def test_timing_info_sums_estimates_and_wall_times():
    studies = [
        _study("c-scale", **{schema.TIME_PLAN: json.dumps(PLAN), schema.WALL_SECONDS: 330.0}),
        _study("c-scratch", **{schema.TIME_PLAN: json.dumps(PLAN), schema.WALL_SECONDS: 200.0}),
        _study("other"),
    ]
    info = timing_info(studies)
    assert info["budget_s"] == 900.0 and info["cuts"] == ["SimCLR epochs 5 -> 3"]
    assert info["rows"] == [
        {"study": "c-scale", "estimate_s": 300.0, "actual_s": 330.0},
        {"study": "c-scratch", "estimate_s": 240.0, "actual_s": 200.0},
    ]
    assert info["estimate_s"] == 540.0 and info["actual_s"] == 530.0
    page = _Page()
    _timing(page, info)
    html = "".join(page.parts)
    assert "time budget: 15.0 min; cut to fit: SimCLR epochs 5 -&gt; 3" in html
    assert "estimated 9.0 min (before pruning), took 8.8 min" in html
    assert "<td>5.0 min</td><td>5.5 min</td>" in html


def test_no_time_plan_no_section():
    assert timing_info([_study("a"), _study("b", **{schema.TIME_PLAN: "not json"})]) is None
