"""Frozen-encoder feature extraction for the linear protocol, and its on-disk cache.

The linear classification protocol (MoCo `main_lincls.py`, DINO `eval_linear.py`) trains a linear layer on
the features of a *frozen* backbone: the encoder runs in `eval()` mode (BatchNorm uses its running
statistics and never updates them), with `requires_grad_(False)` and under `torch.no_grad()`, on
un-augmented images (only resize + normalise). Because nothing about the encoder changes while probing, its
features are computed once per (weights digest, data, resolution, normalisation, precision) and cached, so a
probe trial costs seconds instead of a ResNet forward pass over the data per probe epoch.

Cache entries are plain `torch.save` dicts read back with `weights_only=True`; every entry is validated
(shape, dtype, finite values, metadata, a sha256 of the images) and anything that fails is recomputed and
rewritten, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from atomic import atomic_write
from errors import UserError
from simclr.augment import eval_preprocess
from simclr.device import Runtime
from simclr.models import FEATURE_DIM, Encoder

CACHE_VERSION = 1  # bump when the entry format or what the features mean changes: old entries are then ignored


def freeze(module: nn.Module) -> nn.Module:
    """Put `module` in eval mode with every parameter's requires_grad off (in place) and return it.

    `module.requires_grad = False` (an attribute on the object) freezes nothing; `requires_grad_(False)`
    reaches every parameter. eval() makes BatchNorm use, and not update, its running statistics.
    """
    module.eval()
    module.requires_grad_(False)
    return module


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")


def extract_features(encoder: Encoder, images: Tensor, *, rt: Runtime, batch_size: int = 256) -> Tensor:
    """Features of `images` (uint8 (N, 3, H, W)) under the frozen encoder: float32 (N, 512) on the CPU.

    Preprocessing is `eval_preprocess` (bilinear antialiased resize to `encoder.resolution` when set, else
    the native size; `encoder.mean`/`std` normalisation), no augmentation. Runs on `rt.device` under
    `rt.autocast()` with `rt.memory_format`; `rt.compile` is ignored (one pass does not repay compiling).

    Side effects, on purpose: `encoder.module` is left in eval mode with requires_grad off on every
    parameter (see `freeze`) and moved to `rt.device`/`rt.memory_format` (values unchanged; the digest does
    not depend on either). Its state_dict, BatchNorm running statistics included, is not modified.
    """
    _check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    module = rt.prepare(freeze(encoder.module))
    n = images.shape[0]
    out = torch.empty(n, FEATURE_DIM, dtype=torch.float32)  # (N, 512), filled batch by batch
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = images[start : start + batch_size].to(rt.device, non_blocking=True)
            x = eval_preprocess(batch, size=encoder.resolution, mean=encoder.mean, std=encoder.std)
            x = x.contiguous(memory_format=rt.memory_format)  # (B, 3, S, S)
            with rt.autocast():
                h = module(x)  # (B, 512), bf16 under bf16 autocast
            if h.shape != (x.shape[0], FEATURE_DIM):
                raise ValueError(f"encoder {encoder.name} gave features {tuple(h.shape)}, expected (B, {FEATURE_DIM})")
            out[start : start + x.shape[0]] = h.float().cpu()
    return out


def images_sha256(images: Tensor) -> str:
    """sha256 of the images' bytes (~0.1 s for CIFAR's 50k): a cached entry must belong to these very images."""
    array = images.detach().cpu().contiguous().numpy()
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()


def cache_identity(encoder: Encoder, *, key: str, n: int, precision: str) -> dict:
    """What a cache entry's features depend on (besides the image bytes, checked inside the entry).

    The contract names (digest, key, resolution, n); normalisation and precision are added because the
    same weights give different features with another mean/std (e.g. a "random" encoder built with
    CIFAR-100 statistics) or in bf16 instead of fp32.
    """
    return {
        "version": CACHE_VERSION,
        "digest": encoder.digest,
        "key": key,
        "resolution": encoder.resolution,
        "n": int(n),
        "mean": [float(v) for v in encoder.mean],
        "std": [float(v) for v in encoder.std],
        "precision": precision,
    }


def cache_path(cache_dir: str | Path, identity: dict) -> Path:
    """cache_dir/<sha256 of the identity>.pt"""
    name = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"{name}.pt"


def _load_entry(path: Path, identity: dict, sha: str) -> Tensor | None:
    """The cached features at `path` if the entry is complete and belongs to (identity, images); else None."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, garbage bytes, a pickle with globals: recompute, never trust
        return None
    if not isinstance(entry, dict) or entry.get("identity") != identity or entry.get("images_sha256") != sha:
        return None
    features = entry.get("features")
    if not isinstance(features, Tensor) or features.dtype != torch.float32:
        return None
    if features.shape != (identity["n"], FEATURE_DIM) or not torch.isfinite(features).all():
        return None
    return features


def _write_entry(path: Path, entry: dict) -> None:
    """torch.save through atomic_write: readers see the old entry or the whole new one, and concurrent writers
    (several Optuna workers) never share a temporary file."""
    try:
        atomic_write(path, lambda f: torch.save(entry, f))
    except OSError as e:
        raise UserError(f"cannot write feature cache entry {path} ({e.strerror or e})") from None


def cached_features(
    encoder: Encoder,
    images: Tensor,
    *,
    key: str,
    cache_dir: str | Path | None,
    rt: Runtime,
    batch_size: int = 256,
) -> Tensor:
    """`extract_features`, remembered on disk under `cache_dir` (None: no caching).

    `key` names the data (simclr.data.dataset_key plus the split); the file name is the sha256 of
    `cache_identity` (encoder digest, key, resolution, N, mean/std, precision). An entry holds
    {"features", "digest", "key", "n", "identity", "images_sha256"}. A valid entry is returned without
    running (or touching) the encoder; a missing, truncated, garbage, wrong-shape, non-finite or mismatched
    one is recomputed and rewritten atomically. Non-finite features (a diverged encoder) are returned but
    not cached.
    """
    _check_images(images)
    if cache_dir is None:
        return extract_features(encoder, images, rt=rt, batch_size=batch_size)
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create feature cache directory {cache_dir} ({e.strerror or e})") from None
    identity = cache_identity(encoder, key=key, n=images.shape[0], precision=rt.precision)
    path, sha = cache_path(cache_dir, identity), images_sha256(images)
    features = _load_entry(path, identity, sha)
    if features is not None:
        return features
    features = extract_features(encoder, images, rt=rt, batch_size=batch_size)
    if torch.isfinite(features).all():
        entry = {"features": features, "digest": encoder.digest, "key": key, "n": identity["n"]}
        _write_entry(path, {**entry, "identity": identity, "images_sha256": sha})
    return features
