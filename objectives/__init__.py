"""Optuna glue: a study's spec (objective, config, space, sampler, pruner) from the command line, and the
objective callables rebuilt from a stored spec. Importing this package does not import torch: the objective
modules are imported only by `make_objective` (study.py optimize).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from typing import Any

import optuna

from errors import UserError
from objectives.presets import preset_config
from objectives.provenance import provenance
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
) -> schema.StudySpec:
    """Validate a study's command-line description into a StudySpec, touching no store (UserError if bad).

    config = objective defaults <- preset <- --set; space = default space (scaled to the config) minus the
    --set keys, plus --param (grid: the --param choices only). The sampler seed defaults to the config seed.
    """
    if objective not in OBJECTIVES:
        raise UserError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    config = defaults(objective)
    config.update(preset_config(preset, objective))
    fixed: dict[str, object] = {}
    for text in sets:
        key, value = parse_set(objective, text)
        if key in fixed:
            raise UserError(f"--set {key} given twice")
        fixed[key] = value
    config.update(fixed)
    searched: dict[str, Any] = {}
    for text in params:
        key, dist = parse_param(objective, text)
        if key in searched:
            raise UserError(f"--param {key} given twice")
        searched[key] = dist
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


def make_objective(spec: schema.StudySpec, **kwargs: Any):
    """The objective callable of a study (imports torch). kwargs: study_name, storage, artifacts, device,
    work_dir, progress (see objectives.common.Objective)."""
    import importlib

    module, cls = _CLASSES[spec.objective]
    return getattr(importlib.import_module(module), cls)(spec, **kwargs)


PROVENANCE = "provenance"  # study attr, JSON: project version, git revision, library versions (provenance.py)


def check_name(name: str) -> None:
    if not name.strip() or len(name) > 500 or not name.isprintable():
        raise UserError(f"study name {name!r}: use 1-500 printable characters")


def default_name(objective: str, taken: set[str]) -> str:
    base = f"{objective}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def new_study(url: str, name: str | None, spec: schema.StudySpec) -> str:
    """Create a study for `spec` in the store at `url` (created if missing) and return its name. Checked first,
    so that nothing is written when it would fail: the name, and that an encoder naming a study or a file
    points at something that exists."""
    from storage import open_storage, store_exists, study_names

    if name is not None:
        check_name(name)
    referenced = []
    if "encoder" in spec.config:
        kind, ref, _ = parse_encoder(spec.encoder)
        if kind in ("best", "trial"):
            referenced.append(ref)
        elif kind == "path" and not os.path.isfile(ref):
            raise UserError(f"encoder {ref!r}: no such checkpoint file")
    if referenced and not store_exists(url):
        raise UserError(f"encoder {spec.encoder!r}: study {referenced[0]!r} not found (the store does not exist yet)")
    storage = open_storage(url, create=True)
    names = set(study_names(storage))
    for ref in referenced:
        if ref not in names:
            raise UserError(f"encoder {spec.encoder!r}: no study named {ref!r} in the store")
    name = name or default_name(spec.objective, names)
    if name in names:
        raise UserError(f"a study named {name!r} already exists (delete it first, or pick another --name)")
    create_study(storage, name, spec)
    return name


def create_study(storage: optuna.storages.BaseStorage, name: str, spec: schema.StudySpec) -> optuna.Study:
    """A new study holding `spec` in its attrs (UserError if the name is taken); nothing is left on failure."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=schema.DIRECTION)
    except optuna.exceptions.DuplicatedStudyError:
        raise UserError(f"a study named {name!r} already exists") from None
    try:
        schema.write_spec(study, spec)
        study.set_user_attr(PROVENANCE, json.dumps(provenance(), sort_keys=True))
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    return study


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


__all__ = ["OBJECTIVES", "PROVENANCE", "build_spec", "create_study", "make_objective", "new_study", "open_study"]
