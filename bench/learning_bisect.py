"""Bisect a learning gap between our SimCLR and lightly's recipe: one training loop, each part from either side.

Parts (--swap names the parts taken from lightly; every other part is ours):
- aug: ours = `simclr.augment.simclr_views` on uint8 batches (two calls, one per view); lightly = SimCLRTransform
  on PIL images in a DataLoader with workers.
- backbone: ours = `simclr.pretrain.build_model`'s encoder (CIFAR-stem ResNet-18, `init_weights_` from the seed);
  lightly = torchvision's ResNet-18 with the CIFAR stem and torchvision's own initialisation.
- head: ours = `simclr.models.ProjectionHead`; lightly = SimCLRProjectionHead.
- loss: ours = `simclr.loss.nt_xent`; lightly = NTXentLoss.
- optim: ours = `build_optimizer` (BN and biases without decay) with `lr_at` per step; lightly = AdamW over every
  parameter with CosineWarmupScheduler.
- batches: ours = `balanced_batches` (near-equal batches, no image dropped); lightly = a shuffling DataLoader.
The loop itself (views -> concatenated forward -> loss in float32 -> step) is the same for every combination, and
every run is judged as in bench/learning.py (kNN after each epoch, linear probe at the last).

    python bench/learning_bisect.py --swap aug backbone [--epochs 2] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from frozen_eval import judge
from learning import RECIPE, glyph_data, stats
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.utils.scheduler import CosineWarmupScheduler
from lightly_recipe import Views, cifar_resnet18, lightly_transform

import common
from simclr.augment import normalize, simclr_params_from, simclr_views
from simclr.config import PretrainConfig
from simclr.loss import nt_xent
from simclr.pretrain import build_model
from simclr.schedule import balanced_batches, build_optimizer, effective_lr, lr_at, set_lr

PARTS = ("aug", "backbone", "head", "loss", "optim", "batches")


def _batches(cfg: PretrainConfig, images: torch.Tensor, lightly_batches: bool, gen: torch.Generator):
    """Index batches of one epoch: lightly's shuffling DataLoader order or our balanced batches."""
    n = len(images)
    if lightly_batches:
        return list(torch.randperm(n, generator=gen).split(cfg.batch_size))
    return balanced_batches(n, cfg.batch_size, gen)


def _model(cfg: PretrainConfig, swap: set[str], seed: int) -> torch.nn.Module:
    ours = build_model(cfg, seed)
    torch.manual_seed(seed)
    backbone = cifar_resnet18() if "backbone" in swap else ours.encoder
    head = SimCLRProjectionHead(512, cfg.proj_hidden, cfg.proj_dim) if "head" in swap else ours.head
    return torch.nn.Sequential(backbone, head)


def train(cfg: PretrainConfig, images: torch.Tensor, mean, std, seed: int, swap: set[str], on_epoch) -> None:
    model = _model(cfg, swap, seed)
    steps_per_epoch = -(-len(images) // cfg.batch_size)
    total, warmup = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    peak = effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    if "optim" in swap:
        optimizer = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=cfg.weight_decay)
        scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=warmup, max_epochs=total, end_value=0.0)
    else:
        optimizer = build_optimizer(model, cfg.optimizer, lr=peak, weight_decay=cfg.weight_decay)
    loss_fn = NTXentLoss(temperature=cfg.temperature) if "loss" in swap else None
    views = Views(images, lightly_transform(cfg, images.shape[-1], mean, std)) if "aug" in swap else None
    gen, order_gen = torch.Generator().manual_seed(seed + 2), torch.Generator().manual_seed(seed + 1)
    view_kw, step, seconds = simclr_params_from(cfg), 0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        started = time.perf_counter()
        for idx in _batches(cfg, images, "batches" in swap, order_gen):
            if views is not None:  # lightly's PIL pipeline, one image at a time (no workers: the swap is numeric)
                x1, x2 = (torch.stack(v) for v in zip(*(views[i] for i in idx.tolist()), strict=True))
            else:
                x1, x2 = (normalize(simclr_views(images[idx], gen, **view_kw), mean, std) for _ in range(2))
            z1, z2 = model(torch.cat([x1, x2])).float().chunk(2)
            loss = loss_fn(z1, z2) if loss_fn is not None else nt_xent(z1, z2, cfg.temperature)
            if "optim" not in swap:
                set_lr(optimizer, lr_at(step, total, warmup, peak))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if "optim" in swap:
                scheduler.step()
            step += 1
        seconds += time.perf_counter() - started
        on_epoch(epoch, model[0], seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--swap", nargs="*", default=[], choices=[*PARTS, "all"], help="parts taken from lightly")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = p.parse_args()
    torch.set_num_threads(2)
    swap = set(PARTS) if "all" in args.swap else set(args.swap)
    common.header(f"bisect: lightly's {', '.join(sorted(swap)) or 'nothing'}, ours the rest")
    images, probe, _ = glyph_data()
    mean, std = stats(images.images)
    cfg = PretrainConfig(**{**RECIPE.__dict__, "epochs": args.epochs})
    for seed in args.seeds:

        def report(epoch: int, backbone: torch.nn.Module, seconds: float, seed: int = seed) -> None:
            scores = judge(backbone, mean, std, probe, linear=epoch == cfg.epochs, seed=seed)
            linear = f", linear {scores['linear']:.1f}" if "linear" in scores else ""
            print(f"seed {seed} epoch {epoch}: {seconds:5.0f} s, kNN {scores['knn']:.1f}{linear}", flush=True)

        train(cfg, images.images, mean, std, seed, swap, report)


if __name__ == "__main__":
    main()
