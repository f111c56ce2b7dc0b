"""Search spaces, samplers and pruners: parsed from the command line, stored in the study, rebuilt by workers.

`--set KEY=VALUE` fixes a config key; `--param NAME=SPEC` searches one:
    float:LOW:HIGH[:log]     int:LOW:HIGH[:STEP|log]     choice:A,B,C   (values typed by the key's config type)
Every objective has a default space (`default_space`) for the keys not fixed with --set; a --param replaces the
default entry of its key or adds a new one. With the grid sampler the space is exactly the --param keys, each a
choice (a grid over a continuous range is not a grid). No torch here: `create` validates without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from errors import UserError
from objectives import registry
from simclr.config import check_value, default_search, objective_keys, parse_value
from storage.optuna_private import grid_id, is_retry

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS = ("median", "hyperband", "none")
SPEC_HELP = "float:LOW:HIGH[:log], int:LOW:HIGH[:STEP|log] or choice:A,B,C"


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"{flag} {text!r}: expected KEY=VALUE")
    return key, value.strip()


def parse_set(objective: str, text: str) -> tuple[str, object]:
    """`--set KEY=VALUE` -> (key, typed value); UserError on an unknown key or a bad value."""
    key, value = _split_assignment("--set", text)
    return key, parse_value(objective, key, value)


def _number(key: str, text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise UserError(f"--param {key}: {text!r} is not {'an int' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"--param {key}: {text!r} is not a finite number")
    return value


def _distribution(objective: str, key: str, spec: str) -> BaseDistribution:
    fields = objective_keys(objective)
    if key not in fields:
        known = ", ".join(sorted(fields))
        raise UserError(f"--param {key}: unknown config key for objective {objective}; known: {known}")
    kind = fields[key].type
    head, _, rest = spec.partition(":")
    if head == "choice":
        items = [item.strip() for item in rest.split(",")]
        if not rest or any(not item for item in items):
            raise UserError(f"--param {key}={spec}: choice needs values, e.g. choice:A,B,C")
        values = [parse_value(objective, key, item) for item in items]
        if len(set(values)) != len(values):
            raise UserError(f"--param {key}={spec}: a value is listed twice")
        return CategoricalDistribution(values)
    parts = rest.split(":") if rest else []
    if head not in ("float", "int") or len(parts) not in (2, 3):
        raise UserError(f"--param {key}={spec}: SPEC must be {SPEC_HELP}")
    if (head == "float") != (kind is float) or kind not in (int, float):
        wanted = {float: "float:LOW:HIGH[:log] or choice", int: "int:LOW:HIGH[:STEP] or choice"}.get(kind, "choice")
        raise UserError(f"--param {key}={spec}: {key} is {kind.__name__}; use {wanted}")
    low, high = (_number(key, p, kind) for p in parts[:2])
    if low > high:
        raise UserError(f"--param {key}={spec}: LOW {low} is above HIGH {high}")
    for bound in (low, high):
        check_value(objective, key, bound)
    option = parts[2] if len(parts) == 3 else None
    log = option == "log"
    if log and low <= 0:
        raise UserError(f"--param {key}={spec}: a log range needs LOW > 0")
    try:
        if head == "float":
            if option not in (None, "log"):
                raise UserError(f"--param {key}={spec}: the third field of float: can only be 'log'")
            return FloatDistribution(low, high, log=log)
        step = 1 if option in (None, "log") else _number(key, option, int)
        if step <= 0:
            raise UserError(f"--param {key}={spec}: STEP must be a positive int")
        if (high - low) % step:
            raise UserError(f"--param {key}={spec}: HIGH - LOW must be a multiple of STEP {step}")
        return IntDistribution(low, high, log=log, step=step)
    except ValueError as e:
        raise UserError(f"--param {key}={spec}: {e}") from None


def parse_param(objective: str, text: str) -> tuple[str, BaseDistribution]:
    """`--param NAME=SPEC` -> (name, Optuna distribution)."""
    key, spec = _split_assignment("--param", text)
    return key, _distribution(objective, key, spec)


def default_space(objective: str, config: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The searched keys of an objective when nothing else is said: each key's declared `Search` (simclr.config),
    resolved around the config's value where it is relative, as an Optuna distribution."""
    space: dict[str, BaseDistribution] = {}
    for name, search in default_search(objective).items():
        kind, *rest = search.resolve(config[name])
        if kind == "choice":
            space[name] = CategoricalDistribution(list(rest[0]))
        elif kind == "float":
            space[name] = FloatDistribution(rest[0], rest[1], log=rest[2])
        else:
            space[name] = IntDistribution(int(rest[0]), int(rest[1]), log=rest[2])
    return space


