"""Stores for the report tests, filled with `optuna.trial.create_trial` per the schema (storage/schema.py).

`fill_comparison` writes one study per regime with numbers chosen so that every rule shows: the best trial by
validation is not the best by test, a regime spread over two user-made studies (no role attr), a regime with only
failed trials, pruned trials, a data fraction given only as a param or only in the study config, and a study
whose name, parameter choice and error text are HTML/script injections. EXPECTED holds the hand-computed rows;
their 95% intervals come from reports.intervals (tested against references in test_intervals.py) on the per-image
hits stored here: scratch and the selected SimCLR probe on the same 200 images (a paired gain), fine-tuning on
400 (an interval of its own, no paired gain), the ImageNet probes none (no interval).
"""

from __future__ import annotations

import json
import random

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from reports import intervals
from storage import schema

EVIL = "<img src=x onerror=alert(1)>"
EVIL_CHOICE = "</script><script>alert(2)</script>"
EVIL_ERROR = "<script>alert(3)</script>"
COMPLETE, PRUNED, FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


def hits(n: int, first: int, count: int, seed: int = 7) -> np.ndarray:
    """Per-image hits of n test images: `count` of them, the images at positions first.. of a seeded order."""
    correct = np.zeros(n, dtype=bool)
    correct[np.random.default_rng(seed).permutation(n)[first : first + count]] = True
    return correct


SCRATCH_HITS = hits(200, 0, 57)  # 28.5%
SIMCLR_HITS = hits(200, 30, 84)  # 42.0%: 27 images hit by both, 30 only by scratch, 57 only by the probe
FINETUNE_HITS = hits(400, 0, 190)  # 47.5%, on another test set: no paired gain


def _trial(state=COMPLETE, value=None, params=None, dists=None, **attrs):
    steps = {0: 10.0, 1: 20.0} if state == PRUNED else ({0: value / 2, 1: value} if value is not None else None)
    return create_trial(
        state=state,
        value=value if state == COMPLETE else None,
        params=params or {},
        distributions=dists or {},
        user_attrs=attrs,
        intermediate_values=steps,
    )


def _study(storage, name, trials, *, objective, role=None, encoder=None, config=None):
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr("objective", objective)
    study.set_user_attr("schema", schema.SCHEMA_VERSION)
    study.set_user_attr("config", json.dumps(config or {}))
    study.set_user_attr("space", "{}")
    if role:
        study.set_user_attr("role", role)
    if encoder:
        study.set_user_attr("encoder", encoder)
    study.add_trials(trials)
    return study


