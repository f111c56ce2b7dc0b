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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from errors import UserError, first_line
from objectives import build_spec
from objectives.create import check_name, create_study, data_dir_default, pin_encoder
from objectives.presets import PRESETS
from objectives.run import RunOptions, requeue_grid_points, run_study, uses_budget
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


def plan(prefix: str, *, preset: str, sets: Sequence[str] = (), trials: int | None = None) -> list[PlannedStudy]:
    """The comparison's studies in run order, every spec validated (UserError on bad input; no store touched).

    `trials` overrides the preset's budgets of the hyperparameter study, the probes and scratch; the scale study
    always runs one trial per grid point.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if trials is not None and trials < 1:
        raise UserError("--trials must be >= 1")
    per_objective = _split_sets(sets)
    budget = BUDGETS[preset]
    n_hparams, n_regime = (trials, trials) if trials else (budget.hparams, budget.regime)
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
# Resuming: what is stored must be what compare would create; what is left of each budget


def spec_difference(stored: schema.StudySpec, wanted: schema.StudySpec, *, ignore: Sequence[str] = ()) -> str | None:
    """The first difference between a stored spec and the one compare would create (config keys in `ignore` are
    not compared), with the count of the others; None when they agree."""
    pairs: list[tuple[str, Any, Any]] = [
        (name, getattr(stored, name), getattr(wanted, name))
        for name in ("objective", "preset", "role", "comparison", "sampler", "pruner")
    ]
    pairs.append(("space", schema.space_to_json(stored.space), schema.space_to_json(wanted.space)))
    keys = sorted(set(stored.config) | set(wanted.config))
    pairs += [(key, stored.config.get(key), wanted.config.get(key)) for key in keys if key not in ignore]
    diffs = [f"{name}: stored {a!r}, this command {b!r}" for name, a, b in pairs if a != b]
    if not diffs:
        return None
    return diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")


def check_existing(storage: optuna.storages.BaseStorage, plans: Sequence[PlannedStudy]) -> list[str]:
    """The plans' studies already in the store; UserError when one was made with other settings."""
    names = set(store.study_names(storage))
    existing = []
    for planned in plans:
        if planned.name not in names:
            continue
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(planned.name))
        try:
            stored = schema.read_spec(attrs, planned.name)
        except schema.SchemaError as e:
            raise UserError(f"{e}; use another --prefix") from None
        ignore = ("encoder",) if planned.role == "probe_simclr" else ()  # chosen when the study was created
        diff = spec_difference(stored, planned.spec(), ignore=ignore)
        if diff:
            raise UserError(
                f"study {planned.name!r} exists with other settings ({diff}); resume with the same --preset and --set, "
                "or start a new comparison with another --prefix"
            )
        existing.append(planned.name)
    return existing