def build_space(
    objective: str, config: dict[str, Any], fixed: dict[str, object], params: dict[str, BaseDistribution], sampler: str
) -> dict[str, BaseDistribution]:
    """The study's space: default space minus --set keys, plus --param; grid = the --param choices only."""
    both = sorted(set(fixed) & set(params))
    if both:
        raise UserError(f"{', '.join(both)}: a key is either fixed (--set) or searched (--param), not both")
    if sampler == "grid":
        if not params:
            raise UserError("--sampler grid needs at least one --param NAME=choice:A,B,...")
        for key, dist in params.items():
            if not isinstance(dist, CategoricalDistribution):
                raise UserError(f"--sampler grid: --param {key} is a range; a grid needs choice:A,B,... values")
        return dict(params)
    space = {k: d for k, d in default_space(objective, config).items() if k not in fixed}
    space.update(params)
    return space


def suggest(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, object]:
    """Ask the trial for every parameter of the space (works with FixedTrial too)."""
    values: dict[str, object] = {}
    for name, d in space.items():
        if isinstance(d, FloatDistribution):
            values[name] = trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, IntDistribution):
            values[name] = trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
        elif isinstance(d, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, d.choices)
        else:
            raise TypeError(f"unsupported distribution {d!r} for {name}")
    return values


# ---------------------------------------------------------------------------------------------------------
# Samplers and pruners: stored as small dicts (Optuna does not store them), built by each worker


def sampler_spec(name: str, seed: int) -> dict[str, Any]:
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    if not 0 <= seed < 2**32:  # numpy's range (GridSampler shuffles with it): a bigger seed failed every worker
        raise UserError(f"--seed {seed}: must be in 0..{2**32 - 1}")
    needs = {"cmaes": "cmaes", "gp": "scipy"}.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        raise UserError(f"sampler {name} needs the {needs} package (pip install {needs}); or use tpe or random")
    return {"name": name, "seed": int(seed)}


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial `number` in a study seeded `seed` (a hash, so seed s+1 does not replay s)."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler made afresh for every trial, seeded with trial_seed(seed, trial number).

    Every worker rebuilds the study's sampler from the stored seed; seeded alike, workers started together drew
    the same parameters trial after trial (measured: 3 TPE workers ran each point 3 times). Trial numbers are
    unique across workers, so each trial gets its own draws, and one worker's run is still reproducible. The
    wrapped samplers keep nothing between trials that matters: TPE, random and GP recompute from the study's
    trials, CMA-ES restores its state from the trials' system attrs.
    """

    def __init__(self, build: Callable[[int | None], optuna.samplers.BaseSampler], seed: int | None):
        self._build, self._seed = build, seed
        self._sampler = build(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._seed is not None:
            self._sampler = self._build(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def _build_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def make_sampler(spec: dict[str, Any], space: dict[str, BaseDistribution]) -> optuna.samplers.BaseSampler:
    """The study's sampler as every worker builds it from the stored spec.

    Grid: the stored seed as is. It shuffles the grid, and a trial's grid point is looked up by index in that
    order, so workers (and later `optimize` runs) with different seeds would run some points twice and others
    never. Others: seeded per trial (TrialSeededSampler), so workers do not repeat each other's draws.
    """
    name, seed = spec["name"], spec.get("seed")
    if name == "grid":
        grid = {k: list(d.choices) for k, d in space.items() if isinstance(d, CategoricalDistribution)}
        return optuna.samplers.GridSampler(grid, seed=seed)
    _build_sampler(name, None)  # an unknown name fails here, once
    return TrialSeededSampler(lambda s: _build_sampler(name, s), seed)


def _ints(flag: str, text: str, names: tuple[str, ...]) -> list[int]:
    parts = text.split(":")[1:]
    if len(parts) > len(names):
        raise UserError(f"--pruner {text}: at most {len(names)} numbers ({', '.join(names)})")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UserError(f"--pruner {text}: {', '.join(names)} must be ints") from None
    if any(v < 0 for v in values):
        raise UserError(f"--pruner {text}: numbers must be >= 0")
    return values


def pruner_spec(text: str, objective: str, config: dict[str, Any]) -> dict[str, Any]:
    """`median[:N_STARTUP[:N_WARMUP]]`, `hyperband[:MIN_RESOURCE[:REDUCTION]]` or `none`, with defaults from the
    objective's reporting axis: median prunes from the 4th trial on, at the first report or later; hyperband's
    rungs run from the first report to the last epoch."""
    name = text.split(":")[0]
    first, last = registry.get(objective).report_axis(config)
    if name == "median":
        values = _ints("--pruner", text, ("N_STARTUP", "N_WARMUP"))
        startup = values[0] if values else 3
        warmup = values[1] if len(values) > 1 else first  # pruning may start at the first report
        return {"name": "median", "n_startup_trials": startup, "n_warmup_steps": warmup}
    if name == "hyperband":
        values = _ints("--pruner", text, ("MIN_RESOURCE", "REDUCTION"))
        min_resource = values[0] if values else first
        reduction = values[1] if len(values) > 1 else 3
        if min_resource < 1 or reduction < 2:
            raise UserError(f"--pruner {text}: MIN_RESOURCE must be >= 1 and REDUCTION >= 2")
        return {
            "name": "hyperband",
            "min_resource": min_resource,
            "max_resource": max(last, min_resource),
            "reduction_factor": reduction,
        }
    if name == "none" and text == "none":
        return {"name": "none"}
    raise UserError(f"unknown pruner {text!r}; use median[:N_STARTUP[:N_WARMUP]], hyperband[:MIN[:REDUCTION]] or none")


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    name = spec["name"]
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.get("n_startup_trials", 3), n_warmup_steps=spec.get("n_warmup_steps", 0)
        )
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.get("min_resource", 1),
            max_resource=spec.get("max_resource", "auto"),
            reduction_factor=spec.get("reduction_factor", 3),
        )
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------------------
# Encoder specs (linear_probe, finetune): random | imagenet | best:STUDY | trial:STUDY:NUMBER | a checkpoint path


def parse_encoder(text: str) -> tuple[str, str, int | None]:
    """(kind, study or path, trial number): kind is random | imagenet | best | trial | path. Syntax only."""
    if text in ("random", "imagenet"):
        return text, "", None
    if text.startswith("best:"):
        study = text[len("best:") :]
        if not study:
            raise UserError("encoder best:STUDY needs a study name")
        return "best", study, None
    if text.startswith("trial:"):
        study, _, number = text[len("trial:") :].rpartition(":")
        if not study or not number.isdigit():
            raise UserError(f"encoder {text!r}: use trial:STUDY:NUMBER")
        return "trial", study, int(number)
    if not text:
        raise UserError("encoder is empty; use random, imagenet, best:STUDY, trial:STUDY:NUMBER or a checkpoint path")
    return "path", text, None


# ---------------------------------------------------------------------------------------------------------
# Grids shared by several workers. Optuna's GridSampler gives trial k < grid size the k-th grid point (trial
# numbers are unique, so those never collide), but a worker that asks for a trial once every point has been
# started re-evaluates a running point. Workers therefore stop when the grid is fully started, and a trial that
# still lands on a taken point (two workers asking at the same instant) is failed before it trains.

_TAKEN = (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE, TrialState.PRUNED)


def grid_size(space: dict[str, BaseDistribution]) -> int:
    return math.prod(len(d.choices) for d in space.values() if isinstance(d, CategoricalDistribution))


def grid_exhausted(study: optuna.Study, space: dict[str, BaseDistribution]) -> bool:
    """Every grid point started (or done) and no retry waiting: a new trial could only repeat a point."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    started = {grid_id(t) for t in trials} - {None}
    return len(started) >= grid_size(space)


