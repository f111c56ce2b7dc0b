"""Queueing a configuration for the next worker (`study.py enqueue`): values of a study's searched parameters,
checked against its stored search space, become a WAITING trial that the next `optimize` runs first; `study.py
dequeue` cancels one that no worker has started."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna

from errors import UserError
from objectives import open_study
from objectives.space import parse_set
from storage import schema
from storage.optuna_private import trial_id, trial_params


def in_range(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether `value` is one of a categorical distribution's choices, or within a numeric one's bounds and on its
    step."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    low, high = dist.low, dist.high  # Float or Int distribution
    step = getattr(dist, "step", None)
    on_step = step is None or math.isclose((value - low) / step, round((value - low) / step), abs_tol=1e-8)
    return low <= value <= high and on_step


def enqueue(storage, name: str, sets: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """Queue a trial of study `name` with the given values of its searched parameters (Optuna's enqueue_trial);
    parameters not given are sampled as usual. UserError for a key that is fixed in the study, not a key of its
    objective, or a value outside its search range. Returns (the queued trial's number, its parameters)."""
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
    queued = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return max(t.number for t in queued if trial_params(t) == params), params


def dequeue(storage, name: str, number: int) -> dict[str, Any]:
    """Cancel queued trial `number` of study `name`, one no worker has started: it ends FAIL "dequeued" (Optuna
    deletes no trial; it uses no budget). It is taken as a worker takes a queued trial (WAITING -> RUNNING, which
    the store grants once), so a worker starting it at the same moment keeps it. Returns its parameters."""
    study, _ = open_study(storage, name)
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is None:
        raise UserError(f"study {name!r} has no trial {number}")
    if trial.state != optuna.trial.TrialState.WAITING:
        raise UserError(f"trial {number} of {name!r} is {trial.state.name}: only a queued (WAITING) trial is dequeued")
    if not storage.set_trial_state_values(trial_id(trial), optuna.trial.TrialState.RUNNING):
        raise UserError(f"trial {number} of {name!r} was started by a worker just now: it is no longer queued")
    storage.set_trial_user_attr(trial_id(trial), schema.ERROR, schema.DEQUEUED)
    storage.set_trial_state_values(trial_id(trial), optuna.trial.TrialState.FAIL)
    return trial_params(trial)


def enqueue_recipe(study: optuna.Study, spec: schema.StudySpec) -> dict[str, Any]:
    """Queue the study's own configuration (its preset's values of the searched keys, each where it lies in the
    search range) as its first trial: a search of a small budget then never ends below the recipe it searches
    around on validation. Returns the queued parameters ({} when none lies in its range)."""
    params = {
        k: spec.config[k] for k, dist in spec.space.items() if k in spec.config and in_range(dist, spec.config[k])
    }
    if params:
        study.enqueue_trial(params, skip_if_exists=True)
    return params
