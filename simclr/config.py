"""Every config key, declared once: a typed dataclass field with its default, valid range, default search range
and one-line help (how a key is declared: simclr/declare.py). Validation (`check_value`), `study.py keys`,
`study.py show`, presets and the default search spaces are all derived from these declarations.

Config keys are the field names, one flat namespace per objective (DESIGN.md "The command line"): an objective's
config is the union of the sections listed in `SECTIONS`. Names are unique within an objective. SimCLR
pretraining and supervised training share their optimisation keys (`epochs`, `lr`, ...: `TrainingConfig`, with
each section's defaults stated by `@redeclare`) because the two never meet in one objective. A trial's config is
built once as a typed `Config` (`make_config`) and passed down as section objects. No torch and no Optuna here:
`study.py create/list/show/keys` use this module without loading either.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields

from errors import UserError
from simclr.declare import (
    EPOCHS_CAP,
    FRACTION,
    IMAGES_CAP,
    NON_NEGATIVE,
    PER_SECTION,
    POSITIVE,
    PROBABILITY,
    WIDTH_CAP,
    As,
    Range,
    Search,
    dataset_check,
    key,
    not_empty_check,
    redeclare,
    shared_key,
)

# Values renamed since studies were stored, read as their new names wherever a value comes in (parse_value for
# --set and --param, make_config for stored configs and trial parameters).
ALIASES: dict[str, dict[object, object]] = {"optimizer": {"adam": "adamw"}}


# ---------------------------------------------------------------------------------------------------------
# The keys


@dataclass
class RunConfig:
    seed: int = key(
        0,
        "seeds data subsets, splits, init and augmentation (one place: seed_everything)",
        ge=0,
        le=2**32 - 1,
        why="numpy's seed range",
    )
    precision: str = key(
        "auto",
        "auto = bf16 where native (CUDA, avx512_bf16 CPUs), fp16 on older CUDA, else fp32",
        choices=("auto", "bf16", "fp16", "fp32"),
    )
    channels_last: bool = key(True, "NHWC convolutions: faster with bf16 on CPU and on tensor cores")
    compile: bool = key(False, "torch.compile the training step (pays off on long runs only)")
    seeds: int = key(
        1, "compare: each regime's selected configuration runs with this many seeds (seed, seed+1, ...)", ge=1
    )


@dataclass
class DataConfig:
    data_dir: str = key("data", "where the CIFAR archives are (or are downloaded to)")
    cache_dir: str = key("", "feature cache directory; empty = <data_dir>/features")
    download: bool = key(True, "download missing CIFAR archives (checksums verified)")
    pretrain_data: str = key("cifar10", "the pretraining set: cifar10, cifar100 or folder:PATH", check=dataset_check)
    probe_data: str = key("cifar100", "the linear protocol's and supervised training's dataset", check=dataset_check)
    image_size: int = key(32, "folder: datasets are resized to this (CIFAR is 32)", gt=0, le=1024, why="an image side")
    probe_fraction: float = key(1.0, "stratified fraction of probe train used (before the train/val split)", **FRACTION)
    test_fraction: float = key(1.0, "stratified fraction of the test set evaluated", **FRACTION)
    val_fraction: float = key(0.1, "probe-val share of probe train (5k of CIFAR-100's 50k)", ge=0, lt=1)
    label_fraction: float = key(
        1.0,
        "label efficiency: nested, class-balanced fraction of probe-train whose labels train (after the val split: "
        "probe-val and test stay whole)",
        **FRACTION,
    )


@dataclass(kw_only=True)
class TrainingConfig:
    """The optimisation keys of SimCLR pretraining and of supervised training: type, range, help and search range
    declared once. Each section states its own defaults (PER_SECTION here) and, where they differ, its help and
    search range with `@redeclare` (simclr/declare.py)."""

    epochs: int = key(PER_SECTION, "training epochs", gt=0, **EPOCHS_CAP)
    batch_size: int = key(
        PER_SECTION, "images per step", gt=0, le=65536, why="SimCLR's largest batch is 32768: more is a typo"
    )
    optimizer: str = key(
        "sgd",
        "sgd | lars | adamw (torch AdamW; 'adam', from older studies, is read as adamw)",
        choices=("sgd", "lars", "adamw"),
    )
    lr: float = key(
        PER_SECTION,
        "peak learning rate after warm-up, per 256 images: the rate trained with is lr x batch_size / 256 (lr_scaling)",
        search=Search("float", 0.1, 3, log=True, relative=True),
        **POSITIVE,
    )
    lr_scaling: str = key(
        "linear",
        "how lr scales with batch_size (google-research/simclr learning_rate_scaling): linear = lr x batch/256, "
        "sqrt = lr x sqrt(batch), none = lr as is",
        choices=("linear", "sqrt", "none"),
    )
    momentum: float = key(0.9, "SGD/LARS momentum", **NON_NEGATIVE)
    weight_decay: float = key(PER_SECTION, "L2 weight decay (BN and biases excluded)", **NON_NEGATIVE)
    warmup_epochs: float = key(
        PER_SECTION, "linear warm-up, then cosine decay to 0, computed per step", ge=0, **EPOCHS_CAP
    )


@dataclass
@redeclare(
    epochs=As(100, "SimCLR pretraining epochs"),
    batch_size=As(
        256,
        "images per step; each gives two views, so 2x this many rows in NT-Xent",
        search=Search("choice", choices=(0.5, 1, 2), relative=True),
    ),
    lr=As(0.3, "peak learning rate after warm-up per 256 images (SimCLR: 0.3, trained with 0.3 x batch/256)"),
    weight_decay=As(1e-4, search=Search("float", 1e-6, 1e-3, log=True)),
    warmup_epochs=10,
)
class PretrainConfig(TrainingConfig):
    temperature: float = key(
        0.5,
        "NT-Xent temperature tau (the SimCLR paper's CIFAR runs use 0.5)",
        search=Search("float", 0.1, 1.0, log=True),
        **POSITIVE,
    )
    proj_hidden: int = key(512, "projection head: 512 -> proj_hidden -> proj_dim", gt=0, **WIDTH_CAP)
    proj_dim: int = key(128, "output size of the projection head (NT-Xent's space)", gt=0, **WIDTH_CAP)
    data_fraction: float = key(1.0, "stratified, seeded, nested subset of the pretraining set", **FRACTION)
    equal_steps_as: float = key(
        0.0,
        "0: train `epochs` epochs; f > 0: as many steps as `epochs` epochs take on the "
        "data_fraction=f subset (a scale curve at equal compute)",
        ge=0,
        le=1,
    )
    crop_min_scale: float = key(0.08, "RandomResizedCrop scale=(crop_min_scale, 1)", **FRACTION)
    jitter_strength: float = key(
        0.5,
        "the SimCLR paper's colour strength s: ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) (s = 0.5 for CIFAR, Appendix B.9)",
        search=Search("float", 0.25, 1.0),
        ge=0,
        le=2.5,
        why="the hue jitter 0.2 x strength must stay <= 0.5",
    )
    jitter_p: float = key(0.8, "probability of colour jitter per view", **PROBABILITY)
    gray_p: float = key(0.2, "probability of grayscale per view", **PROBABILITY)
    blur_p: float = key(
        0.0, "probability of Gaussian blur (SimCLR drops blur at 32x32; 0.5 for larger images)", **PROBABILITY
    )
    checkpoint_every: int = key(10, "epochs between checkpoints (0 = only at the end)", ge=0, **EPOCHS_CAP)
    monitor_every: int = key(5, "epochs between kNN monitor evaluations (0 = never)", ge=0, **EPOCHS_CAP)
    monitor_size: int = key(5000, "kNN monitor: at most this many probe-train and probe-val images", ge=0, **IMAGES_CAP)
    knn_k: int = key(200, "neighbours of the kNN monitor", gt=0, **IMAGES_CAP)
    knn_temperature: float = key(0.1, "temperature of the kNN monitor's weights", **POSITIVE)


PROBE = ("linear_probe",)  # SimCLR trials probe with fixed settings: only the probe studies search them


@dataclass
class ProbeConfig:
    probe_epochs: int = key(100, "epochs of the linear probe", gt=0, **EPOCHS_CAP)
    probe_optimizer: str = key("sgd", "sgd | adam", choices=("sgd", "adam"))
    probe_lr: float = key(
        0.1,
        "probe learning rate, on standardised features (probe-train mean/std)",
        **POSITIVE,
        search=Search("float", 1 / 30, 10, log=True, relative=True, only=PROBE),
    )
    probe_weight_decay: float = key(
        1e-5,
        "L2 on the linear layer's weight",
        **NON_NEGATIVE,
        search=Search("float", 1e-7, 1e-2, log=True, only=PROBE),
    )
    probe_batch_size: int = key(1024, "probe minibatch (0 = full batch)", ge=0, **IMAGES_CAP)


@dataclass
class EncoderConfig:
    encoder: str = key(
        "random", "random | imagenet | best:STUDY | trial:STUDY:NUMBER | a checkpoint path", check=not_empty_check
    )
    resolution: int = key(
        224, "input size of the ImageNet (7x7-stem) encoder; CIFAR-stem encoders use the data's", **POSITIVE
    )


@dataclass
@redeclare(
    epochs=As(30, "supervised training epochs"),
    batch_size=128,
    lr=As(0.2, "peak learning rate after warm-up per 256 images (0.2: the CIFAR recipe's 0.1 at batch 128)"),
    momentum=As(help="SGD momentum"),
    weight_decay=As(5e-4, search=Search("float", 1e-5, 1e-3, log=True)),
    warmup_epochs=1,
)
class SupervisedConfig(TrainingConfig):
    label_smoothing: float = key(0.0, "cross-entropy label smoothing", search=Search("float", 0.0, 0.2), ge=0, lt=1)
    crop_padding: int = key(4, "random crop with this zero padding, plus horizontal flip", **NON_NEGATIVE)


@dataclass
@redeclare(epochs=As(30, "epochs on the data_fraction subset (compare's presets give it SimCLR's epochs)"))
class SupervisedPretrainConfig(SupervisedConfig):
    """Supervised training on the pretraining set (supervised_pretrain), filling Config.supervised: SupervisedConfig
    plus the subset and kNN monitor keys as PretrainConfig declares them (`shared_key`), so that `--set
    data_fraction=0.1` selects the same images, and the monitor keys the same monitor, as in a simclr study."""

    data_fraction: float = shared_key(PretrainConfig, "data_fraction")
    monitor_every: int = shared_key(PretrainConfig, "monitor_every")
    monitor_size: int = shared_key(PretrainConfig, "monitor_size")
    knn_k: int = shared_key(PretrainConfig, "knn_k")
    knn_temperature: float = shared_key(PretrainConfig, "knn_temperature")


SECTIONS: dict[str, tuple[type, ...]] = {
    "simclr": (RunConfig, DataConfig, PretrainConfig, ProbeConfig),
    "linear_probe": (RunConfig, DataConfig, EncoderConfig, ProbeConfig),
    "supervised": (RunConfig, DataConfig, SupervisedConfig),
    "finetune": (RunConfig, DataConfig, EncoderConfig, SupervisedConfig),
    "supervised_pretrain": (RunConfig, DataConfig, SupervisedPretrainConfig, ProbeConfig),
}


def declare_objective(name: str, sections: tuple[type, ...]) -> None:
    """Another objective's config namespace: the union of existing sections (objectives.registry.register)."""
    unknown = [section.__name__ for section in sections if section_field(section) is None]
    if unknown or name in SECTIONS:
        raise ValueError(f"objective {name!r}: already declared, or unknown sections {unknown}")
    SECTIONS[name] = tuple(sections)


