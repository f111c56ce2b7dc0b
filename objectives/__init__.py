"""Optuna glue: a study's spec (objective, config, space, sampler, pruner) from the command line, and the
objective callables rebuilt from a stored spec. Importing this package does not import torch: the objective
modules are imported only by `make_objective` (study.py optimize).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from errors import UserError
from objectives.presets import preset_config
from objectives.space import (
    build_space,
    make_pruner,
    make_sampler,
    parse_encoder,
    parse_param,
    parse_set,
    pruner_spec,
    sampler_spec,
)
from simclr.config import defaults
from storage import schema

OBJECTIVES = schema.OBJECTIVES
_CLASSES = {
    "simclr": ("objectives.simclr_objective", "SimCLRObjective"),
    "linear_probe": ("objectives.probe_objective", "LinearProbeObjective"),
    "supervised": ("objectives.supervised_objective", "SupervisedObjective"),
    "finetune": ("objectives.supervised_objective", "FinetuneObjective"),
}


def build_spec(
    objective: str,
    *,
    preset: str | None = None,
    sets: Sequence[str] = (),
    params: Sequence[str] = (),
    sampler: str = "tpe",
    pruner: str = "median",
    seed: int | None = None,
    role: str = "",
    comparison: str = "",
    base: dict[str, Any] | None = None,
) -> schema.StudySpec:
    """Validate a study's command-line description into a StudySpec, touching no store (UserError if bad).

    config = objective defaults <- preset <- `base` (values taken from elsewhere: another study's data settings,
    --data-dir) <- --set; space = default space (scaled to the config) minus the
    --set keys, plus --param (grid: the --param choices only). The sampler seed defaults to the config seed.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    config = defaults(objective)
    config.update(preset_config(preset, objective))
    config.update({k: v for k, v in (base or {}).items() if k in config})
    fixed = _parsed_once("--set", [parse_set(objective, text) for text in sets])
    config.update(fixed)
    searched = _parsed_once("--param", [parse_param(objective, text) for text in params])
    seed = int(config["seed"]) if seed is None else int(seed)
    sampler_dict = sampler_spec(sampler, seed)
    space = build_space(objective, config, fixed, searched, sampler)
    if role and role not in schema.ROLES:
        raise UserError(f"unknown role {role!r}; choose from {', '.join(schema.ROLES)}")
    if "encoder" in config:
        parse_encoder(str(config["encoder"]))
    return schema.StudySpec(
        objective=objective,
        config=config,
        space=space,
        sampler=sampler_dict,
        pruner=pruner_spec(pruner, objective, config),
        preset=preset or "",
        role=role,
        comparison=comparison,
    )


def _parsed_once(flag: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """{key: value} of parsed KEY=... options; UserError when a key is given twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise UserError(f"{flag} {key} given twice")
        out[key] = value
    return out


def make_objective(spec: schema.StudySpec, **kwargs: Any):
    """The objective callable of a study (imports torch). kwargs: study_name, storage, artifacts, device,
    work_dir, progress (see objectives.common.Objective)."""
    import importlib

    module, cls = _CLASSES[spec.objective]
    return getattr(importlib.import_module(module), cls)(spec, **kwargs)


def open_study(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, schema.StudySpec]:
    """A stored study with its sampler and pruner rebuilt from its attrs (UserError if it is not ours)."""
    from storage import load_study

    study = load_study(storage, name)
    try:
        spec = schema.read_spec(study.user_attrs, name)
    except schema.SchemaError as e:
        raise UserError(str(e)) from None
    study.sampler = make_sampler(spec.sampler, spec.space)
    study.pruner = make_pruner(spec.pruner)
    return study, spec


__all__ = ["OBJECTIVES", "build_spec", "make_objective", "open_study"]
