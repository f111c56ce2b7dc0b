"""Every run's settings as typed dataclasses with commented defaults.

Config keys are the field names, one flat namespace per objective (DESIGN.md "The command line"):
an objective's config is the union of the sections listed in `SECTIONS`. Names are unique within an
objective; `SupervisedConfig` reuses `epochs`, `lr`, ... with the same meaning as `PretrainConfig`
because the two never appear in one objective. No torch import here: `study.py list/show` and the
validation of `--set`/`--param` use this module without loading PyTorch.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields

from errors import UserError


@dataclass
class RunConfig:
    seed: int = 0  # seeds data subsets, splits, init, augmentation: one place (simclr.device.seed_everything)
    precision: str = (
        "auto"  # auto | bf16 | fp16 | fp32; auto = bf16 where native (CUDA, avx512_bf16 CPUs), fp16 on older CUDA
    )
    channels_last: bool = True  # NHWC convolutions: faster with bf16 on CPU and tensor cores
    compile: bool = False  # torch.compile the training step (pays off on long runs only)


@dataclass
class DataConfig:
    data_dir: str = "data"  # where CIFAR archives are (or are downloaded to)
    cache_dir: str = ""  # feature cache; "" = <data_dir>/features
    download: bool = True  # download missing CIFAR archives (checksums verified)
    pretrain_data: str = "cifar10"  # cifar10 | cifar100 | folder:PATH
    probe_data: str = "cifar100"  # the linear protocol's (and supervised training's) dataset
    image_size: int = 32  # folder: datasets are resized to this (CIFAR is 32)
    probe_fraction: float = 1.0  # stratified fraction of probe train used (before the train/val split)
    test_fraction: float = 1.0  # stratified fraction of the test set evaluated
    val_fraction: float = 0.1  # probe-val share of probe train: 5k of CIFAR-100's 50k


@dataclass
class PretrainConfig:
    epochs: int = 100
    batch_size: int = 256  # images per step; each gives two views, so 2x this many rows in NT-Xent
    optimizer: str = "sgd"  # sgd | lars | adam
    lr: float = 0.3  # peak learning rate after warmup (SimCLR: 0.3 x batch/256 with LARS)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 10  # linear warmup, then cosine decay to 0, computed per step
    temperature: float = 0.5  # NT-Xent tau; the SimCLR paper's CIFAR runs use 0.5
    proj_hidden: int = 512  # projection head: 512 -> proj_hidden -> proj_dim
    proj_dim: int = 128
    data_fraction: float = 1.0  # stratified, seeded, nested subset of the pretraining set
    crop_min_scale: float = 0.08  # RandomResizedCrop scale=(crop_min_scale, 1)
    jitter_strength: float = 1.0  # s in ColorJitter(0.4s, 0.4s, 0.4s, 0.1s)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0  # SimCLR drops blur at 32x32; use 0.5 for larger images
    checkpoint_every: int = 10  # epochs between checkpoints (0 = only at the end)
    monitor_every: int = 5  # epochs between kNN monitor evaluations (0 = never)
    monitor_size: int = 5000  # bounded monitor: at most this many probe-train and probe-val images
    knn_k: int = 200
    knn_temperature: float = 0.1


@dataclass
class ProbeConfig:
    probe_epochs: int = 100
    probe_optimizer: str = "sgd"  # sgd | adam
    probe_lr: float = 0.1  # on standardised features (probe-train mean/std), batch probe_batch_size
    probe_weight_decay: float = 1e-5  # L2 on the linear layer's weight
    probe_batch_size: int = 1024  # 0 = full batch


@dataclass
class EncoderConfig:
    encoder: str = "random"  # random | imagenet | best:STUDY | trial:STUDY:NUMBER | checkpoint path
    resolution: int = 224  # input size for the ImageNet (7x7-stem) encoder; CIFAR-stem encoders use the data's size


@dataclass
class SupervisedConfig:
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1
    label_smoothing: float = 0.0
    crop_padding: int = 4  # random crop with this zero padding + horizontal flip


SECTIONS: dict[str, tuple[type, ...]] = {
    "simclr": (RunConfig, DataConfig, PretrainConfig, ProbeConfig),
    "linear_probe": (RunConfig, DataConfig, EncoderConfig, ProbeConfig),
    "supervised": (RunConfig, DataConfig, SupervisedConfig),
    "finetune": (RunConfig, DataConfig, EncoderConfig, SupervisedConfig),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("auto", "bf16", "fp16", "fp32"),
    "optimizer": ("sgd", "lars", "adam"),
    "probe_optimizer": ("sgd", "adam"),
}


def objective_fields(objective: str) -> dict[str, tuple[type, object]]:
    """{key: (type, default)} for one objective's flat config namespace."""
    if objective not in SECTIONS:
        raise UserError(f"unknown objective {objective!r}; choose from {', '.join(SECTIONS)}")
    out: dict[str, tuple[type, object]] = {}
    for section in SECTIONS[objective]:
        hints = typing.get_type_hints(section)
        for f in fields(section):
            out[f.name] = (hints[f.name], f.default)
    return out