def forget_objective(name: str) -> None:
    SECTIONS.pop(name, None)


# ---------------------------------------------------------------------------------------------------------
# What is derived from the declarations


@dataclass(frozen=True)
class KeySpec:
    """One key of one objective, as declared."""

    name: str
    type: type
    default: object
    help: str
    range: Range
    search: Search | None
    section: type


def objective_keys(objective: str) -> dict[str, KeySpec]:
    """{key: KeySpec} of one objective's flat config namespace, in declaration order."""
    if objective not in SECTIONS:
        raise UserError(f"unknown objective {objective!r}; choose from {', '.join(SECTIONS)}")
    out: dict[str, KeySpec] = {}
    for section in SECTIONS[objective]:
        hints = typing.get_type_hints(section)
        for f in fields(section):
            out[f.name] = KeySpec(
                f.name, hints[f.name], f.default, f.metadata["help"], f.metadata["range"], f.metadata["search"], section
            )
    return out


def objectives_using(name: str) -> list[str]:
    return [objective for objective in SECTIONS if name in objective_keys(objective)]


def defaults(objective: str) -> dict[str, object]:
    return {k: spec.default for k, spec in objective_keys(objective).items()}


def default_search(objective: str) -> dict[str, Search]:
    """The keys an objective searches when nothing else is said, with their declared ranges."""
    keys = objective_keys(objective).items()
    return {
        k: spec.search for k, spec in keys if spec.search and (not spec.search.only or objective in spec.search.only)
    }


