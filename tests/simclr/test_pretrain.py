"""The SimCLR loop on tiny learnable data (8x8 images keep a ResNet-18 step in milliseconds on 2 cores):
it learns, resumes exactly, checkpoints in a weights_only format, stops on callbacks and on divergence."""

import dataclasses
import math

import pytest
import torch

from errors import NonFiniteLoss, UserError
from simclr.config import PretrainConfig
from simclr.data import ImageSet
from simclr.device import runtime
from simclr.features import extract_features
from simclr.knn import knn_accuracy
from simclr.models import load_encoder, weights_digest
from simclr.pretrain import CHECKPOINT_NAME, build_model, pretrain
from tests.fakedata import make_images

RT = runtime("cpu", "fp32")  # deterministic: resume must repeat the losses exactly
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def image_set(n_per_class: int, n_classes: int, seed: int, size: int = 8) -> ImageSet:
    x, y = make_images(n_per_class, n_classes, size=size, seed=seed)
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y), [f"c{i}" for i in range(n_classes)])


def config(**changes) -> PretrainConfig:
    base = dict(epochs=2, batch_size=32, lr=0.5, warmup_epochs=1, monitor_every=0, checkpoint_every=0, knn_k=20)
    base["lr_scaling"] = "none"  # the rates below are the rates trained with
    return PretrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def small() -> ImageSet:
    return image_set(8, 8, seed=0)  # 64 images: 2 steps per epoch


def knn_of(encoder, bank: ImageSet, queries: ImageSet, standardize: bool = True) -> float:
    f_bank, f_query = extract_features(encoder, bank.images, rt=RT), extract_features(encoder, queries.images, rt=RT)
    return knn_accuracy(f_bank, bank.labels, f_query, queries.labels, k=20, temperature=0.1, standardize=standardize)


@pytest.mark.slow
def test_learns_loss_falls_and_knn_beats_random_encoder():
    # 20 classes of 8x8 images: colour alone does not separate them, so the random encoder is far from 100%
    train, bank, queries = image_set(10, 20, seed=0), image_set(10, 20, seed=1), image_set(5, 20, seed=2)
    seen = []
    result = pretrain(
        config(epochs=6, batch_size=40, warmup_epochs=0, monitor_every=3),
        train,
        rt=RT,
        seed=0,
        monitor=(bank, queries),
        on_epoch=seen.append,
        mean=MEAN,
        std=STD,
    )
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.3
    assert [h["epoch"] for h in seen] == [1, 2, 3, 4, 5, 6] and seen == result.history
    assert [h["epoch"] for h in seen if "knn_top1" in h] == [3, 6]  # monitor_every and the last epoch
    assert result.model.encoder.training  # the monitor put it back in train mode
    assert all(p.requires_grad for p in result.model.parameters())
    random_encoder = load_encoder("random", seed=0, mean=MEAN, std=STD)  # the run's starting point
    assert random_encoder.digest == weights_digest(build_model(config(), 0).encoder)
    assert seen[-1]["knn_top1"] == pytest.approx(knn_of(result.encoder, bank, queries))  # the monitor's rule
    # on raw (unstandardised) features, where a random encoder is weak on this data, training shows plainly
    trained_raw, random_raw = (knn_of(e, bank, queries, standardize=False) for e in (result.encoder, random_encoder))
    assert trained_raw > random_raw + 15, (trained_raw, random_raw)
    assert result.steps == 6 * 5 and result.epochs_done == 6 and result.n_images == 200
    assert result.encoder.name == "simclr" and result.encoder.resolution is None
    assert result.encoder.digest == weights_digest(result.model.encoder)


class Stop(Exception):
    pass


def _stop_after_first_checkpoint(path, epoch):
    raise Stop


@pytest.mark.slow
def test_resume_repeats_uninterrupted_run(small, tmp_path):
    cfg = config(checkpoint_every=1)
    full = pretrain(cfg, small, rt=RT, seed=3)  # uninterrupted (checkpointing does not change training)
    with pytest.raises(Stop):  # "killed" right after the epoch-1 checkpoint was written
        pretrain(cfg, small, rt=RT, seed=3, checkpoint_dir=tmp_path / "cut", on_checkpoint=_stop_after_first_checkpoint)
    resumed = pretrain(
        cfg, small, rt=RT, seed=3, checkpoint_dir=tmp_path / "cut", resume=tmp_path / "cut" / CHECKPOINT_NAME
    )
    assert resumed.history[1]["loss"] == full.history[1]["loss"]  # same device, seed, fp32: exactly
    assert resumed.history == [
        {**h, "images_per_second": r["images_per_second"]} for h, r in zip(full.history, resumed.history, strict=True)
    ]
    assert resumed.encoder.digest == full.encoder.digest
    assert weights_digest(resumed.model.head) == weights_digest(full.model.head)
    assert resumed.steps == full.steps and resumed.epochs_done == 2


