"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, Algorithm 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check(z1: Tensor, z2: Tensor, temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if z1.dim() != 2 or z2.dim() != 2:
        raise ValueError(f"nt_xent expects two (N, D) batches, got shapes {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape != z2.shape:
        raise ValueError(f"the two views must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"nt_xent needs N >= 2 pairs (with N=1 there are no negatives), got N={z1.shape[0]}")
    if z1.shape[1] < 1:
        raise ValueError("nt_xent needs D >= 1")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """Mean NT-Xent over all 2N anchors (SimCLR, Chen et al. 2020, Eq. 1 and Algorithm 1).

    z1, z2: (N, D) projections of two views; row i of z1 and row i of z2 are the positive pair.
    With u_k the 2N rows of [z1; z2] scaled to unit length, s_ik = u_i . u_k and t = temperature,

        l(i, j) = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) ),
        loss = 1/(2N) * sum_{k=1..N} [ l(2k-1, 2k) + l(2k, 2k-1) ],

    i.e. cross-entropy over the 2N - 1 other rows with the positive as the target. Returns a float32
    scalar (float64 for float64 inputs); the similarities and log-sum-exp run in at least float32 with
    autocast off, because bf16 logits (8 bits of mantissa) divided by a small t lose the differences
    between negatives.
    """
    _check(z1, z2, temperature)
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = torch.cat([z1, z2])  # (2N, D): rows i and i + N are a positive pair
        u = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)  # (2N, D), unit rows
        logits = u @ u.T / temperature  # (2N, 2N)
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(self_mask, float("-inf"))  # k != i: an anchor is not its own candidate
        positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)  # (2N,)
        return F.cross_entropy(logits, positives)  # mean over the 2N anchors


class NTXentLoss(nn.Module):
    """`nt_xent` as a module: forward(z1 (N, D), z2 (N, D)) -> scalar; temperature validated up front."""

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