def check_value(objective: str, name: str, value: object) -> None:
    """UserError when `value` is out of `name`'s declared range (the one validation of a config value)."""
    spec = objective_keys(objective)[name]
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{name}={value!r}: must be a finite number")
    why = spec.range.error(value)
    if why:
        raise UserError(f"{name}={value!r}: {why}")


def parse_value(objective: str, name: str, text: str) -> object:
    """One `--set KEY=VALUE` (or `--param` choice) value typed by the key's declaration, renamed (ALIASES) and
    range-checked."""
    known = objective_keys(objective)
    if name not in known:
        raise UserError(f"unknown config key {name!r} for objective {objective}; known: {', '.join(sorted(known))}")
    kind = known[name].type
    value: object
    try:
        if kind is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            value = low in ("true", "1", "yes")
        elif kind in (int, float):
            value = kind(text)
        else:
            value = text
    except ValueError:
        raise UserError(f"{name}={text!r}: expected {kind.__name__}") from None
    value = ALIASES.get(name, {}).get(value, value)
    check_value(objective, name, value)
    return value


def canonical(values: Mapping[str, object]) -> dict[str, object]:
    """`values` (a flat config) with renamed values under their current names (ALIASES: "adam" -> "adamw")."""
    return {k: ALIASES.get(k, {}).get(v, v) for k, v in values.items()}


