"""The data halves of the report against hand-computed rows (tests/reports/stores.py); no plotly here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

import reports
from comparison import regimes
from errors import UserError
from reports import intervals, rows, scale, study_info
from storage import schema
from tests.reports import stores


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'studies.db'}"
    stores.fill_comparison(url)
    return url


@pytest.fixture(scope="module")
def studies(url):
    return {s.name: s for s in rows.load_studies(url)}


def test_comparison_rows_match_hand_computed(studies):
    got = rows.comparison_rows(list(studies.values()))
    assert [r["regime"] for r in got] == [r["regime"] for r in stores.EXPECTED_COMPARISON]
    for row, expected in zip(got, stores.EXPECTED_COMPARISON, strict=True):
        assert {k: row[k] for k in expected} == expected, row["regime"]  # numbers chosen exact in binary
        assert set(row) - set(expected) == {"seeds", "gain_seeds", "protocol", "resolution"}
        if row["status"] == "ok":  # one run per regime here: one seed, its own test top-1
            assert row["seeds"] == {"n": 1, "mean": row["test_top1"], "sd": None, "ci": None}
            assert row["protocol"]["trials"] == row["n_trials"] and row["protocol"]["labels"]


def test_selection_is_on_validation_not_test(studies):
    simclr = rows.comparison_rows(list(studies.values()))[0]
    # trial #0 has the higher test top-1 (45.0) but the lower validation top-1
    assert (simclr["trial"], simclr["test_top1"]) == (1, 42.0)


def test_comparison_intervals(studies):
    got = {r["regime"]: r for r in rows.comparison_rows(list(studies.values()))}
    simclr, scratch, finetune = got["probe_simclr"], got["scratch"], got["finetune"]
    assert simclr["test_top1_ci"][0] < 42.0 < simclr["test_top1_ci"][1]
    assert simclr["gain_top1_ci"][0] < 13.5 < simclr["gain_top1_ci"][1]
    assert scratch["gain_top1_ci"] == [0.0, 0.0]  # paired with itself
    assert finetune["test_top1_ci"] is not None and finetune["gain_top1_ci"] is None  # 400 images vs 200: unpaired
    assert got["probe_imagenet"]["test_top1_ci"] is None and got["probe_imagenet"]["gain_top1_ci"] is None
    assert got["probe_random"]["test_top1_ci"] is None  # missing regime
    kept = [s for name, s in studies.items() if name != "scratch"]
    assert all(r["gain_top1_ci"] is None for r in rows.comparison_rows(kept))  # no reference, no gain


def scratch_row(trial):
    study = rows.StudyData("s", {"role": "scratch"}, "maximize", [trial])
    return next(r for r in rows.comparison_rows([study]) if r["regime"] == "scratch")


@pytest.mark.parametrize(
    "attrs",
    [
        {"test_top1": 40.0},  # no per-image results
        {"test_top1": 40.0, schema.TEST_CORRECT: "not packed"},  # unreadable
        {"test_top1": 40.0, schema.TEST_CORRECT: schema.pack_correct(np.arange(10) < 5)},  # counts 50%, not 40%
        {schema.TEST_CORRECT: schema.pack_correct(np.arange(10) < 4)},  # hits without the number they count
    ],
)
def test_no_interval_unless_the_hits_count_the_shown_top1(attrs):
    trial = optuna.trial.create_trial(value=1.0, user_attrs=attrs)
    row = scratch_row(trial)
    assert row["status"] == "ok" and row["test_top1_ci"] is None and row["gain_top1_ci"] is None
    assert rows.per_image_hits(trial) is None


def test_interval_of_a_single_trial_is_its_bootstrap():
    hits = np.arange(10) < 4
    trial = optuna.trial.create_trial(
        value=1.0, user_attrs={"test_top1": 40.0, "test_correct": schema.pack_correct(hits)}
    )
    assert scratch_row(trial)["test_top1_ci"] == list(intervals.bootstrap_ci(hits))


@pytest.mark.parametrize(
    "dropped, regime, reason",
    [
        ("probe-random", "probe_random", "no random-encoder probe study in this store"),
        ("scratch", "scratch", "no from-scratch supervised study in this store"),
    ],
)
def test_missing_regime_is_never_zero(studies, dropped, regime, reason):
    kept = [s for name, s in studies.items() if name != dropped]
    got = {r["regime"]: r for r in rows.comparison_rows(kept)}
    assert got[regime]["status"] == "missing"
    assert got[regime]["reason"] == reason
    assert got[regime]["test_top1"] is None and got[regime]["gain_top1"] is None
    if regime == "scratch":  # no reference: no gains anywhere, but the test numbers stay
        assert all(r["gain_top1"] is None for r in got.values())
        assert got["probe_simclr"]["test_top1"] == 42.0


def test_every_regime_has_a_row_and_a_missing_one_says_why(studies):
    kept = [s for name, s in studies.items() if name != "finetune-by-hand"]
    got = {r["regime"]: r for r in rows.comparison_rows(kept)}
    assert list(got) == [regime.role for regime in regimes.REGIMES]
    assert got["finetune"]["status"] == "missing"
    assert got["finetune"]["reason"] == "no fine-tuning study of a SimCLR encoder in this store"


def test_missing_reason_without_error_attr():
    study = rows.StudyData(
        "s",
        {"role": "scratch"},
        "maximize",
        [
            optuna.trial.create_trial(state=stores.PRUNED),
            optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING),
        ],
    )
    row = next(r for r in rows.comparison_rows([study]) if r["regime"] == "scratch")
    assert row["reason"] == "no complete trial (1 pruned, 1 running)"


@pytest.mark.parametrize(
    "error, reason",
    [("weights unavailable", "s could not run: weights unavailable"), ("", "no complete trial (no trials yet)")],
)
def test_missing_reason_from_the_study_error_attr(error, reason):
    """`compare` records why a study could not start (its "error" study attr; "" once it ran again)."""
    study = rows.StudyData("s", {"role": "probe_imagenet", schema.STUDY_ERROR: error}, "maximize")
    row = next(r for r in rows.comparison_rows([study]) if r["regime"] == "probe_imagenet")
    assert (row["status"], row["reason"]) == ("missing", reason)


@pytest.mark.parametrize(
    "attrs, regime",
    [
        ({"role": "probe_imagenet", "objective": "linear_probe", "encoder": "random"}, "probe_imagenet"),  # role wins
        ({"objective": "linear_probe", "encoder": "imagenet"}, "probe_imagenet"),
        ({"objective": "linear_probe", "config": json.dumps({"encoder": "random"})}, "probe_random"),
        ({"objective": "linear_probe"}, "probe_random"),  # EncoderConfig's default encoder
        ({"objective": "linear_probe", "encoder": "best:simclr-a"}, "probe_simclr"),
        ({"objective": "linear_probe", "encoder": "/ckpt/simclr.pt"}, "probe_simclr"),
        ({"objective": "supervised"}, "scratch"),
        ({"objective": "finetune", "encoder": "imagenet"}, "finetune_imagenet"),
        ({"objective": "finetune", "encoder": "trial:simclr-a:3"}, "finetune"),
        ({"objective": "simclr"}, None),
        ({"objective": "simclr", "role": "simclr_scale"}, "simclr_scale"),
        ({}, None),
    ],
)
def test_regime_classification(attrs, regime):
    assert rows.StudyData("s", attrs, "maximize").regime == regime


def test_scale_rows_match_hand_computed(studies):
    got = scale.scale_rows(list(studies.values()))
    assert len(got) == len(stores.EXPECTED_SCALE)
    for row, expected in zip(got, stores.EXPECTED_SCALE, strict=True):
        assert {k: row[k] for k in expected} == expected
        assert row["equal"] == "epochs"  # these hand-made studies train equal epochs (no equal_steps_as)


def test_scale_rows_one_curve_per_study(studies):
    """Two scale studies (two configurations) at one fraction stay two points: pooling would hide a's 34 under
    b's 50 and call the difference data."""
    b = rows.StudyData(
        "simclr-scale-b",
        {"objective": "simclr", "role": "simclr_scale"},
        "maximize",
        [
            optuna.trial.create_trial(value=50.0, user_attrs={"data_fraction": 0.1}),
            optuna.trial.create_trial(state=stores.PRUNED, user_attrs={"data_fraction": 0.3}),
        ],
    )
    got = scale.scale_rows([studies["simclr-scale"], b])
    assert [{k: r[k] for k in e} for r, e in zip(got[:3], stores.EXPECTED_SCALE, strict=True)] == stores.EXPECTED_SCALE
    assert [(r["study"], r["data_fraction"], r["best_value"], r["count"]) for r in got[3:]] == [
        ("simclr-scale-b", 0.1, 50.0, 1),
        ("simclr-scale-b", 0.3, None, 0),
    ]