def grid_unsettled(trial: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]) -> list[int]:
    """Earlier trials still running without a grid point: created, but their worker has not yet written the point
    GridSampler gave them. Until it has, this trial cannot know whether one of them holds its point (the race that
    ran one point twice: the earlier trial's point looked free to the later one)."""
    return [
        t.number
        for t in trials
        if t.number < trial.number
        and t.state == TrialState.RUNNING
        and grid_id(t) is None
        and "fixed_params" not in t.system_attrs  # an enqueued trial never gets a grid point
        and not is_retry(t)
    ]


def grid_duplicate_of(trial: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]) -> int | None:
    """The number of an earlier trial holding this trial's grid point, else None. Earlier: of two trials racing
    for one point the lower number keeps it (so they never both give way); failed trials hold nothing."""
    point = grid_id(trial)
    if point is None or is_retry(trial):  # not a grid trial, or a heartbeat retry
        return None
    for t in trials:
        if t.number < trial.number and grid_id(t) == point and t.state in _TAKEN:
            return t.number
    return None


# How long a grid trial waits for earlier trials to record their grid points (milliseconds in a live worker; a
# worker killed in between never records one, and the wait ends there).
GRID_SETTLE_SECONDS = 10.0


def grid_duplicate(storage, trial: optuna.trial.FrozenTrial, study: int) -> int | None:
    """`grid_duplicate_of` once every earlier trial has written its grid point (or GRID_SETTLE_SECONDS passed)."""
    deadline = time.monotonic() + GRID_SETTLE_SECONDS
    while True:
        trials = storage.get_all_trials(study, deepcopy=False)
        if not grid_unsettled(trial, trials) or time.monotonic() > deadline:
            return grid_duplicate_of(trial, trials)
        time.sleep(0.05)
