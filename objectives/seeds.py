"""Each regime's selected configuration run again with other seeds, so the comparison reports a spread and not
one draw (`seeds` config key: smoke 1, default and paper 3).

For every compared regime a grid study PREFIX-seeds-REGIME over `seed` (config seed + 1, ..., + seeds - 1), every
other key fixed to the selected trial's config (the study's config with its parameters merged in), no pruning:

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

from errors import UserError
from objectives.compare import PlannedStudy
from storage import schema, store

# regime role -> (the study that selected its configuration, the objective the seeds study runs)
SEEDED = {
    "simclr_hparams": ("hparams", "simclr"),
    "probe_imagenet": ("probe-imagenet", "linear_probe"),
    "probe_random": ("probe-random", "linear_probe"),
    "scratch": ("scratch", "supervised"),
}
PROBE_KEYS = ("probe_lr", "probe_weight_decay", "probe_epochs", "probe_optimizer", "probe_batch_size")


def _best(storage: optuna.storages.BaseStorage, name: str) -> optuna.trial.FrozenTrial | None:
    try:
        return store.load_study(storage, name).best_trial
    except (ValueError, UserError):  # no complete trial yet, or no such study
        return None


def _selected_config(storage: optuna.storages.BaseStorage, name: str) -> dict[str, Any] | None:
    best = _best(storage, name)
    if best is None:
        return None
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    return {**schema.read_spec(attrs, name).config, **best.params}


def _as_set(key: str, value: Any) -> str:
    """KEY=VALUE as --set parses it back to the same value (floats exactly, booleans as true/false)."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"


def seed_plans(storage: optuna.storages.BaseStorage, prefix: str, preset: str, seeds: int) -> list[PlannedStudy]:
    """The seeds studies of a comparison whose regimes have a selected configuration (none when seeds <= 1)."""
    if seeds <= 1:
        return []
    plans = []
    for role, (suffix, objective) in SEEDED.items():
        config = _selected_config(storage, f"{prefix}-{suffix}")
        if config is None:
            continue
        if role == "simclr_hparams":  # the probe of each seed's encoder: the tuned probe of the SimCLR regime
            probe = _selected_config(storage, f"{prefix}-probe-simclr") or {}
            config.update({k: v for k, v in probe.items() if k in PROBE_KEYS})
        base = int(config.pop("seed"))
        grid = ",".join(str(base + k) for k in range(1, seeds))
        regime = "simclr" if role == "simclr_hparams" else role
        sets = tuple(_as_set(k, v) for k, v in config.items())
        plans.append(PlannedStudy(f"{prefix}-seeds-{regime}", objective, f"seeds_{regime}", seeds - 1, sets, preset,
                                   prefix, params=(f"seed=choice:{grid}",), sampler="grid", pruner="none"))  # fmt: skip
    scale = _scale_plan(storage, prefix, preset, seeds)
    return plans + ([scale] if scale is not None else [])


def _scale_plan(storage: optuna.storages.BaseStorage, prefix: str, preset: str, seeds: int) -> PlannedStudy | None:
    """The scale curve's other seeds: every data_fraction of PREFIX-scale again with seed + 1, ..., a grid over
    (data_fraction, seed) with the scale study's config, so each point of the curve gets a spread."""
    name = f"{prefix}-scale"
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return None
    spec = schema.read_spec(attrs, name)
    fractions = getattr(spec.space.get("data_fraction"), "choices", None)
    if not fractions:
        return None
    config = {k: v for k, v in spec.config.items() if k != "data_fraction"}
    base = int(config.pop("seed"))
    grid = ",".join(str(base + k) for k in range(1, seeds))
    params = (f"data_fraction=choice:{','.join(map(repr, fractions))}", f"seed=choice:{grid}")
    return PlannedStudy(f"{prefix}-seeds-scale", "simclr", "seeds_scale", len(fractions) * (seeds - 1),
                        tuple(_as_set(k, v) for k, v in config.items()), preset, prefix, params=params,
                        sampler="grid", pruner="none")  # fmt: skip
