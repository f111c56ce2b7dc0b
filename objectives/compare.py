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
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import build_spec, create_study, make_objective
from objectives.presets import PRESETS
from simclr.config import objective_fields
from errors import UserError
from storage import schema, store

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
INTERRUPTED = "interrupted"  # the "error" of a trial stopped by Ctrl-C or SIGTERM (objectives.common)


@dataclass(frozen=True)
class Step:
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
        owners = [objective for objective in COMPARED if key in objective_fields(objective)]
        if not owners:
            raise UserError(f"--set {key}: not a config key of {', '.join(COMPARED)}")
        for objective in owners:
            out[objective].append(f"{key}={text.partition('=')[2].strip()}")
    return out


def plan(prefix: str, *, preset: str, sets: Sequence[str] = (), trials: int | None = None) -> list[Step]:
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
    steps = [
        Step(
            f"{prefix}-scale", "simclr", "simclr_scale", len(grid),
            tuple(s for s in simclr_sets if s.partition("=")[0].strip() != "data_fraction"),
            params=(f"data_fraction=choice:{','.join(map(repr, grid))}",), sampler="grid", pruner="none", **common,
        ),
        Step(f"{prefix}-hparams", "simclr", "simclr_hparams", n_hparams, simclr_sets, pruner=budget.pruner, **common),
        *(
            Step(f"{prefix}-probe-{regime}", "linear_probe", f"probe_{regime}", n_regime,
                 tuple(per_objective["linear_probe"]), encoder=encoder or f"best:{prefix}-hparams", **common)
            for regime, encoder in PROBES
        ),
        Step(f"{prefix}-scratch", "supervised", "scratch", n_regime, tuple(per_objective["supervised"]), **common),
    ]  # fmt: skip
    for step in steps:
        step.spec()  # a bad value fails here, before any store or data is touched
    return steps


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


def check_existing(storage: optuna.storages.BaseStorage, steps: Sequence[Step]) -> list[str]:
    """The steps' studies already in the store; UserError when one was made with other settings."""
    names = set(store.study_names(storage))
    existing = []
    for step in steps:
        if step.name not in names:
            continue
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(step.name))
        try:
            stored = schema.read_spec(attrs, step.name)
        except schema.SchemaError as e:
            raise UserError(f"{e}; use another --prefix") from None
        ignore = ("encoder",) if step.role == "probe_simclr" else ()  # chosen when the study was created
        diff = spec_difference(stored, step.spec(), ignore=ignore)
        if diff:
            raise UserError(
                f"study {step.name!r} exists with other settings ({diff}); resume with the same --preset and --set, "
                "or start a new comparison with another --prefix"
            )
        existing.append(step.name)
    return existing


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial uses up budget (module docstring): finished, or failed for a reason it would fail for again."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    error = str(trial.user_attrs.get(schema.ERROR) or "")
    return (
        trial.state == TrialState.FAIL
        and bool(error)
        and error != INTERRUPTED
        and not error.startswith(schema.GRID_TAKEN)
    )


def requeue_grid_points(study: optuna.Study) -> list[float]:
    """Queue again (as a retry of its last trial) every grid point whose trials all failed without counting.

    Returns their params. GridSampler counts a finished point as visited whatever its state, so an interrupted
    point would otherwise never run; the retry keeps the grid id, as a heartbeat retry does.
    """
    points: dict[int, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        if "grid_id" in trial.system_attrs:
            points.setdefault(int(trial.system_attrs["grid_id"]), []).append(trial)
    queued = []
    for grid_id, trials in sorted(points.items()):
        if any(counts(t) or t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        history = [*last.system_attrs.get("retry_history", []), last.number]
        system_attrs = {
            "grid_id": grid_id,
            "search_space": last.system_attrs.get("search_space"),
            "failed_trial": history[0],
            "retry_history": history,
        }
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=last.params,
                distributions=last.distributions,
                system_attrs=system_attrs,
            )
        )
        queued.append(dict(last.params))
    return queued


