"""Optuna glue: a study's spec (objective, config, space, sampler, pruner) from the command line, and the
objective callables rebuilt from a stored spec. Importing this package does not import torch: the objective
modules are imported only by `make_objective` (study.py optimize).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from errors import UserError
from objectives import registry
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
from simclr.config import check_value, defaults, objective_keys
from storage import schema

OBJECTIVES = registry.NAMES  # the registered objectives (objectives.registry)


def build_spec(
    objective: str,
    *,
    preset: str | None = None,
    sets: Sequence[str] = (),
    params: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
    searched: Mapping[str, BaseDistribution] | None = None,
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
    info = registry.get(objective)  # UserError for an unknown objective
    config = defaults(objective)
    config.update(info.preset(preset))
    config.update({k: v for k, v in (base or {}).items() if k in config})
    fixed = _parsed_once("--set", [*parse_sets(objective, sets).items(), *_checked(objective, values)])
    config.update(fixed)
    pairs = [parse_param(objective, text) for text in params] + _checked_space(objective, searched)
    searched = _parsed_once("--param", pairs)
    seed = int(config["seed"]) if seed is None else int(seed)
    sampler_dict = sampler_spec(sampler, seed)
    space = build_space(objective, config, fixed, searched, sampler)
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


def parse_sets(objective: str, sets: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` texts as typed values, parsed once (UserError on a bad one, or a key given twice)."""
    return _parsed_once("--set", [parse_set(objective, text) for text in sets])


def _checked(objective: str, values: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """Typed config values as (key, value) pairs, each a key of the objective and in its declared range."""
    known = objective_keys(objective)
    for key, value in (values or {}).items():
        if key not in known:
            raise UserError(f"unknown config key {key!r} for objective {objective}")
        check_value(objective, key, value)
    return list((values or {}).items())


def _checked_space(objective: str, searched: Mapping[str, BaseDistribution] | None) -> list[tuple[str, Any]]:
    """Typed searched distributions as (key, distribution) pairs; every choice or bound in the key's range."""
    for key, dist in (searched or {}).items():
        bounds = getattr(dist, "choices", None) or (dist.low, dist.high)  # type: ignore[attr-defined]
        for bound in bounds:
            _checked(objective, {key: bound})
    return list((searched or {}).items())


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
    return registry.get(spec.objective).make(spec, **kwargs)


def open_study(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, schema.StudySpec]:
    """A stored study with its sampler and pruner rebuilt from its attrs (UserError if it is not ours)."""
    from storage.store import load_study, study_spec

    spec = study_spec(storage, name)
    study = load_study(storage, name)
    study.sampler = make_sampler(spec.sampler, spec.space)
    study.pruner = make_pruner(spec.pruner)
    return study, spec


__all__ = ["OBJECTIVES", "build_spec", "make_objective", "open_study", "parse_sets"]
