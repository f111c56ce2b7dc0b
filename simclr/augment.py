"""Batched SimCLR views, supervised crop+flip and eval preprocessing, on the images' device.

Every random choice is drawn per sample with tensor ops (no PIL, no per-image Python loop), and every
operation, given the same per-sample parameters, reproduces `torchvision.transforms.v2.functional` on
float images (tests/simclr/test_augment.py checks each to 1e-4). The SimCLR pipeline is the paper's
(Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", Appendix A):
random resized crop -> horizontal flip -> colour jitter (random op order, applied with p) -> grayscale
(p) -> optional Gaussian blur (p), in the order torchvision's Compose would run them.

Geometry is done with per-sample interpolation matrices, `out = Wy @ img @ Wx^T`: the crop, the
(antialiased) bilinear resize and the flip of one image are all linear, so they fold into one pair of
small matrices per image and two batched matmuls, which is what makes 32x32 views cheap on a 2-core CPU.
The colour ops (per-sample factors, the jitter's random op order) live in simclr.colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from errors import UserError
from simclr.colour import color_jitter, rgb_to_grayscale
from simclr.config import PretrainConfig

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _float(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _rand(n: int, generator: torch.Generator | None, device: torch.device, *shape: int) -> Tensor:
    """Uniform [0, 1) draws in float64 where available, so that sampled boxes are rounded like Python floats."""
    return torch.rand((n, *shape), generator=generator, device=device, dtype=_float(device))


# ----------------------------------------------------------------------------------------- geometry
def _resize_matrix(start: Tensor, length: Tensor, out_size: int, full_size: int, flip: Tensor | None = None) -> Tensor:
    """(N, out_size, full_size) weights resizing the window [start, start+length) of each row to out_size.

    The weights are those of torch's `_upsample_bilinear2d_aa` (what torchvision's resize uses with
    antialias=True): scale = length / out_size; a triangle filter stretched by max(scale, 1) (so
    downscaling averages, upscaling is plain bilinear with align_corners=False), centred at
    scale * (i + 0.5), cut to the window (edge clamping at the crop boundary) and renormalised.
    `flip` (N,) bool mirrors the output of those rows (output i takes the weights of out_size - 1 - i).
    """
    n, device = start.shape[0], start.device
    length = length.view(n, 1, 1)
    scale = length.float() / out_size
    support = scale.clamp(min=1.0)  # bilinear: interp_size / 2 = 1, widened by the scale when shrinking
    i = torch.arange(out_size, device=device, dtype=torch.float32).view(1, -1, 1)
    if flip is not None:
        i = torch.where(flip.view(n, 1, 1), out_size - 1 - i, i)
    # Source pixel j (global index) has weight tri((j - start + 0.5 - centre) / support).
    offset = scale * (i + 0.5) - 0.5 + start.view(n, 1, 1)  # (N, S, 1)
    j = torch.arange(full_size, device=device).view(1, 1, -1)
    inside = (j >= start.view(n, 1, 1)) & (j < start.view(n, 1, 1) + length)  # (N, 1, W): pixels of the crop
    weight = (j - offset).abs_().div_(support).neg_().add_(1.0).clamp_(min=0.0).mul_(inside)
    return weight.div_(weight.sum(-1, keepdim=True))  # (N, S, W)


def _apply_matrices(x: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """out[n, c] = wy[n] @ x[n, c] @ wx[n]^T for x (N,C,H,W), wy (N,S,H), wx (N,T,W) -> (N,C,S,T)."""
    n, c, h, w = x.shape
    t = torch.bmm(x.reshape(n, c * h, w), wx.transpose(1, 2)).view(n, c, h, -1)  # (N, C, H, T)
    return torch.matmul(wy.unsqueeze(1), t)  # (N, C, S, T)


def _crop_matrices(
    top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: Size, h: int, w: int, flip: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    out_h, out_w = _hw(size)
    wy = _resize_matrix(top, height, out_h, h)  # (N, S, H)
    wx = _resize_matrix(left, width, out_w, w, flip)  # (N, T, W); a flip of the output reverses wx's rows
    return wy, wx


def resized_crop(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor, size: Size) -> Tensor:
    """Per-sample `F.resized_crop(x[n], top[n], left[n], height[n], width[n], size, antialias=True)` (bilinear).

    x float (N,C,H,W); the four box tensors int (N,) and inside the image -> (N,C,size,size).
    """
    wy, wx = _crop_matrices(top, left, height, width, size, x.shape[-2], x.shape[-1])
    return _apply_matrices(x, wy, wx)


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Horizontal flip of the samples where mask (N,) bool is set."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def padded_crop(x: Tensor, top: Tensor, left: Tensor, padding: int, flip: Tensor | None = None) -> Tensor:
    """Per-sample crop of the zero-padded image back to (H, W): `F.crop(F.pad(x, padding), top, left, H, W)`.

    top/left (N,) in [0, 2*padding]; flip (N,) bool optionally mirrors the result. Index arithmetic on the
    padded batch (one gather, no per-image loop); works on any dtype.
    """
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))  # zeros, like RandomCrop(padding=p)
    rows = top.view(n, 1) + torch.arange(h, device=x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip is not None:
        cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    cols = left.view(n, 1) + cols  # (N, W)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    out = xp.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------- blur
def blur_kernel_size(size: int) -> int:
    """SimCLR's blur kernel: 10% of the image side, made odd, at least 3 (3 at 32x32, 9 at 96, 23 at 224)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 else k + 1


