"""The SimCLR loop (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
Algorithm 1): two augmented views of every image in a batch, encoder f + projection head g, NT-Xent over the
2N projections, SGD/LARS/AdamW with linear warmup and cosine decay computed per step.

Speed: the dataset is one uint8 tensor moved to the device once; views are made per batch on the device
(simclr.augment, no DataLoader, no PIL); the forward runs under the runtime's autocast in its memory format
(channels_last), the loss in float32. Per epoch the loop hands metrics to `on_epoch`, which may raise to
stop the run (Optuna pruning); it never imports Optuna.

Reproducibility: model init, batch order and augmentation draw from explicit generators seeded from `seed`
(the global RNG is neither used nor reseeded here: the command seeds it, simclr.device.seed_everything).
A checkpoint holds weights, optimizer and scaler state, step and all generator states, so a resumed run
repeats an uninterrupted one exactly on the same device and precision.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from errors import StopRequested, UserError
from simclr.augment import normalize, simclr_params_from, simclr_views
from simclr.config import PretrainConfig, canonical
from simclr.data import CIFAR10_MEAN, CIFAR10_STD, ImageSet, stratified_subset
from simclr.device import Runtime, rng_state, set_rng_state
from simclr.features import extract_features
from simclr.knn import knn_accuracy
from simclr.loss import nt_xent
from simclr.models import (
    Encoder,
    ProjectionHead,
    SimCLRModel,
    init_weights_,
    load_checkpoint,
    resnet18,
    save_checkpoint,
    weights_digest,
)
from simclr.schedule import LARS, balanced_batches, build_optimizer, effective_lr, lr_at
from simclr.train import LossFn, StepSchedule, loop_generators, train_epoch

__all__ = ["LARS", "PretrainResult", "lr_at", "pretrain", "build_model", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "last.pt"  # one file, replaced atomically: a ResNet-18 + momentum checkpoint is ~90 MB
# Config keys that may differ between a checkpoint and the run resuming it: they do not change the training.
RESUMABLE_CHANGES = {"checkpoint_every", "monitor_every", "monitor_size", "knn_k", "knn_temperature"}


@dataclass
class PretrainResult:
    model: SimCLRModel
    encoder: Encoder  # model.encoder as an Encoder (name "simclr", CIFAR stem, native resolution)
    history: list[dict]  # on_epoch's dicts, one per epoch done (including epochs before a resume)
    steps: int  # optimisation steps in total
    n_images: int  # pretraining images
    seconds: float  # wall time of this call
    images_per_second: float  # training throughput of this call (images; views are twice as many)
    checkpoint: Path | None  # the last checkpoint written (or resumed from)
    epochs_done: int


def build_model(cfg: PretrainConfig, seed: int) -> SimCLRModel:
    """CIFAR-stem ResNet-18 + projection head initialised from torch.Generator(seed): the encoder's weights
    equal `simclr.models.load_encoder("random", seed=seed)`'s, so "before training" is that random encoder."""
    gen = torch.Generator().manual_seed(seed)
    encoder = init_weights_(resnet18("cifar"), gen)
    head = init_weights_(ProjectionHead(512, cfg.proj_hidden, cfg.proj_dim), gen)
    return SimCLRModel(encoder, head)


@dataclass
class _Run:
    """The live objects of one run and its progress: what a checkpoint saves and a resume restores."""

    model: SimCLRModel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gens: dict[str, torch.Generator]  # loop_generators: "permutation", "augment"
    epoch: int = 0  # epochs done
    step: int = 0  # optimisation steps done
    history: list[dict] = field(default_factory=list)


