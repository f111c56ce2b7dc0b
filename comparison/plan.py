"""The comparison's plan: its studies, in run order, derived from the regime table (comparison.regimes).

    PREFIX-scale           simclr; grid over data_fraction (SCALE_RATIOS x the preset's fraction), one trial a point
    PREFIX-hparams         simclr at the preset's fraction; TPE + median pruning over the default SimCLR space
    PREFIX-<study>         one study per planned regime (probes of the SimCLR, ImageNet and random encoders; scratch)

The fair comparison: every regime gets its objective's default space, the same trial budget and the same sampler
seed. A study's settings are typed config overrides over the preset (`PlannedStudy.values`), validated when its
spec is built; the user's `--set KEY=VALUE` texts are parsed once, here (`split_overrides`), and each goes to every
study whose objective has the key (an error when none has).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from comparison.regimes import BY_ROLE, ENCODER_STUDY, PLANNED, PRETRAINING, SIMCLR, Pretraining, Regime, SameAs
from comparison.sizing import Knobs
from errors import UserError
from objectives import build_spec
from objectives.create import data_dir_default
from objectives.presets import PRESETS
from objectives.space import parse_set
from simclr.config import check_value, objectives_using
from storage import schema

# data_fraction grid of the scale study, as ratios of the preset's (or --set) data_fraction
SCALE_RATIOS: dict[str, tuple[float, ...]] = {
    "smoke": (0.1, 0.3, 1.0),
    "default": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
    "paper": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
}


@dataclass(frozen=True)
class Budget:
    hparams: int  # trials of the SimCLR hyperparameter study
    regime: int  # trials of each compared regime: the same tuning effort
    pruner: str = "median"  # the hyperparameter study's pruner (study.py create --pruner syntax)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(hparams=3, regime=3, pruner="none"),  # its kNN bank is too small to rank trials (presets.py)
    "default": Budget(hparams=12, regime=12),
    "paper": Budget(hparams=20, regime=20),
}
# the objectives a comparison runs: the user's --set is split among them
COMPARED: tuple[str, ...] = tuple(
    dict.fromkeys([*(p.objective for p in PRETRAINING), *(regime.objective for regime in PLANNED)])
)


@dataclass(frozen=True)
class PlannedStudy:
    """One study of the comparison: its spec's typed parts (study.py create's arguments) and its budget."""

    name: str
    objective: str
    role: str
    trials: int  # the budget: trials that count (comparison.resume)
    preset: str
    comparison: str
    values: Mapping[str, Any] = field(default_factory=dict)  # typed config overrides over the preset
    searched: Mapping[str, BaseDistribution] = field(default_factory=dict)  # the grid's parameters
    sampler: str = "tpe"
    pruner: str = "median"
    encoder: str = ""  # the encoder spec of a regime that evaluates one (the SimCLR one: resolved at creation)

    def spec(self, encoder: str | None = None) -> schema.StudySpec:
        encoder = encoder or self.encoder
        values = {**self.values, "encoder": encoder} if encoder else dict(self.values)
        return build_spec(
            self.objective,
            preset=self.preset,
            values=values,
            searched=self.searched,
            sampler=self.sampler,
            pruner=self.pruner,
            role=self.role,
            comparison=self.comparison,
        )

    @property
    def grid(self) -> bool:
        return self.sampler == "grid"

    @property
    def regime(self) -> Regime | None:
        return BY_ROLE.get(self.role)

    @property
    def pretraining(self) -> Pretraining | None:
        return next((p for p in PRETRAINING if p.role == self.role), None)

    @property
    def probes_simclr(self) -> bool:
        """Its encoder is this comparison's best SimCLR encoder, resolved when the study is created."""
        return self.regime is not None and self.regime.encoder == SIMCLR


Overrides = dict[str, dict[str, Any]]  # objective -> {key: typed value}


def split_overrides(sets: Sequence[str]) -> Overrides:
    """The user's --set KEY=VALUE texts, parsed once into typed values, per objective of COMPARED: each goes to
    every objective that has KEY."""
    out: Overrides = {objective: {} for objective in COMPARED}
    for text in sets:
        key, sep, _ = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {text!r}: expected KEY=VALUE")
        if any(key in values for values in out.values()):
            raise UserError(f"--set {key} given twice")
        if key == "encoder":
            raise UserError("--set encoder: compare probes its own encoders (SimCLR, ImageNet, random)")
        owners = [objective for objective in COMPARED if objective in objectives_using(key)]
        if not owners:
            raise UserError(f"--set {key}: not a config key of {', '.join(COMPARED)}")
        _, value = parse_set(owners[0], text)
        for objective in owners:
            check_value(objective, key, value)
            out[objective][key] = value
    return out


@dataclass(frozen=True)
class Request:
    """What `study.py compare` asks for, parsed once: the plan is built from it (typed, no text re-parsed)."""

    prefix: str
    preset: str
    overrides: Overrides = field(default_factory=lambda: {objective: {} for objective in COMPARED})
    trials: int | None = None  # --trials: every search's budget (the scale grid keeps one trial a point)

    @classmethod
    def of(
        cls,
        prefix: str,
        *,
        preset: str,
        sets: Sequence[str] = (),
        trials: int | None = None,
        data_dir: str | None = None,
    ) -> Request:
        """From the command line: --set texts parsed here; --data-dir (else $STUDY_DATA) for every study unless --set
        gives data_dir."""
        data_dir = data_dir_default(data_dir)
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if trials is not None and trials < 1:
            raise UserError("--trials must be >= 1")
        overrides = split_overrides(sets)
        for values in overrides.values():
            if data_dir and "data_dir" not in values:
                values["data_dir"] = data_dir
        return cls(prefix, preset, overrides, trials)

    def to_json(self) -> dict[str, Any]:
        """What every worker of this comparison must be started with (stored with the plan): preset, --trials and
        each --set key (with --data-dir) once, as JSON values."""
        sets = {key: value for values in self.overrides.values() for key, value in values.items()}
        return json.loads(
            json.dumps({"preset": self.preset, "trials": self.trials, "sets": dict(sorted(sets.items()))})
        )

    def fixed(self, objective: str, key: str) -> bool:
        """Whether the user fixed `key` (sizing never cuts it)."""
        return key in self.overrides[objective]