@pytest.mark.slow
def test_checkpoint_format_and_frequency(small, tmp_path):
    saved = []
    result = pretrain(
        config(epochs=3, checkpoint_every=2),
        small,
        rt=RT,
        checkpoint_dir=tmp_path,
        on_checkpoint=lambda path, epoch: saved.append((path, epoch)),
        mean=MEAN,
        std=STD,
    )
    path = tmp_path / CHECKPOINT_NAME
    assert saved == [(path, 2), (path, 3)] and result.checkpoint == path  # every 2 epochs and at the end
    payload = torch.load(path, weights_only=True)
    assert {
        "encoder",
        "head",
        "optimizer",
        "scaler",
        "epoch",
        "step",
        "rng",
        "config",
        "mean",
        "std",
        "stem",
        "history",
    } <= set(payload)
    assert payload["epoch"] == 3 and payload["step"] == 6 and payload["stem"] == "cifar"
    assert payload["config"] == dataclasses.asdict(config(epochs=3, checkpoint_every=2))
    assert {"torch", "permutation", "augment"} <= set(payload["rng"])
    assert [h["epoch"] for h in payload["history"]] == [1, 2, 3]
    loaded = load_encoder(path)
    assert loaded.digest == result.encoder.digest and loaded.mean == MEAN and loaded.stem == "cifar"


@pytest.mark.slow
def test_resume_with_a_different_config_is_refused(small, tmp_path):
    pretrain(config(epochs=1), small, rt=RT, checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="batch_size"):
        pretrain(config(epochs=1, batch_size=16), small, rt=RT, resume=tmp_path / CHECKPOINT_NAME)
    done = pretrain(config(epochs=1, monitor_every=5), small, rt=RT, resume=tmp_path / CHECKPOINT_NAME)
    assert done.epochs_done == 1 and done.steps == 2 and len(done.history) == 1  # nothing left to do


def test_checkpoint_of_the_old_projection_head_is_refused_in_one_line(small, tmp_path):
    """Checkpoints written before the head got its output BatchNorm cannot resume (their head has other
    parameters); the error says so instead of a state_dict traceback."""
    pretrain(config(epochs=1), small, rt=RT, checkpoint_dir=tmp_path)
    old = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert old.pop("head_version") == 2
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UserError, match="older projection head"):
        pretrain(config(epochs=2), small, rt=RT, resume=tmp_path / "old.pt")


def test_on_epoch_exception_stops_the_run(small, tmp_path):
    epochs = []

    def prune(metrics):
        epochs.append(metrics["epoch"])
        raise Stop

    with pytest.raises(Stop):
        pretrain(config(epochs=3, checkpoint_every=1), small, rt=RT, checkpoint_dir=tmp_path, on_epoch=prune)
    assert epochs == [1] and not (tmp_path / CHECKPOINT_NAME).exists()


def test_non_finite_loss_from_absurd_lr(small):
    with pytest.raises(NonFiniteLoss) as info:
        pretrain(config(epochs=8, lr=1e6, warmup_epochs=0), small, rt=RT)
    assert info.value.epoch >= 1 and not math.isfinite(info.value.value)


def test_non_finite_loss_raised_at_the_first_step(small):
    # std 0 makes every normalised input inf/NaN: the very first loss is NaN
    with pytest.raises(NonFiniteLoss) as info:
        pretrain(config(), small, rt=RT, std=(0.0, 0.0, 0.0))
    assert (info.value.epoch, info.value.step) == (1, 0)


def test_fewer_images_than_batch_is_one_batch():
    result = pretrain(config(epochs=2, batch_size=256), image_set(2, 5, seed=0), rt=RT)
    assert result.steps == 2 and result.history[-1]["step"] == 2
    with pytest.raises(UserError):
        pretrain(config(), image_set(1, 1, seed=0), rt=RT)
