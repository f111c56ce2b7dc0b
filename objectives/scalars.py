"""Per-epoch scalars where people already look: `--log tensorboard:DIR` (optimize and compare).

Each trial of a study gets its own TensorBoard run, DIR/STUDY/trial-N, as PyTorch Lightning's TensorBoardLogger
gives lightly and solo-learn users one run per experiment: every number of the epoch's metrics (the same dict the
trial's "history" attr stores: loss, lr, the monitor the pruner sees, knn_top1 or val_top1, images_per_second, ...)
as a scalar at step = epoch, so trials of different batch sizes line up. The writer is flushed after every epoch
(a running TensorBoard shows the trial live) and closed when the trial ends.

TensorBoard is optional (requirements-extras.txt): `check_log` asks for it when --log names it, so a missing
package is one line naming the install command before any trial starts. Imported by objectives.run, which opens
one log per study (`open_log`) and hands it to the objective's reporter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from errors import UserError

SCHEMES = ("tensorboard",)
INSTALL = "pip install tensorboard"  # or: pip install -r requirements-extras.txt
NOT_SCALARS = ("epoch", "step")  # the x axis, and the optimizer's step count (a counter, not a measurement)


def parse_log(text: str) -> tuple[str, Path]:
    """("tensorboard", DIR) of `tensorboard:DIR`; UserError naming the accepted form otherwise."""
    scheme, _, where = text.partition(":")
    if scheme not in SCHEMES:
        raise UserError(f"--log {text}: unknown logger {scheme!r}; use {' or '.join(s + ':DIR' for s in SCHEMES)}")
    if not where.strip():
        raise UserError(f"--log {text}: give the directory, e.g. --log {scheme}:runs")
    return scheme, Path(where)


def check_log(text: str | None) -> None:
    """A --log value is well formed and its package imports (torch's writer needs the tensorboard package)."""
    if text is None:
        return
    scheme, _ = parse_log(text)
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError(f"--log {scheme} needs the tensorboard package: {INSTALL}") from None


def run_dir_name(study_name: str) -> str:
    """A study's directory under DIR: its name with path separators and other odd characters as "_"."""
    safe = re.sub(r"[^\w.=+-]", "_", study_name)
    return "_" + safe if safe.startswith(".") else safe


class TensorBoardLog:
    """The TensorBoard runs of one study's trials: one SummaryWriter per trial, opened at its first epoch."""

    def __init__(self, root: Path, study_name: str):
        self.dir = root / run_dir_name(study_name)
        self.writers: dict[int, Any] = {}

    def watch(self, number: int, seen: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
        """An on_epoch `seen` callback for trial `number`: calls `seen`, then writes the epoch's scalars."""

        def on_epoch(metrics: dict) -> None:
            if seen is not None:
                seen(metrics)
            self.write(number, metrics)

        return on_epoch

    def write(self, number: int, metrics: dict) -> None:
        writer = self.writers.get(number)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self.writers[number] = SummaryWriter(log_dir=str(self.dir / f"trial-{number}"))
        epoch = int(metrics["epoch"])
        for key, value in metrics.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, global_step=epoch)
        writer.flush()

    def close(self, number: int | None = None) -> None:
        """Close trial `number`'s writer (None: every writer)."""
        for n in list(self.writers) if number is None else [number]:
            writer = self.writers.pop(n, None)
            if writer is not None:
                writer.close()


def open_log(text: str | None, study_name: str) -> TensorBoardLog | None:
    """The log a --log value asks for, for study `study_name` (None without --log); its directory is created and
    checked writable here, before any trial."""
    if text is None:
        return None
    from objectives.common import writable_dir

    check_log(text)
    _, root = parse_log(text)
    log = TensorBoardLog(root, study_name)
    writable_dir(log.dir, "another --log tensorboard:DIR")
    return log
