"""The comparison's spread over seeds (paired with scratch by seed) and the protocol line of each regime."""

from __future__ import annotations

import json
import statistics

import optuna
import pytest

from reports import rows
from reports.protocol import protocol, protocol_text
from reports.scale import scale_rows


def study(name, role, objective, trials, config=None):
    attrs = {"objective": objective, "role": role, "config": json.dumps(config or {"seed": 0})}
    return rows.StudyData(name, attrs, "maximize", trials)


def trial(number, value, test, seed=None, **attrs):
    frozen = optuna.trial.create_trial(
        value=value,
        params={"seed": seed} if seed is not None else {},
        distributions={"seed": optuna.distributions.CategoricalDistribution([1, 2])} if seed is not None else {},
        user_attrs={"test_top1": test, **attrs},
    )
    frozen.number = number  # as a study numbers it
    return frozen


def test_seeds_mean_sd_and_the_gain_paired_by_seed():
    studies = [
        study("p-probe", "probe_random", "linear_probe", [trial(0, 50.0, 20.0)], {"seed": 0, "encoder": "random"}),
        study("p-seeds-probe", "seeds_probe_random", "linear_probe", [trial(0, 1, 22.0, 1), trial(1, 1, 27.0, 2)]),
        study("p-scratch", "scratch", "supervised", [trial(0, 40.0, 10.0)]),
        study("p-seeds-scratch", "seeds_scratch", "supervised", [trial(0, 1, 11.0, 1), trial(1, 1, 15.0, 2)]),
    ]
    got = {r["regime"]: r for r in rows.comparison_rows(studies)}
    probe, scratch = got["probe_random"], got["scratch"]
    assert probe["trial"] == 0 and probe["test_top1"] == 20.0  # the seeds studies play no regime of their own
    assert probe["seeds"]["n"] == 3 and probe["seeds"]["mean"] == pytest.approx(23.0)
    assert probe["seeds"]["sd"] == pytest.approx(statistics.stdev([20.0, 22.0, 27.0]))
    gains = [20.0 - 10.0, 22.0 - 11.0, 27.0 - 15.0]  # seed 0 with seed 0, 1 with 1, 2 with 2
    assert probe["gain_seeds"]["mean"] == pytest.approx(statistics.fmean(gains))
    assert probe["gain_seeds"]["sd"] == pytest.approx(statistics.stdev(gains))
    assert scratch["seeds"]["mean"] == pytest.approx(12.0) and scratch["gain_seeds"]["mean"] == 0.0


def test_protocol_line_names_labels_input_pretraining_epochs_trials_and_seeds():
    simclr = study("p-hparams", "simclr_hparams", "simclr", [trial(3, 30.0, 29.0, n_pretrain_images=1000, steps=40)])
    probe = study(
        "p-probe-simclr",
        "probe_simclr",
        "linear_probe",
        [trial(0, 44.0, 42.0, encoder="trial:p-hparams:3")],
        {"seed": 0, "encoder": "best:p-hparams", "probe_epochs": 30, "image_size": 32},
    )
    imagenet = study(
        "p-probe-imagenet",
        "probe_imagenet",
        "linear_probe",
        [trial(0, 50.0, 48.0)],
        {"seed": 0, "encoder": "imagenet", "resolution": 64, "probe_epochs": 30},
    )
    scratch = study("p-scratch", "scratch", "supervised", [trial(0, 20.0, 19.0)], {"seed": 0, "epochs": 3})
    got = {r["regime"]: r for r in rows.comparison_rows([simclr, probe, imagenet, scratch])}
    assert got["probe_imagenet"]["resolution"] == 64 and got["probe_simclr"]["resolution"] == 32
    line = protocol_text(got["probe_simclr"]["protocol"], got["probe_simclr"]["seeds"])
    assert line == (
        "CIFAR-100 labels for the linear layer only (pretraining: none); input 32x32; SimCLR on 1,000 "
        "images, 40 steps (p-hparams #3); 30 probe epochs; 1 trial; 1 seed; gain: linear probe (frozen encoder) vs "
        "training from scratch"
    )
    assert "ImageNet-1k" in protocol_text(got["probe_imagenet"]["protocol"])
    assert protocol(got["scratch"], [scratch])["epochs"] == 3
    assert "gain" not in protocol_text(got["scratch"]["protocol"])  # the reference compares nothing


