"""A CIFAR-shaped dataset that SimCLR can learn on a CPU, and a random encoder does not solve.

Each class is an *identicon*: a 5x5 binary glyph, mirror-symmetric about its vertical axis (so a horizontal flip
keeps it), drawn as solid cells on a square plate at a random position and scale. What identifies the class is
the glyph's shape only. Everything else is nuisance drawn afresh for every image:

- colours: glyph, plate and background colours are uniform random RGB (the glyph at least `MIN_CONTRAST` grey
  levels of luminance away from its plate, so it survives SimCLR's grayscale and jitter); colour carries no class
  information, but it dominates a random encoder's features (all positive after ReLU + average pooling, so mean
  colour and brightness set most of their direction);
- clutter: random coloured rectangles of about a cell's size behind the plate (edges and corners as strong as the
  glyph's, so "has edges" is no cue);
- geometry: cell size 3-5 pixels (glyphs of 15-25 pixels in a 32x32 image) anywhere in the frame; pixel noise.

SimCLR's views (random resized crop, flip, colour jitter, grayscale) keep the glyph and change the nuisance, so
a contrastive encoder has reason to encode the glyph and drop the colours: what a linear probe then reads off.

`write_cifar100_archive` stores such a dataset in the official CIFAR-100 python layout (the format of
tests.fakedata's writers), so a study can be run on it through the real loaders (e.g. the issue's 100 classes).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from tests.fakedata import CIFAR100_ARCHIVE, CIFAR100_DIR, _maybe_archive

GRID = 5  # glyph cells per side
HALF = (GRID + 1) // 2  # free columns of a mirror-symmetric glyph: 3, so 2**15 glyphs exist
MIN_CONTRAST = 60.0  # grey levels (ITU-R 601 luma) between glyph and plate
MIN_HAMMING = 4  # cells in which any two classes' glyphs differ (of 25)
LUMA = np.array([0.299, 0.587, 0.114])


def glyphs(n_classes: int, seed: int = 1234) -> np.ndarray:
    """(n_classes, 5, 5) bool mirror-symmetric glyphs with 8-17 cells on, pairwise >= MIN_HAMMING cells apart.

    Drawn from their own seed: the classes are the same in every split, whatever seed draws the images.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    while len(chosen) < n_classes:
        left = rng.random((GRID, HALF)) < 0.5  # columns 0..2; 3 and 4 mirror 1 and 0
        glyph = np.concatenate([left, left[:, : GRID - HALF][:, ::-1]], axis=1)
        if not 8 <= glyph.sum() <= 17 or glyph[:, 0].sum() + glyph[0].sum() == 0:
            continue  # too sparse or too dense to read, or not using its frame
        if all((glyph != other).sum() >= MIN_HAMMING for other in chosen):
            chosen.append(glyph)
    return np.stack(chosen)


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> np.ndarray:
    """A uniform random RGB colour whose luma differs from `against`'s by at least MIN_CONTRAST."""
    while True:
        colour = rng.uniform(0, 255, 3)
        if abs(LUMA @ colour - LUMA @ against) >= MIN_CONTRAST:
            return colour


