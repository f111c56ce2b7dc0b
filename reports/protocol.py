"""What each compared regime's number rests on: its protocol (labels used, input resolution, pretraining images
and steps, probe or training epochs, trials, seeds) and, where `compare` re-ran the selected configuration with
other seeds (PREFIX-seeds-* studies), the mean and spread over seeds of test top-1 and of the gain over scratch
(paired by seed: seed k of a regime against seed k of scratch), with a two-level bootstrap interval of each mean
(seed runs, then test images: reports.intervals.two_level_ci)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from comparison import regimes
from reports import intervals
from storage import schema

# regime -> the role of the study that re-runs its selected configuration with other seeds (comparison.seeds)
SEED_ROLES = {regime.role: regime.seeds_role for regime in regimes.REGIMES if regime.seeds}
LABELS = {regime.role: regime.labels for regime in regimes.REGIMES}  # the labels each regime's number rests on


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def per_image_hits(trial: FrozenTrial) -> np.ndarray | None:
    """The trial's per-image test top-1 hits (numpy bool (N,)) from its TEST_CORRECT attr; None when absent,
    unreadable, or not what its test_top1 attr counts (an interval must be about the number it is shown with)."""
    text, top1 = trial.user_attrs.get(schema.TEST_CORRECT), _number(trial.user_attrs.get(schema.TEST_TOP1))
    if not isinstance(text, str) or top1 is None:
        return None
    try:
        hits = schema.unpack_correct(text)
    except ValueError:
        return None
    return hits if hits.size and abs(100.0 * hits.mean() - top1) < 1e-3 else None


def seed_runs(row: dict[str, Any], studies: Sequence[Any]) -> dict[int, tuple[float, np.ndarray | None]]:
    """{seed: (test top-1, per-image hits or None)} of a regime: its selected trial (the study's seed) and its
    seeds study's trials."""
    if row["status"] != "ok" or row["test_top1"] is None:
        return {}
    selected = next(s for s in studies if s.name == row["study"])
    trial = next((t for t in selected.trials if t.number == row["trial"]), None)
    runs = {int(selected.config.get("seed", 0)): (float(row["test_top1"]), per_image_hits(trial) if trial else None)}
    role = SEED_ROLES.get(row["regime"])
    for study in (s for s in studies if role and s.role == role):
        for trial in study.complete():
            top1 = _number(trial.user_attrs.get(schema.TEST_TOP1))
            if top1 is not None:
                runs[int(trial.params.get("seed", study.config.get("seed", 0)))] = (top1, per_image_hits(trial))
    return runs


def seed_values(row: dict[str, Any], studies: Sequence[Any]) -> list[tuple[int, float]]:
    """[(seed, test top-1)] of a regime: its selected trial (the study's seed) and its seeds study's trials."""
    return [(seed, top1) for seed, (top1, _) in seed_runs(row, studies).items()]


def spread(values: Sequence[float]) -> dict[str, Any]:
    """n, mean and sample standard deviation (None for one value)."""
    if not values:
        return {"n": 0, "mean": None, "sd": None}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
    }


def _ci(runs: list[np.ndarray | None], reference: list[np.ndarray | None] | None = None) -> list[float] | None:
    """The two-level interval where every run (and reference run) stored its hits on the same images."""
    every = runs + (reference or [])
    if len(runs) < 2 or any(h is None for h in every) or len({h.size for h in every}) != 1:
        return None
    return list(intervals.two_level_ci(runs, reference))


def add_seeds(rows: list[dict[str, Any]], studies: Sequence[Any]) -> None:
    """Each row gets `seeds` ({n, mean, sd, ci} of test top-1 over its seed runs) and `gain_seeds` (the same for
    the gain over scratch, paired by seed). `ci` is the two-level bootstrap interval of the mean (seed runs, then
    test images: reports.intervals.two_level_ci), None where a run stored no per-image hits or ran once."""
    per_regime = {row["regime"]: seed_runs(row, studies) for row in rows}
    scratch = per_regime.get(regimes.BASELINE, {})
    for row in rows:
        mine = per_regime[row["regime"]]
        row["seeds"] = {**spread([top1 for top1, _ in mine.values()]), "ci": _ci([h for _, h in mine.values()])}
        common = sorted(set(mine) & set(scratch))
        if row["regime"] in regimes.CHECKS:  # another data set's numbers: no gain over scratch
            row["gain_seeds"] = {**spread([]), "ci": None}
            continue
        if row["regime"] == regimes.BASELINE:
            row["gain_seeds"] = {**spread([0.0] * len(common)), "ci": None}
            continue
        paired = [mine[seed][0] - scratch[seed][0] for seed in common]
        gain_ci = _ci([mine[seed][1] for seed in common], [scratch[seed][1] for seed in common])
        row["gain_seeds"] = {**spread(paired), "ci": gain_ci}


