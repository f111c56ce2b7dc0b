"""The written page: one plotly.js, nothing external, store text escaped, fast over 1,000 trials."""

from __future__ import annotations

import html
import json
import re
import time

import optuna
import plotly
import plotly.offline
import pytest

import reports
from reports.html import script_json
from storage import schema
from tests.helpers import check_refused, run_cli
from tests.reports import stores

PLOTLY_JS = plotly.offline.get_plotlyjs()
MARKER = f"plotly.js v{PLOTLY_JS.split('plotly.js v', 1)[1].split()[0]}"  # the library's banner, e.g. v4.1.1


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    url = f"sqlite:///{root / 'studies.db'}"
    stores.fill_comparison(url)
    path = reports.write_html(reports.build_report(url), root / "report.html")
    return path.read_text(encoding="utf-8")


def own_markup(text: str) -> str:
    """The page without the inlined library: what this project wrote."""
    assert text.count(PLOTLY_JS) == 1
    return text.replace(PLOTLY_JS, "")


def test_plotly_js_inlined_exactly_once(page):
    assert PLOTLY_JS.count(MARKER) == 1
    assert page.count(MARKER) == 1
    assert len(PLOTLY_JS) < len(page) < len(PLOTLY_JS) + 1_000_000  # ~4.8 MB library + a few hundred kB


def test_nothing_external(page):
    mine = own_markup(page)
    assert not re.search(r"https?://", mine), re.search(r".{60}https?://.{60}", mine)
    assert not re.search(r"<(link|iframe|img|embed|object)\b", mine, re.IGNORECASE)
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    # (the library's own source names tile servers and plotly.com in strings that only map traces and the
    # hidden logo use; the CSP below makes even those unreachable)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", mine, re.IGNORECASE)
    assert "@import" not in mine and "url(" not in mine
    assert "Content-Security-Policy\" content=\"default-src 'none';" in page  # the browser refuses any fetch


def test_store_text_is_escaped(page):
    mine = own_markup(page)
    assert "Study &lt;img src=x onerror=alert(1)&gt;</h2>" in mine
    assert "<img src=x" not in mine
    assert "<script>alert" not in mine and "alert(2)</script>" not in mine
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in mine  # the failed trial's error attr, as text
    # every <script> is ours: the library plus one per figure, none injected by a name or a choice
    assert mine.count("<script") == 1 + mine.count('<div class="figure" id="figure-')


@pytest.mark.parametrize("text", ["</script><img src=x>", "a & b <!-- c -->", "\u2028line\u2029"])
def test_script_json_cannot_end_a_script(text):
    encoded = script_json(json.dumps({"name": text}))
    assert "<" not in encoded and ">" not in encoded and "&" not in encoded
    assert json.loads(encoded) == {"name": text}


def test_figures_of_every_section(page):
    figures = re.findall(r'<div class="figure" id="(figure-\d+)">', page)
    assert figures == [f"figure-{i}" for i in range(len(figures))]
    assert page.count("Plotly.newPlot(") == len(figures)
    # comparison + scale + the scale law and accuracy against compute + simclr-scale (history, intermediate) +
    # evil study (history, parallel, intermediate) + probe-simclr (history, intermediate) + imagenet-a/b,
    # scratch, finetune (history, intermediate each); no study has the trials importances need
    assert len(figures) == 2 + 2 + 2 + 3 + 2 + 4 * 2
    assert '<h2 id="prediction">' in page and '<h2 id="compute">' in page
    assert "Hyperparameter importance omitted: too few trials for importances (3 complete;" in page
    assert '<table class="comparison">' in page and '<table class="scale">' in page
    assert "missing: no complete trial; last failure (probe-random #1): CUDA out of memory" in page


