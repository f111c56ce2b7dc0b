"""Supervised training with labels: a CIFAR-stem ResNet-18 from scratch, or fine-tuning a given encoder
(all of its weights) under a new linear classifier. The baselines SimCLR is compared with; and the same-data
supervised arm (objective `supervised_pretrain`): the pretraining set's images with their labels, no val split,
judged afterwards by the linear probe of its frozen backbone as SimCLR's encoders are.

Protocol (DESIGN.md): train on probe-train with random crop (zero padding) + horizontal flip for cfg.epochs
epochs; the reported model is the **final** epoch's, as for the linear probe (simclr/probe.py): one rule for
every regime's validation number. Taking the best of E per-epoch validation scores would bias upwards the very
number the Optuna search maximises, and the scratch baseline would get a selection the probes do not; choosing
`epochs` is the search's job. probe-test is evaluated ONCE, at the end, with the final weights (top-1, top-5
and the per-image top-1 hits for the report's bootstrap intervals); test never selects anything. Same
machinery as pretraining (simclr.schedule): per-step warmup + cosine lr, BN/bias excluded from weight decay,
autocast, GradScaler, channels_last, NonFiniteLoss.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from errors import UserError
from simclr.augment import eval_preprocess, normalize, supervised_augment
from simclr.config import SupervisedConfig
from simclr.data import ImageSet
from simclr.device import Runtime
from simclr.models import FEATURE_DIM, Encoder, init_weights_, resnet18, save_checkpoint
from simclr.schedule import build_optimizer, effective_lr, epoch_batches
from simclr.train import LossFn, StepSchedule, loop_generators, train_epoch

if TYPE_CHECKING:
    from simclr.pretrain import EpochMonitor  # (backbone, epoch) -> metrics joining the epoch's

CHECKPOINT_NAME = "final.pt"  # the final epoch's model (no epoch is selected)
EVAL_BATCH = 512


@dataclass
class SupervisedResult:
    val_top1: float | None  # of the final epoch's model, percent (= history[-1]["val_top1"]); None without "val"
    val_top5: float | None
    test_top1: float | None  # None when splits has no "test"
    test_top5: float | None
    best_epoch: int  # 1-based epoch of the reported model: always the final one (cfg.epochs), as ProbeResult's
    history: list[dict]
    steps: int
    n_images: int  # training images
    seconds: float
    images_per_second: float
    model: nn.Module  # a `Classifier` holding the final epoch's weights
    checkpoint: Path | None
    # top-1 hit per test image, in test-split order, bool (N,) on the CPU; None without a test split
    test_correct: Tensor | None = field(default=None, compare=False)


class Classifier(nn.Module):
    """backbone (N, 3, H, W) -> (N, 512) features -> fc -> (N, num_classes) logits."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.backbone(x))


def _preprocess_train(images: Tensor, gen: torch.Generator, *, padding: int, size: int | None, mean, std) -> Tensor:
    x = supervised_augment(images, gen, padding=padding)  # (B, 3, H, W) float in [0, 1]
    if size is not None and tuple(x.shape[-2:]) != (size, size):  # fine-tuning an encoder trained at `size`
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalize(x, mean, std)


def _crop_flip_loss(
    step_model: nn.Module, train: ImageSet, gen: torch.Generator, cfg: SupervisedConfig, *, rt: Runtime, size, mean, std
) -> LossFn:
    """loss_fn(idx) for `train_epoch`: crop + flip (drawn from `gen`) of the indexed training images, then
    cross-entropy with cfg.label_smoothing in float32. The split moves to the device once, here."""
    images, labels = train.images.to(rt.device), train.labels.to(rt.device)

    def loss_fn(idx: Tensor) -> Tensor:
        idx = idx.to(rt.device, non_blocking=True)
        x = _preprocess_train(images[idx], gen, padding=cfg.crop_padding, size=size, mean=mean, std=std)
        with rt.autocast():
            logits = step_model(x.contiguous(memory_format=rt.memory_format))  # (B, classes)
        return F.cross_entropy(logits.float(), labels[idx], label_smoothing=cfg.label_smoothing)

    return loss_fn


