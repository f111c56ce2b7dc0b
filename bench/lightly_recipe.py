"""Lightly's SimCLR recipe, as its documentation writes it, for bench/learning.py: the reference our pipeline is held
against. Benchmark-only: the application never imports lightly (bench/requirements.txt installs it).

What it is (lightly 1.6, `examples/pytorch/simclr.py` adapted to the CIFAR stem and to the budget of the run it is
compared with): `SimCLRTransform` (RandomResizedCrop, horizontal flip, colour jitter with strength s, grayscale; no
blur at small sizes) on PIL images in a `DataLoader` with worker processes; torchvision's ResNet-18 with the CIFAR
stem (3x3 conv, stride 1, no max-pool) and its own initialisation; `SimCLRProjectionHead`; `NTXentLoss`; AdamW or
SGD over every parameter, with lightly's `CosineWarmupScheduler` stepped per optimisation step; bf16 autocast on a
CPU that computes bf16 natively, fp32 otherwise.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
import torchvision
from PIL import Image
from torch import nn

try:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from lightly.utils.scheduler import CosineWarmupScheduler
except ModuleNotFoundError as e:  # one line, not a traceback
    raise SystemExit(
        f"error: {e.name} is not installed; it is benchmark-only: pip install -r bench/requirements.txt"
    ) from None

import common  # noqa: F401  (puts the repo on sys.path)
from simclr.config import PretrainConfig
from simclr.device import cpu_has_bf16
from simclr.schedule import effective_lr


def cifar_resnet18() -> nn.Module:
    """torchvision's ResNet-18 (torchvision's initialisation) with the CIFAR stem and no classifier: (N, 512)."""
    net = torchvision.models.resnet18()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class Views(torch.utils.data.Dataset):
    """PIL images of the uint8 (N, 3, H, W) tensor, each returned as lightly's two views."""

    def __init__(self, images: torch.Tensor, transform: SimCLRTransform):
        self.pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pil)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        return self.transform(self.pil[i])  # [view 1, view 2], each (3, S, S) normalised


def lightly_transform(cfg: PretrainConfig, size: int, mean, std) -> SimCLRTransform:
    """SimCLRTransform with `cfg`'s crop scale, colour strength and probabilities, at `size` pixels."""
    return SimCLRTransform(
        input_size=size,
        cj_prob=cfg.jitter_p,
        cj_strength=cfg.jitter_strength,
        min_scale=cfg.crop_min_scale,
        random_gray_scale=cfg.gray_p,
        gaussian_blur=cfg.blur_p,
        normalize={"mean": list(mean), "std": list(std)},
    )


def _optimizer(params, cfg: PretrainConfig) -> torch.optim.Optimizer:
    lr = effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)  # the rate ours trains with at this batch
    if cfg.optimizer == "adamw":  # decoupled decay, as ours
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"the lightly recipe here runs adamw or sgd, not {cfg.optimizer!r}")


def train_lightly(
    cfg: PretrainConfig,
    images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int,
    workers: int,
    on_epoch: Callable[[int, nn.Module, float], None],
) -> nn.Module:
    """Train lightly's recipe on `images` (uint8 (N, 3, S, S)) with `cfg`'s budget and hyperparameters: the same
    epochs, batch, optimiser, peak learning rate, warm-up and cosine decay in steps, temperature, colour strength,
    crop scale and head sizes as `simclr.pretrain.pretrain(cfg, ...)`. After every epoch
    on_epoch(epoch, backbone, training_seconds_so_far); evaluation time spent there is not counted."""
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        Views(images, lightly_transform(cfg, images.shape[-1], mean, std)),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=False,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    backbone = cifar_resnet18()
    head = SimCLRProjectionHead(512, cfg.proj_hidden, cfg.proj_dim)
    model = nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=cfg.temperature)
    optimizer = _optimizer(model.parameters(), cfg)
    steps_per_epoch = len(loader)
    scheduler = CosineWarmupScheduler(
        optimizer,
        warmup_epochs=round(cfg.warmup_epochs * steps_per_epoch),
        max_epochs=cfg.epochs * steps_per_epoch,
        end_value=0.0,
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_bf16() else contextlib.nullcontext()
    seconds = 0.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        started = time.perf_counter()
        for x1, x2 in loader:
            with autocast:
                z = model(torch.cat([x1, x2]))
            z1, z2 = z.float().chunk(2)
            loss = criterion(z1, z2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        seconds += time.perf_counter() - started
        on_epoch(epoch, backbone, seconds)
    return backbone