def _blur_matrix(sigma: Tensor, kernel_size: int, size: int) -> Tensor:
    """(N, size, size): 1-D Gaussian of torchvision's `_get_gaussian_kernel1d` with reflect padding folded in."""
    n, half = sigma.shape[0], kernel_size // 2
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=kernel_size, dtype=torch.float32, device=sigma.device)
    kernel = torch.softmax(x.view(1, -1).div(sigma.view(-1, 1).float()).pow(2).neg(), dim=1)  # (N, K)
    src = torch.arange(size, device=sigma.device).view(-1, 1) + torch.arange(kernel_size, device=sigma.device) - half
    src = src.abs()  # reflect at the left edge (mode="reflect": the edge pixel is not repeated)
    src = torch.where(src > size - 1, 2 * (size - 1) - src, src)  # (S, K) and at the right edge
    matrix = torch.zeros(n, size, size, device=sigma.device, dtype=torch.float32)
    return matrix.scatter_add_(2, src.expand(n, size, kernel_size), kernel.view(n, 1, -1).expand(n, size, -1))


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int, mask: Tensor | None = None) -> Tensor:
    """`F.gaussian_blur(x[n], kernel_size, sigma[n])` (reflect padding) where mask (N,) is set (all if None).

    The separable Gaussian with its reflect padding is one (size x size) matrix per axis per sample.
    """
    n, _, h, w = x.shape
    if kernel_size % 2 == 0 or kernel_size // 2 >= min(h, w):
        raise ValueError(f"kernel_size {kernel_size} must be odd and smaller than twice the image side")
    by, bx = _blur_matrix(sigma, kernel_size, h), _blur_matrix(sigma, kernel_size, w)
    if mask is not None:  # identity for the samples left sharp: exact, and no data-dependent indexing
        by = torch.where(mask.view(-1, 1, 1), by, torch.eye(h, device=x.device))
        bx = torch.where(mask.view(-1, 1, 1), bx, torch.eye(w, device=x.device))
    return _apply_matrices(x, by, bx)


