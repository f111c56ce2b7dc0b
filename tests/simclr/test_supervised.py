"""Supervised training from scratch and fine-tuning on tiny learnable 8x8 data: it learns, reports the final
epoch's model on val and (once) on test with per-image hits, fine-tunes every encoder weight, checkpoints the
final model, and stops on divergence."""

import math

import pytest
import torch

import simclr.supervised as supervised
from errors import NonFiniteLoss, UserError
from simclr.augment import eval_preprocess
from simclr.config import SupervisedConfig
from simclr.data import ImageSet
from simclr.device import runtime
from simclr.models import Encoder, load_encoder, weights_digest
from simclr.supervised import CHECKPOINT_NAME, train_supervised
from tests.fakedata import make_images

RT = runtime("cpu", "fp32")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def image_set(n_per_class: int, seed: int, n_classes: int = 10, size: int = 8) -> ImageSet:
    x, y = make_images(n_per_class, n_classes, size=size, seed=seed)
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y), [f"c{i}" for i in range(n_classes)])


@pytest.fixture(scope="module")
def splits() -> dict[str, ImageSet]:
    return {"train": image_set(16, 0), "val": image_set(6, 1), "test": image_set(6, 2)}


def config(**changes) -> SupervisedConfig:
    base = dict(
        epochs=3, batch_size=16, optimizer="adamw", lr=2e-3, warmup_epochs=0, crop_padding=1, label_smoothing=0.1
    )
    base["lr_scaling"] = "none"  # the rates below are the rates trained with
    return SupervisedConfig(**{**base, **changes})


@pytest.mark.slow
def test_from_scratch_learns_and_checkpoints(splits, tmp_path):
    seen = []
    result = train_supervised(
        config(), splits, rt=RT, seed=0, checkpoint_dir=tmp_path, on_epoch=seen.append, mean=MEAN, std=STD
    )
    assert seen == result.history and [h["epoch"] for h in seen] == [1, 2, 3]
    assert {"epoch", "loss", "lr", "val_top1", "images_per_second", "step"} <= set(seen[0])
    assert result.val_top1 > 50 and result.test_top1 > 50  # chance is 10%
    assert result.val_top5 >= result.val_top1 and result.test_top5 >= result.test_top1
    assert result.val_top1 == result.history[-1]["val_top1"] and result.best_epoch == 3  # the final epoch's
    assert result.steps == 3 * 10 and result.n_images == 160
    payload = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert {"encoder", "fc", "stem", "mean", "std", "config"} <= set(payload)
    assert set(payload["fc"]) == {"weight", "bias"} and payload["stem"] == "cifar"
    loaded = load_encoder(result.checkpoint)  # the checkpoint is probe-able, and is the final model
    assert loaded.digest == weights_digest(result.model.backbone) and loaded.mean == MEAN
    assert payload["best_epoch"] == 3
    for k, v in result.model.fc.state_dict().items():
        torch.testing.assert_close(payload["fc"][k], v, rtol=0, atol=0)


@pytest.mark.slow
def test_test_correct_is_the_top1_hit_of_each_test_image_in_order(splits):
    result = train_supervised(config(epochs=1), splits, rt=RT, seed=0, mean=MEAN, std=STD)
    test, model = splits["test"], result.model.eval()
    with torch.no_grad():  # the reference: the model's argmax on each preprocessed test image
        predicted = model(eval_preprocess(test.images, size=None, mean=MEAN, std=STD)).argmax(1)
    assert result.test_correct.dtype == torch.bool and result.test_correct.shape == (len(test),)
    assert torch.equal(result.test_correct, predicted == test.labels)
    assert result.test_top1 == 100.0 * int(result.test_correct.sum()) / len(test)
    without = train_supervised(config(epochs=1), {k: splits[k] for k in ("train", "val")}, rt=RT, mean=MEAN, std=STD)
    assert without.test_correct is None and without.test_top1 is None


