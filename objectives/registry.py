"""The objectives, each declared once: an objective's identity in one record.

A record says what `create`, `optimize`, `keys`, the presets, the default search space, pruning and the probes
need to know of an objective: its config sections (simclr.config: the keys, their defaults, ranges and search
ranges), its class, its values in each preset, its pruning axis, whether it takes an encoder or makes encoders
other studies probe (`best:STUDY`), and what its complete trials carry in the store. Checkpoint and resume hooks
come with its class (objectives.checkpoints.ResumableTrials for a pretraining objective).

Adding an objective is one `register(ObjectiveInfo(...))` call (the five built-in ones are below) plus its class
and tests; tests/objectives/test_registry.py registers a toy pretraining objective from the test file alone.
Importing this module does not import torch: a built-in class is named "module:Class" and imported when a
worker builds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from errors import UserError
from objectives.presets import PRESETS
from simclr.config import SECTIONS, check_value, declare_objective, forget_objective, objective_keys
from storage import schema

Axis = Callable[[Mapping[str, Any]], "tuple[int, int]"]


def epochs_axis(config: Mapping[str, Any]) -> tuple[int, int]:
    """(first step pruning may fire, last step) of an objective reporting once an epoch: never before warm-up has
    ended (a run still ramping its learning rate up says little about where it ends). Epochs are the axis: every
    epoch is the training set's images whatever the batch size, so trials that searched different batch sizes are
    compared at equal images seen."""
    epochs, warmup = int(config["epochs"]), math.ceil(float(config["warmup_epochs"]))
    every = int(config.get("monitor_every", 1)) or epochs  # the kNN monitor's period (SimCLR); 0: the end only
    first_report = min(every, epochs)
    after_warmup = -(-max(warmup, first_report) // every) * every  # the first report at or after warm-up's end
    return min(after_warmup, epochs), epochs


PRUNE_AFTER = 0.5  # share of a supervised run's epochs before pruning may fire (scratch, fine-tuning, same-data arm)
SIMCLR_PRUNE_AFTER = 0.625  # share of a SimCLR run's epochs before pruning may fire (5/8: simclr_axis)


def training_axis(config: Mapping[str, Any], share: float = PRUNE_AFTER) -> tuple[int, int]:
    """A training run (supervised training from scratch, fine-tuning, the same-data supervised arm) is pruned only
    after half its epochs (and never inside warm-up: epochs_axis): under a cosine schedule a higher learning rate
    trails until its rate has decayed (half the epochs: half the peak rate), and pruning at epoch 1 of 200 would
    favour small rates and under-tune the baseline every gain is measured against (tests/objectives/test_protocol.py
    holds a slow-starting, higher-rate trial that ends best)."""
    first, last = epochs_axis(config)
    return max(first, math.ceil(share * last)), last


def simclr_axis(config: Mapping[str, Any]) -> tuple[int, int]:
    """SimCLR pretraining is pruned only after 5/8 of its epochs: the kNN monitor ranks trials with different
    hyperparameters as their final linear probes only once the runs that learn have climbed out of the dip below
    their random start that contrastive training opens early. Measured (tests/simclr/test_monitor_trials.py,
    bench/monitor_trials.py): six runs differing in temperature and learning rate, 8 epochs of 13 steps, three
    seeds: Spearman's rho of the monitor against the final probes at half the epochs 0.43-0.89, at 5/8 0.83-0.89
    (the smallest share at which every seed reached the test's 0.6, fixed before the runs)."""
    return training_axis(config, SIMCLR_PRUNE_AFTER)


def probe_axis(config: Mapping[str, Any]) -> tuple[int, int]:
    """The linear probe reports every probe epoch, on cached features: no warm-up to wait for."""
    return 1, int(config["probe_epochs"])


@dataclass(frozen=True)
class ObjectiveInfo:
    """One objective: everything the tool knows of it, in one place."""

    name: str
    sections: tuple[type, ...]  # its config: the union of these simclr.config sections
    factory: str | Callable[..., Any]  # its Objective class, or "module:Class" (imported by make_objective)
    help: str  # one line: what a trial does
    report_axis: Axis = epochs_axis  # (first step pruning may fire, last step) of its intermediate values
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # preset -> config values
    takes_encoder: bool = False  # its config names an encoder: random | imagenet | best:STUDY | trial:STUDY:N | path
    makes_encoders: bool = False  # its trials' checkpoints are encoders that other studies probe or fine-tune
    trial_attrs: tuple[str, ...] = ()  # what its COMPLETE trials carry beyond schema.COMPLETE_TRIAL_ATTRS
    metric: str = "val top-1 (%)"  # what a trial's value is: optuna-dashboard's label for it (set_metric_names)

    def preset(self, preset: str | None) -> dict[str, Any]:
        """The config values a preset sets ({} for no preset, or a preset that says nothing of this objective);
        UserError on an unknown preset."""
        if not preset:
            return {}
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        values = dict(self.presets.get(preset, {}))
        keys = objective_keys(self.name)
        for key, value in values.items():
            assert key in keys, f"preset {preset}/{self.name} sets unknown key {key}"
            check_value(self.name, key, value)
        return values

    def make(self, *args: Any, **kwargs: Any):
        """An instance of its Objective class (imports the class's module: torch)."""
        factory = self.factory
        if isinstance(factory, str):
            import importlib

            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(*args, **kwargs)


REGISTRY: dict[str, ObjectiveInfo] = {}


class _Names(Sequence[str]):
    """The registered names as a live sequence: argparse's `choices` and error messages see later registrations."""

    def __getitem__(self, index):  # type: ignore[override]
        return list(REGISTRY)[index]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(list(REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in REGISTRY


NAMES: Sequence[str] = _Names()


def register(info: ObjectiveInfo) -> ObjectiveInfo:
    """Add an objective (its config namespace goes to simclr.config); a name is registered once."""
    if info.name in REGISTRY:
        raise ValueError(f"objective {info.name!r} is registered already")
    declare_objective(info.name, info.sections)
    REGISTRY[info.name] = info
    return info


def unregister(name: str) -> None:
    """Remove an objective registered with `register` (tests)."""
    REGISTRY.pop(name)
    forget_objective(name)


def get(name: str) -> ObjectiveInfo:
    if name not in REGISTRY:
        raise UserError(f"unknown objective {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _presets(name: str) -> dict[str, Mapping[str, Any]]:
    return {preset: values[name] for preset, values in PRESETS.items() if name in values}


# A pretraining trial's value is its encoder's linear probe (objectives.simclr_objective.probe_trial), as is a probe's
PROBE_METRIC = "linear-probe val top-1 (%)"
_PRETRAIN_ATTRS = (schema.DATA_FRACTION, schema.N_PRETRAIN_IMAGES, schema.EPOCHS, schema.IMAGES_SEEN)
BUILT_IN = (
    ObjectiveInfo(
        "simclr",
        SECTIONS["simclr"],
        "objectives.simclr_objective:SimCLRObjective",
        "SimCLR pretraining on a nested data_fraction subset, kNN monitor for pruning, then the linear probe",
        report_axis=simclr_axis,
        presets=_presets("simclr"),
        makes_encoders=True,
        trial_attrs=(*_PRETRAIN_ATTRS, schema.CHECKPOINT),
        metric=PROBE_METRIC,
    ),
    ObjectiveInfo(
        "linear_probe",
        SECTIONS["linear_probe"],
        "objectives.probe_objective:LinearProbeObjective",
        "the linear classification protocol on a frozen encoder's cached features",
        report_axis=probe_axis,
        presets=_presets("linear_probe"),
        takes_encoder=True,
        metric=PROBE_METRIC,
    ),
    ObjectiveInfo(
        "supervised",
        SECTIONS["supervised"],
        "objectives.supervised_objective:SupervisedObjective",
        "ResNet-18 trained from scratch with labels on probe-train (crop + flip)",
        report_axis=training_axis,
        presets=_presets("supervised"),
    ),
    ObjectiveInfo(
        "finetune",
        SECTIONS["finetune"],
        "objectives.supervised_objective:FinetuneObjective",
        "an encoder fine-tuned with labels on probe-train, all weights trained",
        report_axis=training_axis,
        presets=_presets("finetune"),
        takes_encoder=True,
    ),
    ObjectiveInfo(
        "supervised_pretrain",
        SECTIONS["supervised_pretrain"],
        "objectives.supervised_pretrain_objective:SupervisedPretrainObjective",
        "the same-data supervised arm: ResNet-18 trained with labels on simclr's data_fraction subset, kNN monitor "
        "for pruning, then the linear probe",
        report_axis=training_axis,
        presets=_presets("supervised_pretrain"),
        makes_encoders=True,
        trial_attrs=(*_PRETRAIN_ATTRS, schema.CHECKPOINT),
        metric=PROBE_METRIC,
    ),
)
REGISTRY.update({info.name: info for info in BUILT_IN})  # their config namespaces are simclr.config's SECTIONS
