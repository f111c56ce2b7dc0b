"""A pretraining trial's checkpoints while it runs, so that it resumes instead of starting over.

Checkpoints are written to a per-trial temporary directory. While the trial runs, each one is copied into the
artifact store unlisted (its id in the "checkpoint" attr, the previous one removed), so that when the worker is
killed the heartbeat retry, or the re-queued trial after an interrupt (both inherit params and user attrs),
resumes from it. A pruned or failed trial is not retried: its resume checkpoint is removed. An objective takes
these hooks by inheriting `ResumableTrials` (objectives.registry: one record per objective, hooks in its class).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from objectives.common import caused_by_interrupt, log, remove_dir
from simclr.models import load_checkpoint
from storage import schema
from storage.artifacts import local_file, remove_quietly, write_unlisted


class ResumableTrials:
    """Checkpoint and resume hooks for an `objectives.common.Objective` (needs its `artifacts`, `can_upload`,
    `temp_dir`)."""

    artifacts: object  # these three come from Objective: mixed in before it (class X(ResumableTrials, Objective))
    can_upload: Callable[[optuna.Trial], bool]
    temp_dir: Callable[[optuna.Trial], Path]

    @contextmanager
    def resumable(self, trial: optuna.Trial) -> Iterator[Path]:
        """The trial's temporary directory for its checkpoints, removed afterwards; when the trial fails or is
        pruned its resume checkpoint goes too (an interrupted trial is queued again and resumes from it)."""
        tmp = self.temp_dir(trial)
        completed = interrupted = False
        try:
            yield tmp
            completed = True
        except BaseException as e:
            interrupted = isinstance(e, KeyboardInterrupt) or caused_by_interrupt(e)
            raise
        finally:
            remove_dir(tmp)
            if not completed and not interrupted:
                self.drop_resume_checkpoint(trial)

    def resume_from(self, trial: optuna.Trial, tmp: Path) -> Path | None:
        """The inherited checkpoint of a heartbeat retry (its user attrs are the dead trial's), else None."""
        if not self.can_upload(trial):
            return None
        artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
        if not artifact_id:
            return None
        try:
            path = local_file(self.artifacts, artifact_id, tmp)
            epoch = load_checkpoint(path).get("epoch")  # a truncated or foreign file is never trusted
            if not isinstance(epoch, int):
                raise ValueError(f"{artifact_id} is not a pretraining checkpoint")
        except Exception as e:  # the artifact is gone or unreadable: start over rather than fail
            log.warning("trial %d: cannot resume, starting over (%s)", trial.number, e)
            return None
        # the epoch inside the file: the "checkpoint_epoch" attr is written after the id, a kill may fall between
        trial.set_user_attr(schema.RESUMED_FROM_EPOCH, epoch)
        retry_of = trial.user_attrs.get(schema.RETRY_OF)
        log.warning(
            "trial %d%s: resuming from epoch %d",
            trial.number,
            f" (retry of trial {retry_of})" * (retry_of is not None),
            epoch,
        )
        return path

    def checkpointed(self, trial: optuna.Trial, path: Path, epoch: int, epochs: int) -> None:
        if not self.can_upload(trial) or epoch >= epochs:  # the final checkpoint is uploaded listed, once
            return
        previous = trial.user_attrs.get(schema.CHECKPOINT)
        artifact_id = write_unlisted(self.artifacts, path)
        trial.set_user_attr(schema.CHECKPOINT, artifact_id)  # first the pointer to the new file...
        trial.set_user_attr(schema.CHECKPOINT_EPOCH, int(epoch))
        if isinstance(previous, str) and previous.startswith("resume-"):
            remove_quietly(self.artifacts, previous)  # ...then the old file goes

    def drop_resume_checkpoint(self, trial: optuna.Trial) -> None:
        """A pruned or failed trial is not retried: its resume checkpoint is dead weight. (An interrupted one is
        queued again and resumes from it.)"""
        artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
        if self.can_upload(trial) and isinstance(artifact_id, str) and artifact_id.startswith("resume-"):
            remove_quietly(self.artifacts, artifact_id)
            trial.set_user_attr(schema.CHECKPOINT, "")