def test_scale_best_respects_direction():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", direction="minimize")
    study.set_user_attr("objective", "simclr")
    study.add_trials([optuna.trial.create_trial(value=v, user_attrs={"data_fraction": 0.5}) for v in (3.0, 1.0, 2.0)])
    (row,) = scale.scale_rows(rows.load_studies(storage))
    assert (row["best_value"], row["trial"], row["min"], row["max"]) == (1.0, 1, 1.0, 3.0)


def test_json_safe():
    value = {"a": math.inf, 1: (math.nan, 2.0, [-math.inf, "x"]), "b": {"c": 1}}
    assert rows.json_safe(value) == {"a": None, "1": [None, 2.0, [None, "x"]], "b": {"c": 1}}
    assert reports.json_safe is rows.json_safe


def test_scale_falls_back_to_every_simclr_study(studies):
    # Without a simclr_scale study the hparam study is used: it has no data_fraction anywhere -> no rows.
    kept = [s for name, s in studies.items() if name != "simclr-scale"]
    assert scale.scale_studies(kept) == [studies[stores.EVIL]]
    assert scale.scale_rows(kept) == []


@pytest.mark.parametrize(
    "trial_number, fraction",
    [(0, 0.1), (4, 1.0), (5, 1.0), (6, 0.5)],  # attr, attr on FAIL, param, study config
)
def test_data_fraction_sources(studies, trial_number, fraction):
    study = studies["simclr-scale"]
    assert scale.data_fraction(study, study.trials[trial_number]) == fraction


