"""The per-step machinery shared by the SimCLR and supervised loops: learning-rate schedule, optimizers
(SGD, LARS, AdamW) with BatchNorm and biases excluded from weight decay, the epoch's batch order, and the
divergence check.

Everything here is measured in optimisation STEPS (epochs x steps per epoch), never in epochs: a cosine
whose length is in the wrong unit is the classic silent bug (STYLE.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from errors import NonFiniteLoss

OPTIMIZERS = ("sgd", "lars", "adamw")


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate for optimisation step `step` (0-based): linear warmup, then cosine decay to 0.

    Warmup (Goyal et al. 2017) is `base_lr * (step + 1) / warmup_steps` for `step < warmup_steps`, so the
    first step already moves (lr_at(0) = base_lr / warmup_steps) and the last warmup step reaches `base_lr`.
    Then the half-cosine of SGDR without restarts (Loshchilov & Hutter 2017), as in SimCLR (Chen et al. 2020,
    Sec. B.1): `base_lr * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2`, so lr_at(warmup) = base_lr
    and lr_at(total_steps) = 0 (steps past the end stay at 0). `warmup_steps` larger than `total_steps` is
    clamped to it (the run is all warmup).
    """
    if total_steps < 1 or warmup_steps < 0 or step < 0:
        raise ValueError(
            f"need total_steps >= 1, warmup_steps >= 0, step >= 0; got {total_steps}, {warmup_steps}, {step}"
        )
    warmup_steps = min(warmup_steps, total_steps)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if warmup_steps == total_steps:
        return base_lr if step < total_steps else 0.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as SimCLR uses it (Chen et al. 2020, Sec. 2.2 and
    the reference `LARSOptimizer` of google-research/simclr), for one parameter tensor w with gradient g:

        g' = g + weight_decay * w
        trust = eta * ||w|| / ||g'||    (1 when either norm is 0; 1 for groups with adapt=False)
        v <- momentum * v + lr * trust * g'
        w <- w - v                       (nesterov: w <- w - (momentum * v + lr * trust * g'))

    The learning rate sits inside the momentum buffer as in the reference. Groups with `adapt=False` (and
    weight_decay 0) are plain momentum SGD: SimCLR excludes BatchNorm parameters and biases from both the
    weight decay and the trust ratio (see `param_groups`).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ):
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"LARS: need lr, momentum, weight_decay >= 0 and eta > 0; got {lr}, {momentum}, {weight_decay}, {eta}"
            )
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, nesterov=nesterov, adapt=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                if group["adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ok = (w_norm > 0) & (g_norm > 0)
                    # tensor arithmetic, no .item(): no host sync per parameter on CUDA
                    trust = torch.where(ok, group["eta"] * w_norm / torch.where(ok, g_norm, 1.0), 1.0)
                    scaled = g * (trust * lr)
                else:
                    scaled = g * lr
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(scaled)
                p.sub_(buf * momentum + scaled if group["nesterov"] else buf)
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of convolutions and linear layers (ndim > 1) get `weight_decay` (and LARS
    adaptation); BatchNorm weights/biases and all biases (ndim <= 1) get neither.

    Excluding them is SimCLR's choice for LARS (reference `exclude_from_weight_decay=["batch_normalization",
    "bias"]`) and common practice for every optimizer: decaying BN scales only fights the normalisation.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0, "adapt": False}]


def effective_lr(lr: float, batch_size: int, scaling: str = "linear") -> float:
    """The peak rate trained with, from `lr` per 256 images (google-research/simclr `learning_rate_scaling`):
    linear lr x batch/256 (Goyal et al. 2017), sqrt lr x sqrt(batch) (the SimCLR paper's rule for LARS at small
    batches, B.1: 0.075 x sqrt(batch)), none lr as is."""
    if scaling == "linear":
        return lr * batch_size / 256
    if scaling == "sqrt":
        return lr * math.sqrt(batch_size)
    if scaling == "none":
        return lr
    raise ValueError(f"unknown lr_scaling {scaling!r}; choose from linear, sqrt, none")


def build_optimizer(
    model: nn.Module, name: str, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """sgd: momentum SGD (L2 weight decay in the gradient); lars: `LARS` (eta 0.001, as SimCLR); adamw: AdamW
    (Loshchilov & Hutter 2019, decoupled decay w <- w - lr * weight_decay * w, betas (0.9, 0.999); `momentum`
    is unused). All with BN parameters and biases excluded from weight decay (`param_groups`). The lr is
    overwritten every step by the loop from `lr_at`.
    """
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool) -> list[Tensor]:
    """One epoch's batches of indices: a permutation of range(n) drawn from `generator` (CPU) cut into
    `batch_size` pieces; drop_last drops a short final piece unless it is the only one."""
    perm = torch.randperm(n, generator=generator)
    pieces = list(perm.split(batch_size))
    if drop_last and len(pieces) > 1 and len(pieces[-1]) < batch_size:
        pieces.pop()
    return pieces


def balanced_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """One epoch's batches for SimCLR: a permutation of range(n) cut into ceil(n / batch_size) pieces whose sizes
    differ by at most one, so no image is dropped and no batch is tiny (NT-Xent's negatives are the batch: with
    500 images and batch 256, two batches of 250 rather than one of 256 and 244 images left out each epoch)."""
    perm = torch.randperm(n, generator=generator)
    return list(perm.tensor_split(-(-n // batch_size)))


class LossLog:
    """Per-step losses of one epoch kept on the device, checked for NaN/inf without a host sync per step.

    On CPU every step is checked (reading a CPU scalar costs nothing); on accelerators every `check_every`
    steps and at the end of the epoch, since each check waits for the device. A non-finite loss raises
    `NonFiniteLoss` with the exact epoch and global step of the first bad loss (on accelerators up to
    `check_every - 1` further steps may have run by then; the run is stopped either way).
    """

    def __init__(self, n_steps: int, *, epoch: int, first_step: int, device: torch.device, check_every: int = 25):
        self.losses = torch.zeros(n_steps, dtype=torch.float32, device=device)
        self.epoch, self.first_step, self.n = epoch, first_step, 0
        self.check_every = 1 if device.type == "cpu" else check_every
        self.checked = 0

    def add(self, loss: Tensor) -> None:
        self.losses[self.n] = loss.detach().float()
        self.n += 1
        if self.n - self.checked >= self.check_every:
            self.check()

    def check(self) -> None:
        window = self.losses[self.checked : self.n]
        if not bool(torch.isfinite(window).all()):
            bad = int((~torch.isfinite(window)).nonzero()[0, 0])
            raise NonFiniteLoss(self.epoch, self.first_step + self.checked + bad, float(window[bad]))
        self.checked = self.n

    def mean(self) -> float:
        self.check()
        return float(self.losses[: self.n].mean()) if self.n else float("nan")