# ----------------------------------------------------------------------------------------- sampling
def sample_crop_params(
    n: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample (top, left, height, width) int64 (N,) boxes by torchvision's `RandomResizedCrop` rule.

    Area fraction uniform in `scale`, log aspect ratio uniform in log(`ratio`), w = round(sqrt(area * r)),
    h = round(sqrt(area / r)); the first of 10 attempts with 0 < w <= W and 0 < h <= H is kept and placed
    uniformly; if none fits, the central crop with the ratio clamped into `ratio`. The 10 attempts of all
    samples are drawn at once.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    attempts = 10
    area = height * width * (scale[0] + (scale[1] - scale[0]) * _rand(n, generator, device, attempts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(n, generator, device, attempts))  # (N, 10)
    w = torch.round(torch.sqrt(area * aspect)).long()  # round half to even, like Python's round
    h = torch.round(torch.sqrt(area / aspect)).long()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.int().argmax(1, keepdim=True)  # argmax returns the first maximal index
    found = valid.any(1)
    # Central-crop fallback: the same box for every sample that exhausted its attempts.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first).squeeze(1), fw)
    h = torch.where(found, h.gather(1, first).squeeze(1), fh)
    u = _rand(n, generator, device, 2)  # uniform integer offsets, like torch.randint(0, H - h + 1)
    top = torch.minimum((u[:, 0] * (height - h + 1)).long(), height - h)
    left = torch.minimum((u[:, 1] * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, (height - fh) // 2)
    left = torch.where(found, left, (width - fw) // 2)
    return top, left, h, w


@dataclass
class ViewParams:
    """Every per-sample random choice of one batch of SimCLR views (all tensors (N,) unless noted)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor  # bool
    jitter: Tensor  # bool: colour jitter applied
    factors: Tensor  # (N, 4) float32: brightness, contrast, saturation, hue factors
    order: Tensor  # (N, 4) int64: jitter op ids in the order applied
    gray: Tensor  # bool
    blur: Tensor  # bool
    sigma: Tensor  # float32 blur sigma
    size: tuple[int, int]
    kernel_size: int
    enabled: tuple[bool, bool, bool, bool]  # jitter ops with nonzero strength


def _check_view_args(
    crop_scale: tuple[float, float],
    crop_ratio: tuple[float, float],
    jitter: tuple[float, ...],
    probabilities: tuple[float, ...],
    blur_sigma: tuple[float, float],
) -> None:
    if not 0 < crop_scale[0] <= crop_scale[1] or not 0 < crop_ratio[0] <= crop_ratio[1]:
        raise UserError(f"crop scale {crop_scale} / ratio {crop_ratio}: need 0 < min <= max")
    if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
        raise UserError(f"jitter {tuple(jitter)}: need 4 values >= 0 with hue <= 0.5 (jitter_strength <= 2.5)")
    if any(not 0 <= p <= 1 for p in probabilities):
        raise UserError(f"augmentation probabilities {probabilities} must lie in [0, 1]")
    if not 0 < blur_sigma[0] <= blur_sigma[1]:
        raise UserError(f"blur_sigma {blur_sigma}: need 0 < min <= max")


def sample_view_params(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    size: Size | None = None,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.0,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
) -> ViewParams:
    """Draw every random choice of one batch of SimCLR views from `generator`, without touching pixels.

    Defaults are the paper's CIFAR settings (Chen et al. 2020, Appendix A, B.9): crop scale 0.08-1 and ratio
    3/4-4/3 resized to `size` (None: the input size), flip p=0.5, colour jitter (0.4s, 0.4s, 0.4s, 0.1s) with
    s=1 applied with p=0.8, grayscale p=0.2, no blur at 32x32 (blur_p=0.5 with sigma 0.1-2 and a 10%-of-side
    kernel for larger images). `generator` lives on the images' device (None = the global RNG).
    """
    _check_view_args(crop_scale, crop_ratio, jitter, (flip_p, jitter_p, gray_p, blur_p), blur_sigma)
    n, _, h, w = images.shape
    dev = images.device
    out_hw = (h, w) if size is None else _hw(size)
    top, left, height, width = sample_crop_params(
        n, h, w, scale=crop_scale, ratio=crop_ratio, generator=generator, device=dev
    )
    coins = _rand(n, generator, dev, 4)  # flip, jitter, gray, blur
    # ColorJitter's ranges: [max(0, 1 - s), 1 + s] for brightness, contrast, saturation; [-h, h] for hue
    lo = [max(0.0, 1 - s) for s in jitter[:3]] + [-jitter[3]]
    hi = [1 + s for s in jitter[:3]] + [jitter[3]]
    lo_t, hi_t = (torch.tensor(v, dtype=_float(dev), device=dev) for v in (lo, hi))
    factors = (lo_t + (hi_t - lo_t) * _rand(n, generator, dev, 4)).float()
    order = _rand(n, generator, dev, 4).argsort(1)  # a uniform random permutation per sample (torch.randperm(4))
    sigma = (blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * _rand(n, generator, dev)).float()
    enabled = (jitter[0] > 0, jitter[1] > 0, jitter[2] > 0, jitter[3] > 0)
    flip, apply_jitter, gray, blur = (coins[:, k] < p for k, p in enumerate((flip_p, jitter_p, gray_p, blur_p)))
    return ViewParams(
        top,
        left,
        height,
        width,
        flip,
        apply_jitter,
        factors,
        order,
        gray,
        blur,
        sigma,
        out_hw,
        blur_kernel_size(min(out_hw)),
        enabled,
    )


def apply_view(images: Tensor, params: ViewParams) -> Tensor:
    """Render SimCLR views (N,3,S,T) float in [0,1] from uint8 images and their drawn `params`.

    Order as in the paper's torchvision pipeline: resized crop + flip (one matmul pair), colour jitter
    (with p), grayscale (with p), blur (with p); a final clamp absorbs the rounding of the crop weights."""
    p = params
    h, w = images.shape[-2:]
    wy, wx = _crop_matrices(p.top, p.left, p.height, p.width, p.size, h, w, flip=p.flip)
    x = _apply_matrices(images.float(), wy, wx.mul_(1.0 / 255.0))  # uint8 -> [0, 1] folded into the matrix
    if p.jitter.any():
        x = color_jitter(x, p.factors, p.order, p.jitter, p.enabled)
    x = rgb_to_grayscale(x, p.gray)
    if p.blur.any():
        x = gaussian_blur(x, p.sigma, p.kernel_size, p.blur)
    return x.clamp_(0.0, 1.0)


def simclr_views(images: Tensor, generator: torch.Generator | None = None, **settings: Any) -> Tensor:
    """ONE SimCLR view per image: uint8 (N,3,H,W) -> float (N,3,S,S) in [0,1] on the images' device.

    Call twice for the two views. `settings` are the keywords of `sample_view_params` (crop, flip, jitter,
    grayscale, blur; their defaults are the paper's CIFAR settings), which draws the random choices from
    `generator` before `apply_view` renders them, so a seeded generator gives identical views.
    """
    return apply_view(images, sample_view_params(images, generator, **settings))


def simclr_params_from(cfg: PretrainConfig) -> dict[str, object]:
    """`simclr_views` keyword arguments from a PretrainConfig. Colour jitter strength s is the SimCLR paper's
    (Chen et al. 2020, Appendix A, Listing 1): ColorJitter(0.8s, 0.8s, 0.8s, 0.2s); s = 0.5 for CIFAR (B.9)."""
    s = cfg.jitter_strength
    return dict(
        crop_scale=(cfg.crop_min_scale, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        flip_p=0.5,
        jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
        jitter_p=cfg.jitter_p,
        gray_p=cfg.gray_p,
        blur_p=cfg.blur_p,
        blur_sigma=(0.1, 2.0),
    )


# ------------------------------------------------------------------------------- supervised and eval
def sample_supervised_params(
    n: int,
    *,
    padding: int = 4,
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(top, left, flip) of `supervised_augment`: offsets uniform in [0, 2*padding] like RandomCrop(padding)."""
    u = _rand(n, generator, torch.device(device) if device is not None else torch.device("cpu"), 3)
    offsets = (u[:, :2] * (2 * padding + 1)).long().clamp_(max=2 * padding)
    return offsets[:, 0], offsets[:, 1], u[:, 2] < flip_p


def supervised_augment(
    images: Tensor, generator: torch.Generator | None = None, *, padding: int = 4, flip_p: float = 0.5
) -> Tensor:
    """The standard CIFAR training augmentation: random crop with `padding` zero pixels + horizontal flip.

    uint8 (N,3,H,W) -> float (N,3,H,W) in [0,1] on the same device.
    """
    top, left, flip = sample_supervised_params(
        images.shape[0], padding=padding, flip_p=flip_p, generator=generator, device=images.device
    )
    return padded_crop(images, top, left, padding, flip).float().div_(255.0)


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """(x - mean) / std per channel, like `F.normalize`."""
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - mean).div_(std)


def eval_preprocess(
    images: Tensor, *, size: int | None, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor
) -> Tensor:
    """uint8 (N,3,H,W) -> normalised float (N,3,size,size): no augmentation, bilinear antialiased resize
    (as torchvision v2 `resize`) when `size` differs from the input's."""
    x = images.float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalize(x, mean, std)