def fill_comparison(storage) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    frac = {"data_fraction": CategoricalDistribution([0.1, 0.5, 1.0])}
    _study(
        storage,
        "simclr-scale",
        [
            _trial(value=30.0, data_fraction=0.1, n_pretrain_images=5000, test_top1=29.0),
            _trial(value=34.0, data_fraction=0.1, n_pretrain_images=5000, test_top1=33.5),
            _trial(PRUNED, data_fraction=0.1, n_pretrain_images=5000),
            _trial(value=40.0, data_fraction=0.5, n_pretrain_images=25000, test_top1=39.0),
            _trial(FAIL, data_fraction=1.0, error="NonFiniteLoss: non-finite loss nan at epoch 2, step 7 (diverged)"),
            _trial(value=44.0, params={"data_fraction": 1.0}, dists=frac, n_pretrain_images=50000, test_top1=43.0),
            _trial(PRUNED),  # fraction from the study config: 0.5
        ],
        objective="simclr",
        role="simclr_scale",
        config={"data_fraction": 0.5},
    )
    lr = FloatDistribution(1e-3, 1.0, log=True)
    evil = {"lr": lr, "optimizer": CategoricalDistribution(["sgd", EVIL_CHOICE])}
    _study(
        storage,
        EVIL,
        [
            _trial(value=10.0, params={"lr": 0.001, "optimizer": "sgd"}, dists=evil),
            _trial(value=30.0, params={"lr": 0.1, "optimizer": EVIL_CHOICE}, dists=evil),
            _trial(value=20.0, params={"lr": 1.0, "optimizer": "sgd"}, dists=evil),
            _trial(FAIL, params={"lr": 0.01, "optimizer": "sgd"}, dists=evil, error=EVIL_ERROR),
        ],
        objective="simclr",
        role="simclr_hparams",
    )
    _study(
        storage,
        "probe-simclr",
        [
            _trial(value=41.0, test_top1=45.0, test_top5=75.0, test_correct=schema.pack_correct(hits(200, 0, 90))),
            _trial(value=43.5, test_top1=42.0, test_top5=72.3, test_correct=schema.pack_correct(SIMCLR_HITS)),
            _trial(PRUNED),
            _trial(FAIL, error="UserError: checkpoint missing"),
        ],
        objective="linear_probe",
        role="probe_simclr",
        encoder="best:simclr-scale",
    )
    # ImageNet probes made by hand: no role attr, the encoder only in the config; two studies, best of both.
    _study(
        storage,
        "imagenet-a",
        [_trial(value=50.0, test_top1=49.0, test_top5=80.0)],
        objective="linear_probe",
        config={"encoder": "imagenet", "resolution": 224},
    )
    _study(
        storage,
        "imagenet-b",
        [_trial(value=48.0, test_top1=47.0, test_top5=78.0), _trial(value=52.5, test_top1=51.0, test_top5=81.5)],
        objective="linear_probe",
        config={"encoder": "imagenet", "resolution": 64},
    )
    _study(
        storage,
        "probe-random",
        [_trial(FAIL, error="old error"), _trial(FAIL, error="CUDA out of memory")],
        objective="linear_probe",
        role="probe_random",
        encoder="random",
    )
    _study(
        storage,
        "scratch",
        [
            _trial(value=30.0, test_top1=28.5, test_top5=58.0, test_correct=schema.pack_correct(SCRATCH_HITS)),
            _trial(PRUNED),
        ],
        objective="supervised",
        role="scratch",
    )
    _study(
        storage,
        "finetune-by-hand",
        [_trial(value=48.0, test_top1=47.5, test_top5=77.0, test_correct=schema.pack_correct(FINETUNE_HITS))],
        objective="finetune",
        config={"encoder": "best:simclr-scale"},
    )


def _row(regime, label, studies, best=None, counts=(0, 0, 0, 0), gain=None, reason=None, hits=None, gain_hits=None):
    """A comparison row; `best` is the selected trial as (study, trial, val top-1, test top-1, test top-5)."""
    study, trial, val, test1, test5 = best or (None,) * 5
    total, complete, pruned, failed = counts
    return {
        "regime": regime,
        "label": label,
        "status": "ok" if study else "missing",
        "reason": reason,
        "studies": studies,
        "study": study,
        "trial": trial,
        "val_top1": val,
        "test_top1": test1,
        "test_top5": test5,
        "n_trials": total,
        "n_complete": complete,
        "n_pruned": pruned,
        "n_failed": failed,
        "gain_top1": gain,
        "test_top1_ci": None if hits is None else list(intervals.bootstrap_ci(hits)),
        "gain_top1_ci": None if gain_hits is None else list(intervals.paired_bootstrap_ci(*gain_hits)),
    }


