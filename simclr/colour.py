"""Colour operations of the SimCLR views, batched with a factor (or mask) per image: grayscale, brightness,
contrast, saturation, hue, and torchvision's `ColorJitter` with a random op order per image.

Each reproduces `torchvision.transforms.v2.functional` on float images in [0, 1] (tests/simclr/test_augment.py
checks them to 1e-4). Per-sample factors broadcast over (N, 1, 1, 1); the jitter's random op order loops over
4 positions x 4 ops (index subsets), never over images. simclr.augment draws the factors and applies these.
"""

from __future__ import annotations

import torch
from torch import Tensor

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # op ids 0..3 used in `order`
_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale weights


def _gray(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    return r.mul(_GRAY[0]).add_(g, alpha=_GRAY[1]).add_(b, alpha=_GRAY[2]).unsqueeze(1)  # (N, 1, H, W)


def _blend(x: Tensor, other: Tensor, ratio: Tensor) -> Tensor:
    ratio = ratio.view(-1, 1, 1, 1).to(x.dtype)
    return (x * ratio).add_(other * (1.0 - ratio)).clamp_(0.0, 1.0)


def rgb_to_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """`F.rgb_to_grayscale(x[n], num_output_channels=3)` where mask (N,) is set, x[n] elsewhere."""
    return torch.where(mask.view(-1, 1, 1, 1), _gray(x).expand_as(x), x)


def adjust_brightness(x: Tensor, factors: Tensor) -> Tensor:
    """`F.adjust_brightness(x[n], factors[n])`: scale and clamp to [0, 1]."""
    return (x * factors.view(-1, 1, 1, 1).to(x.dtype)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factors: Tensor) -> Tensor:
    """`F.adjust_contrast(x[n], factors[n])`: blend with the mean of the image's grayscale."""
    return _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), factors)


def adjust_saturation(x: Tensor, factors: Tensor) -> Tensor:
    """`F.adjust_saturation(x[n], factors[n])`: blend with the grayscale image."""
    return _blend(x, _gray(x), factors)


_HSV_CHANNEL_SHIFT = (5.0, 3.0, 1.0)  # where R, G, B sit on the hue circle, in sextants


def adjust_hue(x: Tensor, factors: Tensor) -> Tensor:
    """`F.adjust_hue(x[n], factors[n])`, factors in [-0.5, 0.5]: the HSV round trip with the hue rotated.

    RGB -> HSV is torchvision's `_rgb_to_hsv` (Pillow's formula: the max channel picks the sextant, r
    first, then g, then b on ties; gray pixels get hue 0). HSV -> RGB is torchvision's `_hsv_to_rgb` in
    closed form instead of its sextant table: with v = max, v*s = max - min and k = (shift + 6h) mod 6,
    channel = v - v*s * clamp(min(k, 4 - k), 0, 1), which is the table's v, p, q or t in each sextant: the
    same function, not an approximation (tests compare with torchvision, saturated and gray pixels
    included). Masks are multiplied rather than `torch.where`d and the wrap uses `frac`: both several
    times faster on CPU than `where` with pixel masks and `remainder`.
    """
    n = x.shape[0]
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)  # HSV v
    crange = maxc - torch.minimum(torch.minimum(r, g), b)  # HSV v * s
    inv = (crange + (crange == 0)).reciprocal_()  # gray pixels: any divisor gives hue 0
    rc, gc, bc = (maxc.unsqueeze(1) - x).mul_(inv.unsqueeze(1)).unbind(1)
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~(is_r | is_g)
    hue6 = (bc - gc).mul_(is_r).add_(rc.add(2.0).sub_(bc).mul_(is_g)).add_(gc.add(4.0).sub_(rc).mul_(is_b))
    # hue6 in [-1, 5) sextants; rotate by 6 * factor and shift by 12 so that everything is positive for frac.
    hue6.add_(factors.view(n, 1, 1).to(x.dtype).mul(6.0).add(12.0))
    shift = torch.tensor(_HSV_CHANNEL_SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (hue6.unsqueeze(1) + shift).mul_(1.0 / 6.0).frac_().mul_(6.0)  # (N, 3, H, W) in [0, 6)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - ramp.mul_(crange.unsqueeze(1))


_JITTER_FNS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(
    x: Tensor,
    factors: Tensor,
    order: Tensor,
    apply: Tensor,
    enabled: tuple[bool, bool, bool, bool] = (True, True, True, True),
) -> Tensor:
    """torchvision `ColorJitter` with per-sample factors and op order, on the samples where `apply` is set.

    factors (N, 4) float: brightness, contrast, saturation, hue factors; order (N, 4) int64: a permutation
    of the op ids 0..3 (the order `JITTER_OPS` are applied in); apply (N,) bool; an op switched off in
    `enabled` is skipped, as torchvision skips an op whose strength is 0. The loop is over the 4 positions
    and the 4 ops; each (position, op) pair updates the index subset of samples that run that op there.
    """
    x = x.clone()
    for position in range(4):
        for op, fn in enumerate(_JITTER_FNS):
            if not enabled[op]:
                continue
            idx = (apply & (order[:, position] == op)).nonzero().squeeze(1)
            if idx.numel():
                x.index_copy_(0, idx, fn(x.index_select(0, idx), factors.index_select(0, idx)[:, op]))
    return x
