"""The study runner: one worker's `optimize` loop, shared by `study.py optimize` and `study.py compare`.

It opens nothing itself: the caller passes the store (opened once per command, with the heartbeat), and the
runner loads the study, rebuilds its objective from the stored spec, checks what every trial needs before the
first one (data, device, encoder: a UserError stops here, before any trial or directory exists), and runs
trials with SIGTERM handling (the first stops at the next epoch boundary, a second one at once), a stop when a
shared grid is fully started, and one progress line per finished trial.

Exit codes (`RunSummary.exit_code`): 0 done; 1 trials ran but none completed or was pruned; 130 interrupted.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from errors import UserError
from objectives import make_objective, open_study
from objectives.counting import taken_trials, uses_budget
from objectives.create import name_metric
from objectives.scalars import check_log, open_log
from objectives.space import parse_encoder
from storage import open_artifacts, schema
from storage.artifacts import remove_quietly
from storage.optuna_private import grid_id, optimize_logger, study_id
from storage.recovery import queue_retry, running_lines
from storage.schema import BUDGET_TAKEN, ERROR, GRID_TAKEN

PROGRESS = ("bar", "lines", "none")


@dataclass(frozen=True)
class RunOptions:
    """How one worker runs a study (the `optimize` flags that are not about the store)."""

    trials: int | None = 10  # trials this worker runs (None: until the timeout or the grid ends)
    timeout: float | None = None  # seconds after which no new trial starts
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None: all cores)
    work_dir: str | None = None  # where trials keep temporary checkpoints
    keep_checkpoints: int = 3  # checkpoints of the best K complete trials are kept (keep_best_checkpoints)
    progress: str = "lines"  # bar: tqdm bars on stderr (one worker on a terminal); lines: a line per epoch; none
    log: str | None = None  # "tensorboard:DIR": each trial's epoch metrics as TensorBoard scalars (objectives.scalars)
    total_trials: int | None = None  # the study's trials that count, across workers (MaxTrialsCallback's rule)

    def check(self) -> None:
        if self.trials is not None and self.trials < 1:
            raise UserError("--trials must be >= 1")
        if self.timeout is not None and not self.timeout > 0:
            raise UserError("--timeout must be > 0 seconds")
        if self.threads is not None and self.threads < 1:
            raise UserError("--threads must be >= 1")
        if self.keep_checkpoints < 1:
            raise UserError("--keep-checkpoints must be >= 1 (best:STUDY encoders need the best trial's)")
        if self.progress not in PROGRESS:
            raise UserError(f"--progress {self.progress}: choose from {', '.join(PROGRESS)}")
        check_log(self.log)
        if self.total_trials is not None and self.total_trials < 1:
            raise UserError("--total-trials must be >= 1")


@dataclass
class RunSummary:
    name: str
    states: list[str] = field(default_factory=list)  # this worker's finished trials (SKIPPED: grid point taken)
    trial_ids: list[int] = field(default_factory=list)  # their ids in the store
    interrupted: bool = False
    best: str = ""

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        ran = [s for s in self.states if s != "SKIPPED"]
        return 1 if ran and "COMPLETE" not in ran and "PRUNED" not in ran else 0

    def line(self) -> str:
        counts = {s: self.states.count(s) for s in sorted(set(self.states))}
        summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items()) or "no trials"
        return f"study {self.name}: this worker ran {summary}{self.best}"


class ExplainedFailures(logging.Filter):
    """Drops Optuna's two warnings about a trial that failed with the value NaN ("The value nan is not acceptable")
    when the objective has already said why it failed (diverged, out of memory, interrupted and queued again):
    they would read as a diverged run."""

    def __init__(self, explained: set[int]):
        super().__init__()
        self.explained = explained

    def filter(self, record: logging.LogRecord) -> bool:
        match = re.match(r"Trial (\d+) failed with", record.getMessage())
        return not (match and int(match.group(1)) in self.explained)


class TrialProgress:
    """Optuna callback: records each finished trial's state; on a terminal, a tqdm bar over the worker's trials."""

    def __init__(self, total: int | None, enabled: bool):
        self.bar = None
        self.states: list[str] = []
        self.trial_ids: list[int] = []  # the store's ids of the trials this worker finished
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name
        if state == "FAIL" and str(trial.user_attrs.get(ERROR, "")).startswith((GRID_TAKEN, BUDGET_TAKEN)):
            state = "SKIPPED"  # another worker took this grid point, or the last trial, as this one asked: nothing ran
        self.states.append(state)
        self.trial_ids.append(trial._trial_id)
        if self.bar is not None:
            value = "" if trial.value is None else f" value {trial.value:.2f}"
            error = trial.user_attrs.get(ERROR)
            self.bar.write(
                f"trial {trial.number} {trial.state.name}{value}{f': {error}' if error else ''}", file=sys.stderr
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _total_callbacks(study: optuna.Study, total: int | None) -> tuple[int | None, list[Callable]]:
    """(the study's trials toward --total-trials now, [a callback stopping this worker once they reach it]). Two
    workers that both saw one trial left both start one: the later one ends at once, FAIL "budget taken"
    (objectives.counting), so the total holds exactly."""
    if total is None:
        return None, []

    def stop_at_total(study: optuna.Study, trial: Any) -> None:
        if taken_trials(study) >= total:
            study.stop()

    return taken_trials(study), [stop_at_total]


def requeue_grid_points(study: optuna.Study) -> list[float]:
    """Queue again (as a retry of its last trial) every grid point whose trials all failed without counting.

    Returns their params. GridSampler counts a finished point as visited whatever its state, so an interrupted
    point would otherwise never run; the retry keeps the grid id, as a heartbeat retry does.
    """
    points: dict[int, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        point = grid_id(trial)
        if point is not None:
            points.setdefault(point, []).append(trial)
    queued = []
    for _, trials in sorted(points.items()):
        if any(uses_budget(t) or t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        queue_retry(study, last)
        queued.append(dict(last.params))
    return queued


def referenced_trials(storage: optuna.storages.BaseStorage, name: str) -> set[int]:
    """Numbers of the trials of study `name` that other studies probe as `trial:NAME:N` encoders."""
    numbers = set()
    for other in storage.get_all_studies():
        kind, ref, number = parse_encoder(str(other.user_attrs.get(schema.ENCODER) or "random"))
        if kind == "trial" and ref == name and number is not None:
            numbers.add(number)
    return numbers


def keep_best_checkpoints(storage: optuna.storages.BaseStorage, study: optuna.Study, artifacts, keep: int) -> int:
    """Remove the checkpoint files of a study's trials except those of its `keep` best complete trials, of trials
    that may still run or resume (RUNNING, WAITING: a retry shares its predecessor's resume checkpoint) and of
    trials other studies probe (trial:STUDY:N). Returns how many files were removed. (Six small trials left
    483 MB: a ResNet-18 checkpoint with optimizer state is ~90 MB.)"""
    trials = study.get_trials(deepcopy=False)
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    kept = {t.number for t in sorted(complete, key=lambda t: -sign * t.value)[:keep]}
    kept |= {t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)}
    kept |= referenced_trials(storage, study.study_name)
    live = {t.user_attrs.get(schema.CHECKPOINT) for t in trials if t.number in kept}
    removed = 0
    for t in trials:
        artifact_id = t.user_attrs.get(schema.CHECKPOINT)
        if isinstance(artifact_id, str) and artifact_id and artifact_id not in live:
            removed += remove_quietly(artifacts, artifact_id)
    return removed


def _grid_callbacks(study: optuna.Study, space: dict) -> tuple[bool, list[Callable]]:
    """(whether the grid is already fully started, [a callback stopping the worker once it is])."""
    from objectives.space import grid_exhausted

    if grid_exhausted(study, space):
        return True, []

    def stop_when_grid_started(study: optuna.Study, trial: Any) -> None:  # another worker may hold the last points
        if grid_exhausted(study, space):
            study.stop()

    return False, [stop_when_grid_started]


def ready_objective(storage, name: str, options: RunOptions, url: str | None, artifacts_dir: str | None):
    """(study, spec, objective) of study `name`, the objective prepared: data, device and encoder checked before
    any trial (a UserError stops here, before any trial or directory exists); the artifact store created then."""
    study, spec = open_study(storage, name)
    artifacts = open_artifacts(url, artifacts_dir, create=False)
    objective = make_objective(
        spec,
        study_name=name,
        storage=storage,
        artifacts=artifacts,
        device=options.device,
        work_dir=options.work_dir,
        progress=options.progress == "bar",
    )
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    objective.prepare()
    objective.scalars = open_log(options.log, name)  # its directory checked before any trial
    name_metric(study, spec.objective)  # a study made before metric names were set gets its name now
    if artifacts is None:
        objective.artifacts = open_artifacts(url, artifacts_dir, create=True)
    return study, spec, objective


def run_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    options: RunOptions,
    *,
    url: str | None = None,
    artifacts_dir: str | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> RunSummary:
    """Run up to `options.trials` trials of study `name` in this process; UserError when it cannot start.

    `url`/`artifacts_dir` locate the artifact store (checkpoints): created only once the objective is ready."""
    options.check()
    study, spec, objective = ready_objective(storage, name, options, url, artifacts_dir)
    summary = RunSummary(name)
    callbacks: list[Callable] = []
    if spec.sampler.get("name") == "grid":
        queued = requeue_grid_points(study)
        if queued:
            say(f"study {name}: {len(queued)} unfinished grid point(s) queued again")
        done, callbacks = _grid_callbacks(study, spec.space)
        if done:
            say(f"study {name}: every grid point has been run; nothing to do")
            return summary
    if spec.sampler.get("name") != "grid":  # a grid's points are its budget (objectives.space.grid_duplicate)
        objective.total_trials = options.total_trials
    for line in running_lines(storage, study_id(study)):
        say(f"study {name}: {line}")
    taken, at_total = _total_callbacks(study, options.total_trials)
    if taken is not None and taken >= options.total_trials:
        total = options.total_trials
        say(f"study {name}: its {total} trials are taken, finished or running on any worker; nothing to do")
        return summary
    callbacks += at_total
    progress = TrialProgress(options.trials, options.progress == "bar")
    if options.progress == "bar":
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the bar prints one line per trial instead

    def stop_when_asked(study: optuna.Study, trial: Any) -> None:
        if objective.stop_requested:
            study.stop()

    def tidy_checkpoints(study: optuna.Study, trial: Any) -> None:
        keep_best_checkpoints(storage, study, objective.artifacts, options.keep_checkpoints)

    def close_scalars(study: optuna.Study, trial: Any) -> None:  # the trial's TensorBoard run is complete
        if objective.scalars is not None:
            objective.scalars.close(trial.number)

    with signals_stop(objective):
        try:
            study.optimize(
                objective,
                n_trials=options.trials,
                timeout=options.timeout,
                callbacks=[progress, stop_when_asked, tidy_checkpoints, close_scalars, *callbacks],
            )
        finally:
            progress.close()
            if objective.scalars is not None:
                objective.scalars.close()
    summary.states, summary.trial_ids = progress.states, progress.trial_ids
    try:
        summary.best = f"; best value {study.best_value:.2f} (trial {study.best_trial.number})"
    except ValueError:
        pass
    summary.interrupted = objective.interrupted or objective.stop_requested
    return summary


@contextmanager
def signals_stop(objective) -> Iterator[None]:
    """While a worker runs: the first SIGTERM stops the trial at its next epoch boundary (FAIL "interrupted",
    queued again) and starts no new trial; a second one interrupts at once, like Ctrl-C. Optuna's NaN warnings
    for failures the objective explained are dropped (ExplainedFailures)."""

    def on_sigterm(signum, frame):
        if objective.stop_requested:
            raise KeyboardInterrupt(f"signal {signum}")
        objective.request_stop()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    optuna_log = optimize_logger()
    quiet = ExplainedFailures(objective.explained)
    optuna_log.addFilter(quiet)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        optuna_log.removeFilter(quiet)


@contextmanager
def progress_lines(enabled: bool) -> Iterator[None]:
    """Progress as plain lines on stderr (for a log file, where bars would be noise): the objectives' epoch lines
    (objectives.common.EpochBar) and Optuna's line per finished trial. Restored afterwards."""
    if not enabled:
        yield
        return
    lines = logging.getLogger("objectives")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    lines.addHandler(handler)
    lines.setLevel(logging.INFO)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        yield
    finally:
        lines.removeHandler(handler)
        lines.setLevel(logging.NOTSET)
        optuna.logging.set_verbosity(verbosity)
