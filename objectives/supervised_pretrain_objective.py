"""The `supervised_pretrain` objective: the same-data supervised arm. Labels against no labels on equal data,
selected alike.

Per trial: a CIFAR-stem ResNet-18 trained from scratch with the pretraining set's labels (simclr.supervised, crop +
flip) on exactly the images a `simclr` trial of the same data settings, `data_fraction` and seed pretrains on
(DataCache.pretrain_set: one loader, one seed); then its frozen backbone judged by the linear protocol on the probe
data with the study's fixed probe settings, as a SimCLR trial's encoder is (simclr_objective.probe_trial). Value =
probe-val top-1; test metrics go to user attrs.

Pruning: the pretraining set has no held-out split (and its test split selects nothing), so the trial reports
what a simclr trial reports: the weighted-kNN top-1 of the backbone on the probe data every `monitor_every` epochs
(simclr.pretrain.epoch_monitor: the same monitor and keys), on the supervised pruning axis (never before half the
epochs: objectives.registry.training_axis). The final checkpoint (the backbone as "encoder") is uploaded as the
trial's artifact: `best:STUDY` / `trial:STUDY:N` of such a study are encoders that probes and fine-tuning take.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from objectives.common import remove_dir, set_attrs
from objectives.resources import DataObjective
from objectives.simclr_objective import probe_trial
from simclr.config import Config, SupervisedPretrainConfig
from simclr.device import Runtime
from storage import schema


class SupervisedPretrainObjective(DataObjective):
    name = "supervised_pretrain"
    reads_pretrain_data = True

    def _prepare(self, config: Config) -> None:
        super()._prepare(config)
        self.data.pretrain_set(config)

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        cfg = config.supervised
        assert isinstance(cfg, SupervisedPretrainConfig)
        train, splits = self.data.pretrain_set(config), self.data.probe_splits(config)
        set_attrs(
            trial,
            **{
                schema.DATA_FRACTION: cfg.data_fraction,
                schema.N_PRETRAIN_IMAGES: len(train),
                schema.N_TRAIN_IMAGES: len(splits["train"]),
                schema.TRIAL_ENCODER: f"trial:{self.study_name}:{trial.number}" if self.study_name else self.name,
            },
        )
        tmp = self.temp_dir(trial)
        try:
            encoder = self._pretrain(trial, config, rt, train, splits, tmp)
            return probe_trial(trial, config, rt, encoder, splits)
        finally:
            remove_dir(tmp)

    def _pretrain(self, trial: optuna.Trial, config: Config, rt: Runtime, train, splits: dict, tmp: Path):
        """Supervised training on the pretraining subset (no val split), the kNN monitor on the probe data
        reported for pruning; the final checkpoint uploaded. Returns the trained backbone as a simclr.models.Encoder
        normalised as it was trained (the pretraining set's statistics, as SimCLR's encoder)."""
        from simclr.data import stats_for
        from simclr.models import Encoder, weights_digest
        from simclr.pretrain import epoch_monitor
        from simclr.supervised import train_supervised

        cfg, seed = config.supervised, config.run.seed
        assert isinstance(cfg, SupervisedPretrainConfig)
        mean, std = stats_for(config.data.pretrain_data)
        monitor = epoch_monitor(
            splits["train"],
            splits["val"],
            every=cfg.monitor_every,
            epochs=cfg.epochs,
            size=cfg.monitor_size,
            seed=seed,
            rt=rt,
            mean=mean,
            std=std,
            k=cfg.knn_k,
            temperature=cfg.knn_temperature,
        )
        knn: list[float] = []
        bar = self.bar(cfg.epochs, trial)
        try:
            result = train_supervised(
                cfg,
                {"train": train},  # no "val": nothing of the pretraining set is held out, nothing selects on it
                rt=rt,
                seed=seed,
                checkpoint_dir=tmp,
                on_epoch=self.reporter(trial, "knn_top1", bar, seen=lambda m: knn.extend(_knn_of(m))),
                mean=mean,
                std=std,
                monitor=monitor,
            )
        finally:
            bar.close()
        set_attrs(
            trial,
            **{
                schema.STEPS: result.steps,
                schema.EPOCHS: cfg.epochs,
                schema.IMAGES_SEEN: cfg.epochs * len(train),  # every epoch is every image (the last batch short)
                schema.IMAGES_PER_SECOND: result.images_per_second,
                schema.PRETRAIN_SECONDS: result.seconds,
                schema.KNN_TOP1: knn[-1] if knn else None,
            },
        )
        if self.upload_checkpoint(trial, result.checkpoint) is not None:
            trial.set_user_attr(schema.CHECKPOINT_EPOCH, cfg.epochs)
        backbone = result.model.backbone
        return Encoder(backbone, self.name, "cifar", tuple(mean), tuple(std), None, weights_digest(backbone))


def _knn_of(metrics: dict) -> list[float]:
    return [metrics["knn_top1"]] if metrics.get("knn_top1") is not None else []
