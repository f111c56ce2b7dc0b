"""One study's figures (reports/study_figures.py) and what their data says (study_info.reported_metric): log axes
of the parallel coordinates span whole decades with the colour bar clear of the last axis; the intermediate values
are labelled with the metric the objective reported."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from reports import study_figures, study_info
from reports.rows import StudyData


def _trial(reported: dict[int, float], history: list[dict] | None, state=TrialState.COMPLETE, params=None):
    last = reported[max(reported)] if reported else None
    dists = {k: FloatDistribution(1e-6, 10.0, log=True) for k in params or {}}
    return create_trial(
        state=state,
        value=last if state == TrialState.COMPLETE else None,
        params=params or {},
        distributions=dists,
        user_attrs={} if history is None else {"history": history},
        intermediate_values=reported,
    )


def _epochs(key: str, values: list[float], **other: float) -> list[dict]:
    """A stored history (rounded to 6 decimals, as objectives.common keeps it) whose `key` was reported."""
    return [{"epoch": e, "loss": 4.0 - e, "lr": 0.3, key: v, **other, "step": 10 * e} for e, v in enumerate(values, 1)]


def _study(*trials, objective: str = "simclr") -> StudyData:
    return StudyData("s", {"objective": objective}, "maximize", list(trials))


KNN = _trial({1: 12.3457, 2: 20.0}, _epochs("knn_top1", [12.345678, 20.0], val_top1=5.0))
VAL = _trial({1: 30.1, 2: 31.25}, _epochs("val_top1", [30.1, 31.25]))
PRUNED_KNN = _trial({1: 8.5}, _epochs("knn_top1", [8.5, 9.0]), TrialState.PRUNED)  # pruned: its last epoch unreported


@pytest.mark.parametrize(
    "trials, metric, y_title",
    [
        ((KNN, PRUNED_KNN), "knn_top1", "kNN top-1 (%)"),  # SimCLR (and the same-data supervised arm)
        ((VAL,), "val_top1", "val top-1 (%)"),  # probes, supervised, fine-tuning
        ((KNN, VAL), None, "reported value"),  # the trials disagree: the store does not say
        ((_trial({1: 3.0}, None),), None, "reported value"),  # an older store: no history
        ((_trial({5: 3.0}, _epochs("val_top1", [3.0])),), None, "reported value"),  # step 5 is not in the history
        ((_trial({1: 0.5}, _epochs("score", [0.5])),), "score", "score"),  # another objective's own monitor
    ],
)
def test_intermediate_values_are_labelled_with_what_the_trials_reported(trials, metric, y_title):
    info = study_info.intermediate_info(_study(*trials))
    assert info["metric"] == metric
    assert study_figures.intermediate_figure(info).layout.yaxis.title.text == y_title


def test_a_reported_metric_never_matches_a_key_that_differs_at_one_step():
    """loss, lr and the other monitor are not what was reported; one differing step rules a key out."""
    close = _trial({1: 12.3457, 2: 20.0}, _epochs("knn_top1", [12.345678, 20.0002]))
    assert study_info.reported_metric(_study(close)) is None
    assert study_info.reported_metric(_study(KNN)) == "knn_top1"  # 12.345678 was reported as 12.3457


@pytest.mark.parametrize(
    "values, axis",
    [
        ([2e-4, 0.05, 1.6], (-4, 1)),  # lr from 2e-4 to 1.6: 1e-4 .. 1e1, both ends drawn on the axis
        ([1e-3, 0.01], (-3, -2)),  # exact powers of ten end the axis
        ([0.01, 0.01], (-2, -1)),  # one value: still one decade long
    ],
)
def test_log_axes_span_whole_decades_so_their_end_ticks_are_on_the_axis(values, axis):
    trials = [_trial({1: 10.0 + k}, None, params={"lr": v, "wd": 1e-5}) for k, v in enumerate(values)]
    fig = study_figures.parallel_figure(study_info.parallel_info(_study(*trials)))
    objective, lr, wd = fig.data[0].dimensions
    assert lr.label == "lr (log)" and tuple(lr.range) == axis
    assert (lr.tickvals[0], lr.tickvals[-1]) == axis and list(lr.ticktext) == [f"1e{k}" for k in lr.tickvals]
    assert all(axis[0] <= math.log10(v) <= axis[1] for v in values)
    assert tuple(wd.range) == (-5, -4)
    assert objective.range is None  # the objective's own axis: plotly's, with its min and max written at the ends


def test_the_colour_bar_is_clear_of_the_last_axis():
    trials = [_trial({1: 10.0 + k}, None, params={"lr": v}) for k, v in enumerate([1e-3, 0.1])]
    fig = study_figures.parallel_figure(study_info.parallel_info(_study(*trials)))
    trace = fig.data[0]
    axes_end, bar_x = trace.domain.x[1], trace.line.colorbar.x
    assert trace.line.showscale and trace.line.colorbar.title.text == "objective"
    assert bar_x - axes_end >= 0.05  # paper widths: the last axis's label is centred on it, half outside
    assert fig.layout.margin.t >= 80 and fig.layout.title.yanchor == "top"  # title, then axis titles and top ticks
