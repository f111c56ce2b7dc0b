"""What each compared regime's number rests on: its protocol (labels used, input resolution, pretraining images
and steps, probe or training epochs, trials, seeds) and, where `compare` re-ran the selected configuration with
other seeds (PREFIX-seeds-* studies), the mean and spread over seeds of test top-1 and of the gain over scratch
(paired by seed: seed k of a regime against seed k of scratch)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from comparison import regimes
from storage import schema

# regime -> the role of the study that re-runs its selected configuration with other seeds (comparison.seeds)
SEED_ROLES = {regime.role: regime.seeds_role for regime in regimes.REGIMES if regime.seeds}
LABELS = {regime.role: regime.labels for regime in regimes.REGIMES}  # the labels each regime's number rests on


def seed_values(row: dict[str, Any], studies: Sequence[Any]) -> list[tuple[int, float]]:
    """[(seed, test top-1)] of a regime: its selected trial (the study's seed) and its seeds study's trials."""
    if row["status"] != "ok" or row["test_top1"] is None:
        return []
    selected = next(s for s in studies if s.name == row["study"])
    values = [(int(selected.config.get("seed", 0)), float(row["test_top1"]))]
    role = SEED_ROLES.get(row["regime"])
    for study in (s for s in studies if role and s.role == role):
        for trial in study.complete():
            top1 = trial.user_attrs.get(schema.TEST_TOP1)
            if isinstance(top1, (int, float)) and math.isfinite(top1):
                values.append((int(trial.params.get("seed", study.config.get("seed", 0))), float(top1)))
    return values


def spread(values: Sequence[float]) -> dict[str, Any]:
    """n, mean and sample standard deviation (None for one value)."""
    if not values:
        return {"n": 0, "mean": None, "sd": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
    }


def add_seeds(rows: list[dict[str, Any]], studies: Sequence[Any]) -> None:
    """Each row gets `seeds` ({n, mean, sd} of test top-1 over seeds) and `gain_seeds` (the same for the gain
    over scratch, paired by seed)."""
    per_regime = {row["regime"]: dict(seed_values(row, studies)) for row in rows}
    scratch = per_regime.get(regimes.BASELINE, {})
    for row in rows:
        mine = per_regime[row["regime"]]
        row["seeds"] = spread(list(mine.values()))
        paired = [mine[seed] - scratch[seed] for seed in sorted(set(mine) & set(scratch))]
        row["gain_seeds"] = spread(paired) if row["regime"] != regimes.BASELINE else spread([0.0] * len(paired))


def protocol(row: dict[str, Any], studies: Sequence[Any]) -> dict[str, Any]:
    """The protocol behind a regime's row, from the selected study's config and (for the SimCLR probe) the
    pretraining trial its encoder came from."""
    regime = regimes.BY_ROLE.get(row["regime"])
    out: dict[str, Any] = {"labels": LABELS.get(row["regime"], ""), "trials": row["n_trials"]}
    out["compares"] = regime.compares() if regime is not None else ""
    study = next((s for s in studies if s.name == row.get("study")), None)
    if study is None:
        return out
    config = study.config
    encoder = regime.encoder if regime is not None and regime.encoder else str(config.get("encoder"))
    imagenet = encoder == "imagenet" or str(config.get("encoder")) == "imagenet"
    side = "resolution" if imagenet else (regime.resolution if regime is not None else "image_size")
    out["resolution"] = int(config.get(side) or {"resolution": 224}.get(side, 32))  # the keys' defaults
    out["epochs"] = config.get("probe_epochs") if study.objective == "linear_probe" else config.get("epochs")
    out["epochs_of"] = "probe" if study.objective == "linear_probe" else "training"
    if imagenet:
        out["pretraining"] = "ImageNet-1k, 1.28M images (torchvision IMAGENET1K_V1)"
    elif encoder == regimes.SIMCLR:
        out["pretraining"] = _pretraining(row, study, studies)
    return out


def _pretraining(row: dict[str, Any], study: Any, studies: Sequence[Any]) -> str:
    trial = next((t for t in study.trials if t.number == row["trial"]), None)
    source = str(trial.user_attrs.get(schema.TRIAL_ENCODER, "")) if trial is not None else ""
    name, _, number = source.removeprefix("trial:").rpartition(":")
    simclr = next((s for s in studies if s.name == name), None)
    pre = next((t for t in simclr.trials if str(t.number) == number), None) if simclr is not None else None
    if pre is None:
        return f"SimCLR encoder {source or '?'}"
    images, steps = pre.user_attrs.get(schema.N_PRETRAIN_IMAGES), pre.user_attrs.get(schema.STEPS)
    return f"SimCLR on {images:,} images, {steps:,} steps ({name} #{number})" if images and steps else source


def protocol_text(p: dict[str, Any], seeds: dict[str, Any] | None = None) -> str:
    """One line: labels; input; pretraining; epochs; trials; seeds; what the gain compares."""
    parts = [p.get("labels", "")]
    if p.get("resolution"):
        parts.append(f"input {p['resolution']}x{p['resolution']}")
    if p.get("pretraining"):
        parts.append(p["pretraining"])
    if p.get("epochs"):
        parts.append(f"{p['epochs']} {p.get('epochs_of', '')} epochs".replace("  ", " "))
    parts.append(f"{p.get('trials', 0)} trials")
    if seeds:
        parts.append(f"{seeds['n']} seed{'s' if seeds['n'] != 1 else ''}")
    if p.get("compares"):
        parts.append(p["compares"])
    return "; ".join(x for x in parts if x)