def _layout(glyph: np.ndarray, rng: np.random.Generator, size: int, clutter: int, paint) -> np.ndarray:
    """One (3, size, size) float image: background, clutter, plate, glyph, each filled with paint(layer)."""
    img = np.empty((3, size, size))
    img[:] = paint("background")[:, None, None]
    for _ in range(clutter):  # behind the plate: the glyph is never covered
        h, w = rng.integers(max(1, size // 16), size // 4, size=2)  # 2-7 px at 32x32: about a cell
        top, left = rng.integers(0, size - 1, size=2)
        img[:, top : top + h, left : left + w] = paint("clutter")[:, None, None]
    smallest = max(2, round(size * 3 / 32))  # cells of 3-5 px at 32x32, 2 px at 16x16
    cell = int(rng.integers(smallest, max(smallest, size // (GRID + 1)) + 1))
    span = cell * (GRID + 1)  # the plate: the glyph plus half a cell of margin on each side
    top, left = rng.integers(0, size - span + 1, size=2)
    plate = paint("plate")
    img[:, top : top + span, left : left + span] = plate[:, None, None]
    mask = np.kron(glyph, np.ones((cell, cell), dtype=bool))  # (5 cell, 5 cell)
    y, x = top + cell // 2, left + cell // 2
    region = img[:, y : y + GRID * cell, x : x + GRID * cell]
    region[:, mask] = paint("glyph")[:, None]
    return img


def _random_painter(rng: np.random.Generator):
    """Every layer its own uniform random RGB colour (the glyph contrasting with the plate)."""
    last = {}

    def paint(layer: str) -> np.ndarray:
        colour = _contrasting_colour(rng, last["plate"]) if layer == "glyph" else rng.uniform(0, 255, 3)
        last[layer] = colour
        return colour

    return paint


def _tinted_painter(rng: np.random.Generator):
    """Layers differ in brightness only; one random hue and saturation tints the whole image."""
    import colorsys

    tint = 255 * np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.8), 1.0))
    last = {}

    def paint(layer: str) -> np.ndarray:
        value = rng.uniform(0.1, 1.0)
        while layer == "glyph" and abs(value - last["plate"]) < MIN_CONTRAST / 255:
            value = rng.uniform(0.1, 1.0)
        last[layer] = value
        return value * tint

    return paint


def _draw(glyph, rng, size, clutter, noise, colours):
    paint = _random_painter(rng) if colours == "random" else _tinted_painter(rng)
    return _layout(glyph, rng, size, clutter, paint) + rng.normal(0, noise, (3, size, size))


def make_learnable(
    n_per_class: int,
    n_classes: int,
    *,
    seed: int = 0,
    size: int = 32,
    clutter: int = 8,
    noise: float = 8.0,
    colours: str = "random",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, size, size) uint8 images and (N,) int64 labels, N = n_per_class * n_classes, classes shuffled.

    `seed` draws the nuisance (and the order); the glyphs are fixed per class. size >= 12 (2-px cells).
    About 2k images per second on one core.
    """
    if size < 2 * (GRID + 1):
        raise ValueError(f"size must be >= {2 * (GRID + 1)}, got {size}")
    rng = np.random.default_rng(seed)
    shapes = glyphs(n_classes)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    rng.shuffle(labels)
    images = np.stack([_draw(shapes[c], rng, size, clutter, noise, colours) for c in labels])
    return torch.from_numpy(np.clip(images, 0, 255).round().astype(np.uint8)), torch.from_numpy(labels)


def write_cifar100_archive(
    root: str | Path,
    n_train_per_class: int,
    n_test_per_class: int,
    n_classes: int = 100,
    *,
    seed: int = 0,
    archive: bool = True,
) -> Path:
    """Learnable images in the official CIFAR-100 python layout (train drawn with `seed`, test with seed + 1), as
    root/cifar-100-python.tar.gz (archive=True) or the extracted root/cifar-100-python/. Labels use the first
    `n_classes` of the 100 fine classes (the format always names 100). Returns the archive or folder."""
    folder = Path(root) / CIFAR100_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train_per_class, seed), ("test", n_test_per_class, seed + 1)):
        x, y = make_learnable(n, n_classes, seed=s)
        entry = {
            b"filenames": [f"{split}_{i}.png".encode() for i in range(len(y))],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": [int(v) for v in y],
            b"coarse_labels": [int(v) // 5 for v in y],
            b"data": x.numpy().reshape(len(y), -1),
        }
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {
        b"fine_label_names": [f"glyph_{i:02d}".encode() for i in range(100)],
        b"coarse_label_names": [f"glyphs_{i:02d}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return _maybe_archive(Path(root), folder, CIFAR100_ARCHIVE, archive)
