"""The data of one study's figures and trial table, each a plain dict (drawn by `reports/study_figures.py`).

Every function takes a `StudyData` already read from the store (`rows.load_studies`) and reads nothing more.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from reports.rows import StudyData, duration_seconds, objective_value
from storage import schema
from storage.optuna_private import trial_params

# PED-ANOVA (Optuna's default evaluator) compares the top 10% of trials with the rest; Optuna's documentation
# asks for at least 5 trials in that top group. With fewer, importances are noise (two trials give 0.5/0.5).
IMPORTANCE_TARGET_QUANTILE = 0.1
MIN_TRIALS_FOR_IMPORTANCE = 50
MIN_TRIALS_FOR_PARALLEL = 2  # one line across the axes shows no relation


def history_info(study: StudyData) -> dict[str, Any]:
    """Objective value of every COMPLETE trial by trial number, and the best so far."""
    numbers, values, best_so_far = [], [], []
    best = None
    for trial in study.complete():
        value = objective_value(trial)
        best = value if best is None else (max(best, value) if study.maximize else min(best, value))
        numbers.append(trial.number)
        values.append(value)
        best_so_far.append(best)
    return {"study": study.name, "numbers": numbers, "values": values, "best_so_far": best_so_far}


def intermediate_info(study: StudyData) -> dict[str, Any]:
    """Per trial with reported values: its steps and values and state (pruned trials flagged)."""
    series = [
        {
            "number": t.number,
            "state": t.state.name,
            "steps": sorted(t.intermediate_values),
            "values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        }
        for t in study.trials
        if t.intermediate_values
    ]
    return {"study": study.name, "series": series, "metric": reported_metric(study)}


def reported_metric(study: StudyData, enough: int = 5) -> str | None:
    """What the trials reported as intermediate values: the key of their stored per-epoch history
    (schema.HISTORY) whose values are the reported ones at every reported step (the monitor the pruner saw:
    knn_top1 for pretraining, val_top1 for probes and supervised runs). Read from `enough` trials that carry
    both; None when none does (a store without histories) or no single key fits them all."""
    keys: set[str] | None = None
    told = 0
    for t in study.trials:
        history = {h.get("epoch"): h for h in t.user_attrs.get(schema.HISTORY) or [] if isinstance(h, dict)}
        if not t.intermediate_values or not set(t.intermediate_values) <= set(history):
            continue
        fits = {
            k
            for k in set.intersection(*(set(history[s]) for s in t.intermediate_values)) - {"epoch", "step"}
            if all(_same(history[s][k], v) for s, v in t.intermediate_values.items())
        }
        keys = fits if keys is None else keys & fits
        told += 1
        if told == enough or not keys:
            break
    return next(iter(keys)) if keys and len(keys) == 1 else None


def _same(stored: Any, reported: float) -> bool:
    """A history value (rounded to 6 decimals) is the reported one (rounded to 4 by objectives.common.reporter)."""
    number = isinstance(stored, (int, float)) and not isinstance(stored, bool)
    return number and math.isfinite(stored) and abs(stored - reported) <= 1e-4


def parallel_info(study: StudyData) -> dict[str, Any]:
    """Parallel-coordinates data over COMPLETE trials and the params every one of them has.

    Categorical values become indices into `labels`; log-scaled numbers are given as log10 with `log` set.
    `note` says why there is no figure to draw (fewer than 2 complete trials, no common parameter), else None.
    """
    complete = study.complete()
    names = sorted(set.intersection(*(set(t.params) for t in complete))) if complete else []
    note = None
    if len(complete) < MIN_TRIALS_FOR_PARALLEL:
        note = f"needs at least {MIN_TRIALS_FOR_PARALLEL} complete trials (has {len(complete)})"
    elif not names:
        note = "no parameter searched in every complete trial"
    dimensions = []
    for name in names:
        dist = complete[-1].distributions[name]
        raw = [t.params[name] for t in complete]
        if isinstance(dist, CategoricalDistribution):
            labels = [str(c) for c in dist.choices]
            index = {c: i for i, c in enumerate(dist.choices)}
            dimensions.append(
                {
                    "name": name,
                    "kind": "categorical",
                    "labels": labels,
                    "log": False,
                    "values": [index.get(v, -1) for v in raw],
                }
            )
        else:
            log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
            values = [math.log10(v) if log else float(v) for v in raw]
            dimensions.append({"name": name, "kind": "numeric", "labels": None, "log": log, "values": values})
    return {
        "study": study.name,
        "numbers": [t.number for t in complete],
        "dimensions": dimensions,
        "objective": [objective_value(t) for t in complete],
        "note": note,
    }


def importance_info(study: StudyData) -> dict[str, Any]:
    """Hyperparameter importances with Optuna's default evaluator (PED-ANOVA: no scikit-learn).

    Computed on an in-memory copy of the COMPLETE trials, so the store is not read again. `note` says why there
    are none (too few complete trials for PED-ANOVA, nothing searched, several objectives); `caveat` says, in
    words, what the evaluator warned about.
    """
    complete = study.complete()
    info: dict[str, Any] = {"study": study.name, "importances": {}, "note": None, "caveat": None}
    if not any(t.params for t in complete):
        info["note"] = "no searched parameters" if complete else "no complete trial"
    elif len(complete[0].values) > 1:
        info["note"] = "multi-objective study (importances are computed for single-objective studies)"
    elif len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        info["note"] = (
            f"too few trials for importances ({len(complete)} complete; PED-ANOVA needs about "
            f"{MIN_TRIALS_FOR_IMPORTANCE}, 5 in the best {IMPORTANCE_TARGET_QUANTILE:.0%})"
        )
    if info["note"]:
        return info
    importances, warned = _ped_anova(study, complete)
    info["importances"] = importances
    info["caveat"] = "; ".join(dict.fromkeys(_plain_caveat(w) for w in warned)) or None
    if not importances:
        info["note"] = "no parameter varies across the complete trials"
    return info


def _ped_anova(study: StudyData, complete: list[optuna.trial.FrozenTrial]) -> tuple[dict[str, float], list[str]]:
    """Importances of the COMPLETE trials (in memory) and the evaluator's warnings."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line per study
    try:
        copy = optuna.create_study(storage=optuna.storages.InMemoryStorage(), direction=study.direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    copy.add_trials(complete)
    with warnings.catch_warnings(record=True) as caught:  # e.g. "some regimes have less than 2 trials"
        warnings.simplefilter("always")
        importances = optuna.importance.get_param_importances(copy)
    return {k: float(v) for k, v in importances.items()}, [str(w.message) for w in caught]


def _plain_caveat(message: str) -> str:
    """PED-ANOVA's warnings in a reader's words; others as they are. (A "regime" is the distribution a trial
    searched the parameter over, or its absence: the space changed between trials.)"""
    rare = re.match(r"Some regimes for parameter `(.+?)` have less than (\d+) trials", message)
    if rare:
        return (
            f"{rare[1]} was searched over another range, or not at all, in fewer than {rare[2]} trials: "
            "its importance is rough"
        )
    return message


def table_info(study: StudyData) -> dict[str, Any]:
    """The trial table: number, state, value, params, then user attrs (schema order first), duration.

    `groups` names the column groups [(name, width)], so a param and a user attr of one name stay apart.
    """
    shown = {t.number: trial_params(t) for t in study.trials}  # a queued trial: the values it was queued with
    params = sorted({p for t in study.trials for p in shown[t.number]})
    present = {a for t in study.trials for a in t.user_attrs} - {schema.TEST_CORRECT}  # 1.7 kB of bits: no cell
    attrs = [a for a in schema.TRIAL_ATTRS if a in present and a != schema.ERROR] + sorted(
        present - set(schema.TRIAL_ATTRS)
    )
    attrs += [schema.ERROR] if schema.ERROR in present else []
    columns = ["number", "state", "value", *params, *attrs, "duration_s"]
    rows = [
        [
            t.number,
            t.state.name,
            objective_value(t),
            *(shown[t.number].get(p) for p in params),
            *(t.user_attrs.get(a) for a in attrs),
            duration_seconds(t),
        ]
        for t in study.trials
    ]
    groups = [("trial", 3), ("params", len(params)), ("user attrs", len(attrs)), ("", 1)]
    return {"study": study.name, "columns": columns, "groups": groups, "rows": rows}
