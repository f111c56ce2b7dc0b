"""Getting results out of the store: a trial's encoder as a plain state_dict (`study.py export`), and a
configuration queued for the next worker (`study.py enqueue`)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from errors import UserError
from objectives import open_study
from objectives.create import chosen_trial
from objectives.space import parse_set
from storage import schema

LOAD_EXAMPLE = """\
import torch, torchvision
model = torchvision.models.resnet18()
model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # the CIFAR stem
model.maxpool = model.fc = torch.nn.Identity()
model.load_state_dict(torch.load("{out}"))"""


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def export_encoder(storage, artifacts, name: str, number: int | None, out: str | Path) -> dict[str, Any]:
    """Write the chosen trial's encoder to `out` as a state_dict that torchvision's `resnet18` with the
    checkpoint's stem loads (CIFAR stem: 3x3 conv1, no max-pool; fc = Identity), and `out` with the suffix .json:
    the study, trial, config (merged with the trial's parameters), scores and normalisation. Returns the JSON."""
    import torch

    from objectives.resources import artifact_file
    from simclr.models import load_checkpoint, resnet18

    out = Path(out)
    study, spec = open_study(storage, name)  # UserError for a study not made by study.py
    trial = chosen_trial(study, number)
    artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
    if not artifact_id:
        raise UserError(f"trial {trial.number} of {name!r} has no checkpoint (a linear_probe study trains no encoder)")
    if artifacts is None:
        raise UserError(f"no artifact directory holds trial {trial.number}'s checkpoint (give --artifacts DIR)")
    with tempfile.TemporaryDirectory() as tmp:
        payload = load_checkpoint(artifact_file(artifacts, artifact_id, Path(tmp)))
    state, stem = payload.get("encoder"), payload.get("stem", "cifar")
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {artifact_id} holds no encoder weights")
    resnet18(stem).load_state_dict(state)  # strict: what we write loads into the documented model
    info = {
        "study": name,
        "trial": trial.number,
        "objective": spec.objective,
        "value": _finite(trial.value),
        "stem": stem,
        "mean": payload.get("mean"),
        "std": payload.get("std"),
        "config": {**spec.config, **trial.params},
        "scores": {
            k: _finite(trial.user_attrs.get(k))
            for k in (schema.VAL_TOP1, schema.VAL_TOP5, schema.TEST_TOP1, schema.TEST_TOP5)
        },  # fmt: skip
        "load": LOAD_EXAMPLE.format(out=out.name) if stem == "cifar" else "torchvision.models.resnet18()",
    }
    _atomic(out, lambda f: torch.save(state, f))
    _atomic(out.with_suffix(".json"), lambda f: f.write(json.dumps(info, indent=2).encode()))
    return {**info, "json": str(out.with_suffix(".json"))}


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same directory, renamed at the end: never a half-written file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def in_range(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    low, high = dist.low, dist.high  # Float or Int distribution
    step = getattr(dist, "step", None)
    on_step = step is None or math.isclose((value - low) / step, round((value - low) / step), abs_tol=1e-8)
    return low <= value <= high and on_step


def enqueue(storage, name: str, sets: Sequence[str]) -> dict[str, Any]:
    """Queue a trial of study `name` with the given values of its searched parameters (Optuna's enqueue_trial);
    parameters not given are sampled as usual. UserError for a key that is fixed in the study, not a key of its
    objective, or a value outside its search range. Returns the queued parameters."""
    study, spec = open_study(storage, name)  # UserError for a study not made by study.py
    params: dict[str, Any] = {}
    for text in sets:
        key, value = parse_set(spec.objective, text)
        if key not in spec.space:
            searched = ", ".join(spec.space) or "none"
            raise UserError(f"{key} is fixed in study {name!r} ({key}={spec.config.get(key)!r}); searched: {searched}")
        if not in_range(spec.space[key], value):
            raise UserError(f"{key}={value!r} is outside the study's search range {spec.space[key]}")
        params[key] = value
    if not params:
        raise UserError("give at least one --set KEY=VALUE of a searched parameter")
    study.enqueue_trial(params, skip_if_exists=False)
    return params
