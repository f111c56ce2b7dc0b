"""`compare --time-budget`: size the comparison to fit a wall-clock budget on this machine, before anything runs.

The cost model (objectives.budget: a speed test of this machine times each study's image passes, corrected by
what earlier runs on this machine measured) estimates every planned study. While the total is over the budget,
the plan is cut, one step at a time, in this order (each knob down to its floor before the next one is touched):

    1. trials of the SimCLR hyperparameter study, down to 2   (a search needs two configurations to compare)
    2. trials of every compared regime together, down to 2    (probes and scratch keep the same tuning effort)
    3. SimCLR epochs, down to 2                               (the scale study's equal steps follow from them)
    4. supervised (scratch) epochs, down to 2
    5. fine-tuning epochs, down to 2, then the same-data supervised arm's epochs, down to 2
    6. pretraining images (data_fraction) x0.75, down to 0.35 of the preset's
    7. CIFAR-100 images for the probes and scratch (probe_fraction) x0.75, down to 0.3 of the preset's (the test
       images are never cut: they carry the confidence intervals)

Trials go first: a trial fewer repeats no less of what each number means. Epochs next: every number is still a
real training run, only shorter. Images last: they change what the scale curve spans and what the probes see. A
knob that the user fixed (`--set epochs=...`, `--set data_fraction=...`, `--trials`) is never cut. When every knob
is at its floor and the estimate is still over the budget, compare stops with how much more time the smallest plan
needs (exit 2). A budget larger than the preset's estimate runs the preset's full plan: sizing never grows a plan.

The sized plan (its knobs, the cuts, the estimate per study) is stored on every study of the comparison
(`time_plan` study attr), so a resumed run keeps the same plan on any machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from errors import UserError

# Floors: below these a number stops meaning what the comparison says it means.
MIN_TRIALS = 2
MIN_EPOCHS = 2
MIN_FRACTION_RATIO = 0.35  # of the preset's data_fraction (smoke: 0.02 -> 0.007, 350 CIFAR-10 images)
MIN_PROBE_RATIO = 0.3  # of the preset's probe_fraction (smoke: 0.05 -> 0.015, 660 probe-train images)
FRACTION_STEP = 0.75
PRESET_TIME_BUDGETS = {"smoke": 15 * 60.0}  # seconds; default and paper run their full plan unless told


def preset_time_budget(text: str | None, preset: str) -> float | None:
    """--time-budget's seconds: the given duration, else the preset's default (None: no budget, the full plan)."""
    return parse_duration(text) if text is not None else PRESET_TIME_BUDGETS.get(preset)


@dataclass(frozen=True)
class Knobs:
    """What sizing may cut; None = fixed by the user (never cut)."""

    hparams_trials: int | None
    regime_trials: int | None
    simclr_epochs: int | None
    supervised_epochs: int | None
    data_fraction: float | None
    probe_fraction: float | None = None
    finetune_epochs: int | None = None  # (a plan stored before fine-tuning was compared has none: never cut)
    labelled_epochs: int | None = None  # the same-data supervised arm's (likewise)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Knobs:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


# (knob, label, next smaller value or None at the floor)
def _fewer(floor: int) -> Callable[[int, Knobs], int | None]:
    return lambda value, start: value - 1 if value - 1 >= floor else None


def _fraction(name: str, floor_ratio: float) -> Callable[[float, Knobs], float | None]:
    def smaller(value: float, start: Knobs) -> float | None:
        floor = (getattr(start, name) or value) * floor_ratio
        new = float(f"{max(value * FRACTION_STEP, floor):.4g}")
        return new if new < value else None

    return smaller


ORDER: tuple[tuple[str, str, Callable], ...] = (
    ("hparams_trials", "SimCLR hyperparameter trials", _fewer(MIN_TRIALS)),
    ("regime_trials", "trials of each compared regime", _fewer(MIN_TRIALS)),
    ("simclr_epochs", "SimCLR epochs", _fewer(MIN_EPOCHS)),
    ("supervised_epochs", "scratch epochs", _fewer(MIN_EPOCHS)),
    ("finetune_epochs", "fine-tuning epochs", _fewer(MIN_EPOCHS)),
    ("labelled_epochs", "CIFAR-10-supervised epochs", _fewer(MIN_EPOCHS)),
    ("data_fraction", "pretraining data_fraction", _fraction("data_fraction", MIN_FRACTION_RATIO)),
    ("probe_fraction", "CIFAR-100 probe_fraction", _fraction("probe_fraction", MIN_PROBE_RATIO)),
)


@dataclass
class Sized:
    knobs: Knobs
    estimate: dict[str, float]  # study name -> estimated seconds
    cuts: list[str]  # what was cut, in words ("SimCLR epochs 5 -> 3")
    budget_s: float | None
    wall_s: float = 0.0  # the estimated wall time of the whole plan (on one worker: the total)

    @property
    def total(self) -> float:
        return sum(self.estimate.values())


Wall = Callable[[Knobs, dict[str, float]], float]  # (knobs, seconds per study) -> estimated wall seconds


def _total(knobs: Knobs, seconds: dict[str, float]) -> float:
    return sum(seconds.values())


def fit(
    start: Knobs, estimate: Callable[[Knobs], dict[str, float]], budget_s: float | None, wall: Wall = _total
) -> Sized:
    """The largest plan (cutting in ORDER from `start`) whose estimated wall time (`wall`: one worker's total by
    default; see `wall_seconds` for several) fits `budget_s` seconds; `start` unchanged when no budget is given or
    it fits. UserError when even the smallest plan does not fit."""
    knobs, seconds = start, estimate(start)
    if budget_s is None or wall(knobs, seconds) <= budget_s:
        return Sized(knobs, seconds, [], budget_s, wall(knobs, seconds))
    for name, _, smaller in ORDER:
        while wall(knobs, seconds) > budget_s:
            value = getattr(knobs, name)
            new = None if value is None else smaller(value, start)
            if new is None:
                break
            knobs = replace(knobs, **{name: new})
            seconds = estimate(knobs)
        if wall(knobs, seconds) <= budget_s:
            break
    total = wall(knobs, seconds)
    if total > budget_s:
        raise UserError(
            f"--time-budget {format_duration(budget_s)} is too small for this machine: the smallest plan "
            f"({describe(knobs)}) needs ~{format_duration(total)}, {format_duration(total - budget_s)} more; raise "
            "--time-budget, or give --time-budget none for the preset's full plan"
        )
    cuts = [
        f"{label} {getattr(start, name)} -> {getattr(knobs, name)}"
        for name, label, _ in ORDER
        if getattr(start, name) != getattr(knobs, name)
    ]
    return Sized(knobs, seconds, cuts, budget_s, total)


def critical_path(
    seconds: Mapping[str, float], trials: Mapping[str, int], needs: Mapping[str, Sequence[str]], workers: int
) -> tuple[float, list[str]]:
    """(seconds, the studies in order) of the longest chain of studies that wait on one another (`needs`: study ->
    the studies it waits for), each taking its wall time on `workers` workers (its trials side by side, each of
    equal cost). No number of workers finishes the plan sooner."""
    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(name: str) -> tuple[float, list[str]]:
        if name not in memo:
            n = max(trials.get(name, 1), 1)
            own = seconds[name] * math.ceil(n / workers) / n
            before = [longest(dep) for dep in needs.get(name, ()) if dep in seconds]
            length, chain = max(before, key=lambda pair: pair[0], default=(0.0, []))
            memo[name] = (length + own, [*chain, name])
        return memo[name]

    return max((longest(name) for name in seconds), key=lambda pair: pair[0], default=(0.0, []))


def wall_seconds(
    seconds: Mapping[str, float], trials: Mapping[str, int], needs: Mapping[str, Sequence[str]], workers: int
) -> float:
    """A plan's rough wall time on `workers` workers: the work divided among them, or the critical path, whichever
    is longer (one worker: the total)."""
    return max(sum(seconds.values()) / max(workers, 1), critical_path(seconds, trials, needs, workers)[0])


def describe(knobs: Knobs) -> str:
    parts = [f"{label} {getattr(knobs, name)}" for name, label, _ in ORDER if getattr(knobs, name) is not None]
    return ", ".join(parts)


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """'15m', '2h', '1h30m', '90s' or plain seconds -> seconds; 'none' (or None) -> no budget. UserError else."""
    if text is None or str(text).strip().lower() in ("none", "off"):
        return None
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise UserError(f"--time-budget {text!r}: give a duration like 15m, 2h, 1h30m, 900s, or none")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise UserError(f"--time-budget {text!r}: must be more than 0")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