@torch.no_grad()
def hits(
    model: nn.Module, data: ImageSet, *, rt: Runtime, size: int | None, mean, std, batch_size: int = EVAL_BATCH
) -> tuple[Tensor, Tensor]:
    """Per image of `data`, in its order: (top-1 hit, top-5 hit), bool (N,) each on the CPU, of `model` in eval
    mode, no_grad, no augmentation (with fewer than 5 classes, top-5 counts all of them: all True)."""
    was_training = model.training
    model.eval()
    hits1, hits5 = [], []
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(rt.device, non_blocking=True)
        labels = data.labels[start : start + batch_size].to(rt.device, non_blocking=True)
        x = eval_preprocess(images, size=size, mean=mean, std=std).contiguous(memory_format=rt.memory_format)
        with rt.autocast():
            logits = model(x).float()  # (B, classes)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, 5)
        hits1.append((top[:, 0] == labels).cpu())
        hits5.append((top == labels[:, None]).any(1).cpu())
    model.train(was_training)
    return torch.cat(hits1), torch.cat(hits5)


def evaluate(model: nn.Module, data: ImageSet, **kwargs) -> tuple[float, float]:
    """(top-1, top-5) in percent of `model` on `data`, counted by `hits` (same keyword arguments)."""
    hits1, hits5 = hits(model, data, **kwargs)
    return 100.0 * int(hits1.sum()) / len(data), 100.0 * int(hits5.sum()) / len(data)


def _build(encoder: Encoder | None, num_classes: int, seed: int) -> tuple[Classifier, str, int | None]:
    """(model, stem, input size): from scratch a seeded CIFAR-stem ResNet-18; else a copy of the encoder."""
    gen = torch.Generator().manual_seed(seed)
    if encoder is None:
        model = Classifier(init_weights_(resnet18("cifar"), gen), num_classes)
        init_weights_(model.fc, gen)
        return model, "cifar", None
    model = Classifier(copy.deepcopy(encoder.module).requires_grad_(True), num_classes)  # caller's stays intact
    init_weights_(model.fc, gen)
    return model, encoder.stem, encoder.resolution


def _check_splits(splits: dict[str, ImageSet]) -> None:
    """A non-empty "train" split; "val" may be left out (supervised pretraining), but not given empty."""
    for name in ("train", "val") if "val" in splits else ("train",):
        if len(splits.get(name, ())) == 0:
            raise UserError(f"supervised training needs a non-empty {name!r} split")


def _normalisation(
    encoder: Encoder | None, train: ImageSet, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Sequence[float], Sequence[float]]:
    """An encoder's own mean/std (its weights expect them); else the given ones; else train's per-channel stats."""
    if encoder is not None:
        return encoder.mean, encoder.std
    if mean is None or std is None:
        pixels = train.images.float().div_(255.0).transpose(0, 1).reshape(3, -1)  # (3, N*H*W)
        return tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).tolist())
    return mean, std


@dataclass
class _Fit:
    """What the epochs leave besides the trained model (which holds the final epoch's weights)."""

    history: list[dict] = field(default_factory=list)
    steps: int = 0
    train_seconds: float = 0.0