@dataclass(frozen=True)
class Config:
    """One objective's whole config, typed: the sections of SECTIONS[objective]; the others are None."""

    objective: str
    run: RunConfig
    data: DataConfig
    pretrain: PretrainConfig | None = None
    probe: ProbeConfig | None = None
    encoder: EncoderConfig | None = None
    supervised: SupervisedConfig | None = None

    def flat(self) -> dict[str, object]:
        """The flat {key: value} dict that studies store."""
        out: dict[str, object] = {}
        for f in fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                out.update(dataclasses.asdict(section))
        return out


_SECTION_FIELD = {
    RunConfig: "run",
    DataConfig: "data",
    PretrainConfig: "pretrain",
    ProbeConfig: "probe",
    EncoderConfig: "encoder",
    SupervisedConfig: "supervised",
}


def section_field(section: type) -> str | None:
    """The Config field a section fills: its own, else its nearest base's (SupervisedPretrainConfig extends
    SupervisedConfig and fills `supervised`); None for a class that is no section."""
    return next((_SECTION_FIELD[base] for base in section.__mro__ if base in _SECTION_FIELD), None)


def make_config(objective: str, values: Mapping[str, object]) -> Config:
    """The typed config of `objective` from a flat dict (a study's stored config with a trial's parameters merged
    in). The values were validated when the study was created (its config and its space's bounds): they are typed
    here, not checked again, but renamed values are read as their new names (ALIASES). Missing keys take their
    defaults (a study stored before a key existed)."""
    known, values = objective_keys(objective), canonical(values)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(f"unknown config key(s) {', '.join(unknown)} for objective {objective}")
    sections = {}
    for section in SECTIONS[objective]:
        names = {f.name for f in fields(section)}
        sections[section_field(section)] = section(**{k: v for k, v in values.items() if k in names})
    return Config(objective, **sections)
