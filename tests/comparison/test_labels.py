"""Label efficiency and the tuned scale curve, from a store holding selections (no training): the labels studies
re-run each selected configuration at fewer labels, the scale study takes its search's pick, and the report's
label curves are hand-computable."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from comparison import labels, run
from comparison.plan import Request, plan
from comparison.regimes import HPARAMS, SCALE
from comparison.resume import check_existing
from reports import intervals
from reports.labels import label_rows
from reports.rows import StudyData, comparison_rows
from storage import open_storage, schema


def _storage(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    return url, open_storage(url, create=True)


def _select(study: optuna.Study, params: dict, value: float = 30.0) -> None:
    spec = schema.read_spec(study.user_attrs)
    dists = {k: spec.space[k] for k in params}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))


def test_labels_studies_rerun_the_selected_configuration_at_fewer_labels(tmp_path):
    url, storage = _storage(tmp_path)
    planned = {p.role: p for p in plan(Request.of("cmp", preset="smoke"))}
    scratch = run.ensure_study(storage, planned["scratch"], None, url)
    assert labels.label_plans(storage, "cmp", "smoke", seeds=2) == []  # nothing selected yet: no curve
    _select(scratch, {"lr": 0.05, "weight_decay": 2e-4})
    (got,) = labels.label_plans(storage, "cmp", "smoke", seeds=2)
    assert (got.name, got.role, got.objective, got.grid, got.pruner) == (
        "cmp-labels-scratch",
        "labels_scratch",
        "supervised",
        True,
        "none",
    )
    assert got.searched["label_fraction"].choices == (0.25,) and got.searched["seed"].choices == (0, 1)
    assert got.trials == 2 and got.values["lr"] == 0.05 and got.values["weight_decay"] == 2e-4
    assert got.spec().config["epochs"] == planned["scratch"].spec().config["epochs"]
    assert [f for f in labels.LABEL_FRACTIONS["default"] if f < 1] == labels.curve_fractions("default") == [0.01, 0.1]
    # a comparison the user fixed at a label fraction has no curve
    fixed = {p.role: p for p in plan(Request.of("fix", preset="smoke", sets=["label_fraction=0.5"]))}
    _select(run.ensure_study(storage, fixed["scratch"], None, url), {"lr": 0.05, "weight_decay": 2e-4})
    assert labels.label_plans(storage, "fix", "smoke", seeds=1) == []


def test_the_scale_curve_runs_at_the_configuration_its_search_selected(tmp_path):
    url, storage = _storage(tmp_path)
    planned = {p.role: p for p in plan(Request.of("cmp", preset="smoke"))}
    assert [p.role for p in plan(Request.of("cmp", preset="smoke"))][:2] == [HPARAMS.role, SCALE.role]
    hparams = run.ensure_study(storage, planned[HPARAMS.role], None, url)
    _select(hparams, {"lr": 1.3, "temperature": 0.2}, value=20.0)
    _select(hparams, {"lr": 0.9, "temperature": 0.35}, value=25.0)  # the best
    scale = run.ensure_study(storage, planned[SCALE.role], None, url)
    config = schema.read_spec(scale.user_attrs).config
    assert (config["lr"], config["temperature"]) == (0.9, 0.35) and scale.user_attrs[
        schema.TUNED_BY
    ] == "cmp-hparams #2"  # trial 0 is the queued recipe, not run here
    assert config["data_fraction"] == planned[SCALE.role].spec().config["data_fraction"]  # the grid's own key kept
    assert check_existing(storage, list(planned.values())) == ["cmp-hparams", "cmp-scale"]  # a resume accepts it
    # no pick yet: the preset's configuration, said so
    other = {p.role: p for p in plan(Request.of("new", preset="smoke"))}
    run.ensure_study(storage, other[HPARAMS.role], None, url)
    fresh = run.ensure_study(storage, other[SCALE.role], None, url)
    assert fresh.user_attrs[schema.TUNED_BY] == "" and schema.read_spec(fresh.user_attrs).config["lr"] == 0.6


def _trial(number: int, top1: float, hits: np.ndarray, params: dict | None = None) -> optuna.trial.FrozenTrial:
    dists = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in (params or {}).items()}
    attrs = {schema.TEST_TOP1: top1, schema.TEST_TOP5: 90.0, schema.TEST_CORRECT: schema.pack_correct(hits)}
    attrs[schema.N_TRAIN_IMAGES] = round(1000 * (params or {}).get("label_fraction", 1.0))
    trial = optuna.trial.create_trial(params=params or {}, distributions=dists, value=top1, user_attrs=attrs)
    trial.number = number
    return trial


def _hits(rng: np.random.Generator, p: float, n: int = 200) -> tuple[float, np.ndarray]:
    hits = rng.random(n) < p
    return 100.0 * hits.mean(), hits


def test_label_curves_are_means_over_seeds_with_gains_paired_by_seed():
    rng = np.random.default_rng(0)
    attrs = lambda role, seed=0: {schema.ROLE: role, schema.COMPARISON: "c", schema.CONFIG: f'{{"seed": {seed}}}'}  # noqa: E731
    full = {role: _hits(rng, p) for role, p in (("probe_simclr", 0.6), ("scratch", 0.4))}
    runs = {
        (role, f, seed): _hits(rng, p)
        for role, p in (("probe_simclr", 0.5), ("scratch", 0.2))
        for f in (0.1,)
        for seed in (0, 1)
    }
    studies = [
        StudyData("probe", attrs("probe_simclr"), "maximize", [_trial(0, *full["probe_simclr"])]),
        StudyData("scratch", attrs("scratch"), "maximize", [_trial(0, *full["scratch"])]),
    ]
    for role in ("probe_simclr", "scratch"):
        trials = [
            _trial(k, *runs[(role, 0.1, seed)], {"label_fraction": 0.1, "seed": seed}) for k, seed in enumerate((0, 1))
        ]
        studies.append(StudyData(f"labels-{role}", attrs(f"labels_{role}"), "maximize", trials))
    table = [{**row, "comparison": "c"} for row in comparison_rows(studies)]
    points = {(p["regime"], p["label_fraction"]): p for p in label_rows(studies, table)}
    assert set(points) == {("probe_simclr", 0.1), ("probe_simclr", 1.0), ("scratch", 0.1), ("scratch", 1.0)}
    low = points[("probe_simclr", 0.1)]
    mine, base = [runs[("probe_simclr", 0.1, s)] for s in (0, 1)], [runs[("scratch", 0.1, s)] for s in (0, 1)]
    assert low["n"] == 2 and low["mean"] == pytest.approx((mine[0][0] + mine[1][0]) / 2)
    assert low["gain"] == pytest.approx(np.mean([m[0] - b[0] for m, b in zip(mine, base, strict=True)]))
    assert low["ci"] == list(intervals.two_level_ci([m[1] for m in mine]))
    assert low["gain_ci"] == list(intervals.two_level_ci([m[1] for m in mine], [b[1] for b in base]))
    assert [points[("scratch", f)]["n_train_images"] for f in (0.1, 1.0)] == [100, 1000]  # 100%: the selected trial's
    top = points[("probe_simclr", 1.0)]  # the regime's row: one run, an interval over test images
    assert top["n"] == 1 and top["mean"] == full["probe_simclr"][0]
    assert top["gain_ci"] == list(intervals.paired_bootstrap_ci(full["probe_simclr"][1], full["scratch"][1]))
    assert points[("scratch", 0.1)]["gain"] is None and points[("scratch", 0.1)]["gain_n"] == 0  # the reference