def _fit(
    model: nn.Module,
    cfg: SupervisedConfig,
    train: ImageSet,
    val: ImageSet | None,
    *,
    rt: Runtime,
    seed: int,
    size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    on_epoch: Callable[[dict], None] | None,
    monitor: EpochMonitor | None = None,
) -> _Fit:
    """cfg.epochs epochs of `train_epoch` over seeded batches (the last one short), then val top-1 (when there is
    a val split) and the monitor's metrics (when given) after each."""
    step_model = torch.compile(model) if rt.compile else model
    optimizer = build_optimizer(model, cfg.optimizer, lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = rt.grad_scaler()
    gens = loop_generators(seed, rt.device)
    loss_fn = _crop_flip_loss(step_model, train, gens["augment"], cfg, rt=rt, size=size, mean=mean, std=std)
    batch_size = min(cfg.batch_size, len(train))
    peak = effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)  # lr is per 256 images (batch_size: the key)
    schedule = StepSchedule.of_run(cfg.epochs, -(-len(train) // batch_size), cfg.warmup_epochs, peak)
    fit = _Fit()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches = epoch_batches(len(train), batch_size, gens["permutation"], drop_last=False)
        done = train_epoch(loss_fn, batches, optimizer, scaler, schedule, epoch=epoch, step=fit.steps, device=rt.device)
        fit.steps, fit.train_seconds = done.step, fit.train_seconds + done.seconds
        scores = {} if val is None else {"val_top1": evaluate(model, val, rt=rt, size=size, mean=mean, std=std)[0]}
        if monitor is not None:
            scores.update(monitor(model.backbone, epoch))
        metrics = done.metrics(epoch, len(train), **scores)
        fit.history.append(metrics)
        if on_epoch is not None:
            on_epoch(dict(metrics))
    return fit


def _save(path: Path, model: nn.Module, cfg: SupervisedConfig, fit: _Fit, stem: str, mean, std) -> None:
    """Our checkpoint format: the backbone as "encoder" (load_encoder reads it) and the classifier as "fc"."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(
        path,
        {
            "encoder": {k[len("backbone.") :]: v for k, v in cpu.items() if k.startswith("backbone.")},
            "fc": {k[len("fc.") :]: v for k, v in cpu.items() if k.startswith("fc.")},
            "stem": stem,
            "mean": list(map(float, mean)),
            "std": list(map(float, std)),
            "config": dataclasses.asdict(cfg),
            "best_epoch": len(fit.history),  # the final epoch: the weights saved are its
            "history": [dict(h) for h in fit.history],
        },
    )


def train_supervised(
    cfg: SupervisedConfig,
    splits: dict[str, ImageSet],
    *,
    rt: Runtime,
    seed: int = 0,
    encoder: Encoder | None = None,
    checkpoint_dir: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    monitor: EpochMonitor | None = None,
) -> SupervisedResult:
    """Train on splits["train"] for cfg.epochs, report the final model on splits["val"] (optional) and, once, on
    splits["test"] (optional; with `test_correct`, its per-image top-1 hits). No epoch is selected.

    - encoder None: CIFAR-stem ResNet-18 + linear layer initialised from torch.Generator(seed), inputs
      normalised with `mean`/`std` (None: the train split's per-channel statistics).
    - encoder given: a copy of encoder.module (all weights trained, BN in train mode) + a new Linear(512,
      classes); inputs resized to encoder.resolution (None: native) and normalised with encoder.mean/std
      (`mean`/`std` are ignored: the weights expect their own normalisation).
    - Every epoch: a seeded permutation in batches of cfg.batch_size (the last one short), crop with
      cfg.crop_padding + flip, cross-entropy with cfg.label_smoothing; then val top-1 in eval mode, the
      metrics of monitor(backbone, epoch) if given (supervised pretraining's kNN monitor on the probe data,
      simclr.pretrain.epoch_monitor), and on_epoch({"epoch", "loss", "lr", "val_top1", ..., "images_per_second",
      "step"}) (may raise to stop).
    - Without a "val" split (supervised pretraining: the pretraining set has no held-out split, and its test
      split selects nothing): no per-epoch val top-1 (history entries without "val_top1"), and val_top1/val_top5
      None in the result; the caller judges the model elsewhere (its linear probe).
    - checkpoint_dir: the final model as `final.pt` in our checkpoint format ({"encoder": backbone state_dict,
      "fc", "stem", "mean", "std", "config", "best_epoch", "history"}), loadable by load_encoder.
    - A NaN/inf loss raises NonFiniteLoss(epoch, step, value).
    """
    started = time.perf_counter()
    _check_splits(splits)
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    model, stem, size = _build(encoder, max(s.num_classes for s in splits.values()), seed)
    mean, std = _normalisation(encoder, train, mean, std)
    model = rt.prepare(model)
    fit = _fit(
        model, cfg, train, val, rt=rt, seed=seed, size=size, mean=mean, std=std, on_epoch=on_epoch, monitor=monitor
    )
    val_top1 = val_top5 = None
    if val is not None:
        val_top1, val_top5 = evaluate(model, val, rt=rt, size=size, mean=mean, std=std)  # the final epoch's weights
    test_top1 = test_top5 = test_correct = None
    if test is not None and len(test) > 0:
        test_correct, test_top5_hits = hits(model, test, rt=rt, size=size, mean=mean, std=std)
        test_top1, test_top5 = (100.0 * int(h.sum()) / len(test) for h in (test_correct, test_top5_hits))
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
        _save(checkpoint, model, cfg, fit, stem, mean, std)
    return SupervisedResult(
        val_top1,
        val_top5,
        test_top1,
        test_top5,
        len(fit.history),  # best_epoch: the final one
        fit.history,
        fit.steps,
        len(train),
        time.perf_counter() - started,
        cfg.epochs * len(train) / fit.train_seconds,
        model,
        checkpoint,
        test_correct,
    )
