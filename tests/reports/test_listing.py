"""`study.py list` and `show`, data and text: our studies, and a study made with plain Optuna that minimizes
(its best is its lowest value, and its value is not called a top-1)."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from errors import UserError
from reports import json_safe, study_details, study_list
from reports.text import comparison_table, list_table, show_text
from storage import open_storage, schema

SPACE = {"lr": FloatDistribution(1e-3, 1.0, log=True), "wd": CategoricalDistribution([0.0, 1e-4])}


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('listing') / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ours = optuna.create_study(storage=url, study_name="ours", direction="maximize")
    schema.write_spec(
        ours,
        schema.StudySpec(
            objective="linear_probe",
            config={"lr": 0.5, "epochs": 3, "encoder": "imagenet"},
            space=SPACE,
            sampler={"name": "tpe", "seed": 1},
            pruner={"name": "median", "n_startup_trials": 2},
            preset="smoke",
            role="probe_imagenet",
        ),
    )
    ours.add_trial(
        create_trial(
            value=40.0,
            params={"lr": 0.01, "wd": 0.0},
            distributions=SPACE,
            user_attrs={"test_top1": 39.5, "steps": 120, "seconds": 12.5},
        )
    )
    ours.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"lr": 0.1, "wd": 1e-4},
            distributions=SPACE,
            intermediate_values={1: 12.0},
            user_attrs={"steps": 40, "effective_lr": 0.05},
        )
    )
    ours.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"lr": 0.5, "wd": 0.0},
            distributions=SPACE,
            user_attrs={"error": "UserError: boom"},
        )
    )
    foreign = optuna.create_study(storage=url, study_name="foreign", direction="minimize")  # plain Optuna
    x = {"x": FloatDistribution(0, 1)}
    foreign.add_trials([create_trial(value=v, params={"x": v / 4}, distributions=x) for v in (3.0, 1.0, 2.0)])
    return url


def test_list_rows_respect_direction(url):
    rows = {r["name"]: r for r in study_list(url)}
    assert rows["foreign"] == {
        "name": "foreign",
        "objective": "",
        "preset": "",
        "role": "",
        "trials": 3,
        "states": {"COMPLETE": 3},
        "best_value": 1.0,
        "best_trial": 1,
    }
    assert (rows["ours"]["best_value"], rows["ours"]["best_trial"]) == (40.0, 0)
    assert rows["ours"]["states"] == {"COMPLETE": 1, "FAIL": 1, "PRUNED": 1}


def test_list_table(url):
    assert list_table(study_list(url)).splitlines() == [
        "name     objective     preset   trials  complete     best  role",
        "ours     linear_probe  smoke         3         1    40.00  probe_imagenet",
        "foreign                              3         3     1.00  ",
    ]


def test_details_of_a_minimizing_study(url):
    data = study_details(open_storage(url, read_only=True), "foreign")
    assert data["direction"] == "minimize"
    assert data["best_trial"] == {"number": 1, "value": 1.0, "params": {"x": 0.25}}
    assert (data["objective"], data["config"], data["space"], data["schema"]) == (None, None, None, None)
    assert show_text(data, {}).splitlines()[:4] == [
        "study foreign: objective -, preset -, minimize value",
        "space: (unknown)",
        "config (differs from the defaults): -",
        "trials: 3 (3 complete); best #1 1.00",
    ]


def test_details_of_our_study(url):
    data = study_details(open_storage(url, read_only=True), "ours")
    assert list(data) == [
        "name",
        "direction",
        "objective",
        "preset",
        "role",
        "comparison",
        "encoder",
        "schema",
        "config",
        "space",
        "sampler",
        "pruner",
        "user_attrs",
        "n_trials",
        "states",
        "best_trial",
        "trials",
    ]
    assert data["space"]["lr"]["name"] == "FloatDistribution" and data["sampler"] == {"name": "tpe", "seed": 1}
    assert data["trials"][1]["value"] is None and data["trials"][1]["intermediate_values"] == {"1": 12.0}
    json.dumps(json_safe(data), allow_nan=False)
    assert show_text(data, {"lr": 0.1, "epochs": 3, "encoder": "random"}).splitlines() == [
        "study ours: objective linear_probe, preset smoke, maximize val top-1, role probe_imagenet",
        "sampler tpe (seed 1); pruner median n_startup_trials=2",
        "space: lr float [0.001, 1] log; wd choice [0.0, 0.0001]",
        "config (differs from the defaults): encoder=imagenet lr=0.5",
        "trials: 3 (1 complete, 1 fail, 1 pruned); best #0 40.00",
        "   #  state       value     test   steps        lr   seconds  params / error",
        "   0  COMPLETE    40.00    39.50     120                12.5  lr=0.01 wd=0",
        "   1  PRUNED                          40      0.05            lr=0.1 wd=0.0001",
        "   2  FAIL                                                    lr=0.5 wd=0  [UserError: boom]",
    ]


def test_details_of_a_missing_study(url):
    with pytest.raises(UserError, match="no study named 'nope'; studies: ours, foreign"):
        study_details(open_storage(url, read_only=True), "nope")


def test_comparison_table():
    row = {
        "regime": "scratch",
        "label": "from scratch (supervised)",
        "status": "ok",
        "reason": None,
        "study": "p-scratch",
        "trial": 2,
        "test_top1": 10.0,
        "test_top5": 30.5,
        "gain_top1": 0.0,
        "n_trials": 3,
        "n_complete": 2,
        "n_pruned": 1,
        "n_failed": 0,
        "resolution": 32,
        "seeds": {"n": 3, "mean": 10.5, "sd": 0.75},
    }
    probe = {
        **row,
        "regime": "probe_simclr",
        "label": "SimCLR",
        "study": "p-probe",
        "trial": 0,
        "val_top1": 21.0,
        "test_top1": 20.25,
        "test_top1_ci": [17.5, 23.0],
        "gain_top1": 10.25,
        "seeds": {"n": 1},
        "gain_top1_ci": [7.75, 12.5],
        "protocol": {"labels": "none", "resolution": 32, "trials": 3},
    }
    missing = {
        **row,
        "regime": "probe_imagenet",
        "label": "ImageNet",
        "status": "missing",
        "resolution": None,
        "reason": "no ImageNet-supervised probe study in this store",
        "test_top1": None,
        "test_top5": None,
        "gain_top1": None,
        "n_trials": 0,
        "n_complete": 0,
        "n_pruned": 0,
        "seeds": None,
    }
    lines = comparison_table([row, probe, missing]).splitlines()
    header = lines[0].split("  ")
    assert [h.strip() for h in header if h.strip()][:3] == ["regime", "input", "test top-1 [95% CI]"]
    assert lines[1].split()[:5] == ["from", "scratch", "(supervised)", "32px", "10.00"]
    assert "10.50 ± 0.75 (n=3)" in lines[1] and "reference" in lines[1] and lines[1].endswith("ok: p-scratch #2")
    assert "20.25 [17.5, 23.0]" in lines[2] and "+10.25 [+7.8, +12.5]" in lines[2] and "21.00" in lines[2]
    assert lines[3].startswith("ImageNet") and lines[3].endswith(
        "missing: no ImageNet-supervised probe study in this store"
    )
    assert "protocol:" in lines and "  SimCLR: none; input 32x32; 3 trials; 1 seed" in lines
