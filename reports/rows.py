"""The data halves of the report: studies read once from the store, then plain rows and dicts.

Nothing here imports plotly (or torch): every figure in `reports/figures.py` is drawn from a dict returned by one of
the `*_info` functions below, so the numbers are tested without a browser or a plotting library
(optuna `visualization/` does the same split). The store is read exactly once per study (`load_studies`: one
`get_all_trials` call each); everything after that works on the in-memory `FrozenTrial`s.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from errors import UserError
from storage import schema

# The comparison's regimes in the order the table shows them, with the label a reader sees.
REGIMES: dict[str, str] = {
    "probe_simclr": "SimCLR -> linear probe",
    "probe_imagenet": "ImageNet-supervised -> linear probe",
    "probe_random": "random encoder -> linear probe",
    "scratch": "from scratch (supervised)",
    "finetune": "SimCLR fine-tuned",
}
SCRATCH = "scratch"
OPTIONAL_REGIMES = ("finetune",)  # shown only when a study plays it ("fine-tuned where present")
SIMCLR_ROLES = ("simclr_scale", "simclr_hparams")
MIN_TRIALS_FOR_IMPORTANCE = 2


@dataclass
class StudyData:
    """One study as read from the store: its user attrs and all its trials (read once)."""

    name: str
    user_attrs: dict[str, Any]
    direction: str  # "maximize" | "minimize" (the first objective of a multi-objective study)
    trials: list[FrozenTrial] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return str(self.user_attrs.get(schema.OBJECTIVE, ""))

    @property
    def role(self) -> str:
        return str(self.user_attrs.get(schema.ROLE, ""))

    @property
    def config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.user_attrs.get(schema.CONFIG, "{}"))
        except (TypeError, ValueError):
            return {}
        return config if isinstance(config, dict) else {}

    @property
    def encoder(self) -> str:
        return str(self.user_attrs.get(schema.ENCODER) or self.config.get("encoder", ""))

    @property
    def regime(self) -> str | None:
        """The comparison regime this study plays: its `role` attr, else guessed from objective and encoder."""
        if self.role in REGIMES or self.role in SIMCLR_ROLES:
            return self.role
        if self.objective == "linear_probe":
            encoder = self.encoder or "random"  # EncoderConfig's default
            return {"imagenet": "probe_imagenet", "random": "probe_random"}.get(encoder, "probe_simclr")
        return {"supervised": SCRATCH, "finetune": "finetune"}.get(self.objective)

    @property
    def maximize(self) -> bool:
        return self.direction != "minimize"

    def complete(self) -> list[FrozenTrial]:
        """COMPLETE trials with a finite objective value, in trial-number order."""
        return [t for t in self.trials if t.state == TrialState.COMPLETE and _finite(objective_value(t))]

    def best(self) -> FrozenTrial | None:
        return _best(self.complete(), self.maximize)


def open_storage(storage: str | BaseStorage) -> BaseStorage:
    """A storage object from a URL (anything `optuna.storages.get_storage` takes) or the object itself."""
    return optuna.storages.get_storage(storage) if isinstance(storage, str) else storage


def load_studies(storage: str | BaseStorage, names: Sequence[str] | None = None) -> list[StudyData]:
    """Read the named studies (all when `names` is None), each with one `get_all_trials` call.

    An unknown name is a UserError listing what the store holds.
    """
    storage = open_storage(storage)
    frozen = {s.study_name: s for s in storage.get_all_studies()}
    wanted = list(frozen) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in frozen]
    if unknown:
        held = ", ".join(sorted(frozen)) or "none"
        raise UserError(f"no study named {', '.join(map(repr, unknown))} in the store (studies: {held})")
    studies = []
    for name in wanted:
        study_id = storage.get_study_id_from_name(name)
        trials = storage.get_all_trials(study_id, deepcopy=False)
        direction = frozen[name].directions[0].name.lower()
        studies.append(StudyData(name, dict(frozen[name].user_attrs), direction, sorted(trials, key=_number)))
    return studies


# ----------------------------------------------------------------------------------------------- trial rows


def objective_value(trial: FrozenTrial) -> float | None:
    """The (first) objective value; None for trials without one (pruned, failed, running)."""
    return trial.values[0] if trial.values else None


def trial_row(study: StudyData, trial: FrozenTrial) -> dict[str, Any]:
    """One tidy row per trial: study, number, state, value, params, user attrs, intermediate values, times."""
    return {
        "study": study.name,
        "number": trial.number,
        "state": trial.state.name,
        "value": objective_value(trial),
        "params": dict(trial.params),
        "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "user_attrs": dict(trial.user_attrs),
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "duration_s": _duration(trial),
    }


def trial_rows(studies: Iterable[StudyData]) -> list[dict[str, Any]]:
    return [trial_row(s, t) for s in studies for t in s.trials]


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """{"complete", "pruned", "failed", "running", "waiting", "total"} counts."""
    counts = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0)
    total = 0
    for t in trials:
        counts[{"FAIL": "failed"}.get(t.state.name, t.state.name.lower())] += 1
        total += 1
    counts["total"] = total
    return counts


# ----------------------------------------------------------------------------------------------- comparison


def comparison_rows(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """One row per regime: the best COMPLETE trial by objective (validation top-1) over every study playing it.

    Test accuracies are those user attrs of that one trial (selected on validation, never on test). The gain is
    in points of test top-1 over the scratch row's; None when either is missing. A regime with no finished trial
    is a row with status "missing" and the reason (no study / no complete trial / the last failure's error),
    never a zero.
    """
    rows = [_regime_row(regime, [s for s in studies if s.regime == regime]) for regime in REGIMES]
    rows = [r for r in rows if r["studies"] or r["regime"] not in OPTIONAL_REGIMES]
    scratch = next(r for r in rows if r["regime"] == SCRATCH)
    for row in rows:
        both = row["test_top1"] is not None and scratch["test_top1"] is not None
        row["gain_top1"] = row["test_top1"] - scratch["test_top1"] if both else None
    return rows


def _regime_row(regime: str, members: list[StudyData]) -> dict[str, Any]:
    trials = [t for s in members for t in s.trials]
    counts = state_counts(trials)
    row: dict[str, Any] = {
        "regime": regime, "label": REGIMES[regime], "status": "missing", "reason": None,
        "studies": [s.name for s in members], "study": None, "trial": None,
        "val_top1": None, "test_top1": None, "test_top5": None,
        "n_trials": counts["total"], "n_complete": counts["complete"], "n_pruned": counts["pruned"],
        "n_failed": counts["failed"], "gain_top1": None,
    }  # fmt: skip
    candidates = [(s, t) for s in members for t in s.complete()]
    if not candidates:
        row["reason"] = _missing_reason(regime, members, counts)
        return row
    maximize = members[0].maximize  # every study of the project maximizes; user studies share their regime's
    study, best = min(candidates, key=lambda st: ((-1 if maximize else 1) * objective_value(st[1]), st[1].number))
    row.update(
        status="ok", study=study.name, trial=best.number, val_top1=objective_value(best),
        test_top1=_number_attr(best, schema.TEST_TOP1), test_top5=_number_attr(best, schema.TEST_TOP5),
    )  # fmt: skip
    return row


def _missing_reason(regime: str, members: list[StudyData], counts: dict[str, int]) -> str:
    if not members:
        return f"no study (role {regime!r})"
    # a study that could not run at all (`compare` records why: e.g. ImageNet weights unavailable offline)
    stopped = [s for s in members if s.user_attrs.get(schema.STUDY_ERROR)]
    if stopped:
        return f"{stopped[0].name} could not run: {stopped[0].user_attrs[schema.STUDY_ERROR]}"
    failed = [(s, t) for s in members for t in s.trials if t.state == TrialState.FAIL]
    with_error = [(s, t) for s, t in failed if t.user_attrs.get(schema.ERROR)]
    if with_error:
        study, last = max(with_error, key=lambda st: (_time(st[1]), st[1].number))
        return f"no complete trial; last failure ({study.name} #{last.number}): {last.user_attrs[schema.ERROR]}"
    parts = [f"{counts[k]} {k}" for k in ("pruned", "failed", "running", "waiting") if counts[k]]
    return "no complete trial" + (f" ({', '.join(parts)})" if parts else " (no trials yet)")


# ----------------------------------------------------------------------------------------------- data scale


def scale_studies(studies: Sequence[StudyData]) -> list[StudyData]:
    """The studies behind the data-scale curve: role simclr_scale, else every SimCLR study."""
    scale = [s for s in studies if s.role == "simclr_scale"]
    return scale or [s for s in studies if s.objective == "simclr" or s.role in SIMCLR_ROLES]


def data_fraction(study: StudyData, trial: FrozenTrial) -> float | None:
    """The trial's pretraining data fraction: user attr, else searched param, else the study's fixed config."""
    for source in (trial.user_attrs, trial.params, study.config):
        value = source.get(schema.DATA_FRACTION)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def scale_rows(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """One row per data fraction over the SimCLR studies, sorted by fraction.

    best_value is the best objective (validation top-1 of the probe on the pretrained encoder), test_top1 that
    trial's test attr; mean/min/max/count summarize all COMPLETE trials at that fraction (the hyperparameter
    spread); a fraction whose trials were all pruned or failed has count 0 and None numbers.
    """
    groups: dict[float, list[tuple[StudyData, FrozenTrial]]] = {}
    for study in scale_studies(studies):
        for trial in study.trials:
            fraction = data_fraction(study, trial)
            if fraction is not None:
                groups.setdefault(fraction, []).append((study, trial))
    return [_scale_row(fraction, groups[fraction]) for fraction in sorted(groups)]


def _scale_row(fraction: float, members: list[tuple[StudyData, FrozenTrial]]) -> dict[str, Any]:
    complete = [(s, t) for s, t in members if t.state == TrialState.COMPLETE and _finite(objective_value(t))]
    values = [objective_value(t) for _, t in complete]
    counts = state_counts(t for _, t in members)
    images = [_number_attr(t, schema.N_PRETRAIN_IMAGES) for _, t in members]
    row: dict[str, Any] = {
        "data_fraction": fraction, "n_pretrain_images": None, "count": len(values),
        "n_pruned": counts["pruned"], "n_failed": counts["failed"], "best_value": None, "test_top1": None,
        "study": None, "trial": None, "mean": None, "min": None, "max": None,
    }  # fmt: skip
    if complete:
        study, best = min(complete, key=lambda st: (-objective_value(st[1]), st[1].number))
        row.update(
            best_value=objective_value(best), test_top1=_number_attr(best, schema.TEST_TOP1), study=study.name,
            trial=best.number, mean=sum(values) / len(values), min=min(values), max=max(values),
        )  # fmt: skip
        images.insert(0, _number_attr(best, schema.N_PRETRAIN_IMAGES))
    known = [n for n in images if n is not None]
    row["n_pretrain_images"] = int(known[0]) if known else None
    return row


# ----------------------------------------------------------------------------------------------- per study


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
        {"number": t.number, "state": t.state.name, "steps": sorted(t.intermediate_values),
         "values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)]}
        for t in study.trials if t.intermediate_values
    ]  # fmt: skip
    return {"study": study.name, "series": series}


def parallel_info(study: StudyData) -> dict[str, Any]:
    """Parallel-coordinates data over COMPLETE trials and the params every one of them has.

    Categorical values become indices into `labels`; log-scaled numbers are given as log10 with `log` set.
    """
    complete = study.complete()
    names = sorted(set.intersection(*(set(t.params) for t in complete))) if complete else []
    dimensions = []
    for name in names:
        dist = complete[-1].distributions[name]
        raw = [t.params[name] for t in complete]
        if isinstance(dist, CategoricalDistribution):
            labels = [str(c) for c in dist.choices]
            index = {c: i for i, c in enumerate(dist.choices)}
            dimensions.append({"name": name, "kind": "categorical", "labels": labels, "log": False,
                               "values": [index.get(v, -1) for v in raw]})  # fmt: skip
        else:
            log = isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log
            values = [math.log10(v) if log else float(v) for v in raw]
            dimensions.append({"name": name, "kind": "numeric", "labels": None, "log": log, "values": values})
    return {"study": study.name, "numbers": [t.number for t in complete], "dimensions": dimensions,
            "objective": [objective_value(t) for t in complete]}  # fmt: skip


def importance_info(study: StudyData) -> dict[str, Any]:
    """Hyperparameter importances with Optuna's default evaluator (PED-ANOVA: no scikit-learn).

    Computed on an in-memory copy of the COMPLETE trials, so the store is not read again. `note` says why
    there are none (fewer than 2 complete trials, or nothing searched); `caveat` carries the evaluator's warnings.
    """
    complete = study.complete()
    info: dict[str, Any] = {"study": study.name, "importances": {}, "note": None, "caveat": None}
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        info["note"] = f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials (has {len(complete)})"
        return info
    if not any(t.params for t in complete):
        info["note"] = "no searched parameters"
        return info
    if len(complete[0].values) > 1:
        info["note"] = "multi-objective study (importances are computed for single-objective studies)"
        return info
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
    info["importances"] = {k: float(v) for k, v in importances.items()}
    info["caveat"] = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or None
    if not importances:
        info["note"] = "no parameter varies across the complete trials"
    return info


def table_info(study: StudyData) -> dict[str, Any]:
    """The trial table: number, state, value, params, then user attrs (schema order first), duration.

    `groups` names the column groups [(name, width)], so a param and a user attr of one name stay apart.
    """
    params = sorted({p for t in study.trials for p in t.params})
    present = {a for t in study.trials for a in t.user_attrs}
    attrs = [a for a in schema.TRIAL_ATTRS if a in present and a != schema.ERROR] + sorted(
        present - set(schema.TRIAL_ATTRS)
    )
    attrs += [schema.ERROR] if schema.ERROR in present else []
    columns = ["number", "state", "value", *params, *attrs, "duration_s"]
    rows = [
        [t.number, t.state.name, objective_value(t), *(t.params.get(p) for p in params),
         *(t.user_attrs.get(a) for a in attrs), _duration(t)]
        for t in study.trials
    ]  # fmt: skip
    groups = [("trial", 3), ("params", len(params)), ("user attrs", len(attrs)), ("", 1)]
    return {"study": study.name, "columns": columns, "groups": groups, "rows": rows}


def study_summary(study: StudyData, importances: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `report --json` says about one study: attrs, counts, the best trial, importances."""
    best = study.best()
    summary: dict[str, Any] = {
        "study": study.name, "objective": study.objective or None, "role": study.role or None,
        "regime": study.regime, "encoder": study.encoder or None, "direction": study.direction,
        "preset": study.user_attrs.get(schema.PRESET), "comparison": study.user_attrs.get(schema.COMPARISON),
        "counts": state_counts(study.trials), "best": None,
    }  # fmt: skip
    if best is not None:
        summary["best"] = {"number": best.number, "value": objective_value(best), "params": dict(best.params),
                           "user_attrs": dict(best.user_attrs)}  # fmt: skip
    if importances is not None:
        summary["importances"] = importances["importances"]
        summary["importance_note"] = importances["note"]
        summary["importance_caveat"] = importances.get("caveat")
    return summary


# ----------------------------------------------------------------------------------------------- helpers


def _best(trials: list[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    if not trials:
        return None
    return min(trials, key=lambda t: ((-1 if maximize else 1) * objective_value(t), t.number))


def _number_attr(trial: FrozenTrial, key: str) -> float | None:
    value = trial.user_attrs.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value) else None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _time(trial: FrozenTrial) -> float:
    when = trial.datetime_complete or trial.datetime_start
    return when.timestamp() if when else 0.0


def _duration(trial: FrozenTrial) -> float | None:
    start, end = trial.datetime_start, trial.datetime_complete
    return (end - start).total_seconds() if start and end else None


def _iso(when) -> str | None:
    return when.isoformat() if when else None
