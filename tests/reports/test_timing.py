"""The report's time section: budget, cuts, estimate vs actual per study, from the studies' attrs."""

from __future__ import annotations

import json
from html import unescape

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
    html = unescape("".join(page.parts))
    assert "time budget: 15.0 min; cut to fit: SimCLR epochs 5 -> 3" in html
    assert "estimated 9.0 min (before pruning); took 8.8 min (the studies' runs)" in html
    assert "<td>5.0 min</td><td>5.5 min</td>" in html


def test_several_workers_report_worker_time_and_the_comparisons_wall_time():
    """With three workers the studies' run times add up to worker time; the wall time is the span of the trials."""
    import datetime

    import optuna

    plan = {
        **PLAN,
        "workers": 3,
        "path": "  on 3 workers: ~3.0 min (...); critical path scale -> seeds-scale: ~2.5 min",
    }
    start = datetime.datetime(2026, 1, 1, 12, 0, 0)

    def trial(begin: int, end: int) -> optuna.trial.FrozenTrial:
        t = optuna.trial.create_trial(value=1.0)
        t.datetime_start = start + datetime.timedelta(seconds=begin)
        t.datetime_complete = start + datetime.timedelta(seconds=end)
        return t

    studies = [
        StudyData(
            "c-scale", {schema.TIME_PLAN: json.dumps(plan), schema.WALL_SECONDS: 330.0}, "maximize", [trial(0, 300)]
        ),
        StudyData("c-scratch", {schema.WALL_SECONDS: 200.0}, "maximize", [trial(10, 200), trial(20, 240)]),
    ]
    info = timing_info(studies)
    assert info["workers"] == 3 and info["elapsed_s"] == 300.0 and info["actual_s"] == 530.0
    page = _Page()
    _timing(page, info)
    html = unescape("".join(page.parts))
    assert "estimated 9.0 min of work, 3 workers: ~3.0 min (...); critical path scale -> seeds-scale" in html
    assert "took 8.8 min of worker time, 5.0 min from the first trial's start to the last one's end" in html


def test_no_time_plan_no_section():
    assert timing_info([_study("a"), _study("b", **{schema.TIME_PLAN: "not json"})]) is None