def find_trial(studies: Sequence[Any], name: Any, number: Any) -> tuple[Any, FrozenTrial | None]:
    """Study `name` among `studies` and its trial `number` (an int, or its text as in "STUDY #N"); None for either
    where it is not there."""
    study = next((s for s in studies if s.name == name), None)
    trial = next((t for t in study.trials if str(t.number) == str(number)), None) if study is not None else None
    return study, trial


def protocol(row: dict[str, Any], studies: Sequence[Any]) -> dict[str, Any]:
    """The protocol behind a regime's row, from the selected study's config and (for the SimCLR probe) the
    pretraining trial its encoder came from."""
    regime = regimes.BY_ROLE.get(row["regime"])
    out: dict[str, Any] = {"labels": LABELS.get(row["regime"], ""), "trials": row["n_trials"]}
    out["compares"] = regime.compares() if regime is not None else ""
    study, selected = find_trial(studies, row.get("study"), row.get("trial"))
    if study is None:
        return out
    config = study.config
    encoder = regime.encoder if regime is not None and regime.encoder else str(config.get("encoder"))
    imagenet = encoder == "imagenet" or str(config.get("encoder")) == "imagenet"
    side = "resolution" if imagenet else (regime.resolution if regime is not None else "image_size")
    out["resolution"] = int(config.get(side) or {"resolution": 224}.get(side, 32))  # the keys' defaults
    lr = _number(selected.user_attrs.get(schema.EFFECTIVE_LR)) if selected is not None else None
    if lr is not None:
        out["lr"] = lr  # the peak rate the selected trial trained with (lr per 256 images x its batch)
    out["epochs"] = config.get("probe_epochs") if study.objective == "linear_probe" else config.get("epochs")
    out["epochs_of"] = "probe" if study.objective == "linear_probe" else "training"
    if imagenet:
        out["pretraining"] = "ImageNet-1k, 1.28M images (torchvision IMAGENET1K_V1)"
    elif encoder in regimes.ENCODER_STUDY:
        out["pretraining"] = _pretraining(row, study, studies)
    return out


def _pretraining(row: dict[str, Any], study: Any, studies: Sequence[Any]) -> str:
    trial = next((t for t in study.trials if t.number == row["trial"]), None)
    source = str(trial.user_attrs.get(schema.TRIAL_ENCODER, "")) if trial is not None else ""
    name, _, number = source.removeprefix("trial:").rpartition(":")
    simclr, pre = find_trial(studies, name, number)
    if pre is None:
        return f"encoder {source or '?'}"
    how = "SimCLR" if simclr.objective == "simclr" else "supervised with the pretraining set's labels"
    images, steps = pre.user_attrs.get(schema.N_PRETRAIN_IMAGES), pre.user_attrs.get(schema.STEPS)
    lr = _number(pre.user_attrs.get(schema.EFFECTIVE_LR))
    at = f" at lr {lr:.3g}" if lr is not None else ""
    return f"{how} on {images:,} images, {steps:,} steps{at} ({name} #{number})" if images and steps else source


def protocol_text(p: dict[str, Any], seeds: dict[str, Any] | None = None) -> str:
    """One line: labels; input; pretraining; epochs; trials; seeds; what the gain compares."""
    parts = [p.get("labels", "")]
    if p.get("resolution"):
        parts.append(f"input {p['resolution']}x{p['resolution']}")
    if p.get("pretraining"):
        parts.append(p["pretraining"])
    if p.get("epochs"):
        at = f" at lr {p['lr']:.3g}" if p.get("lr") is not None else ""
        parts.append(f"{p['epochs']} {p.get('epochs_of', '')} epochs{at}".replace("  ", " "))
    trials = p.get("trials", 0)
    parts.append(f"{trials} trial{'' if trials == 1 else 's'}")
    if seeds and seeds.get("n"):
        parts.append(f"{seeds['n']} seed{'s' if seeds['n'] != 1 else ''}")
    if p.get("compares"):
        parts.append(p["compares"])
    return "; ".join(x for x in parts if x)
