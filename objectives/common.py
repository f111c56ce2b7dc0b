"""What every objective shares: the trial's config, its runtime, pruning from per-epoch metrics, failures.

An objective is a callable class built from the study alone (its StudySpec): `objective(trial)` suggests the
space's parameters, merges them into the fixed config, trains with an `on_epoch` callback that reports to the
trial and raises `optuna.TrialPruned` when the pruner says so, records the schema's user attrs and returns the
validation top-1. A diverging run (NonFiniteLoss), running out of memory, or a UserError inside a trial ends
that trial as FAIL with the reason in the "error" user attr, and the study goes on: the objective returns NaN,
which Optuna records as FAIL with a one-line warning (no traceback for a foreseeable failure).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from errors import NonFiniteLoss, StopRequested, UserError, first_line
from objectives.counting import budget_taken
from objectives.space import grid_duplicate, suggest
from simclr.config import Config, make_config
from simclr.device import Runtime, runtime, seed_everything
from simclr.schedule import effective_lr
from storage import schema
from storage.artifacts import remove_quietly, upload
from storage.optuna_private import retried_trial, study_id, trial_id
from storage.recovery import queue_retry

log = logging.getLogger("objectives")


def is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def trial_config(spec: schema.StudySpec, trial: optuna.Trial) -> Config:
    """The trial's typed config: the study's fixed config with the trial's suggested parameters merged in. Both
    were validated when the study was created (the config's values, the space's bounds), so nothing is checked
    again here: the one validation of a config value is simclr.config.check_value."""
    return make_config(spec.objective, {**spec.config, **suggest(trial, spec.space)})


def trained_lr(config: Config) -> float | None:
    """The peak learning rate a trial trains with: its `lr` (per 256 images) at its batch_size (None: no training
    loop of its own, as the probe's)."""
    training = config.pretrain or config.supervised
    return None if training is None else effective_lr(training.lr, training.batch_size, training.lr_scaling)


def set_attrs(trial: optuna.Trial, **attrs: Any) -> None:
    """Set user attrs, skipping None and rounding floats for readability (percent to 1e-4, seconds to 1 ms)."""
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = round(value, 4) if math.isfinite(value) else str(value)
        trial.set_user_attr(key, value)


def set_test_metrics(trial: optuna.Trial, result: Any) -> None:
    """The held-out scores of a finished probe or training run as the trial's user attrs: `result`'s val_top5,
    test_top1, test_top5 and test_correct (per-image top-1 hits, packed; None when not measured)."""
    correct = result.test_correct
    set_attrs(
        trial,
        **{
            schema.VAL_TOP5: result.val_top5,
            schema.TEST_TOP1: result.test_top1,
            schema.TEST_TOP5: result.test_top5,
            schema.TEST_CORRECT: None if correct is None else schema.pack_correct(correct),
        },
    )


def note_retry(trial: optuna.Trial) -> None:
    """A heartbeat retry (RetryHeartbeatStaleTrialCallback) records which trial it continues ("retry_of")."""
    if isinstance(trial, optuna.Trial):
        retried = retried_trial(trial)
        if retried is not None:
            trial.set_user_attr(schema.RETRY_OF, retried)


class EpochBar:
    """A trial's progress over its epochs on stderr: a tqdm bar on a terminal (enabled), else one INFO line per
    epoch on the "objectives" logger (trial, epoch, loss, monitor, images/s, ETA), which a command shows when its
    progress is "lines" (objectives.run.progress_lines)."""

    SHOWN = ("loss", "knn_top1", "val_top1", "lr")  # lr: the rate trained with (per-256 lr at this batch)

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.total, self.desc = total, desc
        self.started, self.first_epoch = time.perf_counter(), None
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ep", leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, metrics: dict) -> None:
        shown = {k: f"{metrics[k]:.3g}" for k in self.SHOWN if metrics.get(k) is not None}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        elif log.isEnabledFor(logging.INFO):
            log.info("%s", self.line(int(metrics.get("epoch", 0)), shown, metrics.get("images_per_second")))

    def line(self, epoch: int, shown: dict[str, str], images_per_second: float | None) -> str:
        if self.first_epoch is None:  # a resumed trial starts past epoch 1: the ETA counts what this run did
            self.first_epoch = epoch
        done = epoch - self.first_epoch + 1
        eta = (time.perf_counter() - self.started) / done * (self.total - epoch)
        speed = f" {images_per_second:.0f} img/s" if images_per_second else ""
        values = "".join(f" {k} {v}" for k, v in shown.items())
        return f"{self.desc} epoch {epoch}/{self.total}{values}{speed} eta {format_seconds(eta)}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def reporter(
    trial: optuna.Trial,
    key: str,
    bar: EpochBar | None = None,
    seen: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Callable[[dict], None]:
    """An on_epoch callback: metrics[key] -> trial.report(value, epoch); the epoch's metrics appended to the
    trial's "history" attr; prune when the pruner says so; raise StopRequested when `should_stop()` (an epoch
    boundary is a safe place: no checkpoint is being written; the training loop saves the epoch before it stops)."""

    history = [h for h in trial.user_attrs.get(schema.HISTORY) or [] if isinstance(h, dict)]  # a retry's earlier

    def on_epoch(metrics: dict) -> None:
        if bar is not None:
            bar.update(metrics)
        if seen is not None:
            seen(metrics)
        value = metrics.get(key)
        epoch = int(metrics["epoch"])
        history[:] = [h for h in history if h.get("epoch", 0) < epoch] + [_history_entry(metrics)]
        trial.set_user_attr(schema.HISTORY, history)  # learning curves for the report and the dashboard
        if value is not None:
            value = round(float(value), 4)  # percent: float32 noise beyond 1e-4 is not information
            trial.report(value, epoch)
        if should_stop is not None and should_stop():
            raise StopRequested(f"stop requested after epoch {epoch}")
        if value is not None and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {key}={float(value):.2f}")

    return on_epoch


def _history_entry(metrics: dict) -> dict:
    """One epoch of a trial's stored history: numbers rounded to what is information (JSON: no NaN)."""
    entry = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            entry[k] = v if isinstance(v, int) else (round(v, 6) if math.isfinite(v) else None)
    return entry


def caused_by_interrupt(e: BaseException) -> bool:
    """A library error raised while handling Ctrl-C (torch.save turns KeyboardInterrupt into RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


INTERRUPTED = schema.INTERRUPTED  # the "error" of a trial stopped by Ctrl-C or SIGTERM (queued again)


class Objective:
    """Base of the objectives. Subclasses implement `run(trial, config, rt) -> val_top1`."""

    name = ""
    uses_work_dir = True  # trials keep checkpoints in a temporary directory (the probe does not)

    def __init__(
        self,
        spec: schema.StudySpec,
        *,
        study_name: str = "",
        storage: optuna.storages.BaseStorage | None = None,
        artifacts=None,
        device: str = "auto",
        work_dir: str | Path | None = None,
        progress: bool = False,
    ):
        if spec.objective != self.name:
            raise ValueError(f"{type(self).__name__} got a {spec.objective} study")
        self.spec = spec
        self.config = make_config(spec.objective, spec.config)  # the study's fixed config, typed
        self.study_name = study_name
        self.storage = storage
        self.artifacts = artifacts
        self.device = device
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self._prepared = False
        self.interrupted = False  # set when a trial was interrupted: the worker stops after it
        self.explained: set[int] = set()  # trials whose failure this objective logged (or that were interrupted)
        self.stop_requested = False  # set by request_stop (SIGTERM): the running trial stops at its next epoch
        self.scalars = None  # objectives.scalars.TensorBoardLog (--log tensorboard:DIR), set by objectives.run
        self.total_trials: int | None = None  # the study's budget across workers (objectives.counting), ditto

    # -- set-up shared by all trials of a worker -------------------------------------------------------------

    def runtime(self, config: Config) -> Runtime:
        return runtime(self.device, config.run.precision, config.run.channels_last, config.run.compile)

    def prepare(self) -> None:
        """Check what every trial needs (device, data, encoder) once, before any trial: a UserError here stops
        `optimize` with one line instead of failing every trial."""
        if not self._prepared:
            self.runtime(self.config)
            if self.uses_work_dir:
                writable_dir(self.work_dir or Path(tempfile.gettempdir()), "--work-dir DIR")
            self._prepare(self.config)
            self._prepared = True

    def _prepare(self, config: Config) -> None:
        pass

    @staticmethod
    def cache_dir(config: Config) -> Path:
        return Path(config.data.cache_dir) if config.data.cache_dir else Path(config.data.data_dir) / "features"

    def temp_dir(self, trial: optuna.Trial) -> Path:
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"trial{trial.number}-", dir=self.work_dir))

    def bar(self, total: int, trial: optuna.Trial) -> EpochBar:
        return EpochBar(total, f"trial {trial.number}", self.progress)

    def can_upload(self, trial: optuna.Trial) -> bool:
        return self.artifacts is not None and isinstance(trial, optuna.Trial)

    def upload_checkpoint(self, trial: optuna.Trial, path: Path | None) -> str | None:
        """Upload a final checkpoint as a listed artifact; its id goes to the "checkpoint" user attr."""
        if path is None or not self.can_upload(trial):
            return None
        previous = trial.user_attrs.get(schema.CHECKPOINT)
        filename = (
            f"{self.study_name or self.name}-trial{trial.number}-{path.stem}{path.suffix}"  # e.g. ssl-trial3-last.pt
        )
        artifact_id = upload(self.artifacts, trial, path, mimetype="application/octet-stream", filename=filename)
        trial.set_user_attr(schema.CHECKPOINT, artifact_id)
        if isinstance(previous, str) and previous.startswith("resume-"):
            remove_quietly(self.artifacts, previous)
        return artifact_id

    def request_stop(self) -> None:
        self.stop_requested = True

    def reporter(
        self, trial: optuna.Trial, key: str, bar: EpochBar | None = None, seen: Callable[[dict], None] | None = None
    ) -> Callable[[dict], None]:
        if self.scalars is not None:  # each epoch's metrics as TensorBoard scalars too
            seen = self.scalars.watch(trial.number, seen)
        return reporter(trial, key, bar, seen, should_stop=lambda: self.stop_requested)

    # -- one trial ---------------------------------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        try:
            note_retry(trial)
            duplicate = self.grid_taken(trial)
            taken = self.budget_taken(trial) if duplicate is None else ""
            if duplicate is not None or taken:
                trial.study.stop()
                return self.fail(
                    trial, taken or f"{schema.GRID_TAKEN}: trial {duplicate} holds this grid point (not run twice)"
                )
            config = trial_config(self.spec, trial)
            self.prepare()
            rt = self.runtime(config)
            set_attrs(trial, **{schema.DEVICE: rt.describe(), schema.WORKER: f"{socket.gethostname()}:{os.getpid()}"})
            lr = trained_lr(config)
            if lr is not None:  # not rounded as set_attrs does: a rate may be 1e-5
                trial.set_user_attr(schema.EFFECTIVE_LR, lr)
            seed_everything(config.run.seed)
            value = self.run(trial, config, rt)
            value = round(float(value), 4)
            set_attrs(trial, **{schema.VAL_TOP1: value})
            return value
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Ctrl-C, or StopRequested after SIGTERM
            return self.interrupt(trial)
        except NonFiniteLoss as e:
            return self.fail(trial, f"diverged: {e}")
        except UserError as e:
            return self.fail(trial, str(e))
        except (RuntimeError, MemoryError) as e:
            if isinstance(e, MemoryError) or is_out_of_memory(e):
                return self.fail(trial, f"out of memory: {first_line(e, 200)}")
            if caused_by_interrupt(e):
                return self.interrupt(trial)
            raise
        finally:
            trial.set_user_attr(schema.SECONDS, round(time.perf_counter() - started, 3))
            self.release_memory()

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        raise NotImplementedError

    def grid_taken(self, trial: optuna.Trial) -> int | None:
        if self.spec.sampler.get("name") != "grid" or not isinstance(trial, optuna.Trial):
            return None
        return grid_duplicate(trial.storage, trial.storage.get_trial(trial_id(trial)), study_id(trial.study))

    def budget_taken(self, trial: optuna.Trial) -> str:
        """Why this trial must not start: earlier trials took the study's --total-trials (objectives.counting)."""
        if self.total_trials is None or not isinstance(trial, optuna.Trial):
            return ""
        return budget_taken(trial.storage, study_id(trial.study), trial_id(trial), self.total_trials)

    def interrupt(self, trial: optuna.Trial) -> float:
        """End an interrupted trial (Ctrl-C, SIGTERM) as FAIL "interrupted" and queue it again with its parameters
        and user attrs, so the next `optimize` (or `compare`) finishes it, resuming from its last checkpoint where
        it has one, as after a killed worker; start no other trial in this worker."""
        trial.set_user_attr(schema.ERROR, INTERRUPTED)
        if not isinstance(trial, optuna.Trial):
            raise KeyboardInterrupt
        self.interrupted = True
        self.explained.add(trial.number)
        frozen = trial.storage.get_trial(trial_id(trial))
        queue_retry(trial.study, frozen)
        log.warning("trial %d interrupted; queued again (the next optimize resumes it)", trial.number)
        trial.study.stop()
        return float("nan")

    def fail(self, trial: optuna.Trial, reason: str) -> float:
        trial.set_user_attr(schema.ERROR, reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        self.explained.add(trial.number)
        return float("nan")  # Optuna records a NaN value as FAIL and goes on

    @staticmethod
    def release_memory() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def writable_dir(path: Path, fix: str) -> Path:
    """`path`, created if missing, after checking that a file can be written in it (a real write: as root,
    permission bits say nothing); UserError naming `fix`, the option that points elsewhere."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"{path} is not writable ({e.strerror or type(e).__name__}); use {fix}") from None
    return path


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
