"""The `simclr` objective: SimCLR pretraining with the trial's parameters, then the linear protocol.

Per trial: pretrain (simclr.pretrain) on the seeded, nested `data_fraction` subset of the pretraining set;
every `monitor_every` epochs a weighted-kNN top-1 on a bounded monitor (at most `monitor_size` probe-train
images as the bank, probe-val images as queries) is reported to the trial for pruning; then the linear probe
with the study's fixed probe settings. Value = probe-val top-1; test metrics and the checkpoint artifact id go
to user attrs.

Checkpoints while the trial runs, and resuming from them: objectives.checkpoints.ResumableTrials. The final
checkpoint is uploaded as a listed artifact that the dashboard shows and `best:STUDY` encoders load.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from objectives.checkpoints import ResumableTrials
from objectives.common import set_attrs, set_test_metrics
from objectives.resources import DataObjective
from simclr.config import Config
from simclr.device import Runtime
from storage import schema


class SimCLRObjective(ResumableTrials, DataObjective):
    name = "simclr"
    reads_pretrain_data = True

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
        with self.resumable(trial) as tmp:
            result = self._pretrain(trial, config, rt, train, splits, tmp)
            return probe_trial(trial, config, rt, result.encoder, splits)

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
                resume=self.resume_from(trial, tmp),
                mean=mean,
                std=std,
                n_reference=n_reference,
                on_epoch=self.reporter(
                    trial,
                    "knn_top1",
                    bar,
                    seen=lambda m: knn.extend([m["knn_top1"]] if m.get("knn_top1") is not None else []),
                ),
                on_checkpoint=lambda path, epoch: self.checkpointed(trial, path, epoch, plan.epochs),
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
                schema.PRETRAIN_SECONDS: result.seconds,
                schema.KNN_TOP1: knn[-1] if knn else None,
            },
        )
        if self.upload_checkpoint(trial, result.checkpoint) is not None:
            trial.set_user_attr(schema.CHECKPOINT_EPOCH, result.epochs_done)
        return result


def probe_trial(trial: optuna.Trial, config: Config, rt: Runtime, encoder, splits: dict) -> float:
    """A pretraining trial's linear protocol, with the study's fixed probe settings: test metrics and probe seconds
    to the trial's user attrs; returns probe-val top-1, the trial's value. Shared by every objective that makes
    encoders (simclr, supervised_pretrain), so that their encoders are judged alike."""
    from simclr.data import probe_data_key
    from simclr.probe import evaluate_encoder

    assert config.probe is not None
    seed = config.run.seed
    # no feature cache: this encoder exists once, its features would only fill the disk
    probe = evaluate_encoder(
        encoder, splits, config.probe, rt=rt, cache_dir=None, data_key=probe_data_key(config.data, seed), seed=seed
    )
    set_test_metrics(trial, probe)
    set_attrs(trial, **{schema.PROBE_SECONDS: probe.seconds})
    return probe.val_top1
