"""Getting a result out of the store: a trial's encoder as a plain state_dict that torchvision loads, with a JSON
file saying where it came from (`study.py export`)."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from atomic import atomic_write
from errors import UserError
from objectives import open_study
from objectives.create import chosen_trial
from storage import schema
from storage.artifacts import local_file

LOAD_EXAMPLE = """\
import torch, torchvision
model = torchvision.models.resnet18()
model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # the CIFAR stem
model.maxpool = model.fc = torch.nn.Identity()
model.load_state_dict(torch.load("{out}"))"""
SCORES = (schema.VAL_TOP1, schema.VAL_TOP5, schema.TEST_TOP1, schema.TEST_TOP5)  # the trial attrs exported


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def export_encoder(storage, artifacts, name: str, number: int | None, out: str | Path) -> dict[str, Any]:
    """Write the chosen trial's encoder to `out` as a state_dict that torchvision's `resnet18` with the
    checkpoint's stem loads (CIFAR stem: 3x3 conv1, no max-pool; fc = Identity), and `out` with the suffix .json:
    the study, trial, config (merged with the trial's parameters), scores and normalisation. Returns the JSON."""
    import torch

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
        payload = load_checkpoint(local_file(artifacts, artifact_id, tmp))
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
        "scores": {k: _finite(trial.user_attrs.get(k)) for k in SCORES},
        "load": LOAD_EXAMPLE.format(out=out.name) if stem == "cifar" else "torchvision.models.resnet18()",
    }
    _atomic(out, lambda f: torch.save(state, f))
    _atomic(out.with_suffix(".json"), lambda f: f.write(json.dumps(info, indent=2).encode()))
    return {**info, "json": str(out.with_suffix(".json"))}


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """atomic_write (never a half-written file), with a failure of the file system as one UserError line."""
    try:
        atomic_write(path, write)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
