"""The `linear_probe` objective: the linear classification protocol for the study's encoder, searching the
probe's hyperparameters. The encoder (config "encoder": random | imagenet | best:STUDY | trial:STUDY:NUMBER |
a checkpoint path) is frozen and its features come from the on-disk cache, so after the first trial a trial
costs seconds. Per-epoch probe-val top-1 is reported for pruning; value = probe-val top-1 of the final epoch.
"""

from __future__ import annotations

import math

import optuna

from objectives.common import set_attrs, set_test_metrics
from objectives.resources import EncoderObjective
from simclr.config import Config
from simclr.device import Runtime
from storage import schema


class LinearProbeObjective(EncoderObjective):
    name = "linear_probe"
    uses_work_dir = False

    def run(self, trial: optuna.Trial, config: Config, rt: Runtime) -> float:
        from simclr.data import probe_data_key
        from simclr.probe import evaluate_encoder

        seed, cfg = config.run.seed, config.probe
        assert cfg is not None
        encoder, description = self.encoder(config)
        splits = self.data.probe_splits(config)
        n_train = len(splits["train"])
        set_attrs(
            trial,
            **{
                schema.TRIAL_ENCODER: description,
                schema.ENCODER_DIGEST: encoder.digest,
                schema.N_TRAIN_IMAGES: n_train,
            },
        )
        bar = self.bar(cfg.probe_epochs, trial)
        try:
            result = evaluate_encoder(
                encoder,
                splits,
                cfg,
                rt=rt,
                cache_dir=self.cache_dir(config),
                data_key=probe_data_key(config.data, seed),
                seed=seed,
                on_epoch=self.reporter(trial, "val_top1", bar),
            )
        finally:
            bar.close()
        batches = 1 if cfg.probe_batch_size <= 0 else math.ceil(n_train / cfg.probe_batch_size)
        train_seconds = max(result.seconds - result.feature_seconds, 1e-9)
        set_test_metrics(trial, result)
        set_attrs(
            trial,
            **{
                schema.STEPS: cfg.probe_epochs * batches,
                schema.IMAGES_PER_SECOND: n_train * cfg.probe_epochs / train_seconds,
                schema.FEATURE_SECONDS: result.feature_seconds,
            },
        )
        return result.val_top1
