"""The linear classification protocol on frozen features.

As in MoCo's `main_lincls.py` and DINO's `eval_linear.py` (and the SimCLR paper's linear evaluation,
Chen et al. 2020, Sec. 4 / Appendix B.5):
- the backbone is frozen: eval mode (BatchNorm running statistics neither used from the batch nor updated),
  `requires_grad_(False)`, features under `no_grad` (simclr/features.py), computed once and cached;
- features of un-augmented images (resize + normalise only), 512-d after global average pooling, the
  projection head dropped;
- a single linear layer on features standardised with the probe-train mean/std, trained with cross-entropy
  plus L2 weight decay on the weight (not the bias), SGD (momentum 0.9, Nesterov) or Adam, cosine learning
  rate decay computed per step;
- top-1 and top-5 accuracy reported, in percent.

Model selection: the reported model is the one after the **final** epoch. Its validation accuracy is then
an honest estimate for the hyperparameters it was trained with (taking the best of E validation scores would
bias the very number the Optuna search maximises); choosing `probe_epochs` and the other hyperparameters on
validation is the search's job. The test split is evaluated once, at the end, and never selects anything;
its per-image top-1 hits (`test_correct`) let the report put a bootstrap interval on test top-1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from errors import NonFiniteLoss
from simclr.config import ProbeConfig
from simclr.device import Runtime
from simclr.features import cached_features
from simclr.models import Encoder
from simclr.schedule import lr_at

if TYPE_CHECKING:
    from simclr.data import ImageSet

Split = tuple[Tensor, Tensor]  # (features (N, D) float, labels (N,) int64)


@dataclass
class ProbeResult:
    val_top1: float  # percent, of the reported (final-epoch) model
    val_top5: float
    test_top1: float | None  # None when no test split was given
    test_top5: float | None
    best_epoch: int  # the epoch whose model is reported: always the final one (see the module docstring)
    seconds: float  # wall time (evaluate_encoder: feature extraction/cache included)
    history: list[dict] = field(default_factory=list)  # per epoch: {"epoch", "val_top1", "loss", "lr"}
    feature_seconds: float = 0.0  # of `seconds`, the part spent getting features (evaluate_encoder only)
    # top-1 hit per test image, in test-split order, bool (N,) on the CPU; None without a test split. Not compared
    # by ==: two results are equal when their numbers are (compare this one with torch.equal).
    test_correct: Tensor | None = field(default=None, compare=False)


def topk_hits(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """For each k, per row: is the label among the k largest logits, bool (N,) (k capped at the class count,
    so top-5 with 3 classes is top-3: all True)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("top-k accuracy of an empty set")
    k_max = min(max(ks), logits.shape[1])
    top = logits.topk(k_max, dim=1).indices  # (N, k_max), largest first
    hits = top == labels.to(top.device).view(-1, 1)  # (N, k_max), at most one True per row
    return [hits[:, : min(k, k_max)].any(dim=1) for k in ks]


def topk_accuracy(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[float]:
    """Percent of rows whose label is among the k largest logits, for each k (as `topk_hits` counts them)."""
    return [100.0 * hits.float().mean().item() for hits in topk_hits(logits, labels, ks)]


def cosine_lr(step: int, total_steps: int, base_lr: float) -> float:
    """Cosine decay per step from base_lr at step 0 to 0 at total_steps (SGDR without restarts, no warmup):
    the pretraining schedule `simclr.schedule.lr_at` with zero warmup steps, so both loops share one formula."""
    return lr_at(step, total_steps, 0, base_lr)


def _check_split(name: str, split: Split, dim: int | None, num_classes: int) -> None:
    x, y = split
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"{name}: need features (N>0, {dim or 'D'}) and labels (N,), got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    if y.dtype != torch.int64 or int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(
            f"{name}: labels must be int64 in [0, {num_classes}), got {y.dtype} [{int(y.min())}, {int(y.max())}]"
        )
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or infinity (a diverged encoder?)")


