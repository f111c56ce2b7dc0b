"""The `supervised` objective (ResNet-18 from scratch on probe-train) and `finetune` (the study's encoder plus a
new linear layer, all weights trained). Per-epoch probe-val top-1 is reported for pruning; the final epoch's model
is kept and tested once (one rule for every regime); value = its probe-val top-1. Its checkpoint becomes an
artifact.
"""

from __future__ import annotations

import optuna

from objectives.common import remove_dir, set_attrs, set_test_metrics
from objectives.resources import DataObjective, EncoderObjective
from simclr.config import Config
from simclr.device import Runtime
from storage import schema


class SupervisedObjective(DataObjective):
    name = "supervised"

    def encoder(self, config: Config):
        """(None, "scratch"): from scratch. FinetuneObjective starts from the study's encoder instead."""
        return None, "scratch"

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        from simclr.data import stats_for
        from simclr.supervised import train_supervised

        cfg = config.supervised
        assert cfg is not None
        encoder, description = self.encoder(config)
        splits = self.data.probe_splits(config)
        mean, std = stats_for(config.data.probe_data)
        set_attrs(trial, **{schema.TRIAL_ENCODER: description, schema.N_TRAIN_IMAGES: len(splits["train"])})
        tmp = self.temp_dir(trial)
        bar = self.bar(cfg.epochs, trial)
        try:
            result = train_supervised(
                cfg,
                splits,
                rt=rt,
                seed=config.run.seed,
                encoder=encoder,
                checkpoint_dir=tmp,
                on_epoch=self.reporter(trial, "val_top1", bar),
                mean=mean,
                std=std,
            )
            bar.close()
            set_test_metrics(trial, result)
            set_attrs(
                trial,
                **{
                    schema.STEPS: result.steps,
                    schema.IMAGES_PER_SECOND: result.images_per_second,
                    schema.BEST_EPOCH: result.best_epoch,
                },
            )
            self.upload_checkpoint(trial, result.checkpoint)
            return result.val_top1
        finally:
            bar.close()
            remove_dir(tmp)


class FinetuneObjective(EncoderObjective, SupervisedObjective):
    """Supervised training of all weights, starting from the study's encoder (EncoderObjective.encoder)."""

    name = "finetune"