def _start(cfg: PretrainConfig, rt: Runtime, seed: int, resume: str | Path | None) -> _Run:
    """A fresh run seeded from `seed`, continued from the checkpoint `resume` when given."""
    model = rt.prepare(build_model(cfg, seed))
    optimizer = build_optimizer(model, cfg.optimizer, lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    run = _Run(model, optimizer, rt.grad_scaler(), loop_generators(seed, rt.device))
    if resume is not None:
        _restore(Path(resume), cfg, run)
    return run


def _cpu_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def _payload(cfg: PretrainConfig, run: _Run, mean: Sequence[float], std: Sequence[float]) -> dict:
    """The checkpoint: tensors and plain containers only, so torch.load(weights_only=True) reads it."""
    rng = {**rng_state(), **{name: g.get_state() for name, g in run.gens.items()}}
    return {
        "encoder": _cpu_state(run.model.encoder),
        "head": _cpu_state(run.model.head),
        "head_version": ProjectionHead.VERSION,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": run.epoch,
        "step": run.step,
        "rng": rng,
        "config": dataclasses.asdict(cfg),
        "mean": list(mean),
        "std": list(std),
        "stem": "cifar",
        "history": [dict(h) for h in run.history],
    }


def _restore(path: Path, cfg: PretrainConfig, run: _Run) -> None:
    """Load a checkpoint written by `pretrain` into the live objects of `run`, and its epoch, step and history."""
    payload = load_checkpoint(path)
    saved = payload.get("config")
    if not isinstance(saved, dict) or "encoder" not in payload or "optimizer" not in payload:
        raise UserError(f"checkpoint {path} is not a SimCLR pretraining checkpoint (no config/optimizer)")
    if payload.get("head_version", 1) != ProjectionHead.VERSION:
        raise UserError(
            f"cannot resume from {path}: it was written with an older projection head (no output BatchNorm); "
            "run the trial afresh (its encoder still loads for probing)"
        )
    saved = canonical(saved)  # a checkpoint written before a value was renamed ("adam" -> "adamw")
    changed = sorted(k for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        raise UserError(
            f"cannot resume from {path}: config differs in {', '.join(changed)} "
            f"(checkpoint: {', '.join(f'{k}={saved.get(k)!r}' for k in changed)})"
        )
    run.model.encoder.load_state_dict(payload["encoder"])
    run.model.head.load_state_dict(payload["head"])
    run.optimizer.load_state_dict(payload["optimizer"])
    if payload.get("scaler"):
        run.scaler.load_state_dict(payload["scaler"])
    set_rng_state(payload["rng"])
    for name, g in run.gens.items():
        g.set_state(payload["rng"][name])
    run.epoch, run.step, run.history = int(payload["epoch"]), int(payload["step"]), list(payload.get("history", []))


def _bounded(images: ImageSet, size: int, seed: int) -> ImageSet:
    """At most `size` images (0 = all), stratified, so the monitor costs the same on any dataset size."""
    if size <= 0 or len(images) <= size:
        return images
    return images.subset(stratified_subset(images.labels, size / len(images), seed))


def knn_monitor(
    module: torch.nn.Module, bank: ImageSet, queries: ImageSet, *, rt: Runtime, mean, std, k: int, temperature: float
) -> float:
    """Weighted kNN top-1 (percent) of the current encoder module (a SimCLRModel's `.encoder`, supervised
    pretraining's backbone): features of bank and queries in eval mode, computed fresh (never cached: the weights
    change every epoch); the module is back in train mode afterwards.

    Features are standardised with the bank's per-dimension mean and std before the cosine (simclr.knn): on raw
    ReLU features the monitor sat at chance on a 100-class dataset whose linear probe reached 59%, and pruned on
    noise. The bank is class-balanced already (`_bounded` draws a stratified subset)."""
    encoder = Encoder(module, "simclr", "cifar", tuple(mean), tuple(std), None, digest="")
    try:
        bank_features = extract_features(encoder, bank.images, rt=rt)
        query_features = extract_features(encoder, queries.images, rt=rt)
    finally:  # extract_features freezes the module (eval, requires_grad_(False)): undo for training
        module.train().requires_grad_(True)
    return knn_accuracy(
        bank_features,
        bank.labels,
        query_features,
        queries.labels,
        k=k,
        temperature=temperature,
        num_classes=max(bank.num_classes, queries.num_classes),
        standardize=True,  # the default, stated: this is what makes the monitor rank encoders as the probe does
    )


def _epoch_done(on_epoch: Callable[[dict], None] | None, metrics: dict) -> StopRequested | None:
    """Hand the epoch to on_epoch; a stop it requests (SIGTERM) is returned, to be raised once the epoch is saved."""
    try:
        if on_epoch is not None:
            on_epoch(dict(metrics))
    except StopRequested as stop:
        return stop
    return None


def _due(epoch: int, every: int, epochs: int) -> bool:
    """Every `every` epochs and at the last one; every=0: only at the last one."""
    return (every > 0 and epoch % every == 0) or epoch == epochs


EpochMonitor = Callable[[torch.nn.Module, int], dict[str, float]]  # (encoder module, epoch) -> metrics of the epoch


def epoch_monitor(
    bank: ImageSet, queries: ImageSet, *, every: int, epochs: int, size: int, seed: int, **knn: Any
) -> EpochMonitor | None:
    """The kNN monitor of a training loop (`pretrain`'s, simclr.supervised's `monitor`):
    monitor(encoder_module, epoch) -> {"knn_top1": ...} every `every` epochs and at the last ({} otherwise), on
    bank and queries bounded to `size` images each (`_bounded`); `knn`: knn_monitor's rt, mean, std, k,
    temperature. None when every=0 (never monitored, as `pretrain` with monitor_every=0)."""
    if every <= 0:
        return None
    bank, queries = _bounded(bank, size, seed), _bounded(queries, size, seed)

    def monitor(module: torch.nn.Module, epoch: int) -> dict[str, float]:
        return {"knn_top1": knn_monitor(module, bank, queries, **knn)} if _due(epoch, every, epochs) else {}

    return monitor


def _config_monitor(
    cfg: PretrainConfig, monitor: tuple[ImageSet, ImageSet] | None, epochs: int, *, seed: int, rt: Runtime, mean, std
) -> EpochMonitor | None:
    """`pretrain`'s monitor=(bank, queries) as an epoch monitor with cfg's kNN keys (None without one)."""
    if monitor is None:
        return None
    knn = {"rt": rt, "mean": mean, "std": std, "k": cfg.knn_k, "temperature": cfg.knn_temperature}
    return epoch_monitor(*monitor, every=cfg.monitor_every, epochs=epochs, size=cfg.monitor_size, seed=seed, **knn)


def _views_loss(
    step_model: torch.nn.Module,
    images: Tensor,
    gen: torch.Generator,
    view_kw: dict[str, object],
    temperature: float,
    *,
    rt: Runtime,
    mean: Sequence[float],
    std: Sequence[float],
) -> LossFn:
    """loss_fn(idx) for `train_epoch`: two views of each indexed image (drawn from `gen`), NT-Xent of their
    projections. `images` (N, 3, H, W) uint8 is already on the device: every batch and view is cut from it there."""

    def loss_fn(idx: Tensor) -> Tensor:
        batch = images[idx.to(images.device, non_blocking=True)]  # (B, 3, H, W) uint8
        x1 = normalize(simclr_views(batch, gen, **view_kw), mean, std)  # (B, 3, S, S)
        x2 = normalize(simclr_views(batch, gen, **view_kw), mean, std)
        x = torch.cat([x1, x2]).contiguous(memory_format=rt.memory_format)  # (2B, 3, S, S)
        with rt.autocast():
            _, z = step_model(x)  # (2B, proj_dim)
        z1, z2 = z.float().chunk(2)  # (B, proj_dim) each
        return nt_xent(z1, z2, temperature)  # float32, autocast off inside

    return loss_fn


def _result(run: _Run, n: int, started: float, throughput: float, checkpoint: Path | None, mean, std) -> PretrainResult:
    """The finished run, its encoder named "simclr" and digested so the feature cache keys on these weights."""
    encoder = Encoder(
        run.model.encoder,
        "simclr",
        "cifar",
        tuple(map(float, mean)),
        tuple(map(float, std)),
        None,
        weights_digest(run.model.encoder),
    )
    seconds = time.perf_counter() - started
    return PretrainResult(run.model, encoder, run.history, run.step, n, seconds, throughput, checkpoint, run.epoch)


@dataclass(frozen=True)
class RunPlan:
    """How long a pretraining run is, in the units every loop and report needs."""

    epochs: int  # epochs started (the last may be partial)
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @property
    def epochs_done(self) -> float:
        """Passes over the data, fractional when the last epoch is partial."""
        return self.total_steps / self.steps_per_epoch

    def images_seen(self, n: int) -> int:
        """Images trained on (each gives two views): n per full epoch, plus the partial epoch's first batches
        (balanced_batches: the first n % steps_per_epoch batches hold one image more)."""
        full, rest = divmod(self.total_steps, self.steps_per_epoch)
        small = n // self.steps_per_epoch
        return full * n + rest * small + min(rest, n % self.steps_per_epoch)


def plan_run(cfg: PretrainConfig, n: int, n_reference: int | None = None) -> RunPlan:
    """The run's length for `n` pretraining images. Default: cfg.epochs epochs. With cfg.equal_steps_as = f > 0,
    the steps of cfg.epochs epochs over the reference subset data_fraction=f, of `n_reference` images (default
    n x f / data_fraction: stratified subsets scale linearly, up to rounding per class), so every point of a
    scale curve gets the same compute and the curve measures data, not under-training; warm-up is the reference
    run's, in steps."""
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = -(-n // batch_size)
    reference = steps_per_epoch
    if cfg.equal_steps_as > 0:
        n_ref = n_reference or max(2, round(n * cfg.equal_steps_as / cfg.data_fraction))
        reference = -(-n_ref // min(cfg.batch_size, n_ref))
    total = cfg.epochs * reference
    return RunPlan(-(-total // steps_per_epoch), steps_per_epoch, total, round(cfg.warmup_epochs * reference))


def pretrain(
    cfg: PretrainConfig,
    train: ImageSet,
    *,
    rt: Runtime,
    seed: int = 0,
    monitor: tuple[ImageSet, ImageSet] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    n_reference: int | None = None,
) -> PretrainResult:
    """SimCLR pretraining of a CIFAR-stem ResNet-18 on `train` (labels unused), for the steps `plan_run` gives.

    - Batches: a seeded permutation per epoch cut into ceil(n / cfg.batch_size) near-equal batches
      (`balanced_batches`: no image dropped, every epoch is exactly n images, whatever the batch size).
    - Length (`plan_run`): cfg.epochs epochs, or with cfg.equal_steps_as > 0 as many optimiser steps as cfg.epochs
      epochs take on the data_fraction=equal_steps_as subset (the scale curve's equal-compute points; the last
      epoch may be partial). Warm-up and cosine decay are in steps.
    - monitor=(bank, queries): weighted kNN top-1 of the encoder ("knn_top1") every cfg.monitor_every epochs
      and at the last epoch (monitor_every=0: never); each set is bounded to cfg.monitor_size images.
    - on_epoch(metrics) after every epoch: {"epoch" (1-based), "loss" (mean over the epoch's steps), "lr" (of
      the last step), "images_per_second", "step" (steps so far), ["knn_top1"]}; an exception it raises
      propagates and ends the run (no checkpoint for that epoch).
    - checkpoint_dir: `last.pt` there (atomic replace) every cfg.checkpoint_every epochs and at the end
      (checkpoint_every=0: only at the end), then on_checkpoint(path, epoch).
    - resume: a checkpoint of this function with the same config (except monitor/checkpoint frequency);
      training continues at its epoch + 1 and gives the same losses as an uninterrupted run (same device,
      precision, seed); the returned history includes the epochs before the resume (on_epoch is not called
      again for them).
    - A NaN/inf loss raises NonFiniteLoss(epoch, step, value) (step = 0-based global step of that loss).
    """
    started = time.perf_counter()
    n = len(train)
    if n < 2:
        raise UserError(f"SimCLR needs at least 2 pretraining images (NT-Xent needs negatives), got {n}")
    batch_size = min(cfg.batch_size, n)
    plan = plan_run(cfg, n, n_reference)
    peak = effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)  # lr is per 256 images (batch_size: the key)
    schedule = StepSchedule(plan.total_steps, plan.warmup_steps, peak)
    view_kw = simclr_params_from(cfg)  # before building the model: a bad setting fails fast
    run = _start(cfg, rt, seed, resume)
    step_model = torch.compile(run.model) if rt.compile else run.model
    images = train.images.to(rt.device)  # once: every batch and view is cut from it on the device
    loss_fn = _views_loss(step_model, images, run.gens["augment"], view_kw, cfg.temperature, rt=rt, mean=mean, std=std)
    watch = _config_monitor(cfg, monitor, plan.epochs, seed=seed, rt=rt, mean=mean, std=std)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    last_saved = Path(resume) if resume is not None else None
    train_seconds, trained_images = 0.0, 0

    run.model.train()
    while run.epoch < plan.epochs:
        run.epoch += 1
        batches = balanced_batches(n, batch_size, run.gens["permutation"])[: plan.total_steps - run.step]
        done = train_epoch(
            loss_fn, batches, run.optimizer, run.scaler, schedule, epoch=run.epoch, step=run.step, device=rt.device
        )
        run.step, train_seconds = done.step, train_seconds + done.seconds
        images_in_epoch = sum(len(b) for b in batches)
        trained_images += images_in_epoch
        metrics = done.metrics(run.epoch, images_in_epoch)
        if watch is not None:
            metrics.update(watch(run.model.encoder, run.epoch))
        run.history.append(metrics)
        stop = _epoch_done(on_epoch, metrics)
        if checkpoint is not None and (stop is not None or _due(run.epoch, cfg.checkpoint_every, plan.epochs)):
            save_checkpoint(checkpoint, _payload(cfg, run, mean, std))  # a requested stop keeps its epoch
            last_saved = checkpoint
            if on_checkpoint is not None:
                on_checkpoint(checkpoint, run.epoch)
        if stop is not None:
            raise stop
    throughput = trained_images / train_seconds if train_seconds > 0 else 0.0
    return _result(run, n, started, throughput, last_saved, mean, std)