def start_knobs(request: Request) -> Knobs:
    """The preset's plan as sizing knobs (comparison.sizing); a knob the user fixed (--set, --trials) is None."""
    start: dict[str, Any] = {}
    for study in (*PRETRAINING, *PLANNED):
        objective = study.objective
        config = build_spec(objective, preset=request.preset, values=request.overrides[objective]).config
        for key, knob in study.knobs:
            value = None if request.fixed(objective, key) else config[key]
            if start.setdefault(knob, value) != value:  # a table error, not the user's
                raise ValueError(f"sizing knob {knob} starts at {start[knob]} and {value}: give them one knob each")
    budget = BUDGETS[request.preset]
    start["hparams_trials"] = None if request.trials else budget.hparams
    start["regime_trials"] = None if request.trials else budget.regime
    return Knobs(**start)


def _sized(values: dict[str, Any], knobs: Knobs | None, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`values` with the sized plan's knobs (compare --time-budget) applied to the keys they size."""
    sized = {key: getattr(knobs, knob) for key, knob in pairs if knobs and getattr(knobs, knob) is not None}
    return {**values, **sized}


def _scale_values(values: Mapping[str, Any], user: Mapping[str, Any], full: float) -> dict[str, Any]:
    """The scale study's config: every point trains as many steps as the full fraction's run (equal compute, so the
    curve measures data; `--set equal_steps_as=0` asks for equal epochs instead), without the kNN monitor (the
    study prunes nothing, and a small fraction runs many epochs)."""
    out = {k: v for k, v in values.items() if k != "data_fraction"}
    if "equal_steps_as" not in user:
        out["equal_steps_as"] = full
    if "monitor_every" not in user:
        out["monitor_every"] = 0
    return out


def _trials(knob: str, knobs: Knobs | None, default: int) -> int:
    """The trial budget a sized plan gives `knob` ("" for the grid's: one trial a point), else `default`."""
    return (getattr(knobs, knob) if knobs is not None and knob else None) or default


def _pretraining(p: Pretraining, prefix: str, values: dict, user: dict, budget: Budget, common: dict) -> PlannedStudy:
    preset = common["preset"]
    name = f"{prefix}-{p.suffix}"
    if not p.grid:
        n = _trials(p.trials, common["knobs"], common["n_hparams"])
        return PlannedStudy(name, p.objective, p.role, n, preset, prefix, values, pruner=budget.pruner)
    full = float(build_spec("simclr", preset=preset, values=values).config["data_fraction"])
    grid = sorted({float(f"{ratio * full:.6g}") for ratio in SCALE_RATIOS[preset]})
    space = {"data_fraction": CategoricalDistribution(grid)}
    scale = _scale_values(values, user, full)
    return PlannedStudy(name, "simclr", p.role, len(grid), preset, prefix, scale, space, "grid", "none")


def _regime_values(regime: Regime, values: dict, preset: str) -> dict:
    """The regime's own config values (Regime.values, SameAs resolved in the study's config) under the user's."""
    if not regime.values:
        return values
    config = build_spec(regime.objective, preset=preset, values=values).config
    own = {key: config[v.key] if isinstance(v, SameAs) else v for key, v in regime.values}
    return {**own, **{k: v for k, v in values.items() if k not in own}}


def _regime(regime: Regime, prefix: str, values: dict, common: dict) -> PlannedStudy:
    values = _regime_values(regime, values, common["preset"])
    n = _trials(regime.trials, common["knobs"], common["n_regime"])
    encoder = regime.encoder or ""
    if encoder in ENCODER_STUDY:  # that study's best (SimCLR: comparison.run picks the scale study's if it has none)
        encoder = f"best:{prefix}-{ENCODER_STUDY[encoder].suffix}"
    name = f"{prefix}-{regime.study}"
    return PlannedStudy(name, regime.objective, regime.role, n, common["preset"], prefix, values, encoder=encoder)


def plan(request: Request, knobs: Knobs | None = None) -> list[PlannedStudy]:
    """The comparison's studies in run order, every spec validated (UserError on bad input; no store touched).

    The request's `trials` overrides the preset's budgets of the hyperparameter study and the regimes; the scale
    study always runs one trial per grid point. `knobs` is a sized plan (comparison.sizing) applied over the preset.
    """
    user, budget, trials = request.overrides, BUDGETS[request.preset], request.trials
    n_hparams, n_regime = (trials, trials) if trials else (budget.hparams, budget.regime)
    common = {"preset": request.preset, "knobs": knobs, "n_hparams": n_hparams, "n_regime": n_regime}
    prefix = request.prefix
    plans = [
        _pretraining(p, prefix, _sized(user[p.objective], knobs, p.knobs), user[p.objective], budget, common)
        for p in PRETRAINING
    ]
    plans += [_regime(r, prefix, _sized(user[r.objective], knobs, r.knobs), common) for r in PLANNED]
    for planned in plans:
        planned.spec()  # a bad value fails here, before any store or data is touched
    return plans