def test_history_info(studies):
    info = study_info.history_info(studies[stores.EVIL])
    assert info == {
        "study": stores.EVIL,
        "numbers": [0, 1, 2],
        "values": [10.0, 30.0, 20.0],
        "best_so_far": [10.0, 30.0, 30.0],
    }


def test_intermediate_info_flags_pruned(studies):
    series = study_info.intermediate_info(studies["probe-simclr"])["series"]
    assert [(s["number"], s["state"], s["steps"], s["values"]) for s in series] == [
        (0, "COMPLETE", [0, 1], [20.5, 41.0]),
        (1, "COMPLETE", [0, 1], [21.75, 43.5]),
        (2, "PRUNED", [0, 1], [10.0, 20.0]),
    ]


def test_parallel_info_log_and_categorical(studies):
    info = study_info.parallel_info(studies[stores.EVIL])
    assert info["numbers"] == [0, 1, 2] and info["objective"] == [10.0, 30.0, 20.0] and info["note"] is None
    lr, optimizer = info["dimensions"]
    assert (lr["name"], lr["log"]) == ("lr", True)
    assert lr["values"] == pytest.approx([-3.0, -1.0, 0.0])
    assert (optimizer["labels"], optimizer["values"]) == (["sgd", stores.EVIL_CHOICE], [0, 1, 0])


@pytest.fixture(scope="module")
def large():
    storage = optuna.storages.InMemoryStorage()
    stores.fill_large(storage, n_trials=240, n_studies=2)
    return rows.load_studies(storage)


def test_importance_info(studies, large):
    info = study_info.importance_info(large[0])
    assert len(large[0].complete()) >= study_info.MIN_TRIALS_FOR_IMPORTANCE
    assert set(info["importances"]) == {"lr", "temperature", "batch_size", "data_fraction"} and info["note"] is None
    assert sum(info["importances"].values()) == pytest.approx(1.0)
    assert max(info["importances"], key=info["importances"].get) == "data_fraction"  # the value is 20 + 10 * it
    assert study_info.importance_info(studies["scratch"])["note"] == "no searched parameters"
    assert study_info.importance_info(studies["probe-random"])["note"] == "no complete trial"


def test_importance_needs_enough_trials(studies, large):
    """Three trials give PED-ANOVA numbers (and two give equal bars): noise, so none are shown, and why."""
    assert study_info.importance_info(studies[stores.EVIL]) == {
        "study": stores.EVIL,
        "importances": {},
        "caveat": None,
        "note": "too few trials for importances (3 complete; PED-ANOVA needs about 50, 5 in the best 10%)",
    }
    few = rows.StudyData("few", {}, "maximize", large[0].complete()[: study_info.MIN_TRIALS_FOR_IMPORTANCE - 1])
    assert study_info.importance_info(few)["note"].startswith("too few trials for importances (49 complete")


