"""The `simclr` objective: SimCLR pretraining with the trial's parameters, then the linear protocol.

Per trial: pretrain (simclr.pretrain) on the seeded, nested `data_fraction` subset of the pretraining set;
every `monitor_every` epochs a weighted-kNN top-1 on a bounded monitor (at most `monitor_size` probe-train
images as the bank, probe-val images as queries) is reported to the trial for pruning; then the linear probe
with the study's fixed probe settings. Value = probe-val top-1; test metrics and the checkpoint artifact id go
to user attrs.

Checkpoints are written to a per-trial temporary directory. While the trial runs, each one is copied into the
artifact store unlisted (id in the "checkpoint" attr, the previous one removed), so that when the worker is
killed the heartbeat retry (which inherits params and user attrs) resumes from it; the final checkpoint is
uploaded as a listed artifact that the dashboard shows and `best:STUDY` encoders load.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from objectives.common import caused_by_interrupt, log, remove_dir, set_attrs
from objectives.resources import DataObjective, artifact_file
from simclr.config import Config
from simclr.device import Runtime
from simclr.models import load_checkpoint
from storage import schema, store


class SimCLRObjective(DataObjective):
    name = "simclr"

    def _prepare(self, config: Config) -> None:
        super()._prepare(config)
        self.data.pretrain_set(config)

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        assert config.pretrain is not None
        train, splits = self.data.pretrain_set(config), self.data.probe_splits(config)
        set_attrs(
            trial,
            **{
                schema.DATA_FRACTION: config.pretrain.data_fraction,
                schema.N_PRETRAIN_IMAGES: len(train),
                schema.N_TRAIN_IMAGES: len(splits["train"]),
                schema.TRIAL_ENCODER: f"trial:{self.study_name}:{trial.number}" if self.study_name else "simclr",
            },
        )
        tmp = self.temp_dir(trial)
        completed = interrupted = False
        try:
            result = self._pretrain(trial, config, rt, train, splits, tmp)
            value = self._probe(trial, config, rt, result.encoder, splits)
            completed = True
            return value
        except BaseException as e:
            # an interrupted trial is queued again and resumes from its checkpoint: keep it
            interrupted = isinstance(e, KeyboardInterrupt) or caused_by_interrupt(e)
            raise
        finally:
            remove_dir(tmp)
            if not completed and not interrupted:
                self._drop_resume_checkpoint(trial)

    def _pretrain(self, trial: optuna.Trial, config: Config, rt: Runtime, train, splits: dict, tmp: Path):
        """SimCLR pretraining (resumed from an inherited checkpoint), the kNN monitor reported for pruning; the
        final checkpoint uploaded. Returns simclr.pretrain's PretrainResult."""
        from simclr.data import stats_for
        from simclr.pretrain import plan_run, pretrain

        cfg = config.pretrain
        assert cfg is not None
        mean, std = stats_for(config.data.pretrain_data)
        knn: list[float] = []
        n_reference = self.data.reference_size(config)
        plan = plan_run(cfg, len(train), n_reference)
        bar = self.bar(plan.epochs, trial)
        try:
            result = pretrain(
                cfg,
                train,
                rt=rt,
                seed=config.run.seed,
                monitor=(splits["train"], splits["val"]) if cfg.monitor_every > 0 else None,
                checkpoint_dir=tmp,
                resume=self._resume_from(trial, tmp),
                mean=mean,
                std=std,
                n_reference=n_reference,
                on_epoch=self.reporter(
                    trial,
                    "knn_top1",
                    bar,
                    seen=lambda m: knn.extend([m["knn_top1"]] if m.get("knn_top1") is not None else []),
                ),
                on_checkpoint=lambda path, epoch: self._checkpointed(trial, path, epoch, plan.epochs),
            )
        finally:
            bar.close()
        set_attrs(
            trial,
            **{
                schema.STEPS: result.steps,
                schema.EPOCHS: round(plan.epochs_done, 4),
                schema.IMAGES_SEEN: plan.images_seen(len(train)),
                schema.IMAGES_PER_SECOND: result.images_per_second,
                "pretrain_seconds": result.seconds,
                "knn_top1": knn[-1] if knn else None,
            },
        )
        if self.upload_checkpoint(trial, result.checkpoint) is not None:
            trial.set_user_attr(schema.CHECKPOINT_EPOCH, result.epochs_done)
        return result

    def _probe(self, trial: optuna.Trial, config: Config, rt: Runtime, encoder, splits: dict) -> float:
        """The linear protocol with the study's fixed probe settings; returns probe-val top-1."""
        from simclr.data import probe_data_key
        from simclr.probe import evaluate_encoder

        assert config.probe is not None
        seed = config.run.seed
        # no feature cache: this encoder exists once, its features would only fill the disk
        probe = evaluate_encoder(
            encoder, splits, config.probe, rt=rt, cache_dir=None, data_key=probe_data_key(config.data, seed), seed=seed
        )
        set_attrs(
            trial,
            **{
                schema.VAL_TOP5: probe.val_top5,
                schema.TEST_TOP1: probe.test_top1,
                schema.TEST_TOP5: probe.test_top5,
                schema.TEST_CORRECT: None if probe.test_correct is None else schema.pack_correct(probe.test_correct),
                "probe_seconds": probe.seconds,
            },
        )
        return probe.val_top1

    # -- resuming after a killed worker ------------------------------------------------------------------------

    def _resume_from(self, trial: optuna.Trial, tmp: Path) -> Path | None:
        """The inherited checkpoint of a heartbeat retry (its user attrs are the dead trial's), else None."""
        if not self.can_upload(trial):
            return None
        artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
        if not artifact_id:
            return None
        try:
            path = artifact_file(self.artifacts, artifact_id, tmp)
            epoch = load_checkpoint(path).get("epoch")  # a truncated or foreign file is never trusted
            if not isinstance(epoch, int):
                raise ValueError(f"{artifact_id} is not a pretraining checkpoint")
        except Exception as e:  # the artifact is gone or unreadable: start over rather than fail
            log.warning("trial %d: cannot resume, starting over (%s)", trial.number, e)
            return None
        # the epoch inside the file: the "checkpoint_epoch" attr is written after the id, a kill may fall between
        trial.set_user_attr(schema.RESUMED_FROM_EPOCH, epoch)
        return path

    def _checkpointed(self, trial: optuna.Trial, path: Path, epoch: int, epochs: int) -> None:
        if not self.can_upload(trial) or epoch >= epochs:  # the final checkpoint is uploaded listed, once
            return
        previous = trial.user_attrs.get(schema.CHECKPOINT)
        artifact_id = store.write_unlisted(self.artifacts, path)
        trial.set_user_attr(schema.CHECKPOINT, artifact_id)  # first the pointer to the new file...
        trial.set_user_attr(schema.CHECKPOINT_EPOCH, int(epoch))
        if isinstance(previous, str) and previous.startswith("resume-"):
            store.remove_quietly(self.artifacts, previous)  # ...then the old file goes

    def _drop_resume_checkpoint(self, trial: optuna.Trial) -> None:
        """A pruned or failed trial is not retried: its resume checkpoint is dead weight. (An interrupted one is
        queued again and resumes from it.)"""
        artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
        if self.can_upload(trial) and isinstance(artifact_id, str) and artifact_id.startswith("resume-"):
            store.remove_quietly(self.artifacts, artifact_id)
            trial.set_user_attr(schema.CHECKPOINT, "")
