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
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from objectives.space import grid_duplicate_of, suggest
from simclr.config import check_value
from simclr.device import Runtime, runtime, seed_everything
from errors import NonFiniteLoss, UserError
from storage import schema, store

log = logging.getLogger("objectives")


def is_out_of_memory(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def trial_config(spec: schema.StudySpec, trial: optuna.Trial) -> dict[str, Any]:
    """The study's fixed config with the trial's suggested parameters merged in (range-checked)."""
    config = dict(spec.config)
    for key, value in suggest(trial, spec.space).items():
        check_value(key, value)
        config[key] = value
    return config


def set_attrs(trial: optuna.Trial, **attrs: Any) -> None:
    """Set user attrs, skipping None and rounding floats for readability (percent to 1e-4, seconds to 1 ms)."""
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = round(value, 4) if math.isfinite(value) else str(value)
        trial.set_user_attr(key, value)


def note_retry(trial: optuna.Trial) -> None:
    """A heartbeat retry (RetryHeartbeatStaleTrialCallback) records which trial it continues ("retry_of")."""
    if isinstance(trial, optuna.Trial):
        history = trial.storage.get_trial(trial._trial_id).system_attrs.get("retry_history") or []
        if history:
            trial.set_user_attr(schema.RETRY_OF, int(history[-1]))


class EpochBar:
    """A tqdm bar over a trial's epochs on stderr; otherwise (not a terminal / disabled) an INFO record on the
    "objectives" logger for about every tenth epoch, which nothing shows unless a command configures it
    (`compare` does)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.total, self.desc = total, desc
        if enabled and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ep", leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, metrics: dict) -> None:
        shown = {k: f"{v:.3g}" for k, v in metrics.items() if k in ("loss", "val_top1", "knn_top1")}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        elif log.isEnabledFor(logging.INFO):
            epoch = int(metrics.get("epoch", 0))
            if epoch % max(1, self.total // 10) == 0 or epoch >= self.total:  # about ten lines per trial
                values = " ".join(f"{k}={v}" for k, v in shown.items())
                log.info("%s epoch %d/%d %s", self.desc, epoch, self.total, values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StopRequested(KeyboardInterrupt):
    """Raised at an epoch boundary after SIGTERM asked the worker to stop (see Objective.request_stop)."""


def reporter(
    trial: optuna.Trial,
    key: str,
    bar: EpochBar | None = None,
    seen: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Callable[[dict], None]:
    """An on_epoch callback: metrics[key] -> trial.report(value, epoch); prune when the pruner says so; raise
    StopRequested when `should_stop()` (an epoch boundary is a safe place: no checkpoint is being written)."""

    def on_epoch(metrics: dict) -> None:
        if bar is not None:
            bar.update(metrics)
        if seen is not None:
            seen(metrics)
        value = metrics.get(key)
        epoch = int(metrics["epoch"])
        if value is not None:
            value = round(float(value), 4)  # percent: float32 noise beyond 1e-4 is not information
            trial.report(value, epoch)
        if should_stop is not None and should_stop():
            raise StopRequested(f"stop requested after epoch {epoch}")
        if value is not None and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {key}={float(value):.2f}")

    return on_epoch


def caused_by_interrupt(e: BaseException) -> bool:
    """A library error raised while handling Ctrl-C (torch.save turns KeyboardInterrupt into RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


class Objective:
    """Base of the four objectives. Subclasses implement `run(trial, config, rt) -> val_top1`."""

    name = ""

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
        self.study_name = study_name
        self.storage = storage
        self.artifacts = artifacts
        self.device = device
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self._prepared = False
        self.interrupted = False  # set when a trial was interrupted: the worker stops after it
        self.stop_requested = False  # set by request_stop (SIGTERM): the running trial stops at its next epoch

    # -- set-up shared by all trials of a worker -------------------------------------------------------------

    def runtime(self, config: dict[str, Any]) -> Runtime:
        return runtime(self.device, str(config["precision"]), bool(config["channels_last"]), bool(config["compile"]))

    def prepare(self) -> None:
        """Check what every trial needs (device, data, encoder) once, before any trial: a UserError here stops
        `optimize` with one line instead of failing every trial."""
        if not self._prepared:
            self.runtime(self.spec.config)
            self._prepare(self.spec.config)
            self._prepared = True

    def _prepare(self, config: dict[str, Any]) -> None:
        pass

    def cache_dir(self, config: dict[str, Any]) -> Path:
        return Path(config["cache_dir"]) if config["cache_dir"] else Path(config["data_dir"]) / "features"

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
        artifact_id = store.upload(self.artifacts, trial, path, mimetype="application/octet-stream")
        trial.set_user_attr(schema.CHECKPOINT, artifact_id)
        if isinstance(previous, str) and previous.startswith("resume-"):
            store.remove_quietly(self.artifacts, previous)
        return artifact_id

    def request_stop(self) -> None:
        self.stop_requested = True

    def reporter(
        self, trial: optuna.Trial, key: str, bar: EpochBar | None = None, seen: Callable[[dict], None] | None = None
    ) -> Callable[[dict], None]:
        return reporter(trial, key, bar, seen, should_stop=lambda: self.stop_requested)

    # -- one trial ---------------------------------------------------------------------------------------------

    def __call__(self, trial: optuna.Trial) -> float:
        started = time.perf_counter()
        try:
            note_retry(trial)
            duplicate = self.grid_duplicate(trial)
            if duplicate is not None:
                trial.study.stop()
                return self.fail(trial, f"{schema.GRID_TAKEN}: trial {duplicate} holds this grid point (not run twice)")
            config = trial_config(self.spec, trial)
            self.prepare()
            rt = self.runtime(config)
            set_attrs(trial, **{schema.DEVICE: rt.describe()})
            seed_everything(int(config["seed"]))
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
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                return self.fail(trial, f"out of memory: {first}")
            if caused_by_interrupt(e):
                return self.interrupt(trial)
            raise
        finally:
            trial.set_user_attr(schema.SECONDS, round(time.perf_counter() - started, 3))
            self.release_memory()

    def run(self, trial: optuna.Trial, config: dict[str, Any], rt: Runtime) -> float:
        raise NotImplementedError

    def grid_duplicate(self, trial: optuna.Trial) -> int | None:
        if self.spec.sampler.get("name") != "grid" or not isinstance(trial, optuna.Trial):
            return None
        frozen = trial.storage.get_trial(trial._trial_id)
        return grid_duplicate_of(frozen, trial.storage.get_all_trials(trial.study._study_id, deepcopy=False))

    def interrupt(self, trial: optuna.Trial) -> float:
        """FAIL the trial as "interrupted" with one log line (Optuna would log a traceback); start no other."""
        trial.set_user_attr(schema.ERROR, "interrupted")
        if not isinstance(trial, optuna.Trial):
            raise KeyboardInterrupt
        self.interrupted = True
        trial.study.stop()
        return float("nan")

    def fail(self, trial: optuna.Trial, reason: str) -> float:
        trial.set_user_attr(schema.ERROR, reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        return float("nan")  # Optuna records a NaN value as FAIL and goes on

    @staticmethod
    def release_memory() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def remove_dir(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Data and encoders, loaded once per worker and shared by its trials


class DataCache:
    """load_probe_splits / load_pretrain_set results keyed by the config values they depend on."""

    def __init__(self):
        self._probe: dict[tuple, dict] = {}
        self._pretrain: dict[tuple, Any] = {}

    @staticmethod
    def _data_config(config: dict[str, Any]):
        from simclr.config import DataConfig, build

        return build(DataConfig, config)

    def probe_splits(self, config: dict[str, Any]) -> dict:
        from simclr.data import load_probe_splits

        cfg = self._data_config(config)
        key = (repr(cfg), int(config["seed"]))
        if key not in self._probe:
            self._probe.clear()  # one set at a time: CIFAR-100 is 150 MB
            splits = load_probe_splits(cfg, int(config["seed"]))
            empty = [name for name, split in splits.items() if len(split) == 0]
            if empty:
                raise UserError(
                    f"{cfg.probe_data}: the probe {' and '.join(empty)} split is empty with probe_fraction="
                    f"{cfg.probe_fraction}, val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}; "
                    "raise them (every class needs 2+ images before the train/val split)"
                )
            self._probe[key] = splits
        return self._probe[key]

    def pretrain_set(self, config: dict[str, Any]):
        from simclr.data import load_pretrain_set

        cfg = self._data_config(config)
        key = (repr(cfg), float(config["data_fraction"]), int(config["seed"]))
        if key not in self._pretrain:
            self._pretrain.clear()
            self._pretrain[key] = load_pretrain_set(cfg, float(config["data_fraction"]), int(config["seed"]))
        return self._pretrain[key]


def artifact_file(artifacts, artifact_id: str, cache_dir: Path) -> Path:
    """A local file holding artifact `artifact_id`: the file itself in a file-system store, else a download."""
    base = getattr(artifacts, "base_path", None)
    if base is not None:
        path = Path(base) / artifact_id
        if not path.is_file():
            raise UserError(f"checkpoint artifact {artifact_id} is missing from {base}")
        return path
    return store.download(artifacts, artifact_id, cache_dir / "encoders" / f"{artifact_id}.pt")


def resolve_encoder(
    text: str, *, storage: optuna.storages.BaseStorage | None, artifacts, cache_dir: Path
) -> tuple[str, str]:
    """(what simclr.models.load_encoder takes: random | imagenet | a path, a description for the trial attrs).

    best:STUDY -> the best completed trial's checkpoint artifact; trial:STUDY:NUMBER -> that trial's.
    """
    from objectives.space import parse_encoder

    kind, ref, number = parse_encoder(text)
    if kind in ("random", "imagenet"):
        return kind, kind
    if kind == "path":
        if not Path(ref).is_file():
            raise UserError(f"encoder {ref!r}: no such checkpoint file")
        return ref, ref
    if storage is None:
        raise UserError(f"encoder {text!r} names a study, but no store was given")
    study = store.load_study(storage, ref)
    if kind == "best":
        try:
            trial = study.best_trial
        except ValueError:
            raise UserError(f"encoder {text!r}: study {ref!r} has no completed trial yet") from None
    else:
        found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not found:
            raise UserError(f"encoder {text!r}: study {ref!r} has no trial {number}")
        trial = found[0]
        if trial.state != optuna.trial.TrialState.COMPLETE:
            raise UserError(f"encoder {text!r}: trial {number} of {ref!r} is {trial.state.name}, not COMPLETE")
    artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
    if not artifact_id:
        raise UserError(f"encoder {text!r}: trial {trial.number} of {ref!r} has no checkpoint artifact")
    if artifacts is None:
        raise UserError(f"encoder {text!r}: no artifact directory to read checkpoint {artifact_id} from")
    return str(artifact_file(artifacts, artifact_id, cache_dir)), f"trial:{ref}:{trial.number}"


class EncoderCache:
    """The study's encoder (random | imagenet | best:STUDY | trial:STUDY:N | path), loaded once per worker."""

    def __init__(self):
        self._key: tuple | None = None
        self._value: tuple[Any, str] | None = None

    def get(self, config: dict[str, Any], *, storage, artifacts, cache_dir: Path) -> tuple[Any, str]:
        """(simclr.models.Encoder, what it is: "imagenet", "trial:STUDY:3", a path, ...)."""
        from simclr.data import stats_for
        from simclr.models import load_encoder

        key = (config["encoder"], int(config["resolution"]), int(config["seed"]), config["probe_data"])
        if key != self._key:
            spec, description = resolve_encoder(
                str(config["encoder"]), storage=storage, artifacts=artifacts, cache_dir=cache_dir
            )
            mean, std = stats_for(str(config["probe_data"]))  # used by the random encoder only
            encoder = load_encoder(
                spec, resolution=int(config["resolution"]), mean=mean, std=std, seed=int(config["seed"])
            )
            self._key, self._value = key, (encoder, description)
        assert self._value is not None
        return self._value
