"""The data halves of the report: studies read once from the store, then plain rows and dicts.

Nothing here imports plotly (or torch): every figure in `reports/figures.py` is drawn from a dict returned by a
function here (the comparison table), in `reports/scale.py` (the data-scale curve) or in `reports/study_info.py`
(one study's figures), so the numbers are tested without a browser or a plotting library (optuna
`visualization/` does the same split). The store is read exactly once per study (`load_studies`: one
`get_all_trials` call each); everything after that works on the in-memory `FrozenTrial`s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from comparison import regimes
from errors import UserError
from reports import intervals, protocol
from reports.protocol import per_image_hits
from storage import open_storage, schema
from storage.optuna_private import study_id

if TYPE_CHECKING:
    import numpy as np

# The comparison's regimes in the order the table shows them, with the label a reader sees (comparison.regimes).
REGIMES: dict[str, str] = {regime.role: regime.label for regime in regimes.REGIMES}
# What a missing regime's study would be, in words: "no ImageNet-supervised probe study in this store".
REGIME_STUDIES: dict[str, str] = {regime.role: regime.missing for regime in regimes.REGIMES}
SCRATCH = regimes.BASELINE
OPTIONAL_REGIMES = tuple(r.role for r in regimes.REGIMES if not r.study)  # shown only where a study plays it
SIMCLR_ROLES = regimes.PRETRAINING_ROLES
CHECKS = regimes.CHECKS  # sanity rows (the in-domain probe): shown, not compared


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
        if self.role.startswith(("seeds_", "labels_")):  # a selected configuration re-run: not a pick of the regime
            return None
        return regimes.regime_of(self.objective, self.encoder or "random")  # "random": EncoderConfig's default

    @property
    def maximize(self) -> bool:
        return self.direction != "minimize"

    def complete(self) -> list[FrozenTrial]:
        """COMPLETE trials with a finite objective value, in trial-number order."""
        return [t for t in self.trials if t.state == TrialState.COMPLETE and is_finite(objective_value(t))]

    def best(self) -> FrozenTrial | None:
        return best_trial(self.complete(), self.maximize)


def load_studies(storage: str | BaseStorage, names: Sequence[str] | None = None) -> list[StudyData]:
    """Read the named studies (all when `names` is None), each with one `get_all_trials` call.

    `storage` is an opened storage or a URL (opened read-only by `storage.open_storage`, which never creates a
    store). An unknown name is a UserError listing what the store holds.
    """
    storage = open_storage(storage, read_only=True) if isinstance(storage, str) else storage
    frozen = {s.study_name: s for s in storage.get_all_studies()}
    wanted = list(frozen) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in frozen]
    if unknown:
        held = ", ".join(sorted(frozen)) or "none"
        raise UserError(f"no study named {', '.join(map(repr, unknown))} in the store (studies: {held})")
    studies = []
    for name in wanted:
        trials = storage.get_all_trials(study_id(frozen[name]), deepcopy=False)
        direction = frozen[name].directions[0].name.lower()
        studies.append(StudyData(name, dict(frozen[name].user_attrs), direction, sorted(trials, key=_number)))
    return studies


# ----------------------------------------------------------------------------------------------- trial rows


def objective_value(trial: FrozenTrial) -> float | None:
    """The (first) objective value; None for trials without one (pruned, failed, running)."""
    return trial.values[0] if trial.values else None


def trial_row(study: StudyData, trial: FrozenTrial) -> dict[str, Any]:
    """One tidy row per trial: the study's name, `show --json`'s trial row (storage.schema), the duration."""
    return {"study": study.name, **schema.trial_row(trial), "duration_s": duration_seconds(trial)}


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


def comparison_of(study: StudyData) -> str:
    """The comparison a study belongs to (its `comparison` attr; "" for one made outside any)."""
    return str(study.user_attrs.get(schema.COMPARISON) or "")


def comparisons(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """The comparison rows of every comparison in `studies`, each row naming its comparison ("comparison": the
    prefix; "" for studies made outside one). A regime's row, its gain and its seeds come from one comparison,
    never from two: a store holding a smoke and a default comparison reports each apart. Comparisons come in
    prefix order, studies outside any last; one without a regime study has no rows."""
    groups: dict[str, list[StudyData]] = {}
    for study in studies:
        groups.setdefault(comparison_of(study), []).append(study)
    playing = {prefix: members for prefix, members in groups.items() if any(s.regime in REGIMES for s in members)}
    playing = playing or {"": list(studies)}  # no regime anywhere: the (all missing) rows, as one comparison
    order = sorted(playing, key=lambda prefix: (prefix == "", prefix))
    return [{**row, "comparison": prefix} for prefix in order for row in comparison_rows(playing[prefix])]


def comparison_rows(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """One row per regime: the best COMPLETE trial by objective (validation top-1) over every study playing it.

    Test accuracies are those user attrs of that one trial (selected on validation, never on test). The gain is
    in points of test top-1 over the scratch row's; None when either is missing. A regime with no finished trial
    is a row with status "missing" and the reason (no study / no complete trial / the last failure's error),
    never a zero. `test_top1_ci` is the 95% bootstrap interval [low, high] over test images (reports.intervals)
    where the trial stored its per-image hits (schema.TEST_CORRECT), and `gain_top1_ci` the paired one where
    both trials did, on as many images (the test subset is drawn independently of the seed: the same images).
    """
    built = [_regime_row(regime, [s for s in studies if s.regime == regime]) for regime in REGIMES]
    built = [(r, hits) for r, hits in built if r["studies"] or r["regime"] not in OPTIONAL_REGIMES]
    scratch, scratch_hits = next((r, hits) for r, hits in built if r["regime"] == SCRATCH)
    for row, hits in built:
        both = row["test_top1"] is not None and scratch["test_top1"] is not None and row["regime"] not in CHECKS
        row["gain_top1"] = row["test_top1"] - scratch["test_top1"] if both else None
        paired = both and hits is not None and scratch_hits is not None and hits.size == scratch_hits.size
        row["gain_top1_ci"] = list(intervals.paired_bootstrap_ci(hits, scratch_hits)) if paired else None
    rows = [r for r, _ in built]
    protocol.add_seeds(rows, studies)
    for row in rows:
        row["protocol"] = protocol.protocol(row, studies)
        row["resolution"] = row["protocol"].get("resolution")
    return rows


def _regime_row(regime: str, members: list[StudyData]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The regime's row and its selected trial's per-image test hits (None when not stored)."""
    trials = [t for s in members for t in s.trials]
    counts = state_counts(trials)
    row: dict[str, Any] = {
        "regime": regime,
        "label": REGIMES[regime],
        "status": "missing",
        "reason": None,
        "studies": [s.name for s in members],
        "study": None,
        "trial": None,
        "val_top1": None,
        "test_top1": None,
        "test_top5": None,
        "n_trials": counts["total"] - counts["waiting"],  # trials that ran (a queued one has not)
        "n_complete": counts["complete"],
        "n_pruned": counts["pruned"],
        "n_failed": counts["failed"],
        "gain_top1": None,
        "test_top1_ci": None,
        "gain_top1_ci": None,
    }
    candidates = [(s, t) for s in members for t in s.complete()]
    if not candidates:
        row["reason"] = _missing_reason(regime, members, counts)
        return row, None
    maximize = members[0].maximize  # every study of the project maximizes; user studies share their regime's
    study, best = min(candidates, key=lambda st: ((-1 if maximize else 1) * objective_value(st[1]), st[1].number))
    row.update(
        status="ok",
        study=study.name,
        trial=best.number,
        val_top1=objective_value(best),
        test_top1=number_attr(best, schema.TEST_TOP1),
        test_top5=number_attr(best, schema.TEST_TOP5),
    )
    hits = per_image_hits(best)
    row["test_top1_ci"] = list(intervals.bootstrap_ci(hits)) if hits is not None else None
    return row, hits


def _missing_reason(regime: str, members: list[StudyData], counts: dict[str, int]) -> str:
    if not members:
        return f"no {REGIME_STUDIES[regime]} in this store"
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


# ----------------------------------------------------------------------------------------------- summary


def study_summary(study: StudyData, importances: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `report --json` says about one study: attrs, counts, the best trial, importances."""
    best = study.best()
    summary: dict[str, Any] = {
        "study": study.name,
        "objective": study.objective or None,
        "role": study.role or None,
        "regime": study.regime,
        "encoder": study.encoder or None,
        "direction": study.direction,
        "preset": study.user_attrs.get(schema.PRESET),
        "comparison": study.user_attrs.get(schema.COMPARISON),
        "counts": state_counts(study.trials),
        "best": None,
    }
    if best is not None:
        summary["best"] = {
            "number": best.number,
            "value": objective_value(best),
            "params": dict(best.params),
            "user_attrs": dict(best.user_attrs),
        }
    if importances is not None:
        summary["importances"] = importances["importances"]
        summary["importance_note"] = importances["note"]
        summary["importance_caveat"] = importances.get("caveat")
    return summary


# ----------------------------------------------------------------------------------------------- helpers


def best_trial(trials: Sequence[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    """The trial with the best (first) objective value, the lowest number among equals; None for no trials."""
    if not trials:
        return None
    return min(trials, key=lambda t: ((-1 if maximize else 1) * objective_value(t), t.number))


def json_safe(value: Any) -> Any:
    """`value` as strict JSON data: non-finite floats become None (JSON has no NaN), keys strings, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def number_attr(trial: FrozenTrial, key: str) -> float | None:
    """A finite numeric user attr; None when absent, not a number (bools are not) or not finite."""
    value = trial.user_attrs.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) and is_finite(value) else None


def int_attr(trial: FrozenTrial, key: str) -> int | None:
    """`number_attr` as an int (steps, images seen); None when absent."""
    value = number_attr(trial, key)
    return None if value is None else int(value)


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _number(trial: FrozenTrial) -> int:
    return trial.number


def _time(trial: FrozenTrial) -> float:
    when = trial.datetime_complete or trial.datetime_start
    return when.timestamp() if when else 0.0


def duration_seconds(trial: FrozenTrial) -> float | None:
    start, end = trial.datetime_start, trial.datetime_complete
    return (end - start).total_seconds() if start and end else None
