"""The one optimisation loop of SimCLR pretraining (simclr.pretrain) and supervised training (simclr.supervised).

What differs between them -- how a batch of indices becomes a loss -- is a closure `loss_fn(idx) -> loss` that the
caller builds (augmentation, forward under the runtime's autocast, loss in float32); everything else about a step
is here, once: the per-step learning rate, the divergence check before the gradient is applied, and the GradScaler
(a no-op unless fp16). Keeping it in one place keeps the two loops bit-identical in how they step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from simclr.schedule import LossLog, lr_at, set_lr

LossFn = Callable[[Tensor], Tensor]  # (B,) int64 indices into the training set -> scalar float32 loss


def loop_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """The random streams of a training loop: "permutation" (CPU, the batch order of `epoch_batches`) and
    "augment" (on `device`, the per-batch augmentation).

    Separate streams, so changing the batch order does not change the augmentations and vice versa; seeded
    seed + 1 and seed + 2 because `seed` itself initialises the weights. Checkpoints save them by these names.
    """
    return {
        "permutation": torch.Generator().manual_seed(seed + 1),
        "augment": torch.Generator(device=device).manual_seed(seed + 2),
    }


@dataclass(frozen=True)
class StepSchedule:
    """`lr_at`'s arguments except the step: linear warmup then cosine decay over a whole run, in steps."""

    total_steps: int
    warmup_steps: int
    base_lr: float

    @classmethod
    def of_run(cls, epochs: int, steps_per_epoch: int, warmup_epochs: float, base_lr: float) -> StepSchedule:
        """Epoch counts converted to steps once, here, so no loop can mix the units."""
        return cls(epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch), base_lr)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup_steps, self.base_lr)


@dataclass(frozen=True)
class EpochStats:
    step: int  # global step after the epoch
    lr: float  # learning rate of the epoch's last step
    loss: float  # mean over the epoch's steps
    seconds: float  # wall time, including waiting for the device

    def metrics(self, epoch: int, images: int, **extra: float) -> dict:
        """The per-epoch dict both loops hand to on_epoch: {"epoch", "loss", "lr", **extra, "images_per_second"
        (of the `images` trained on in the epoch), "step"}."""
        per_second = images / self.seconds
        return {
            "epoch": epoch,
            "loss": self.loss,
            "lr": self.lr,
            **extra,
            "images_per_second": per_second,
            "step": self.step,
        }


def train_epoch(
    loss_fn: LossFn,
    batches: Sequence[Tensor],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: StepSchedule,
    *,
    epoch: int,
    step: int,
    device: torch.device,
) -> EpochStats:
    """One optimisation step per batch of indices: lr from the schedule, loss_fn(idx), divergence check, backward
    through the scaler, optimizer step. `step` is the global step of the first batch (0-based); a NaN/inf loss
    raises NonFiniteLoss(epoch, step of that loss, value)."""
    started = time.perf_counter()
    log = LossLog(len(batches), epoch=epoch, first_step=step, device=device)
    lr = 0.0
    for idx in batches:
        lr = schedule.lr(step)
        set_lr(optimizer, lr)
        loss = loss_fn(idx)
        log.add(loss)  # raises NonFiniteLoss before the bad gradient is applied (on CPU)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
    loss_mean = log.mean()  # waits for the device: the epoch's time below is real
    return EpochStats(step, lr, loss_mean, time.perf_counter() - started)
