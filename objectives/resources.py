"""What a worker loads once and shares between its trials: the data sets and the encoder of a study, and the
base class of the objectives that take an encoder (linear_probe, finetune)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from errors import UserError
from objectives.common import Objective, writable_dir
from objectives.create import encoder_trial, file_sha256, pin_encoder
from objectives.space import parse_encoder
from simclr.config import Config
from storage import schema, store
from storage.artifacts import local_file


def data_fraction(config: Config) -> float:
    """The pretraining subset's `data_fraction`, read from whichever section declares it (PretrainConfig for
    simclr, SupervisedPretrainConfig for supervised_pretrain: one key, declared once)."""
    fraction = getattr(config.pretrain or config.supervised, "data_fraction", None)
    assert fraction is not None, "a pretraining set needs a config section with data_fraction"
    return fraction


class DataCache:
    """load_probe_splits / load_pretrain_set results keyed by the config values they depend on."""

    def __init__(self):
        self._probe: dict[tuple, dict] = {}
        self._pretrain: dict[tuple, Any] = {}
        self._sizes: dict[tuple, int] = {}

    def probe_splits(self, config: Config) -> dict:
        from simclr.data import load_probe_splits

        data, seed = config.data, config.run.seed
        key = (repr(data), seed)
        if key not in self._probe:
            self._probe.clear()  # one set at a time: CIFAR-100 is 150 MB
            splits = load_probe_splits(data, seed)
            empty = [name for name, split in splits.items() if len(split) == 0]
            if empty:
                raise UserError(
                    f"{data.probe_data}: the probe {' and '.join(empty)} split is empty with probe_fraction="
                    f"{data.probe_fraction}, val_fraction={data.val_fraction}, test_fraction={data.test_fraction}; "
                    "raise them (every class needs 2+ images before the train/val split)"
                )
            self._probe[key] = splits
        return self._probe[key]

    def pretrain_set(self, config: Config):
        """The seeded, nested data_fraction subset of the pretraining set: the same images for every objective
        that pretrains (simclr, supervised_pretrain) at the same data settings, fraction and seed."""
        from simclr.data import load_pretrain_set

        fraction = data_fraction(config)
        key = (repr(config.data), fraction, config.run.seed)
        if key not in self._pretrain:
            self._pretrain.clear()
            self._pretrain[key] = load_pretrain_set(config.data, fraction, config.run.seed)
        return self._pretrain[key]

    def reference_size(self, config: Config) -> int | None:
        """Images in the data_fraction=equal_steps_as subset whose step count a scale point trains (None when
        the run is in epochs): counted once per worker, the subset itself not kept."""
        from simclr.data import load_pretrain_set

        assert config.pretrain is not None
        fraction = config.pretrain.equal_steps_as
        if not fraction:
            return None
        if fraction == config.pretrain.data_fraction:
            return len(self.pretrain_set(config))
        key = (repr(config.data), fraction, config.run.seed)
        if key not in self._sizes:
            self._sizes[key] = len(load_pretrain_set(config.data, fraction, config.run.seed))
        return self._sizes[key]


def resolve_encoder(
    text: str, *, storage: optuna.storages.BaseStorage | None, artifacts, cache_dir: Path, study_name: str = ""
) -> tuple[str, str]:
    """(what simclr.models.load_encoder takes: random | imagenet | a path, a description for the trial attrs).

    best:STUDY -> the best completed trial's checkpoint artifact; trial:STUDY:NUMBER -> that trial's. For a study
    (`study_name`) the trial pinned when it was created is used, and a checkpoint whose sha256 differs from the
    pinned one is refused: one probe study never mixes encoders.
    """
    kind, ref, _ = parse_encoder(text)
    if kind in ("random", "imagenet"):
        return kind, kind
    if kind == "path":
        if not Path(ref).is_file():
            raise UserError(f"encoder {ref!r}: no such checkpoint file")
        return ref, ref
    pinned: dict[str, Any] = {}
    if storage is not None and study_name:
        study = store.load_study(storage, study_name)
        pin_encoder(storage, study, artifacts)
        pinned = study.user_attrs
    number = pinned.get(schema.ENCODER_TRIAL)
    trial = encoder_trial(storage, text if number is None else f"trial:{ref}:{number}")
    assert trial is not None
    artifact_id = trial.user_attrs.get(schema.CHECKPOINT)
    if not artifact_id:
        raise UserError(f"encoder {text!r}: trial {trial.number} of {ref!r} has no checkpoint artifact")
    if artifacts is None:
        raise UserError(f"encoder {text!r}: no artifact directory to read checkpoint {artifact_id} from")
    path = local_file(artifacts, artifact_id, cache_dir)
    expected = pinned.get(schema.ENCODER_SHA256)
    if expected and file_sha256(path) != expected:
        raise UserError(
            f"encoder {text!r}: trial {trial.number} of {ref!r} has other weights than study {study_name!r} pinned "
            "when it was created (checkpoint sha256 differs); create a new probe study"
        )
    return str(path), f"trial:{ref}:{trial.number}"


class EncoderCache:
    """The study's encoder (random | imagenet | best:STUDY | trial:STUDY:N | path), loaded once per worker."""

    def __init__(self):
        self._key: tuple | None = None
        self._value: tuple[Any, str] | None = None

    def get(self, config: Config, *, storage, artifacts, cache_dir: Path, study_name: str = "") -> tuple[Any, str]:
        """(simclr.models.Encoder, what it is: "imagenet", "trial:STUDY:3", a path, ...)."""
        from simclr.data import stats_for
        from simclr.models import load_encoder

        assert config.encoder is not None, "an encoder needs a config with the EncoderConfig section"
        spec, resolution, seed = config.encoder.encoder, config.encoder.resolution, config.run.seed
        key = (spec, resolution, seed, config.data.probe_data)
        if key != self._key:
            path, description = resolve_encoder(
                spec, storage=storage, artifacts=artifacts, cache_dir=cache_dir, study_name=study_name
            )
            mean, std = stats_for(config.data.probe_data)  # used by the random encoder only
            encoder = load_encoder(path, resolution=resolution, mean=mean, std=std, seed=seed)
            self._key, self._value = key, (encoder, description)
        assert self._value is not None
        return self._value


class DataObjective(Objective):
    """An objective that trains on the probe data set (every objective): the data loaded once per worker."""

    reads_pretrain_data = False  # the pretraining objectives (simclr, supervised_pretrain) read pretrain_data too

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.data = DataCache()

    def _prepare(self, config: Config) -> None:
        from simclr.data import require_datasets

        # a missing dataset stops the worker here, not in every trial; missing archives are named all at once
        pretrain = [config.data.pretrain_data] if self.reads_pretrain_data else []
        require_datasets(config.data, [*pretrain, config.data.probe_data])
        self.data.probe_splits(config)


class EncoderObjective(DataObjective):
    """An objective over the study's encoder (linear_probe, finetune): encoder and data loaded once per worker."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.encoders = EncoderCache()

    def encoder(self, config: Config):
        return self.encoders.get(
            config,
            storage=self.storage,
            artifacts=self.artifacts,
            cache_dir=self.cache_dir(config),
            study_name=self.study_name,
        )

    def _prepare(self, config: Config) -> None:
        super()._prepare(config)
        writable_dir(self.cache_dir(config), "--set cache_dir=DIR")  # features are cached there in every trial
        self.encoder(config)