def test_scale_points_get_a_spread_over_seeds():
    def point(number, value, fraction, seed=None):
        frozen = trial(number, value, value - 1, seed, data_fraction=fraction)
        return frozen

    scale = study("p-scale", "simclr_scale", "simclr", [point(0, 30.0, 0.1), point(1, 40.0, 1.0)])
    seeds = study(
        "p-seeds-scale",
        "seeds_scale",
        "simclr",
        [point(0, 32.0, 0.1, 1), point(1, 34.0, 0.1, 2), point(2, 41.0, 1.0, 1)],
    )
    for s in (scale, seeds):
        s.user_attrs["comparison"] = "p"
    got = {r["data_fraction"]: r for r in scale_rows([scale, seeds])}
    assert list(got) == [0.1, 1.0]  # the seeds study adds no curve of its own
    assert got[0.1]["seeds"]["n"] == 3 and got[0.1]["seeds"]["mean"] == pytest.approx(32.0)
    assert got[0.1]["seeds"]["sd"] == pytest.approx(statistics.stdev([30.0, 32.0, 34.0]))
    assert got[1.0]["seeds"]["n"] == 2 and got[1.0]["best_value"] == 40.0
    from reports.figures import scale_figure

    names = [t.name for t in scale_figure(list(got.values())).data]
    assert "mean ± sd over seeds" in names


def test_two_comparisons_in_one_store_are_reported_apart():
    """A smoke and a default comparison in one store: each regime's row, gain and seeds come from its own
    comparison (before, the better of the two probes was picked and the seeds of both were pooled)."""

    def of(prefix, made):
        for made_study in made:
            made_study.user_attrs["comparison"] = prefix
        return made

    a = of(
        "a",
        [
            study("a-probe", "probe_random", "linear_probe", [trial(0, 50.0, 20.0)], {"seed": 0, "encoder": "random"}),
            study("a-seeds", "seeds_probe_random", "linear_probe", [trial(0, 1, 22.0, 1)]),
            study("a-scratch", "scratch", "supervised", [trial(0, 40.0, 10.0)]),
        ],
    )
    b = of(
        "b",
        [
            study("b-probe", "probe_random", "linear_probe", [trial(0, 90.0, 60.0)], {"seed": 0, "encoder": "random"}),
            study("b-scratch", "scratch", "supervised", [trial(0, 40.0, 30.0)]),
        ],
    )
    got = rows.comparisons([*b, *a])
    assert [r["comparison"] for r in got] == ["a"] * (len(got) // 2) + ["b"] * (len(got) // 2)
    probes = {r["comparison"]: r for r in got if r["regime"] == "probe_random"}
    assert (probes["a"]["study"], probes["a"]["gain_top1"]) == ("a-probe", 10.0)
    assert (probes["b"]["study"], probes["b"]["gain_top1"]) == ("b-probe", 30.0)
    assert probes["a"]["seeds"]["n"] == 2 and probes["b"]["seeds"]["n"] == 1  # a's seeds stay a's
    assert [r["comparison"] for r in rows.comparisons(a)] == ["a"] * len(rows.REGIMES)


def test_the_mean_over_seeds_carries_a_two_level_interval():
    """Where every seed run stored its per-image hits, the mean over runs gets an interval over runs and images,
    the gain's paired by seed; one run without hits and there is none (never an interval of other numbers)."""
    import numpy as np

    from storage import schema

    def run(number, rate, seed=None, n=500):
        hits = np.random.default_rng(number + 10 * (seed or 0)).random(n) < rate
        top1 = 100.0 * hits.mean()
        return trial(number, top1, top1, seed, test_correct=schema.pack_correct(hits))

    probe_config = {"seed": 0, "encoder": "random"}
    studies = [
        study("p-probe", "probe_random", "linear_probe", [run(0, 0.50)], probe_config),
        study("p-seeds-probe", "seeds_probe_random", "linear_probe", [run(0, 0.55, 1), run(1, 0.45, 2)]),
        study("p-scratch", "scratch", "supervised", [run(0, 0.30)]),
        study("p-seeds-scratch", "seeds_scratch", "supervised", [run(0, 0.32, 1), run(1, 0.28, 2)]),
    ]
    got = {r["regime"]: r for r in rows.comparison_rows(studies)}
    seeds, gain = got["probe_random"]["seeds"], got["probe_random"]["gain_seeds"]
    assert seeds["n"] == 3 and seeds["ci"][0] < seeds["mean"] < seeds["ci"][1]
    assert gain["ci"][0] < gain["mean"] < gain["ci"][1] and gain["ci"][0] > 0  # ~20 points better, every seed
    assert got["scratch"]["gain_seeds"]["ci"] is None  # the reference
    studies[1] = study(
        "p-seeds-probe", "seeds_probe_random", "linear_probe", [run(0, 0.55, 1), trial(1, 45.0, 45.0, 2)]
    )
    assert {r["regime"]: r for r in rows.comparison_rows(studies)}["probe_random"]["seeds"]["ci"] is None


def test_the_protocol_line_states_the_rate_trained_with():
    """lr is per 256 images; the line says the peak rate the selected trial trained with (its effective_lr)."""
    scratch = study("p-scratch", "scratch", "supervised", [trial(0, 20.0, 19.0, effective_lr=0.1)], {"epochs": 3})
    row = next(r for r in rows.comparison_rows([scratch]) if r["regime"] == "scratch")
    assert "3 training epochs at lr 0.1" in protocol_text(row["protocol"])
