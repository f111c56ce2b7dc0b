"""Datasets as uint8 tensors: CIFAR-10/100 (official python format) and ImageFolder trees; nested subsets; splits.

Everything comes out as an `ImageSet`: images (N, 3, H, W) uint8, labels (N,) int64, class names.

CIFAR files (their format, safe unpickling, checks, download) are read by simclr.cifar; this module turns them
and ImageFolder trees into ImageSets and draws the subsets and splits of the protocol (DESIGN.md).

Randomness in subsets and splits does not come from a library RNG: every sample gets a key
`splitmix64(stream, index)` and each class is ordered by key. A library upgrade cannot change which images
a (seed, fraction) selects, and taking a prefix of each class's order makes subsets nested across fractions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from errors import UserError, first_line
from simclr import cifar
from simclr.config import DataConfig

# Per-channel statistics of the train sets (the values the CIFAR literature uses), and ImageNet's.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Bumped whenever the subset/split algorithm changes, so feature-cache keys built by dataset_key change too.
SPLIT_VERSION = 1

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]  # label i is classes[i]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 (N,), got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: torch.Tensor) -> ImageSet:
        """The images at `idx` (int indices or a bool mask), copied; class names unchanged."""
        return ImageSet(self.images[idx].contiguous(), self.labels[idx].contiguous(), list(self.classes))


# ---------------------------------------------------------------------------------------------------------
# ImageFolder layout: PATH/{train,test}/<class>/<image files>


def _class_dirs(split_dir: Path) -> list[str]:
    """Class folder names, sorted (as torchvision's ImageFolder); hidden folders (.ipynb_checkpoints) skipped."""
    return sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))