def remaining(step: Step, trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(trials that count, trials left to run): grid points for the scale study, trials for the others."""
    if step.sampler == "grid":
        done = len({t.system_attrs.get("grid_id") for t in trials if counts(t)} - {None})
    else:
        done = sum(counts(t) for t in trials)
    return done, max(0, step.trials - done)


def work_left(storage: optuna.storages.BaseStorage | None, steps: Sequence[Step]) -> bool:
    """Whether any study is missing or has budget left (else compare only writes the report)."""
    names = set(store.study_names(storage)) if storage is not None else set()
    for step in steps:
        if step.name not in names:
            return True
        trials = storage.get_all_trials(storage.get_study_id_from_name(step.name), deepcopy=False)
        if remaining(step, trials)[1] > 0:
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
# Before starting: the data and device (nothing created when they are missing), and the budget


@dataclass
class Sizes:
    """Image counts of the comparison's data (from the preflight)."""

    pretrain: int  # pretraining images at the preset's (full) data_fraction
    probe_train: int
    probe_val: int
    test: int


def preflight(steps: Sequence[Step], device: str) -> tuple[Sizes, Any]:
    """Load the data and resolve the device as the hyperparameter study will (downloading CIFAR when allowed and
    missing): a UserError here stops compare before anything is created. Returns the sizes and the runtime."""
    step = next(s for s in steps if s.role == "simclr_hparams")
    config = step.spec().config
    objective = make_objective(step.spec(), device=device)
    objective.prepare()
    splits = objective.data.probe_splits(config)
    sizes = Sizes(
        len(objective.data.pretrain_set(config)), len(splits["train"]), len(splits["val"]), len(splits["test"])
    )
    return sizes, objective.runtime(config)


def speed_test(rt, seconds: float = 1.5) -> float:
    """Training images per second of the CIFAR ResNet-18 (forward + backward + SGD) on this runtime, the median
    of steps timed for about `seconds` after two warm-up steps: the calibration of the rough time estimate."""
    import statistics

    import torch

    from simclr.models import resnet18

    batch = 256 if rt.device.type == "cuda" else 32  # CPU steps are long already at 32
    model = rt.prepare(resnet18("cifar", num_classes=10)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=rt.device).contiguous(memory_format=rt.memory_format)
    y = torch.randint(0, 10, (batch,), device=rt.device)

    def step() -> float:
        start = time.perf_counter()
        with rt.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device
        return time.perf_counter() - start

    step(), step()
    times: list[float] = []
    while len(times) < 3 or sum(times) < seconds:
        times.append(step())
    return batch / statistics.median(times)


def _imagenet_cost(resolution: int) -> float:
    """Forward cost of the ImageNet-stem ResNet-18 at `resolution` relative to the CIFAR one at 32x32
    (1.82 vs 0.56 GMACs at 224: the 7x7 stride-2 stem and max-pool shrink the maps 16-fold)."""
    return 1.82 / 0.56 * (resolution / 224) ** 2


def work(step: Step, sizes: Sizes) -> tuple[float, float]:
    """(training image passes, forward-only image passes) of one study's full budget: a cost model in units of a
    CIFAR ResNet-18 image. Probe training on cached features is small and left out."""
    config = step.spec().config
    probe_images = sizes.probe_train + sizes.probe_val + sizes.test
    if step.objective == "simclr":
        if step.sampler == "grid":
            fractions = [float(v) for v in step.spec().space["data_fraction"].choices]
            pretrain = sum(fractions) * sizes.pretrain / max(fractions)  # the largest is the full fraction
        else:
            pretrain = step.trials * sizes.pretrain
        epochs, every = int(config["epochs"]), int(config["monitor_every"])
        monitor = (epochs // every if every else 0) * (
            min(int(config["monitor_size"]), sizes.probe_train) + sizes.probe_val
        )
        return 2 * epochs * pretrain, step.trials * (monitor + probe_images)
    if step.objective == "supervised":
        epochs = int(config["epochs"])
        return step.trials * epochs * sizes.probe_train, step.trials * (epochs * sizes.probe_val + sizes.test)
    cost = _imagenet_cost(int(config["resolution"])) if step.encoder == "imagenet" else 1.0
    return 0.0, cost * probe_images  # features are extracted once per encoder and cached


def estimate_seconds(steps: Sequence[Step], sizes: Sizes, train_rate: float) -> dict[str, float]:
    """Rough seconds per study: training passes at `train_rate`, forward passes 4x faster (measured: 100 and 400
    images/s on 2 CPU cores), plus 10 s of loading data. An upper bound where trials are pruned."""
    out = {}
    for step in steps:
        train, forward = work(step, sizes)
        out[step.name] = 10.0 + train / train_rate + forward / (4 * train_rate)
    return out


def _images(n: float) -> str:
    return f"{n:,.0f}"


def budget_lines(steps: Sequence[Step], sizes: Sizes, estimate: dict[str, float] | None) -> list[str]:
    """The budget printed before starting: per study its trials, epochs, images (and a rough time)."""
    width = max(len(s.name) for s in steps)
    lines = []
    for k, step in enumerate(steps, 1):
        spec = step.spec()
        config = spec.config
        if step.objective == "simclr":
            if step.sampler == "grid":
                fractions = [float(v) for v in spec.space["data_fraction"].choices]
                scale = sizes.pretrain / max(fractions)
                what = "data_fraction " + ", ".join(f"{f:g} (~{_images(f * scale)})" for f in fractions)
            else:
                what = f"{_images(sizes.pretrain)} pretraining images; search {', '.join(spec.space)}"
            epochs = f"{config['epochs']} epochs (+ probe {config['probe_epochs']})"
        elif step.objective == "supervised":
            what = f"{_images(sizes.probe_train)} training images; search {', '.join(spec.space)}"
            epochs = f"{config['epochs']} epochs"
        else:
            encoder = step.encoder + (f" at {config['resolution']}px" if step.encoder == "imagenet" else "")
            what = f"encoder {encoder}; {_images(sizes.probe_train)} images; search {', '.join(spec.space)}"
            epochs = f"{config['probe_epochs']} probe epochs"
        time_text = f"  ~{estimate[step.name] / 60:.1f} min" if estimate else ""
        lines.append(f"  {k}/{len(steps)} {step.name:<{width}}  {step.trials:>3} trials  {epochs}; {what}{time_text}")
    lines.append(
        f"  data: probe-train {_images(sizes.probe_train)}, probe-val {_images(sizes.probe_val)}, "
        f"test {_images(sizes.test)} images"
    )
    if estimate:
        total = sum(estimate.values()) / 60
        lines.append(f"  rough total: ~{total:.0f} min if nothing is pruned (a cost model calibrated by a speed test)")
    return lines


# ---------------------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)  # studies that ran (or had nothing left to run)
    failed: dict[str, str] = field(default_factory=dict)  # study -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # study -> how long its optimize took
    interrupted: bool = False


def ensure_study(storage: optuna.storages.BaseStorage, step: Step) -> optuna.Study:
    """The step's study: loaded when it exists (checked by check_existing), else created."""
    if step.name in store.study_names(storage):
        return store.load_study(storage, step.name)
    encoder = simclr_encoder(storage, step.comparison) if step.role == "probe_simclr" else None
    return create_study(storage, step.name, step.spec(encoder))


def run_steps(
    steps: Sequence[Step],
    storage: optuna.storages.BaseStorage,
    optimize: Callable[[str, int], int],
    say: Callable[[str], None],
) -> Outcome:
    """Create or load each study and run what is left of its budget with `optimize(name, n_trials) -> exit code`
    (study.py optimize). A UserError from it (the study cannot start) is recorded on the study; 130 stops all."""
    outcome = Outcome()
    for k, step in enumerate(steps, 1):
        study = ensure_study(storage, step)
        queued = requeue_grid_points(study) if step.sampler == "grid" else []
        done, left = remaining(step, study.get_trials(deepcopy=False))
        head = f"[{k}/{len(steps)}] {step.name} ({step.objective}, role {step.role})"
        if left == 0:
            say(f"{head}: {done}/{step.trials} trials done, nothing left to run")
            outcome.ran.append(step.name)
            continue
        again = f"; {len(queued)} interrupted grid point(s) queued again" if queued else ""
        say(f"{head}: {done}/{step.trials} trials done, running {left}{again}")
        started = time.perf_counter()
        try:
            rc = optimize(step.name, left)
        except UserError as e:
            reason = str(e).splitlines()[0] if str(e) else "cannot start"
            set_study_error(storage, step.name, reason)
            outcome.failed[step.name] = reason
            say(f"[{k}/{len(steps)}] {step.name} cannot run: {reason} (recorded; going on)")
            continue
        set_study_error(storage, step.name, "")
        outcome.ran.append(step.name)
        outcome.seconds[step.name] = time.perf_counter() - started
        say(f"[{k}/{len(steps)}] {step.name}: {outcome.seconds[step.name] / 60:.1f} min")
        if rc == 130:
            outcome.interrupted = True
            break
    return outcome


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table (reports.Report.comparison rows) as plain text for the terminal."""

    def num(value: float | None, sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.2f}"

    header = ("regime", "test top-1", "top-5", "gain vs scratch", "trials (c/p/f)", "status")
    table = [header]
    for r in rows:
        gain = "reference" if r["regime"] == "scratch" and r["status"] == "ok" else num(r["gain_top1"], "+")
        status = f"ok: {r['study']} #{r['trial']}" if r["status"] == "ok" else f"missing: {r['reason']}"
        trials = f"{r['n_trials']} ({r['n_complete']}/{r['n_pruned']}/{r['n_failed']})"
        table.append((r["label"], num(r["test_top1"]), num(r["test_top5"]), gain, trials, status))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)