def remaining(planned: PlannedStudy, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(trials that count, trials left to run): grid points for the scale study, trials for the others."""
    if planned.sampler == "grid":
        done = len({t.system_attrs.get("grid_id") for t in trials if uses_budget(t)} - {None})
    else:
        done = sum(uses_budget(t) for t in trials)
    return done, max(0, planned.trials - done)


def work_left(storage: optuna.storages.BaseStorage | None, plans: Sequence[PlannedStudy]) -> bool:
    """Whether any study is missing or has budget left (else compare only writes the report)."""
    names = set(store.study_names(storage)) if storage is not None else set()
    for planned in plans:
        if planned.name not in names:
            return True
        trials = storage.get_all_trials(storage.get_study_id_from_name(planned.name), deepcopy=False)
        if remaining(planned, trials)[1] > 0:
            return True
    return False


def simclr_encoder(storage: optuna.storages.BaseStorage, prefix: str) -> str:
    """best:PREFIX-hparams, or best:PREFIX-scale when only that one has a complete trial (when neither has, the
    former: the probe study then records why it cannot run)."""
    for name in (f"{prefix}-hparams", f"{prefix}-scale"):
        try:
            trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
        except KeyError:
            continue
        if any(t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value) for t in trials):
            return f"best:{name}"
    return f"best:{prefix}-hparams"


def set_study_error(storage: optuna.storages.BaseStorage, name: str, reason: str) -> None:
    """Record (or with "" clear) why a study could not run; reports show it for a missing regime."""
    study_id = storage.get_study_id_from_name(name)
    if reason or storage.get_study_user_attrs(study_id).get(schema.STUDY_ERROR):
        storage.set_study_user_attr(study_id, schema.STUDY_ERROR, reason)


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)  # studies that ran (or had nothing left to run)
    failed: dict[str, str] = field(default_factory=dict)  # study -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # study -> how long its optimize took
    interrupted: bool = False

    def merged(self, other: Outcome) -> Outcome:
        return Outcome([*self.ran, *other.ran], {**self.failed, **other.failed}, {**self.seconds, **other.seconds},
                       self.interrupted or other.interrupted)  # fmt: skip


def ensure_study(storage: optuna.storages.BaseStorage, planned: PlannedStudy, artifacts_dir: str | None,
                 url: str) -> optuna.Study:  # fmt: skip
    """The planned study: loaded when it exists (checked by check_existing), else created; a probe of the SimCLR
    encoder pinned to the trial its best:STUDY resolves to now (objectives.create.pin_encoder)."""
    if planned.name in store.study_names(storage):
        return store.load_study(storage, planned.name)
    encoder = simclr_encoder(storage, planned.comparison) if planned.role == "probe_simclr" else None
    study = create_study(storage, planned.name, planned.spec(encoder))
    pin_encoder(storage, study, open_artifacts(url, artifacts_dir, create=False))
    return study


def run_plans(
    plans: Sequence[PlannedStudy],
    storage: optuna.storages.BaseStorage,
    options: RunOptions,
    *,
    url: str,
    artifacts_dir: str | None,
    say: Callable[[str], None],
) -> Outcome:
    """Create or load each study and run what is left of its budget (objectives.run.run_study, in this process,
    on the one opened store). A study that cannot start (UserError) gets the reason recorded on it; an interrupt
    stops all."""
    outcome = Outcome()
    for k, planned in enumerate(plans, 1):
        study = ensure_study(storage, planned, artifacts_dir, url)
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
) -> tuple[optuna.storages.BaseStorage, list[PlannedStudy], Outcome]:
    """The whole comparison: plan (validated before any store or data is touched), check what a resumed run
    finds, print the budget with a time estimate, then create and run each study. Returns the store, the plan
    and the outcome; the caller writes the report."""
    from objectives.budget import budget_lines, estimate_seconds, preflight, speed_test

    check_name(prefix)
    options.check()
    data_dir = data_dir_default(data_dir)
    if data_dir is not None and not any(text.partition("=")[0].strip() == "data_dir" for text in sets):
        sets = [f"data_dir={data_dir}", *sets]
    plans = plan(prefix, preset=preset, sets=sets, trials=trials)
    known = open_storage(url) if store_exists(url) else None
    existing = check_existing(known, plans) if known is not None else []
    say(f"comparison {prefix!r}, preset {preset}, in {display_url(url)}: {len(plans)} studies")
    if existing:
        say(f"resuming: {len(existing)} of these studies exist; finished trials are kept, only what is left runs")
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    if work_left(known, plans):
        sizes, rt = preflight(plans, options.device)  # data and device first: a UserError creates nothing
        estimate = estimate_seconds(plans, sizes, speed_test(rt))
        say(f"budget ({rt.describe()}, {preset} preset):")
        for line in budget_lines(plans, sizes, estimate):
            say(line)
    storage = known if known is not None else open_storage(url, create=True)
    outcome = run_plans(plans, storage, options, url=url, artifacts_dir=artifacts_dir, say=say)
    seeds = int(plans[1].spec().config["seeds"])
    if seeds > 1 and not outcome.interrupted:  # each regime's selected configuration with other seeds
        from objectives.seeds import seed_plans

        extra = seed_plans(storage, prefix, preset, seeds)
        say(f"seeds: each regime's selected configuration with {seeds - 1} more seed(s): {len(extra)} studies")
        more = run_plans(extra, storage, options, url=url, artifacts_dir=artifacts_dir, say=say)
        plans, outcome = [*plans, *extra], outcome.merged(more)
    return storage, plans, outcome