def defaults(objective: str) -> dict[str, object]:
    return {k: default for k, (_, default) in objective_fields(objective).items()}


def parse_value(objective: str, key: str, text: str) -> object:
    """Parse one `--set KEY=VALUE` value to the key's type; UserError on an unknown key or bad value."""
    known = objective_fields(objective)
    if key not in known:
        raise UserError(f"unknown config key {key!r} for objective {objective}; known: {', '.join(sorted(known))}")
    kind = known[key][0]
    value: object
    try:
        if kind is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = low in ("true", "1", "yes")
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        else:
            value = text
    except ValueError:
        raise UserError(f"{key}={text!r}: expected {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}={text!r}: must be a finite number")
    check_value(key, value)
    return value


def check_value(key: str, value: object) -> None:
    """Range checks shared by --set and by values coming from a search space."""
    if key in CHOICES and value not in CHOICES[key]:
        raise UserError(f"{key}={value!r}: choose from {', '.join(CHOICES[key])}")
    if isinstance(value, bool):
        return
    if key == "seed" and not 0 <= value < 2**32:
        raise UserError(f"seed={value!r}: must be in 0..{2**32 - 1} (numpy's seed range)")
    positive = {
        "epochs",
        "batch_size",
        "lr",
        "temperature",
        "proj_hidden",
        "proj_dim",
        "probe_epochs",
        "probe_lr",
        "knn_k",
        "knn_temperature",
        "image_size",
        "resolution",
    }
    fractions = {"data_fraction", "probe_fraction", "test_fraction"}
    if key in positive and isinstance(value, (int, float)) and not value > 0:
        raise UserError(f"{key}={value!r}: must be > 0")
    if key in fractions and isinstance(value, (int, float)) and not 0 < value <= 1:
        raise UserError(f"{key}={value!r}: must be in (0, 1]")
    if key in {"val_fraction", "jitter_p", "gray_p", "blur_p"} and not 0 <= value < 1 + (key != "val_fraction"):
        raise UserError(f"{key}={value!r}: must be a probability")
    if key == "jitter_strength" and value > 5:
        raise UserError(f"{key}={value!r}: at most 5 (the hue jitter 0.1 x strength must stay <= 0.5)")
    if key == "crop_min_scale" and not 0 < value <= 1:
        raise UserError(f"{key}={value!r}: must be in (0, 1]")
    if (
        key
        in {
            "weight_decay",
            "probe_weight_decay",
            "warmup_epochs",
            "momentum",
            "label_smoothing",
            "checkpoint_every",
            "monitor_every",
            "monitor_size",
            "probe_batch_size",
            "crop_padding",
            "jitter_strength",
        }
        and value < 0
    ):
        raise UserError(f"{key}={value!r}: must be >= 0")


def build(section: type, values: dict[str, object]):
    """An instance of one section from a flat dict (extra keys ignored, missing keys default)."""
    names = {f.name for f in dataclasses.fields(section)}
    return section(**{k: v for k, v in values.items() if k in names})
