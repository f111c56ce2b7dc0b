"""The data-scale curve's rows: SimCLR's probe accuracy against the fraction of unlabeled data it pretrained on.

One row per study and data fraction (a study is one configuration, so its fractions form one curve), with the
spread over that fraction's trials and, where `compare` re-ran the curve with other seeds (a seeds_scale study),
over seeds. Plain dicts like every table of `reports/rows.py`, which holds what a study is (`StudyData`); the
figure is drawn from these rows by `reports/figures.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from comparison import regimes
from reports import protocol
from reports.rows import (
    SIMCLR_ROLES,
    StudyData,
    best_trial,
    int_attr,
    is_finite,
    number_attr,
    objective_value,
    state_counts,
)
from storage import schema


def scale_studies(studies: Sequence[StudyData]) -> list[StudyData]:
    """The studies behind the data-scale curve: role simclr_scale, else every SimCLR study."""
    scale = [s for s in studies if s.role == regimes.SCALE.role]
    return scale or [s for s in studies if s.objective == "simclr" or s.role in SIMCLR_ROLES]


def data_fraction(study: StudyData, trial: FrozenTrial) -> float | None:
    """The trial's pretraining data fraction: user attr, else searched param, else the study's fixed config."""
    for source in (trial.user_attrs, trial.params, study.config):
        value = source.get(schema.DATA_FRACTION)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def scale_rows(studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """One row per study and data fraction over the SimCLR studies: studies in the given order, fractions rising.

    A study is one configuration, so its fractions form one curve; pooling two studies at a fraction would
    compare their configs, not their data. best_value is the study's best objective at that fraction
    (validation top-1 of the probe on the pretrained encoder), test_top1 that trial's test attr; mean/min/max/
    count summarize its COMPLETE trials there (the hyperparameter spread); a fraction whose trials were all
    pruned or failed has count 0 and None numbers.
    """
    rows = []
    for study in scale_studies(studies):
        groups: dict[float, list[FrozenTrial]] = {}
        for trial in study.trials:
            fraction = data_fraction(study, trial)
            if fraction is not None:
                groups.setdefault(fraction, []).append(trial)
        seeds = _seed_values_by_fraction(study, studies)
        configuration = configuration_text(study, studies)
        for fraction in sorted(groups):
            row = _scale_row(study, fraction, groups[fraction])
            row["configuration"] = configuration
            values = ([row["best_value"]] if row["best_value"] is not None else []) + seeds.get(fraction, [])
            row["seeds"] = protocol.spread(values)  # the point's spread over seeds (compare's seeds_scale study)
            rows.append(row)
    return rows


def configuration_text(study: StudyData, studies: Sequence[StudyData]) -> str:
    """Which configuration a scale study ran: the search trial it was tuned by, with the parameters it took from
    it ("" for a study made outside compare)."""
    if schema.TUNED_BY not in study.user_attrs:
        return ""
    tuned_by = str(study.user_attrs[schema.TUNED_BY])
    if not tuned_by:
        return "the preset's configuration (the hyperparameter search had no complete trial when the curve began)"
    name, _, number = tuned_by.rpartition(" #")
    _, trial = protocol.find_trial(studies, name, number)
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (trial.params if trial else {}).items()
    )
    return f"the configuration selected by {tuned_by}" + (f" ({params})" if params else "")


def _seed_values_by_fraction(scale: StudyData, studies: Sequence[StudyData]) -> dict[float, list[float]]:
    """Validation top-1 of the scale curve's re-runs with other seeds (role seeds_scale, same comparison)."""
    comparison = scale.user_attrs.get(schema.COMPARISON)
    values: dict[float, list[float]] = {}
    for study in studies:
        if study.role != regimes.SCALE.seeds_role or study.user_attrs.get(schema.COMPARISON) != comparison:
            continue
        for trial in study.complete():
            fraction = data_fraction(study, trial)
            if fraction is not None:
                values.setdefault(fraction, []).append(objective_value(trial))
    return values


def _scale_row(study: StudyData, fraction: float, trials: list[FrozenTrial]) -> dict[str, Any]:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and is_finite(objective_value(t))]
    values = [objective_value(t) for t in complete]
    counts = state_counts(trials)
    images = [number_attr(t, schema.N_PRETRAIN_IMAGES) for t in trials]
    row: dict[str, Any] = {
        "data_fraction": fraction,
        "n_pretrain_images": None,
        "count": len(values),
        "n_pruned": counts["pruned"],
        "n_failed": counts["failed"],
        "best_value": None,
        "test_top1": None,
        "study": study.name,
        "trial": None,
        "mean": None,
        "min": None,
        "max": None,
        "steps": None,
        "epochs": None,
        "images_seen": None,
        "equal": "steps" if float(study.config.get("equal_steps_as") or 0) > 0 else "epochs",
    }
    best = best_trial(complete, study.maximize)
    if best is not None:
        row.update(
            best_value=objective_value(best),
            test_top1=number_attr(best, schema.TEST_TOP1),
            trial=best.number,
            mean=sum(values) / len(values),
            min=min(values),
            max=max(values),
            steps=int_attr(best, schema.STEPS),
            epochs=number_attr(best, schema.EPOCHS),
            images_seen=int_attr(best, schema.IMAGES_SEEN),
        )
        images.insert(0, number_attr(best, schema.N_PRETRAIN_IMAGES))
    known = [n for n in images if n is not None]
    row["n_pretrain_images"] = int(known[0]) if known else None
    return row
