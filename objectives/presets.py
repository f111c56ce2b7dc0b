"""Presets: named budgets that fill config keys (never the search space itself; --set overrides them).

- smoke: the whole comparison (`study.py compare`) on 2 CPU cores in 10-13 minutes: 1,000 CIFAR-10 pretraining
  images (data_fraction 0.02), a 5% CIFAR-100 subset for the probes and scratch (2,200 probe-train, 300 probe-val,
  500 test images), 5 SimCLR and 3 supervised epochs, full-batch probes on cached features, the ImageNet encoder at
  32x32. The numbers are real measurements of small runs, not of the paper's setting. Measured on CIFAR-sized
  archives (2 AMD EPYC cores, bf16, ~105 SimCLR views/s): compare took 10.5 minutes; a full SimCLR trial ~105 s
  (pretraining with the kNN monitor ~95, probe features ~8), a scratch trial ~65 s, a probe study ~10 s (features
  once, then under a second a trial); the median pruner stopped 2 of the 3 hyperparameter trials early (without
  pruning: about 12 minutes).
- default: a few GPU-hours: full data, the config defaults (100 SimCLR epochs, 30 supervised epochs), the
  ImageNet encoder at 224.
- paper: the SimCLR paper's CIFAR budgets (Chen et al. 2020, Appendix B.9: LARS, batch 512-1024, learning rate
  0.5-1.5, temperature 0.5, weight decay 1e-6, colour strength 0.5, 500+ epochs, no blur at 32x32).
"""

from __future__ import annotations

from typing import Any

from errors import UserError
from simclr.config import check_value, objective_keys

_SMOKE_DATA = {"probe_fraction": 0.05, "test_fraction": 0.05}  # CIFAR-100: 2,200 probe-train, 300 val, 500 test
_SMOKE_PROBE = {"probe_epochs": 30, "probe_batch_size": 0}  # full batch on cached features: seconds

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "simclr": {
            **_SMOKE_DATA,
            **_SMOKE_PROBE,
            "data_fraction": 0.02,  # 1,000 CIFAR-10 images (compare's scale grid: 100, 300, 1,000)
            "epochs": 5,
            "batch_size": 128,
            "warmup_epochs": 0.5,
            "checkpoint_every": 2,
            "monitor_every": 1,
            "monitor_size": 500,  # kNN bank: 5 images per CIFAR-100 class
            "knn_k": 20,
        },
        "linear_probe": {**_SMOKE_DATA, **_SMOKE_PROBE, "resolution": 32},
        "supervised": {**_SMOKE_DATA, "epochs": 3, "batch_size": 128, "warmup_epochs": 0.5},
        "finetune": {**_SMOKE_DATA, "epochs": 3, "batch_size": 128, "warmup_epochs": 0.5, "lr": 0.01, "resolution": 32},
    },
    "default": {
        "simclr": {
            "epochs": 100,
            "batch_size": 256,
            "optimizer": "sgd",
            "lr": 0.3,
            "checkpoint_every": 10,
            "monitor_every": 5,
            "monitor_size": 5000,
        },
        "linear_probe": {"probe_epochs": 100, "resolution": 224},
        "supervised": {"epochs": 30, "batch_size": 128, "lr": 0.1},
        "finetune": {"epochs": 30, "batch_size": 128, "lr": 0.01, "resolution": 96},
    },
    "paper": {
        "simclr": {
            "epochs": 500,
            "batch_size": 512,
            "optimizer": "lars",
            "lr": 1.0,
            "weight_decay": 1e-6,
            "temperature": 0.5,
            "jitter_strength": 0.5,
            "blur_p": 0.0,
            "warmup_epochs": 10,
            "checkpoint_every": 10,
            "monitor_every": 10,
            "monitor_size": 5000,
        },
        "linear_probe": {"probe_epochs": 100, "resolution": 224},
        "supervised": {"epochs": 200, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4},
        "finetune": {"epochs": 100, "batch_size": 128, "lr": 0.01, "weight_decay": 5e-4, "resolution": 224},
    },
}


def preset_config(preset: str | None, objective: str) -> dict[str, Any]:
    """The config keys a preset sets for an objective ({} for no preset); UserError on an unknown preset."""
    fields = objective_keys(objective)  # UserError for an unknown objective
    if not preset:
        return {}
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = dict(PRESETS[preset][objective])
    for key, value in values.items():
        assert key in fields, f"preset {preset}/{objective} sets unknown key {key}"
        check_value(objective, key, value)
    return values