def _decode(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: shorter side resized to `size` (PIL bilinear, antialiased when shrinking), then a
    centre crop -- torchvision's Resize(size) + CenterCrop(size), so the aspect ratio is kept, not stretched."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: cannot decode image ({type(e).__name__}: {first_line(e, 200)})") from None


def _load_folder(root: Path, split: str, image_size: int) -> ImageSet:
    if image_size <= 0:
        raise UserError(f"image_size={image_size}: must be > 0")
    train_dir, split_dir = root / "train", root / split
    for d in (train_dir, split_dir):
        if not d.is_dir():
            raise UserError(f"{d}: no such folder (a folder dataset needs {root}/train/<class>/ and test/<class>/)")
    classes = _class_dirs(train_dir)  # the test split is labelled with the train split's classes
    if not classes:
        raise UserError(f"{train_dir}: no class folders")
    extra = sorted(set(_class_dirs(split_dir)) - set(classes))
    if extra:
        raise UserError(f"{split_dir}: class folders not in {train_dir}: {', '.join(extra)}")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(
            p
            for p in (split_dir / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        files += found
        labels += [label] * len(found)
    if not files:
        raise UserError(f"{split_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)  # (N, 3, S, S)
    for i, path in enumerate(files):  # PIL per image is fine here: loading, not the training loop
        images[i] = _decode(path, image_size)
    return ImageSet(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64), classes)


def _folder_root(name: str) -> Path | None:
    """PATH of "folder:PATH" (relative to the current directory), None for other names."""
    if not name.startswith("folder:"):
        return None
    if not name[len("folder:") :]:
        raise UserError("dataset 'folder:' needs a path: folder:PATH with PATH/train/<class>/ and PATH/test/<class>/")
    return Path(name[len("folder:") :]).expanduser()


def load_dataset(
    name: str, split: str, data_dir: str | Path, *, download: bool = True, image_size: int = 32
) -> ImageSet:
    """One split of a dataset. name: "cifar10" | "cifar100" | "folder:PATH"; split: "train" | "test".

    CIFAR is read from data_dir (extracted folder or archive; downloaded there when absent and `download`) and
    is always 32x32: `image_size` applies to folder datasets only.
    """
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; use train or test")
    root = _folder_root(name)
    if root is not None:
        return _load_folder(root, split, image_size)
    if name not in cifar.SPECS:
        raise UserError(f"unknown dataset {name!r}; use cifar10, cifar100 or folder:PATH")
    images, labels, classes = cifar.read_cifar(name, split, Path(data_dir).expanduser(), download)
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), classes)


def require_datasets(cfg: DataConfig, names: list[str]) -> None:
    """The CIFAR datasets among `names` are in cfg.data_dir (downloaded there when cfg.download), else one UserError
    naming every missing archive (simclr.cifar.require); folder: datasets are checked when they are read."""
    cifar.require(names, Path(cfg.data_dir).expanduser(), cfg.download)


def stats_for(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) per channel for normalising a dataset. Folder datasets get ImageNet's statistics: a standard
    choice for natural images that needs no pass over the data (and keeps them independent of the subset)."""
    if name == "cifar10":
        return CIFAR10_MEAN, CIFAR10_STD
    if name == "cifar100":
        return CIFAR100_MEAN, CIFAR100_STD
    if _folder_root(name) is not None:
        return IMAGENET_MEAN, IMAGENET_STD
    raise UserError(f"unknown dataset {name!r}; use cifar10, cifar100 or folder:PATH")


# ---------------------------------------------------------------------------------------------------------
# Subsets and splits


_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014): a bijection on uint64 that scrambles every bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _class_ranks(labels: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank of each sample within its class under a seeded random order, class index per sample, class sizes)."""
    y = torch.as_tensor(labels).cpu().numpy()
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise ValueError(f"labels must be a 1-D integer tensor, got {y.dtype} of shape {y.shape}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    # keys splitmix64(seed' + golden * (i + 1)) are distinct for distinct i (a bijection): no ties to break
    start = _splitmix64(np.array([seed & _MASK64], dtype=np.uint64))
    keys = _splitmix64(start + np.uint64(0x9E3779B97F4A7C15) * np.arange(1, len(y) + 1, dtype=np.uint64))
    order = np.lexsort((keys, inverse))  # grouped by class, random within each class
    first = np.cumsum(counts) - counts  # (C,) position of each class's first sample in `order`
    rank = np.empty(len(y), dtype=np.int64)
    rank[order] = np.arange(len(y)) - first[inverse[order]]
    return rank, inverse.reshape(-1), counts


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted int64 indices of round(fraction * n_c) samples of every class c (at least 1), seeded.

    Each class is put in a seeded random order and its first samples are taken, so for one seed the subsets
    are nested: fraction 0.1 is inside fraction 0.25. Rounding is half up.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"fraction={fraction!r}: must be in (0, 1]")
    rank, inverse, counts = _class_ranks(labels, seed)
    take = np.maximum(_round_half_up(counts * fraction), 1)  # (C,)
    return torch.from_numpy(np.flatnonzero(rank < take[inverse]).astype(np.int64))


def probe_split(labels: torch.Tensor, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) sorted int64 indices: round(val_fraction * n_c) of every class c go to val, seeded.

    Disjoint and covering. With val_fraction > 0 every class with two or more samples has at least one val and
    one train sample. CIFAR-100 train (500 per class) with 0.1 gives 45,000 / 5,000 (50 val per class).
    """
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction={val_fraction!r}: must be in [0, 1)")
    rank, inverse, counts = _class_ranks(labels, seed)
    n_val = _round_half_up(counts * val_fraction)
    if val_fraction > 0:
        n_val = np.maximum(n_val, 1)
    n_val = np.clip(n_val, 0, counts - 1)  # keep one train sample per class
    is_val = rank < n_val[inverse]
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))


def _stream_seed(seed: int, purpose: str) -> int:
    """An independent seed per purpose, so that e.g. the probe-val draw (val_fraction 0.1) is not the same
    draw as a 10% pretraining subset of the same dataset with the same seed."""
    return int.from_bytes(hashlib.sha256(f"simclr.data/{purpose}/{seed}".encode()).digest()[:8], "little")


def load_pretrain_set(cfg: DataConfig, data_fraction: float, seed: int) -> ImageSet:
    """The train split of cfg.pretrain_data, reduced to stratified_subset(labels, data_fraction, seed).

    The seed is used as is (no purpose offset), so the subset a run used is reproducible with one call.
    """
    train = load_dataset(cfg.pretrain_data, "train", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    if data_fraction == 1:
        return train
    return train.subset(stratified_subset(train.labels, data_fraction, seed))


def load_probe_splits(cfg: DataConfig, seed: int) -> dict[str, ImageSet]:
    """{"train", "val", "test"} of cfg.probe_data for the linear protocol and supervised training.

    Train split -> stratified cfg.probe_fraction subset -> probe_split(cfg.val_fraction) into train / val -> train
    reduced to its stratified cfg.label_fraction (label efficiency: nested across fractions, every class kept, val
    the same images at every fraction so that runs at different fractions are selected and compared alike).
    Test split -> stratified cfg.test_fraction subset. The subset and split draws use seeds derived from `seed`
    per purpose (_stream_seed); the test subset ignores `seed`, so every run is scored on the same test images.
    """
    train = load_dataset(cfg.probe_data, "train", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    test = load_dataset(cfg.probe_data, "test", cfg.data_dir, download=cfg.download, image_size=cfg.image_size)
    if cfg.probe_fraction != 1:
        train = train.subset(stratified_subset(train.labels, cfg.probe_fraction, _stream_seed(seed, "probe_fraction")))
    train_idx, val_idx = probe_split(train.labels, cfg.val_fraction, _stream_seed(seed, "probe_split"))
    if cfg.label_fraction != 1:
        labelled = stratified_subset(train.labels[train_idx], cfg.label_fraction, _stream_seed(seed, "label_fraction"))
        train_idx = train_idx[labelled]
    if cfg.test_fraction != 1:
        test = test.subset(stratified_subset(test.labels, cfg.test_fraction, _stream_seed(0, "test_fraction")))
    return {"train": train.subset(train_idx), "val": train.subset(val_idx), "test": test}


def dataset_key(name: str, split: str, *, image_size: int = 32, **selection: object) -> str:
    """A stable string naming some data, e.g. "cifar100/train/probe_fraction=1.0,seed=0,v=1".

    Folder datasets are named by their absolute path and image_size; `selection` (fractions, seeds, which
    part) is appended in sorted order with SPLIT_VERSION. Used in feature-cache keys: it must change whenever
    the images could.
    """
    root = _folder_root(name)
    base = f"folder:{root.resolve()}@{image_size}" if root is not None else name
    pairs = ",".join(f"{k}={selection[k]!r}" for k in sorted(selection))
    return f"{base}/{split}/{pairs + ',' if pairs else ''}v={SPLIT_VERSION}"


def probe_data_key(cfg: DataConfig, seed: int) -> str:
    """dataset_key of load_probe_splits(cfg, seed); append the part ("train" | "val" | "test") per split.
    label_fraction is named only below 1, so the keys of caches written before it existed still hold."""
    labels = {"label_fraction": float(cfg.label_fraction)} if cfg.label_fraction != 1 else {}
    return dataset_key(
        cfg.probe_data,
        "probe",
        image_size=cfg.image_size,
        probe_fraction=float(cfg.probe_fraction),
        val_fraction=float(cfg.val_fraction),
        test_fraction=float(cfg.test_fraction),
        seed=seed,
        **labels,
    )