EXPECTED_COMPARISON = [
    _row(
        "probe_simclr",
        "SimCLR -> linear probe",
        ["probe-simclr"],
        ("probe-simclr", 1, 43.5, 42.0, 72.3),
        (4, 2, 1, 1),
        42.0 - 28.5,
        hits=SIMCLR_HITS,
        gain_hits=(SIMCLR_HITS, SCRATCH_HITS),
    ),
    _row(
        "finetune",
        "SimCLR -> fine-tuned",
        ["finetune-by-hand"],
        ("finetune-by-hand", 0, 48.0, 47.5, 77.0),
        (1, 1, 0, 0),
        47.5 - 28.5,
        hits=FINETUNE_HITS,
    ),
    _row(
        "probe_supervised",
        "CIFAR-10-supervised -> linear probe",
        [],
        reason="no linear-probe study of the same-data supervised encoder in this store",
    ),
    _row(
        "finetune_supervised",
        "CIFAR-10-supervised -> fine-tuned",
        [],
        reason="no fine-tuning study of the same-data supervised encoder in this store",
    ),
    _row(
        "probe_imagenet",
        "ImageNet-supervised -> linear probe",
        ["imagenet-a", "imagenet-b"],
        ("imagenet-b", 1, 52.5, 51.0, 81.5),
        (3, 3, 0, 0),
        51.0 - 28.5,
    ),
    _row(
        "finetune_imagenet",
        "ImageNet-supervised -> fine-tuned",
        [],
        reason="no fine-tuning study of the ImageNet-supervised encoder in this store",
    ),
    _row(
        "probe_random",
        "random encoder -> linear probe",
        ["probe-random"],
        counts=(2, 0, 0, 2),
        reason="no complete trial; last failure (probe-random #1): CUDA out of memory",
    ),
    _row(
        "scratch",
        "from scratch (supervised)",
        ["scratch"],
        ("scratch", 0, 30.0, 28.5, 58.0),
        (2, 1, 1, 0),
        0.0,
        hits=SCRATCH_HITS,
        gain_hits=(SCRATCH_HITS, SCRATCH_HITS),
    ),
    _row(
        "probe_simclr_in_domain",
        "SimCLR -> linear probe on CIFAR-10 (in-domain check)",
        [],
        reason="no in-domain (CIFAR-10) probe study of the SimCLR encoder in this store",
    ),
]


_SCALE_KEYS = "data_fraction n_pretrain_images count n_pruned n_failed best_value test_top1 study trial mean min max"
EXPECTED_SCALE = [
    dict(zip(_SCALE_KEYS.split(), values, strict=True))
    for values in [
        (0.1, 5000, 2, 1, 0, 34.0, 33.5, "simclr-scale", 1, 32.0, 30.0, 34.0),
        (0.5, 25000, 1, 1, 0, 40.0, 39.0, "simclr-scale", 3, 40.0, 40.0, 40.0),
        (1.0, 50000, 1, 0, 1, 44.0, 43.0, "simclr-scale", 5, 44.0, 44.0, 44.0),
    ]
]


def fill_large(storage, n_trials: int = 1000, n_studies: int = 4, seed: int = 0) -> None:
    """n_trials spread over SimCLR scale studies with 4 params, 20 reported epochs, pruned and failed trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    dists = {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        "temperature": FloatDistribution(0.1, 1.0),
        "batch_size": CategoricalDistribution([128, 256, 512]),
        "data_fraction": CategoricalDistribution([0.1, 0.25, 0.5, 1.0]),
    }
    for s in range(n_studies):
        trials = []
        for _ in range(n_trials // n_studies):
            params = {
                "lr": 10 ** rng.uniform(-4, 0),
                "temperature": rng.uniform(0.1, 1.0),
                "batch_size": rng.choice([128, 256, 512]),
                "data_fraction": rng.choice([0.1, 0.25, 0.5, 1.0]),
            }
            state = rng.choices([COMPLETE, PRUNED, FAIL], [0.7, 0.25, 0.05])[0]
            value = 20 + 10 * params["data_fraction"] + rng.gauss(0, 2)
            epochs = 20 if state == COMPLETE else 5
            attrs = {
                "data_fraction": params["data_fraction"],
                "n_pretrain_images": int(50000 * params["data_fraction"]),
                "test_top1": value - 1,
                "test_top5": value + 25,
                "seconds": 12.5,
                "steps": 400,
                "device": "cpu",
            }
            if state == FAIL:
                attrs["error"] = "NonFiniteLoss: diverged"
            trials.append(
                create_trial(
                    state=state,
                    value=value if state == COMPLETE else None,
                    params=params,
                    distributions=dists,
                    user_attrs=attrs,
                    intermediate_values={e: value * (e + 1) / 20 for e in range(epochs)},
                )
            )
        _study(storage, f"scale-{s}", trials, objective="simclr", role="simclr_scale")
