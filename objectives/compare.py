"""`study.py compare`: the whole comparison of DESIGN.md as one resumable command over one store.

Six studies named PREFIX-*, each with the attrs comparison=PREFIX, preset and role:

    PREFIX-scale           simclr; grid over data_fraction (SCALE_RATIOS x the preset's fraction), one trial a point
    PREFIX-hparams         simclr at the preset's fraction; TPE + median pruning over the default SimCLR space
                           (lr, temperature, weight_decay, batch_size, jitter_strength)
    PREFIX-probe-simclr    linear_probe of best:PREFIX-hparams (best:PREFIX-scale when the former has no
                           complete trial when the study is created)
    PREFIX-probe-imagenet  linear_probe of the ImageNet-supervised ResNet-18
    PREFIX-probe-random    linear_probe of a random encoder
    PREFIX-scratch         supervised from scratch

The fair comparison: the three probes and scratch get their objective's default space, the same trial budget and
the same sampler seed. `--set KEY=VALUE` goes to every study whose objective has KEY (it is an error when none has).

Resuming. Studies that exist are loaded, never recreated, after checking that they hold what this command would
create (else: UserError, use another --prefix). A study runs what is left of its budget: the budget minus the
trials that *count*. COMPLETE and PRUNED trials count, and so does a FAIL whose "error" the objective recorded
(diverged, out of memory, a bad value): its parameters with the same seed would fail again, and the search has
moved on. A FAIL "interrupted" (Ctrl-C, SIGTERM) or without an error (a killed worker: the heartbeat retry
re-runs it) does not count, nor does a grid duplicate. A grid point whose trials are all such FAILs is queued
again as a retry of its last trial, because Optuna's GridSampler counts every finished point as visited.

A study that cannot start (`prepare()` raises UserError: no ImageNet weights offline, no SimCLR encoder) gets
the reason in its "error" study attr, which the report shows for the missing regime, and compare goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from errors import UserError, first_line
from objectives import build_spec
from objectives.create import check_name, create_study, data_dir_default, pin_encoder
from objectives.presets import PRESETS
from objectives.resume import (  # noqa: F401  (spec_difference, check_existing: part of compare's interface)
    add_wall_seconds,
    check_existing,
    remaining,
    set_study_error,
    simclr_encoder,
    spec_difference,
    stored_time_plan,
    work_left,
)
from objectives.run import RunOptions, requeue_grid_points, run_study
from objectives.sizing import Knobs
from simclr.config import objectives_using
from storage import display_url, open_artifacts, open_storage, schema, store, store_exists

# data_fraction grid of the scale study, as ratios of the preset's (or --set) data_fraction
SCALE_RATIOS: dict[str, tuple[float, ...]] = {
    "smoke": (0.1, 0.3, 1.0),
    "default": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
    "paper": (0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
}


@dataclass(frozen=True)
class Budget:
    hparams: int  # trials of the SimCLR hyperparameter study
    regime: int  # trials of each compared regime (the three probes and scratch): the same tuning effort
    pruner: str = "median"  # the hyperparameter study's pruner (study.py create --pruner syntax)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(hparams=3, regime=3, pruner="median:1"),  # prune from the second trial: minutes count
    "default": Budget(hparams=12, regime=12),
    "paper": Budget(hparams=20, regime=20),
}
COMPARED = ("simclr", "linear_probe", "supervised")  # the objectives compare uses (--set is split among them)
PROBES = (("simclr", None), ("imagenet", "imagenet"), ("random", "random"))  # (regime, encoder; simclr: later)


@dataclass(frozen=True)
class PlannedStudy:
    """One study of the comparison: how to build its spec (study.py create's arguments) and its budget."""

    name: str
    objective: str
    role: str
    trials: int  # the budget: trials that count (module docstring)
    sets: tuple[str, ...]
    preset: str
    comparison: str
    params: tuple[str, ...] = ()
    sampler: str = "tpe"
    pruner: str = "median"
    encoder: str = ""  # linear_probe: the encoder spec; "" for probe-simclr until its study is created

    def spec(self, encoder: str | None = None) -> schema.StudySpec:
        encoder = encoder or self.encoder
        sets = (*self.sets, f"encoder={encoder}") if encoder else self.sets
        return build_spec(
            self.objective,
            preset=self.preset,
            sets=sets,
            params=self.params,
            sampler=self.sampler,
            pruner=self.pruner,
            role=self.role,
            comparison=self.comparison,
        )


def _split_sets(sets: Sequence[str]) -> dict[str, list[str]]:
    """--set KEY=VALUE texts per objective: each goes to every objective of COMPARED that has KEY."""
    out: dict[str, list[str]] = {objective: [] for objective in COMPARED}
    seen: set[str] = set()
    for text in sets:
        key, sep, _ = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {text!r}: expected KEY=VALUE")
        if key in seen:
            raise UserError(f"--set {key} given twice")
        seen.add(key)
        if key == "encoder":
            raise UserError("--set encoder: compare probes its own encoders (SimCLR, ImageNet, random)")
        owners = [objective for objective in COMPARED if objective in objectives_using(key)]
        if not owners:
            raise UserError(f"--set {key}: not a config key of {', '.join(COMPARED)}")
        for objective in owners:
            out[objective].append(f"{key}={text.partition('=')[2].strip()}")
    return out


def _scale_sets(simclr_sets: Sequence[str], full: float) -> tuple[str, ...]:
    """The scale study's --set: every point trains as many steps as the full fraction's run (equal compute, so the
    curve measures data; `--set equal_steps_as=0` asks for equal epochs instead), without the kNN monitor (the
    study prunes nothing, and a small fraction runs many epochs)."""
    keys = {text.partition("=")[0].strip() for text in simclr_sets}
    sets = [text for text in simclr_sets if text.partition("=")[0].strip() != "data_fraction"]
    sets += [] if "equal_steps_as" in keys else [f"equal_steps_as={full!r}"]
    sets += [] if "monitor_every" in keys else ["monitor_every=0"]
    return tuple(sets)


def start_knobs(preset: str, sets: Sequence[str] = (), trials: int | None = None) -> Knobs:
    """The preset's plan as sizing knobs (objectives.sizing); a knob the user fixed (--set, --trials) is None."""
    per_objective, user = _split_sets(sets), {text.partition("=")[0].strip() for text in sets}
    simclr = build_spec("simclr", preset=preset, sets=per_objective["simclr"]).config
    supervised = build_spec("supervised", preset=preset, sets=per_objective["supervised"]).config
    budget, epochs = BUDGETS[preset], "epochs" not in user
    return Knobs(None if trials else budget.hparams, None if trials else budget.regime,
                 int(simclr["epochs"]) if epochs else None, int(supervised["epochs"]) if epochs else None,
                 float(simclr["data_fraction"]) if "data_fraction" not in user else None,
                 float(simclr["probe_fraction"]) if "probe_fraction" not in user else None)  # fmt: skip


def _knob_sets(per_objective: dict[str, list[str]], knobs: Knobs | None) -> None:
    if knobs is None:
        return
    probe = [(objective, "probe_fraction", knobs.probe_fraction) for objective in COMPARED]
    sized = (("simclr", "epochs", knobs.simclr_epochs), ("supervised", "epochs", knobs.supervised_epochs),
             ("simclr", "data_fraction", knobs.data_fraction), *probe)  # fmt: skip
    for objective, key, value in sized:
        if value is not None:
            per_objective[objective].append(f"{key}={value!r}")


def plan(
    prefix: str, *, preset: str, sets: Sequence[str] = (), trials: int | None = None, knobs: Knobs | None = None
) -> list[PlannedStudy]:
    """The comparison's studies in run order, every spec validated (UserError on bad input; no store touched).

    `trials` overrides the preset's budgets of the hyperparameter study, the probes and scratch; the scale study
    always runs one trial per grid point. `knobs` is a sized plan (objectives.sizing) applied over the preset.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if trials is not None and trials < 1:
        raise UserError("--trials must be >= 1")
    per_objective = _split_sets(sets)
    budget = BUDGETS[preset]
    n_hparams, n_regime = (trials, trials) if trials else (budget.hparams, budget.regime)
    _knob_sets(per_objective, knobs)  # a sized plan (compare --time-budget)
    n_hparams = knobs.hparams_trials if knobs and knobs.hparams_trials else n_hparams
    n_regime = knobs.regime_trials if knobs and knobs.regime_trials else n_regime
    common: dict[str, Any] = {"preset": preset, "comparison": prefix}
    simclr_sets = tuple(per_objective["simclr"])
    full = float(build_spec("simclr", preset=preset, sets=simclr_sets).config["data_fraction"])
    grid = sorted({float(f"{ratio * full:.6g}") for ratio in SCALE_RATIOS[preset]})
    plans = [
        PlannedStudy(
            f"{prefix}-scale", "simclr", "simclr_scale", len(grid), _scale_sets(simclr_sets, full),
            params=(f"data_fraction=choice:{','.join(map(repr, grid))}",), sampler="grid", pruner="none", **common,
        ),
        PlannedStudy(f"{prefix}-hparams", "simclr", "simclr_hparams", n_hparams, simclr_sets, pruner=budget.pruner,
                     **common),
        *(
            PlannedStudy(f"{prefix}-probe-{regime}", "linear_probe", f"probe_{regime}", n_regime,
                         tuple(per_objective["linear_probe"]), encoder=encoder or f"best:{prefix}-hparams", **common)
            for regime, encoder in PROBES
        ),
        PlannedStudy(f"{prefix}-scratch", "supervised", "scratch", n_regime, tuple(per_objective["supervised"]),
                     **common),
    ]  # fmt: skip
    for planned in plans:
        planned.spec()  # a bad value fails here, before any store or data is touched
    return plans


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)  # studies that ran (or had nothing left to run)
    failed: dict[str, str] = field(default_factory=dict)  # study -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # study -> how long its optimize took
    interrupted: bool = False
    whole: list[str] = field(default_factory=list)  # ran their whole budget here, nothing pruned: the cost model learns

    def merged(self, other: Outcome) -> Outcome:
        return Outcome([*self.ran, *other.ran], {**self.failed, **other.failed}, {**self.seconds, **other.seconds},
                       self.interrupted or other.interrupted, [*self.whole, *other.whole])  # fmt: skip


def ensure_study(storage: optuna.storages.BaseStorage, planned: PlannedStudy, artifacts_dir: str | None,
                 url: str, time_plan: dict | None = None) -> optuna.Study:  # fmt: skip
    """The planned study: loaded when it exists (checked by check_existing), else created; a probe of the SimCLR
    encoder pinned to the trial its best:STUDY resolves to now (objectives.create.pin_encoder)."""
    if planned.name in store.study_names(storage):
        return store.load_study(storage, planned.name)
    encoder = simclr_encoder(storage, planned.comparison) if planned.role == "probe_simclr" else None
    study = create_study(storage, planned.name, planned.spec(encoder))
    pin_encoder(storage, study, open_artifacts(url, artifacts_dir, create=False))
    if time_plan:  # the sized plan travels with the studies: a resumed run keeps it on any machine
        study.set_user_attr(schema.TIME_PLAN, json.dumps(time_plan))
    return study


def run_plans(
    plans: Sequence[PlannedStudy],
    storage: optuna.storages.BaseStorage,
    options: RunOptions,
    *,
    url: str,
    artifacts_dir: str | None,
    say: Callable[[str], None],
    time_plan: dict | None = None,
) -> Outcome:
    """Create or load each study and run what is left of its budget (objectives.run.run_study, in this process,
    on the one opened store). A study that cannot start (UserError) gets the reason recorded on it; an interrupt
    stops all. A new study stores `time_plan` (the sized plan)."""
    outcome = Outcome()
    for k, planned in enumerate(plans, 1):
        study = ensure_study(storage, planned, artifacts_dir, url, time_plan)
        queued = requeue_grid_points(study) if planned.sampler == "grid" else []
        done, left = remaining(planned, study.get_trials(deepcopy=False))
        head = f"[{k}/{len(plans)}] {planned.name} ({planned.objective}, role {planned.role})"
        if left == 0:
            say(f"{head}: {done}/{planned.trials} trials done, nothing left to run")
            outcome.ran.append(planned.name)
            continue
        again = f"; {len(queued)} interrupted grid point(s) queued again" if queued else ""
        say(f"{head}: {done}/{planned.trials} trials done, running {left}{again}")
        started = time.perf_counter()
        try:
            summary = run_study(
                storage, planned.name, replace(options, trials=left), url=url, artifacts_dir=artifacts_dir, say=say
            )
        except UserError as e:
            reason = first_line(e) or "cannot start"
            set_study_error(storage, planned.name, reason)
            outcome.failed[planned.name] = reason
            say(f"[{k}/{len(plans)}] {planned.name} cannot run: {reason} (recorded; going on)")
            continue
        set_study_error(storage, planned.name, "")
        outcome.ran.append(planned.name)
        outcome.seconds[planned.name] = time.perf_counter() - started
        add_wall_seconds(study, outcome.seconds[planned.name])
        if done == 0 and not summary.interrupted and "PRUNED" not in summary.states:  # what the estimate models
            outcome.whole.append(planned.name)
        say(summary.line())
        say(f"[{k}/{len(plans)}] {planned.name}: {outcome.seconds[planned.name] / 60:.1f} min")
        if summary.interrupted:
            outcome.interrupted = True
            break
    return outcome


def run_comparison(
    prefix: str,
    *,
    preset: str,
    sets: Sequence[str],
    trials: int | None,
    data_dir: str | None = None,
    url: str,
    artifacts_dir: str | None,
    options: RunOptions,
    say: Callable[[str], None],
    time_budget: str | None = None,
) -> tuple[optuna.storages.BaseStorage, list[PlannedStudy], Outcome]:
    """The whole comparison: plan (validated before any store or data is touched), check what a resumed run
    finds, size the plan to `time_budget` (a duration such as "15m"; None: the preset's default) and print it with
    a time estimate (objectives.budget), then create and run each study; afterwards estimated vs actual time, which
    this machine's cost model learns from. Returns the store, the plan and the outcome; the caller writes the
    report."""
    from objectives.budget import learn_from, size_plan, time_lines
    from objectives.sizing import preset_time_budget

    started = time.perf_counter()
    check_name(prefix)
    options.check()
    budget_s = preset_time_budget(time_budget, preset)
    data_dir = data_dir_default(data_dir)
    if data_dir is not None and not any(text.partition("=")[0].strip() == "data_dir" for text in sets):
        sets = [f"data_dir={data_dir}", *sets]
    plan(prefix, preset=preset, sets=sets, trials=trials)  # bad input fails here, before any store is opened
    known = open_storage(url) if store_exists(url) else None
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    header = f"comparison {prefix!r}, preset {preset}, in {display_url(url)}"
    plans, time_plan, machine = size_plan(prefix, preset=preset, sets=sets, trials=trials, known=known,
                                          budget_s=budget_s, device=options.device, say=say, header=header)  # fmt: skip
    storage = known if known is not None else open_storage(url, create=True)
    outcome = run_plans(plans, storage, options, url=url, artifacts_dir=artifacts_dir, say=say, time_plan=time_plan)
    seeds = int(plans[1].spec().config["seeds"])
    if seeds > 1 and not outcome.interrupted:  # each regime's selected configuration with other seeds
        from objectives.seeds import seed_plans

        extra = seed_plans(storage, prefix, preset, seeds)
        say(f"seeds: each regime's selected configuration with {seeds - 1} more seed(s): {len(extra)} studies")
        more = run_plans(extra, storage, options, url=url, artifacts_dir=artifacts_dir, say=say, time_plan=time_plan)
        plans, outcome = [*plans, *extra], outcome.merged(more)
    if outcome.seconds:
        for line in time_lines(plans, time_plan, outcome.seconds, time.perf_counter() - started):
            say(line)
        learn_from(machine, plans, time_plan, outcome)
    return storage, plans, outcome