@pytest.mark.slow
def test_thousand_trials_written_fast(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    stores.fill_large(storage, n_trials=1000, n_studies=4)  # creating 1,000 SQLite trials takes ~25 s here
    stores.fill_comparison(storage)
    start = time.perf_counter()
    report = reports.build_report(storage, url="journal")
    path = reports.write_html(report, tmp_path / "report.html")
    seconds = time.perf_counter() - start
    assert seconds < 10.0, seconds
    print(f"1,023 trials: report built and written in {seconds:.1f} s")
    text = path.read_text(encoding="utf-8")
    assert sum(s["counts"]["total"] for s in report.to_json()["studies"]) == 1000 + 23
    # 4 large scale studies x 5 figures (their own 4 and their scale law), plus the comparison store's 19
    assert text.count('<div class="figure" id="figure-') == 4 * 5 + 19
    assert text.count(MARKER) == 1
    assert len(text) < len(PLOTLY_JS) + 4_000_000


def test_user_made_studies_of_every_shape(tmp_path):
    """Empty, multi-objective, minimizing and running studies: the page is written, nothing is invented."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="empty")
    multi = optuna.create_study(storage=storage, study_name="multi", directions=["maximize", "minimize"])
    minimize = optuna.create_study(storage=storage, study_name="minimize", direction="minimize")
    x = optuna.distributions.FloatDistribution(0, 1)
    for value in (3.0, 1.0, 2.0):
        multi.add_trial(
            optuna.trial.create_trial(values=[value, -value], params={"x": value / 3}, distributions={"x": x})
        )
        minimize.add_trial(optuna.trial.create_trial(value=value, params={"x": value / 3}, distributions={"x": x}))
    minimize.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params={"x": 0.5}, distributions={"x": x})
    )
    report = reports.build_report(storage, url="memory")
    data = report.to_json(trials=True)
    json.dumps(data, allow_nan=False)
    summaries = {s["study"]: s for s in data["studies"]}
    assert summaries["empty"]["best"] is None and summaries["empty"]["counts"]["total"] == 0
    assert summaries["minimize"]["best"]["value"] == 1.0 and summaries["minimize"]["counts"]["running"] == 1
    assert summaries["multi"]["importance_note"].startswith("multi-objective")
    assert data["comparison"] == [] and data["scale"] == []
    text = reports.write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Comparison</h2>" not in text and "Study empty</h2>" in text


def test_comparison_shows_intervals_and_says_the_rule(page):
    mine = own_markup(page)
    by_regime = {r["regime"]: r for r in stores.EXPECTED_COMPARISON}
    simclr, scratch = by_regime["probe_simclr"], by_regime["scratch"]
    low, high = simclr["test_top1_ci"]
    gain_low, gain_high = simclr["gain_top1_ci"]
    assert f'<td>42.00 <span class="ci">[{low:.1f}, {high:.1f}]</span></td>' in mine
    assert f'<td>+13.50 <span class="ci">[{gain_low:+.1f}, {gain_high:+.1f}]</span></td>' in mine
    assert f'<td>28.50 <span class="ci">[{scratch["test_top1_ci"][0]:.1f}, ' in mine
    assert "<td>51.00</td>" in mine  # the ImageNet probe stored no per-image hits: no interval
    assert "<th>test top-1 [95% CI]</th>" in mine and "<th>val top-1 (final epoch)</th>" in mine
    assert "val top-1: the final epoch&#x27;s, in every regime" in mine and "95% bootstrap interval" in mine
    assert schema.pack_correct(stores.SIMCLR_HITS) not in mine  # the bits stay out of the trial table


def test_comparison_figure_whiskers_where_an_interval_is_known():
    from reports import figures

    fig = figures.comparison_figure(stores.EXPECTED_COMPARISON)
    (whiskers,) = [t for t in fig.data if t.name == "95% interval"]
    simclr = stores.EXPECTED_COMPARISON[0]
    with_hits = [r for r in stores.EXPECTED_COMPARISON if r["test_top1_ci"] is not None]
    expected = [html.escape(r["label"]) for r in with_hits]  # labels are escaped for plotly
    assert list(whiskers.x) == expected  # not ImageNet: it stored no per-image hits
    assert whiskers.error_y.arrayminus[0] == pytest.approx(42.0 - simclr["test_top1_ci"][0])
    assert whiskers.error_y.array[0] == pytest.approx(simclr["test_top1_ci"][1] - 42.0)


def test_comparison_figure_labels_sit_above_the_error_bars_not_across_them():
    """Each value label is anchored at the top of its whisker (of its bar where there is none), written upwards,
    with room for it under the top of the y axis; the bars carry no text of their own."""
    from reports import figures

    fig = figures.comparison_figure(stores.EXPECTED_COMPARISON)
    (bars,) = [t for t in fig.data if t.type == "bar"]
    (whiskers,) = [t for t in fig.data if t.name == "95% interval"]
    (labels,) = [t for t in fig.data if t.name == "value"]
    assert bars.text is None and labels.textposition == "top center" and "text" in labels.mode
    tops = {x: y + up for x, y, up in zip(whiskers.x, whiskers.y, whiskers.error_y.array, strict=True)}
    at = dict(zip(labels.x, labels.y, strict=True))
    shown = {html.escape(r["label"]): r for r in stores.EXPECTED_COMPARISON if r["test_top1"] is not None}
    assert set(at) == set(shown) and set(tops) < set(at)  # ImageNet's probe has a label and no whisker
    for label, row in shown.items():
        assert at[label] == pytest.approx(tops.get(label, row["test_top1"])), label
    simclr = html.escape(stores.EXPECTED_COMPARISON[0]["label"])
    assert at[simclr] > stores.EXPECTED_COMPARISON[0]["test_top1"]  # its interval reaches above the bar
    assert fig.layout.yaxis.range[1] >= 1.25 * max(at.values())


def test_missing_regime_in_words(page):
    mine = own_markup(page)
    assert "no study (role" not in mine
    assert '<td class="status">missing: no complete trial; last failure (probe-random #1)' in mine


def test_scale_figure_one_curve_per_study():
    from reports import figures

    row = {"n_pretrain_images": 5000, "count": 1, "n_pruned": 0, "n_failed": 0, "test_top1": None, "trial": 0}
    scale = [
        {**row, "study": "a", "data_fraction": 0.1, "best_value": 30.0, "mean": 30.0, "min": 30.0, "max": 30.0},
        {
            **row,
            "study": "a",
            "data_fraction": 0.5,
            "n_pretrain_images": 25000,
            "best_value": 40.0,
            "mean": 40.0,
            "min": 40.0,
            "max": 40.0,
        },
        {**row, "study": "b", "data_fraction": 0.1, "best_value": 50.0, "mean": 50.0, "min": 50.0, "max": 50.0},
    ]
    best = {t.name: (list(t.x), list(t.y)) for t in figures.scale_figure(scale).data if "val top-1" in t.name}
    assert best == {
        "a: best trial: val top-1": ([5000, 25000], [30.0, 40.0]),
        "b: best trial: val top-1": ([5000], [50.0]),
    }


def test_report_keeps_two_comparisons_apart_and_picks_one(tmp_path):
    """`study.py report` over a store with two comparisons: one section each; `--comparison PREFIX` keeps one;
    an unknown prefix is one line and exit 2."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    storage = optuna.storages.RDBStorage(url)
    for prefix, top1 in (("a", 20.0), ("b", 60.0)):
        played = (
            (f"{prefix}-probe", "probe_random", "linear_probe", top1),
            (f"{prefix}-scratch", "scratch", "supervised", 10.0),
        )
        for name, role, objective, value in played:
            trials = [stores._trial(value=value, test_top1=value)]
            made = stores._study(storage, name, trials, objective=objective, role=role)
            made.set_user_attr(schema.COMPARISON, prefix)
    r = run_cli("report", "--json", "--storage", url)
    rows_ = [(r["comparison"], r["regime"], r["test_top1"]) for r in json.loads(r.out)["comparison"]]
    assert ("a", "probe_random", 20.0) in rows_ and ("b", "probe_random", 60.0) in rows_
    r = run_cli("report", "--comparison", "a", "--json", "--storage", url)
    assert {row["comparison"] for row in json.loads(r.out)["comparison"]} == {"a"}
    assert [s["study"] for s in json.loads(r.out)["studies"]] == ["a-probe", "a-scratch"]
    out = tmp_path / "two.html"
    assert run_cli("report", "--out", out, "--storage", url).rc == 0
    text = out.read_text(encoding="utf-8")
    assert ">Comparison a</h2>" in text and ">Comparison b</h2>" in text
    check_refused(run_cli("report", "--comparison", "zz", "--storage", url), "no study of comparison 'zz'")