def test_importance_caveat_in_words(large):
    """A parameter not searched in one trial (a changed space): PED-ANOVA's warning, as a reader would say it."""
    trials = [*large[0].complete()]
    first = trials[0]
    params = {k: v for k, v in first.params.items() if k != "batch_size"}
    trials[0] = optuna.trial.create_trial(
        value=first.value, params=params, distributions={k: first.distributions[k] for k in params}
    )
    info = study_info.importance_info(rows.StudyData("s", {}, "maximize", trials))
    assert info["caveat"] == (
        "batch_size was searched over another range, or not at all, in fewer than 2 trials: its importance is rough"
    )


@pytest.mark.parametrize(
    "n_complete, note",
    [(0, "needs at least 2 complete trials (has 0)"), (1, "needs at least 2 complete trials (has 1)"), (2, None)],
)
def test_parallel_needs_two_trials(studies, n_complete, note):
    evil = studies[stores.EVIL]
    study = rows.StudyData("s", {}, "maximize", evil.complete()[:n_complete])
    assert study_info.parallel_info(study)["note"] == note


def test_table_info_columns(studies):
    info = study_info.table_info(studies[stores.EVIL])
    assert info["columns"] == ["number", "state", "value", "lr", "optimizer", "error", "duration_s"]
    assert info["groups"] == [("trial", 3), ("params", 2), ("user attrs", 1), ("", 1)]
    assert info["rows"][3][:6] == [3, "FAIL", None, 0.01, "sgd", stores.EVIL_ERROR]


def test_unknown_study_is_a_user_error(url):
    with pytest.raises(UserError, match="no study named 'nope'"):
        rows.load_studies(url, ["nope"])


def test_report_json_equals_the_store(url):
    got = reports.report_json(url, trials=True)
    json.dumps(got, allow_nan=False)  # plain, strict JSON
    assert [{k: r[k] for k in e} for r, e in zip(got["comparison"], stores.EXPECTED_COMPARISON, strict=True)] == (
        stores.EXPECTED_COMPARISON
    )
    assert [{k: r[k] for k in e} for r, e in zip(got["scale"], stores.EXPECTED_SCALE, strict=True)] == (
        stores.EXPECTED_SCALE
    )
    storage = optuna.storages.get_storage(url)
    names = optuna.get_all_study_names(storage)
    assert sorted(s["study"] for s in got["studies"]) == sorted(names)
    for summary in got["studies"]:
        study = optuna.load_study(study_name=summary["study"], storage=storage)
        trials = study.trials
        assert summary["counts"]["total"] == len(trials)
        for state, key in ((stores.COMPLETE, "complete"), (stores.PRUNED, "pruned"), (stores.FAIL, "failed")):
            assert summary["counts"][key] == sum(t.state == state for t in trials)
        complete = [t for t in trials if t.state == stores.COMPLETE]
        if complete:
            assert summary["best"]["number"] == study.best_trial.number
            assert summary["best"]["value"] == study.best_value
            assert summary["best"]["params"] == study.best_params
            assert summary["best"]["user_attrs"] == study.best_trial.user_attrs
        else:
            assert summary["best"] is None
        mine = [r for r in got["trials"] if r["study"] == summary["study"]]
        assert [{k: v for k, v in r.items() if k not in ("study", "duration_s")} for r in mine] == [
            schema.trial_row(t) for t in trials
        ]


def test_report_json_has_no_nan():
    study = rows.StudyData("s", {}, "maximize", [optuna.trial.create_trial(value=1.0, user_attrs={"x": math.nan})])
    report = reports.Report([study], "mem", reports.datetime.now(), [], [], {"s": study_info.importance_info(study)})
    assert report.to_json(trials=True)["trials"][0]["user_attrs"]["x"] is None


def test_json_path_imports_neither_plotly_nor_torch(url):
    code = (
        "import sys, reports; reports.report_json(sys.argv[1]); "
        "bad = [m for m in ('plotly', 'torch', 'optuna_dashboard') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code, url], check=True, cwd=Path(__file__).parents[2])
