"""Each regime's selected configuration run again with other seeds, so the comparison reports a spread and not
one draw (`seeds` config key: smoke 1, default and paper 3).

For every seeded regime of the table (comparison.regimes) a grid study PREFIX-seeds-<seeds> over `seed` (config
seed + 1, ..., + seeds - 1), every other key fixed to the selected trial's config (the study's config with its
parameters merged in), no pruning:

    SimCLR          the simclr objective with PREFIX-hparams' best config and PREFIX-probe-simclr's best probe
                    parameters: each seed pretrains anew and probes its own encoder (test top-1 in its attrs)
    ImageNet/random the linear probe with the probe study's best parameters (the seed draws the probe's init and
                    batches, and the random encoder's weights)
    scratch         supervised training with the scratch study's best config
    scale curve     PREFIX-scale's grid again, over (data_fraction, seed): a spread at every point

The selected trial itself is the first seed. Created once the regime's study has a complete trial; a resumed
compare reuses a seeds study as it is (its configuration was fixed by the selection it was made from).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution

from comparison.plan import PlannedStudy
from comparison.regimes import PRETRAINING, SEEDED, Regime
from errors import UserError
from storage import schema, store

PROBE_KEYS = ("probe_lr", "probe_weight_decay", "probe_epochs", "probe_optimizer", "probe_batch_size")


def _best(storage: optuna.storages.BaseStorage, name: str) -> optuna.trial.FrozenTrial | None:
    try:
        return store.load_study(storage, name).best_trial
    except (ValueError, UserError):  # no complete trial yet, or no such study
        return None


def _spec(storage: optuna.storages.BaseStorage, name: str) -> schema.StudySpec | None:
    """The stored spec of study `name`, None when it is not in the store (UserError when it is not ours)."""
    if name not in store.study_names(storage):
        return None
    return store.study_spec(storage, name)


def selected_config(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any] | None:
    """The selected trial's whole config; an encoder named `best:STUDY` becomes the trial the study was pinned to,
    so its seeds evaluate the very weights it did (not a later best of STUDY)."""
    best = _best(storage, name)
    spec = _spec(storage, name) if best is not None else None
    if spec is None or best is None:
        return None
    config = {**spec.config, **best.params}
    pinned = storage.get_study_user_attrs(storage.get_study_id_from_name(name)).get(schema.ENCODER_TRIAL)
    encoder = str(config.get("encoder", ""))
    if pinned is not None and encoder.startswith("best:"):
        config["encoder"] = f"trial:{encoder.removeprefix('best:')}:{int(pinned)}"
    return config


def _seeds(base: int, seeds: int) -> CategoricalDistribution:
    return CategoricalDistribution([base + k for k in range(1, seeds)])


def _regime_plan(storage, regime: Regime, prefix: str, preset: str, seeds: int) -> PlannedStudy | None:
    """The seeds study of one regime: its selected config (from `selected_by` when another study selected it, with
    the regime's own tuned probe settings) over seed + 1, ..., seed + seeds - 1."""
    config = selected_config(storage, f"{prefix}-{regime.selected_by or regime.study}")
    if config is None:
        return None
    if regime.selected_by:  # the probe of each seed's encoder: the tuned probe of the regime
        probe = selected_config(storage, f"{prefix}-{regime.study}") or {}
        config.update({k: v for k, v in probe.items() if k in PROBE_KEYS})
    space = {"seed": _seeds(int(config.pop("seed")), seeds)}
    objective = regime.seeds_objective or regime.objective
    name, role = f"{prefix}-seeds-{regime.seeds}", regime.seeds_role
    return PlannedStudy(name, objective, role, seeds - 1, preset, prefix, config, space, "grid", "none")


def seed_plans(storage: optuna.storages.BaseStorage, prefix: str, preset: str, seeds: int) -> list[PlannedStudy]:
    """The seeds studies of a comparison whose regimes have a selected configuration (none when seeds <= 1)."""
    if seeds <= 1:
        return []
    plans = [_regime_plan(storage, regime, prefix, preset, seeds) for regime in SEEDED]
    plans += [_grid_plan(storage, p.suffix, p.seeds, prefix, preset, seeds) for p in PRETRAINING if p.seeds]
    return [p for p in plans if p is not None]


def _grid_plan(storage, suffix: str, tail: str, prefix: str, preset: str, seeds: int) -> PlannedStudy | None:
    """The scale curve's other seeds: every data_fraction of PREFIX-scale again with seed + 1, ..., a grid over
    (data_fraction, seed) with the scale study's config, so each point of the curve gets a spread."""
    name = f"{prefix}-{suffix}"
    spec = _spec(storage, name)
    fractions = getattr(spec.space.get("data_fraction"), "choices", None) if spec is not None else None
    if spec is None or not fractions:
        return None
    config = {k: v for k, v in spec.config.items() if k != "data_fraction"}
    space = {"data_fraction": CategoricalDistribution(list(fractions)), "seed": _seeds(int(config.pop("seed")), seeds)}
    n = len(fractions) * (seeds - 1)
    return PlannedStudy(
        f"{prefix}-seeds-{tail}", "simclr", f"seeds_{tail}", n, preset, prefix, config, space, "grid", "none"
    )
