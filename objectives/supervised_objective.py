"""The `supervised` objective (ResNet-18 from scratch on probe-train) and `finetune` (the study's encoder plus a
new linear layer, all weights trained). Per-epoch probe-val top-1 is reported for pruning; the best-val epoch
is kept and tested once; value = its probe-val top-1. The best model's checkpoint becomes an artifact.
"""

from __future__ import annotations

from typing import Any

import optuna

from objectives.common import DataCache, EncoderCache, Objective, remove_dir, set_attrs
from simclr.device import Runtime
from storage import schema


class SupervisedObjective(Objective):
    name = "supervised"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.data = DataCache()
        self.encoders = EncoderCache()

    def encoder(self, config: dict[str, Any]):
        """(None, "scratch") from scratch; the study's encoder for finetune."""
        if self.name != "finetune":
            return None, "scratch"
        return self.encoders.get(
            config, storage=self.storage, artifacts=self.artifacts, cache_dir=self.cache_dir(config)
        )

    def _prepare(self, config: dict[str, Any]) -> None:
        self.data.probe_splits(config)
        self.encoder(config)

    def run(self, trial: optuna.Trial, config: dict[str, Any], rt: Runtime) -> float:
        from simclr.config import SupervisedConfig, build
        from simclr.data import stats_for
        from simclr.supervised import train_supervised

        cfg = build(SupervisedConfig, config)
        encoder, description = self.encoder(config)
        splits = self.data.probe_splits(config)
        mean, std = stats_for(str(config["probe_data"]))
        set_attrs(trial, **{schema.TRIAL_ENCODER: description, schema.N_TRAIN_IMAGES: len(splits["train"])})
        tmp = self.temp_dir(trial)
        bar = self.bar(cfg.epochs, trial)
        try:
            result = train_supervised(
                cfg,
                splits,
                rt=rt,
                seed=int(config["seed"]),
                encoder=encoder,
                checkpoint_dir=tmp,
                on_epoch=self.reporter(trial, "val_top1", bar),
                mean=mean,
                std=std,
            )
            bar.close()
            set_attrs(
                trial,
                **{
                    schema.VAL_TOP5: result.val_top5,
                    schema.TEST_TOP1: result.test_top1,
                    schema.TEST_TOP5: result.test_top5,
                    schema.STEPS: result.steps,
                    schema.IMAGES_PER_SECOND: result.images_per_second,
                    "best_epoch": result.best_epoch,
                },
            )
            self.upload_checkpoint(trial, result.checkpoint)
            return result.val_top1
        finally:
            bar.close()
            remove_dir(tmp)


class FinetuneObjective(SupervisedObjective):
    name = "finetune"
