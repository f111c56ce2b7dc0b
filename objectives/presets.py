"""Presets: named budgets that fill config keys (never the search space itself; --set overrides them).

Budget per regime (pretraining epochs x images; probe epochs on cached features; scratch epochs x probe-train):

| preset  | SimCLR pretraining             | linear probes                 | scratch (supervised)          |
| ------- | ------------------------------ | ----------------------------- | ----------------------------- |
| smoke   | 5 epochs, 1,000 CIFAR-10 imgs  | 30 epochs, ImageNet enc. @64  | 3 epochs, 2,200 imgs          |
| default | 100 epochs, 50,000 imgs        | 100 epochs, ImageNet enc. @224| 200 epochs, 45,000 imgs       |
| paper   | 1,000 epochs, 50,000 imgs      | 100 epochs, ImageNet enc. @224| 200 epochs, 45,000 imgs       |

- smoke: the whole comparison (`study.py compare`) on 2 CPU cores in about 15 minutes: 1,000 CIFAR-10 pretraining
  images (data_fraction 0.02), a 5% CIFAR-100 subset for the probes and scratch (2,200 probe-train, 300 probe-val,
  500 test images), 5 SimCLR and 3 supervised epochs, full-batch probes on cached features. The ImageNet encoder
  is probed at 64x64: at 32x32 its 7x7 stride-2 stem and max-pool leave a 1x1 map before pooling (a handicap no
  paper runs with), and 64 costs ~6 s more on 3,000 images than 32 (bench/features.py: 505 vs 3282 images/s).
  The numbers are real measurements of small runs, not of the paper's setting. Smoke prunes nothing: its probe-train
  holds 22 images a CIFAR-100 class, and a kNN bank needs 40 a class to rank trials (simclr.knn.bank_problem,
  measured by bench/monitor_bank.py), so the monitor is off (monitor_every 0) and every trial runs to the end.
- default: a few GPU-hours: full data, 100 SimCLR epochs, the ImageNet encoder at its native 224, and a scratch
  baseline with the standard CIFAR-100 ResNet-18 recipe (200 epochs, SGD lr 0.1 momentum 0.9, weight decay 5e-4,
  batch 128, cosine: the well-known reproductions, e.g. weiaicunzai/pytorch-cifar100, reach ~75% top-1).
- paper: SimCLR's CIFAR-10 setting (Chen et al. 2020, Appendix B.9): ResNet with a 3x3 stride-1 stem and no
  max-pool; LARS; batch 1024 (B.9 sweeps 256-4096); learning rate 1.0 per 256 images, trained with 4.0 at batch 1024
  (B.9 sweeps 0.5, 1.0, 1.5; google-research/simclr's `learning_rate` is per 256 images with
  `learning_rate_scaling=linear`, and its README's CIFAR-10 recipe, batch 512 at 1.0, trains with 2.0); temperature
  0.5 (B.9's best of 0.1, 0.5, 1.0); weight decay 1e-6; colour strength s = 0.5 (jitter_strength, the paper's
  convention); no Gaussian blur at 32x32; 10 warm-up epochs, cosine decay; 1,000 epochs (B.9 trains up to 1,000).
  Probes and scratch as in default.
- the same-data supervised arm (`supervised_pretrain`: ResNet-18 trained with CIFAR-10's labels on the very images
  SimCLR pretrains on, then probed and fine-tuned on CIFAR-100 as the SimCLR encoder is): SimCLR's images, batch
  (smoke), monitor and probe; its own supervised recipe (SGD lr 0.2 per 256 images, weight decay 5e-4, crop +
  flip); smoke 5 and default 100 epochs (SimCLR's), paper 200 (the standard CIFAR recipe: more only overfits).
- fine-tuning (the `finetune` objective; compare fine-tunes the SimCLR and the ImageNet encoder): SGD at lr 0.02 per
  256 images (0.01 at batch 128), a tenth of scratch's (a pretrained encoder is moved, not trained anew), scratch's
  search space around it; smoke 3 epochs with the ImageNet encoder at 64x64 (as its probe), default 30 epochs with
  it at 96x96, paper 100 epochs at 224x224.

A preset sets only the keys it changes; the rest keep their declared defaults (simclr/config.py). So default's
SimCLR run (100 epochs, batch 256, SGD lr 0.3), its scratch optimiser (SGD lr 0.2 per 256 images, i.e. 0.1 at
batch 128, weight decay 5e-4), and the paper's temperature, colour strength, blur and 10 warm-up epochs are the
keys' defaults.
"""

from __future__ import annotations

from typing import Any

# CIFAR-100: 2,200 probe-train, 300 val, 500 test images; one seed (the default: the spread needs default's three)
_SMOKE_DATA = {"probe_fraction": 0.05, "test_fraction": 0.05}
_SMOKE_PROBE = {"probe_epochs": 30, "probe_batch_size": 0}  # full batch on cached features: seconds
# what both pretraining arms share (SimCLR's images, epochs and monitor: only the labels differ); 1,000 CIFAR-10
# images (compare's scale grid: 100, 300, 1,000); no kNN monitor, no pruning: see the module docstring
_SMOKE_PRETRAIN = {
    **_SMOKE_DATA,
    **_SMOKE_PROBE,
    "data_fraction": 0.02,
    "epochs": 5,
    "warmup_epochs": 0.5,
    "monitor_every": 0,
}

# Only the values that differ from the keys' defaults (simclr/config.py; a test keeps it so).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "simclr": {
            **_SMOKE_PRETRAIN,
            "batch_size": 128,
            "lr": 0.6,  # per 256 images: 0.3 at batch 128
            "checkpoint_every": 2,
        },
        "supervised_pretrain": dict(_SMOKE_PRETRAIN),
        "linear_probe": {**_SMOKE_DATA, **_SMOKE_PROBE, "resolution": 64},
        "supervised": {**_SMOKE_DATA, "epochs": 3, "warmup_epochs": 0.5},
        "finetune": {**_SMOKE_DATA, "epochs": 3, "warmup_epochs": 0.5, "lr": 0.02, "resolution": 64},
    },
    "default": {
        "simclr": {"seeds": 3},
        "supervised_pretrain": {"seeds": 3, "epochs": 100},  # SimCLR's epochs on SimCLR's images
        "linear_probe": {"seeds": 3},
        "supervised": {"seeds": 3, "epochs": 200},
        "finetune": {"lr": 0.02, "resolution": 96},
    },
    "paper": {
        "simclr": {
            "seeds": 3,
            "epochs": 1000,
            "batch_size": 1024,
            "optimizer": "lars",
            "lr": 1.0,
            "weight_decay": 1e-6,
            "monitor_every": 10,
        },
        "supervised_pretrain": {"seeds": 3, "epochs": 200, "monitor_every": 10},  # the CIFAR recipe's 200
        "linear_probe": {"seeds": 3},
        "supervised": {"seeds": 3, "epochs": 200},
        "finetune": {"epochs": 100, "lr": 0.02},
    },
}