def _standardizer(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of the probe-train features (constant dims get std 1). float32: torch's
    reduction is accurate to ~1e-6 relative here, and a float64 copy of 45k x 512 cost a third of a second."""
    std, mean = torch.std_mean(x.float(), dim=0, correction=0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def _optimizer(linear: nn.Linear, cfg: ProbeConfig) -> torch.optim.Optimizer:
    # weight decay on the weight only: decaying the bias just shifts logits and buys no regularisation
    groups = [
        {"params": [linear.weight], "weight_decay": cfg.probe_weight_decay},
        {"params": [linear.bias], "weight_decay": 0.0},
    ]
    if cfg.probe_optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.probe_lr, momentum=0.9, nesterov=True)
    if cfg.probe_optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.probe_lr)
    raise ValueError(f"probe_optimizer must be sgd or adam, got {cfg.probe_optimizer!r}")


def _logits(linear: nn.Linear, x: Tensor, chunk: int = 8192) -> Tensor:
    with torch.no_grad():
        return torch.cat([linear(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])  # (N, C)


def _train_epoch(
    linear: nn.Linear,
    optimizer: torch.optim.Optimizer,
    train: Split,
    perm: Tensor | None,
    batch: int,
    buffers: tuple[Tensor, Tensor],
    step: int,
    total_steps: int,
    base_lr: float,
) -> tuple[float, float]:
    """One pass over `train` in minibatches `perm[i:i+batch]` (perm None: one full batch), cosine lr per step.
    Returns (mean train loss, lr of the last step); one host sync per epoch, for the loss."""
    x, y = train
    loss_sum, lr = torch.zeros((), device=x.device), base_lr
    for start in range(0, x.shape[0], batch):
        if perm is None:  # full batch: nothing to shuffle or gather
            xb, yb = x, y
        else:  # gather into preallocated buffers: no allocation per step
            idx = perm[start : start + batch]
            xb = torch.index_select(x, 0, idx, out=buffers[0][: idx.shape[0]])  # (B, D)
            yb = torch.index_select(y, 0, idx, out=buffers[1][: idx.shape[0]])  # (B,)
        lr = cosine_lr(step, total_steps, base_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(linear(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * xb.shape[0]
        step += 1
    return loss_sum.item() / x.shape[0], lr


def linear_probe(
    train: Split,
    val: Split,
    test: Split | None,
    cfg: ProbeConfig,
    *,
    num_classes: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
) -> ProbeResult:
    """Train nn.Linear(D, num_classes) on standardised `train` features; report the final-epoch model.

    Minibatches of cfg.probe_batch_size (0 = full batch) drawn from a per-epoch permutation of a generator
    seeded with `seed` (which also seeds the init: weight ~ N(0, 0.01), bias 0, as MoCo's lincls). The
    learning rate follows `cosine_lr` per step over probe_epochs * steps_per_epoch. After each epoch
    `on_epoch({"epoch" (1-based), "val_top1", "loss" (mean train loss), "lr" (of its last step)})` is called;
    whatever it raises (optuna.TrialPruned) propagates. `test` (may be None) is evaluated once at the end,
    with its per-image top-1 hits in `test_correct`.
    A non-finite training loss raises NonFiniteLoss. Inputs are not modified.
    """
    t0 = time.perf_counter()
    if num_classes < 1 or cfg.probe_epochs < 1 or cfg.probe_batch_size < 0:
        raise ValueError(
            f"need num_classes >= 1, probe_epochs >= 1, probe_batch_size >= 0; got {num_classes}, "
            f"{cfg.probe_epochs}, {cfg.probe_batch_size}"
        )
    _check_split("train", train, None, num_classes)
    dim = train[0].shape[1]
    for name, split in (("val", val), ("test", test)):
        if split is not None:
            _check_split(name, split, dim, num_classes)
    device = torch.device(device)
    mean, std = _standardizer(train[0])

    def prepare(split: Split) -> Split:
        x, y = split
        return ((x.float() - mean) / std).to(device), y.to(device)  # a new tensor: the caller's stays as it was

    (x_train, y_train), (x_val, y_val) = prepare(train), prepare(val)
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(dim, num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(num_classes, dim, generator=generator) * 0.01)
        linear.bias.zero_()
    linear.to(device)
    optimizer = _optimizer(linear, cfg)

    n = x_train.shape[0]
    batch = n if cfg.probe_batch_size == 0 else min(cfg.probe_batch_size, n)
    total_steps = cfg.probe_epochs * math.ceil(n / batch)
    buffers = torch.empty(batch, dim, device=device), torch.empty(batch, dtype=torch.int64, device=device)
    history: list[dict] = []
    step = 0
    for epoch in range(1, cfg.probe_epochs + 1):
        perm = torch.randperm(n, generator=generator).to(device) if batch < n else None
        epoch_loss, lr = _train_epoch(
            linear, optimizer, (x_train, y_train), perm, batch, buffers, step, total_steps, cfg.probe_lr
        )
        step += math.ceil(n / batch)
        if not math.isfinite(epoch_loss):
            raise NonFiniteLoss(epoch, step, epoch_loss)
        (val_top1,) = topk_accuracy(_logits(linear, x_val), y_val, ks=(1,))
        record = {"epoch": epoch, "val_top1": val_top1, "loss": epoch_loss, "lr": lr}
        history.append(record)
        if on_epoch is not None:
            on_epoch(dict(record))

    val_top1, val_top5 = topk_accuracy(_logits(linear, x_val), y_val)
    test_top1 = test_top5 = test_correct = None
    if test is not None:  # once, for the reported model; never used to choose anything
        x_test, y_test = prepare(test)
        hits1, hits5 = topk_hits(_logits(linear, x_test), y_test)
        test_top1, test_top5 = (100.0 * h.float().mean().item() for h in (hits1, hits5))  # as topk_accuracy
        test_correct = hits1.cpu()
    seconds = time.perf_counter() - t0
    return ProbeResult(
        val_top1, val_top5, test_top1, test_top5, cfg.probe_epochs, seconds, history, test_correct=test_correct
    )


def evaluate_encoder(
    encoder: Encoder,
    splits: dict[str, ImageSet],
    cfg: ProbeConfig,
    *,
    rt: Runtime,
    cache_dir: str | Path | None,
    data_key: str,
    seed: int = 0,
    on_epoch: Callable[[dict], None] | None = None,
) -> ProbeResult:
    """The linear protocol for `encoder` on splits {"train", "val", optional "test"} (simclr.data.ImageSet).

    Features come from `cached_features` (key f"{data_key}/{split}"; the encoder is frozen, see
    simclr/features.py), then `linear_probe` runs on rt.device. `seconds` includes getting the features
    (`feature_seconds` of it).
    """
    t0 = time.perf_counter()
    missing = {"train", "val"} - set(splits)
    if missing:
        raise ValueError(f"splits need 'train' and 'val'; missing {sorted(missing)}")
    features = {
        name: (cached_features(encoder, s.images, key=f"{data_key}/{name}", cache_dir=cache_dir, rt=rt), s.labels)
        for name, s in splits.items()
        if name in ("train", "val", "test")
    }
    feature_seconds = time.perf_counter() - t0
    result = linear_probe(
        features["train"],
        features["val"],
        features.get("test"),
        cfg,
        num_classes=splits["train"].num_classes,
        device=rt.device,
        seed=seed,
        on_epoch=on_epoch,
    )
    result.seconds = time.perf_counter() - t0
    result.feature_seconds = feature_seconds
    return result