@pytest.mark.slow
def test_val_and_test_are_the_final_epochs_even_when_an_earlier_epoch_scored_higher(splits, monkeypatch):
    real_hits = supervised.hits
    scripted = iter([20.0, 60.0, 40.0])  # per-epoch val top-1: epoch 2 scores best, epoch 3 is reported
    snapshots, final_states = [], []

    def fake_evaluate(model, data, **kw):
        if len(snapshots) < 3:  # the per-epoch validations
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            return next(scripted), 0.0
        final_states.append((data, {k: v.clone() for k, v in model.state_dict().items()}))
        return real_evaluate(model, data, **kw)

    def spy_hits(model, data, **kw):
        final_states.append((data, {k: v.clone() for k, v in model.state_dict().items()}))
        return real_hits(model, data, **kw)

    real_evaluate = supervised.evaluate
    monkeypatch.setattr(supervised, "evaluate", fake_evaluate)
    monkeypatch.setattr(supervised, "hits", spy_hits)
    result = train_supervised(config(), splits, rt=RT, seed=1, mean=MEAN, std=STD)
    assert result.best_epoch == 3 and [h["val_top1"] for h in result.history] == [20.0, 60.0, 40.0]
    datas = [d for d, _ in final_states]
    assert datas[-1] is splits["test"] and sum(d is splits["test"] for d in datas) == 1  # test once, at the end
    assert any(d is splits["val"] for d in datas)
    for _, state in final_states:  # val and test both with the epoch-3 weights
        for k, v in snapshots[2].items():
            torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert any(not torch.equal(snapshots[1][k], v) for k, v in snapshots[2].items())  # epoch 2 did differ


@pytest.mark.parametrize("resolution", [None, 12])
@pytest.mark.slow
def test_finetune_trains_a_copy_of_every_encoder_weight(splits, resolution):
    base = load_encoder("random", seed=0, mean=MEAN, std=STD)
    encoder = Encoder(base.module, "random", "cifar", MEAN, STD, resolution, base.digest)
    before = {k: v.clone() for k, v in encoder.module.state_dict().items()}
    result = train_supervised(config(epochs=1, optimizer="adamw", lr=1e-3), splits, rt=RT, encoder=encoder)
    assert weights_digest(encoder.module) == base.digest  # the caller's encoder is untouched
    after = result.model.backbone.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert len(changed) == sum(v.is_floating_point() for v in before.values())  # every float tensor moved
    assert math.isfinite(result.val_top1) and result.test_top1 is not None


@pytest.mark.slow
def test_non_finite_loss_from_absurd_lr(splits):
    with pytest.raises(NonFiniteLoss) as info:
        train_supervised(config(epochs=5, optimizer="sgd", lr=1e6), splits, rt=RT, mean=MEAN, std=STD)
    assert not math.isfinite(info.value.value)


@pytest.mark.parametrize("missing", ["train", "val"])
def test_an_empty_split_is_a_user_error(splits, missing):
    empty = splits[missing].subset(torch.zeros(len(splits[missing]), dtype=torch.bool))
    with pytest.raises(UserError, match=missing):
        train_supervised(config(), {**splits, missing: empty}, rt=RT, mean=MEAN, std=STD)
    if missing == "train":
        with pytest.raises(UserError, match="train"):
            train_supervised(config(), {"val": splits["val"]}, rt=RT, mean=MEAN, std=STD)


def test_without_val_it_trains_the_same_model_and_reports_no_val_metrics(splits, one_torch_thread):
    """Supervised pretraining has no val split: the same weights and losses as with one (validation draws no
    random numbers), history entries without val_top1, val metrics None; the monitor's metrics join each epoch."""
    small = {k: v.subset(torch.arange(20)) for k, v in splits.items()}
    cfg = config(epochs=2, batch_size=10)
    seen: list[tuple[int, int]] = []

    def monitor(backbone, epoch):
        seen.append((id(backbone), epoch))
        return {"knn_top1": 10.0 * epoch}

    with_val = train_supervised(cfg, small, rt=RT, seed=0, mean=MEAN, std=STD)
    without = train_supervised(
        cfg, {"train": small["train"]}, rt=RT, seed=0, mean=MEAN, std=STD, monitor=monitor, on_epoch=lambda m: None
    )
    assert without.val_top1 is None and without.val_top5 is None and without.test_top1 is None
    assert with_val.val_top1 is not None and all("val_top1" in h for h in with_val.history)
    assert [h["knn_top1"] for h in without.history] == [10.0, 20.0] and all(
        "val_top1" not in h for h in without.history
    )
    assert seen == [(id(without.model.backbone), 1), (id(without.model.backbone), 2)]
    assert [h["loss"] for h in without.history] == [h["loss"] for h in with_val.history]
    assert weights_digest(without.model) == weights_digest(with_val.model)
