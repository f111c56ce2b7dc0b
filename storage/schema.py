"""The study schema: what every study and trial in the store carries (DESIGN.md "The store").

Objectives write it, `study.py show`, the reports and the dashboard read it. Plain Python and Optuna only (no
torch), so readers start fast. A study is self-describing: `objective`, `config` and `space` (plus how to sample
and prune) are enough for any worker to rebuild the objective from the store alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution

from storage.optuna_private import trial_params

SCHEMA_VERSION = 3
# What changed in each version: a study stored under an older meaning is refused, never silently reinterpreted.
SCHEMA_CHANGES = {
    2: "jitter_strength became the SimCLR paper's colour strength s, ColorJitter(0.8s, 0.8s, 0.8s, 0.2s); in schema 1 "
    "it scaled (0.4s, 0.4s, 0.4s, 0.1s), so a stored value means twice the jitter now",
    3: "lr became a rate per 256 images, trained with lr x batch_size / 256 (lr_scaling); in schema 2 it was the rate "
    "trained with, so a stored value would now train at batch_size / 256 times its rate",
}
DIRECTION = "maximize"  # every objective value is a validation top-1 in percent


# Study user attrs.
OBJECTIVE = "objective"  # str: a registered objective (objectives.registry)
CONFIG = "config"  # JSON str: the fixed config dict (every key of the objective's flat namespace)
SPACE = "space"  # JSON str: {name: distribution_to_json(d)}
SCHEMA = "schema"  # int: SCHEMA_VERSION
PRESET = "preset"  # str: smoke | default | paper | "" (none)
ROLE = "role"  # str, optional: the regime this study plays in a comparison (comparison.regimes.ROLES)
ENCODER = "encoder"  # str, probe/finetune studies: the encoder spec probed
COMPARISON = "comparison"  # str, optional: the compare prefix
SAMPLER = "sampler"  # JSON str: {"name": "tpe", "seed": 0}; Optuna does not store samplers
PRUNER = "pruner"  # JSON str: {"name": "median", "n_startup_trials": .., "n_warmup_steps": ..}
ENCODER_TRIAL = "encoder_trial"  # int, probe/finetune over best:STUDY or trial:STUDY:N: the trial resolved at creation
ENCODER_SHA256 = "encoder_sha256"  # str: sha256 of that trial's checkpoint file; a worker refuses other weights
TIME_PLAN = "time_plan"  # JSON str, compare: the sized plan (budget_s, knobs, cuts, estimate_s per study, machine)
WALL_SECONDS = "wall_seconds"  # float, compare: seconds its runs of this study took, summed over resumed runs
TUNED_BY = "tuned_by"  # str, compare's scale study: "STUDY #N", the search trial whose parameters it runs with
STUDY_ERROR = "error"  # str, optional: why the study could not run (`compare` sets it; "" once it runs again)
READY = "ready"  # bool, compare: False while the worker that created the study sets it up, True once others may run it
PROVENANCE = "provenance"  # JSON str: project version, git revision, library versions (objectives/provenance.py)

# Trial user attrs.
VAL_TOP1 = "val_top1"  # float, percent: probe-val top-1, the objective value of every objective
VAL_TOP5 = "val_top5"  # float, percent: probe-val top-5
TEST_TOP1 = "test_top1"  # float, percent: test top-1 (stored, never used for selection)
TEST_TOP5 = "test_top5"  # float, percent: test top-5
N_TRAIN_IMAGES = "n_train_images"  # int: probe-train images the probe or supervised training saw
STEPS = "steps"  # int: optimiser steps of the trial's training (pretraining for simclr)
SECONDS = "seconds"  # float: wall seconds of the whole trial
IMAGES_PER_SECOND = "images_per_second"  # float: training throughput
DEVICE = "device"  # str: the runtime (device, precision, ...), Runtime.describe()
WORKER = "worker"  # str: HOST:PID of the worker process that ran the trial
TRIAL_ENCODER = "encoder"  # str: what the trial's encoder was ("scratch", "imagenet", "trial:STUDY:3", a path)
ENCODER_DIGEST = "encoder_digest"  # str, linear_probe: digest of the probed encoder's weights (feature cache key)
CHECKPOINT = "checkpoint"  # artifact id of the trial's (final, or latest while running) checkpoint
CHECKPOINT_EPOCH = "checkpoint_epoch"  # epoch of that checkpoint
ERROR = "error"  # str: why the trial failed (one line; INTERRUPTED for a trial queued again)
INTERRUPTED = "interrupted"  # the ERROR of a trial stopped by Ctrl-C or SIGTERM (queued again): not counted
GRID_TAKEN = "grid exhausted"  # how ERROR starts when a grid trial gave way to an earlier one (nothing ran)
DEQUEUED = "dequeued"  # the ERROR of a queued trial cancelled before it started (`study.py dequeue`): not counted
WORKER_LOST = "worker lost"  # how ERROR starts when a trial's worker died (no heartbeat): retried, not counted
BUDGET_TAKEN = "budget taken"  # how ERROR starts when earlier trials had taken the whole budget (nothing ran)
DATA_FRACTION = "data_fraction"  # float, simclr, supervised_pretrain: the fraction of the pretraining set trained on
N_PRETRAIN_IMAGES = "n_pretrain_images"  # int, simclr, supervised_pretrain: images in that subset
RETRY_OF = "retry_of"  # int: the number of the trial a retry continues (heartbeat retry or interrupted trial)
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # int, simclr: the epoch of the inherited checkpoint it resumed from
EPOCHS = "epochs"  # passes over the pretraining subset (fractional when the scale study trains equal steps)
IMAGES_SEEN = "images_seen"  # pretraining images trained on (SimCLR: each gives two views)
HISTORY = "history"  # list of {"epoch", "loss", "lr", "images_per_second", "step", monitor...}, one per epoch
TEST_CORRECT = "test_correct"  # str, pack_correct(top-1 hit per test image, in test-split order): for intervals
KNN_TOP1 = "knn_top1"  # float, percent, simclr, supervised_pretrain: the last kNN monitor top-1 of pretraining
PRETRAIN_SECONDS = "pretrain_seconds"  # float, simclr, supervised_pretrain: seconds of pretraining
PROBE_SECONDS = "probe_seconds"  # float, simclr, supervised_pretrain: seconds of the linear probe after pretraining
FEATURE_SECONDS = "feature_seconds"  # float, linear_probe: seconds spent computing (or loading) features
EFFECTIVE_LR = "effective_lr"  # float, training objectives: the peak rate trained with (lr per 256 x batch_size)
BEST_EPOCH = "best_epoch"  # int, supervised/finetune: the epoch of the reported model (always the final one)
# What every COMPLETE trial of every objective carries (the rest depend on the objective).
COMPLETE_TRIAL_ATTRS = (
    VAL_TOP1,
    VAL_TOP5,
    TEST_TOP1,
    TEST_TOP5,
    N_TRAIN_IMAGES,
    STEPS,
    SECONDS,
    IMAGES_PER_SECOND,
    DEVICE,
    TRIAL_ENCODER,
)
TRIAL_ATTRS = COMPLETE_TRIAL_ATTRS + (
    CHECKPOINT,
    CHECKPOINT_EPOCH,
    ERROR,
    DATA_FRACTION,
    N_PRETRAIN_IMAGES,
    RETRY_OF,
    RESUMED_FROM_EPOCH,
)


def pack_correct(correct: Any) -> str:
    """Per-image top-1 hits (a 1-d bool array or CPU tensor) as "N:base64" of the packed bits, 8 images a byte:
    10,000 test images take 1.7 kB of text, small enough for a trial user attr. `unpack_correct` reverses it."""
    bits = np.asarray(correct)
    if bits.ndim != 1 or bits.dtype != np.bool_:
        raise ValueError(f"need a 1-d bool array, got {bits.dtype} of shape {bits.shape}")
    return f"{bits.size}:{base64.b64encode(np.packbits(bits)).decode('ascii')}"


def unpack_correct(text: str) -> np.ndarray:
    """The bool array (N,) that `pack_correct` packed; ValueError when `text` is not such a string."""
    count, sep, payload = str(text).partition(":")
    try:
        n, packed = int(count), np.frombuffer(base64.b64decode(payload, validate=True), dtype=np.uint8)
    except (ValueError, binascii.Error):
        n, packed = -1, None
    if not sep or n < 0 or packed is None or packed.size != (n + 7) // 8:
        raise ValueError(f"not a packed array of per-image hits: {str(text)[:40]!r}")
    return np.unpackbits(packed, count=n).astype(bool)


def space_to_json(space: dict[str, BaseDistribution]) -> str:
    return json.dumps({name: distribution_to_json(d) for name, d in space.items()}, sort_keys=True)


def space_from_json(text: str) -> dict[str, BaseDistribution]:
    return {name: json_to_distribution(d) for name, d in json.loads(text).items()}


@dataclass
class StudySpec:
    """Everything a study stores about itself, as plain values (the user attrs, decoded)."""

    objective: str
    config: dict[str, Any]
    space: dict[str, BaseDistribution]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    preset: str = ""
    role: str = ""
    comparison: str = ""
    schema: int = SCHEMA_VERSION

    @property
    def encoder(self) -> str:
        return str(self.config.get("encoder", ""))

    def user_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            OBJECTIVE: self.objective,
            CONFIG: json.dumps(self.config, sort_keys=True),
            SPACE: space_to_json(self.space),
            SCHEMA: self.schema,
            PRESET: self.preset,
            SAMPLER: json.dumps(self.sampler, sort_keys=True),
            PRUNER: json.dumps(self.pruner, sort_keys=True),
        }
        if "encoder" in self.config:
            attrs[ENCODER] = self.encoder
        if self.role:
            attrs[ROLE] = self.role
        if self.comparison:
            attrs[COMPARISON] = self.comparison
        return attrs


class SchemaError(ValueError):
    """A study in the store that was not written by this project (or by an incompatible version)."""


def write_spec(study: optuna.Study, spec: StudySpec) -> None:
    for key, value in spec.user_attrs().items():
        study.set_user_attr(key, value)


def read_spec(user_attrs: dict[str, Any], study_name: str = "?") -> StudySpec:
    """Decode a study's user attrs (from Study.user_attrs or FrozenStudy.user_attrs); SchemaError if unusable."""
    missing = [k for k in (OBJECTIVE, CONFIG, SPACE, SCHEMA) if k not in user_attrs]
    if missing:
        raise SchemaError(f"study {study_name!r} was not created by study.py (no {', '.join(missing)} attr)")
    if user_attrs[SCHEMA] != SCHEMA_VERSION:
        stored = user_attrs[SCHEMA]
        why = "; ".join(SCHEMA_CHANGES[v] for v in sorted(SCHEMA_CHANGES) if isinstance(stored, int) and v > stored)
        raise SchemaError(
            f"study {study_name!r} was stored under schema {stored}, this code reads schema {SCHEMA_VERSION}"
            + (f" ({why}): create a new study; the old one stays readable by show and report" if why else "")
        )
    try:
        return StudySpec(
            objective=user_attrs[OBJECTIVE],
            config=json.loads(user_attrs[CONFIG]),
            space=space_from_json(user_attrs[SPACE]),
            sampler=json.loads(user_attrs.get(SAMPLER, '{"name": "tpe", "seed": 0}')),
            pruner=json.loads(user_attrs.get(PRUNER, '{"name": "median"}')),
            preset=user_attrs.get(PRESET, ""),
            role=user_attrs.get(ROLE, ""),
            comparison=user_attrs.get(COMPARISON, ""),
            schema=user_attrs[SCHEMA],
        )
    except (ValueError, TypeError, KeyError) as e:
        raise SchemaError(f"study {study_name!r} has unreadable attrs ({e})") from None


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as plain data: what `show --json` prints; the reports' trial rows add to it (reports.rows).

    `value` is the first objective's (`FrozenTrial.value` raises for a multi-objective study made by hand).
    Non-finite floats stay: `reports.json_safe` makes the row strict JSON.
    """
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.values[0] if trial.values else None,
        "params": trial_params(trial),  # a queued trial: the values it was queued with
        "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "user_attrs": dict(trial.user_attrs),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
    }
