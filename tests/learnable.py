"""A CIFAR-format dataset that SimCLR learns within minutes on a CPU, and that a random encoder does not solve.

Each class is an *identicon*: a 5x5 binary glyph, mirror-symmetric about its vertical axis (so a horizontal flip
keeps it), drawn as solid cells on a square plate at a random position. Only the glyph's shape tells the class;
everything else is nuisance drawn afresh for every image:

- brightness: background, plate, glyph and each clutter rectangle get their own random value in [0.1, 1] (the
  glyph at least MIN_CONTRAST away from its plate, so it survives grayscale and contrast jitter);
- colour: one random hue and saturation (0-0.8) tints the whole image;
- clutter: rectangles of about a cell's size behind the plate, so edges and corners are no cue;
- geometry: the plate anywhere in the frame; at 32x32, cells of 3-5 pixels (glyphs of 15-25); pixel noise.

A random encoder's features follow the nuisance (at 16x16, 20 classes, chance 5%: its linear probe 11%, the
standardised kNN monitor 14%): global average pooling of random filters keeps local statistics, which every class
shares, and loses the arrangement of cells, which is the class. SimCLR's views (random resized crop, flip, colour
jitter, grayscale) keep the glyph and redraw most of the nuisance, so a contrastive encoder gains by encoding the
glyph: its probe reached 26% after 192 steps (tests/simclr/test_learning.py has the setting and budget).

Tried and dropped: every layer its own uniform random RGB colour. Colour is then each image's fingerprint, which
crops keep and colour jitter only partly hides: with the same setting the probe gained 4.6 points (10.0% to
14.6%) instead of 15.2.

`write_cifar100_archive` stores such a dataset in the official CIFAR-100 python layout (the format
tests.fakedata writes), so a study can run on it through the real loaders.
"""

from __future__ import annotations

import colorsys
import pickle
from pathlib import Path

import numpy as np
import torch

from tests.fakedata import CIFAR100_ARCHIVE, CIFAR100_DIR, _maybe_archive

GRID = 5  # glyph cells per side
HALF = (GRID + 1) // 2  # free columns of a mirror-symmetric glyph: 3, so 2**15 glyphs exist
MIN_HAMMING = 4  # cells in which any two classes' glyphs differ (of 25)
MIN_CONTRAST = 0.25  # brightness (value, 0-1) between glyph and plate
NOISE = 8.0  # pixel noise sd, grey levels


def glyphs(n_classes: int, seed: int = 1234) -> np.ndarray:
    """(n_classes, 5, 5) bool mirror-symmetric glyphs with 8-17 cells on, pairwise >= MIN_HAMMING cells apart.

    Drawn from their own seed: the classes are the same in every split, whatever seed draws the images.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    while len(chosen) < n_classes:
        left = rng.random((GRID, HALF)) < 0.5  # columns 0..2; 3 and 4 mirror 1 and 0
        glyph = np.concatenate([left, left[:, : GRID - HALF][:, ::-1]], axis=1)
        if not 8 <= glyph.sum() <= 17 or not (glyph[0].any() and glyph[:, 0].any()):
            continue  # too sparse or too dense to read, or shifted inside its frame
        if all((glyph != other).sum() >= MIN_HAMMING for other in chosen):
            chosen.append(glyph)
    return np.stack(chosen)


def _draw(glyph: np.ndarray, rng: np.random.Generator, size: int, clutter: int) -> np.ndarray:
    """One (3, size, size) float image (0-255) of `glyph` with fresh nuisance (see the module docstring)."""
    tint = 255 * np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.8), 1.0))  # (3,)

    def value(avoid: float | None = None) -> float:
        v = rng.uniform(0.1, 1.0)
        while avoid is not None and abs(v - avoid) < MIN_CONTRAST:
            v = rng.uniform(0.1, 1.0)
        return v

    img = np.full((size, size), value())  # brightness; tinted at the end
    for _ in range(clutter):  # behind the plate: the glyph is never covered
        h, w = rng.integers(max(1, size // 16), size // 4, size=2)  # 2-7 px at 32x32: about a cell
        top, left = rng.integers(0, size - 1, size=2)
        img[top : top + h, left : left + w] = value()
    smallest = max(2, round(size * 3 / 32))  # cells of 3-5 px at 32x32, 2 px at 16x16
    cell = int(rng.integers(smallest, max(smallest, size // (GRID + 1)) + 1))
    span = cell * (GRID + 1)  # the plate: the glyph plus half a cell of margin on each side
    top, left = rng.integers(0, size - span + 1, size=2)
    plate = value()
    img[top : top + span, left : left + span] = plate
    y, x = top + cell // 2, left + cell // 2
    mask = np.kron(glyph, np.ones((cell, cell), dtype=bool))  # (5 cell, 5 cell)
    img[y : y + GRID * cell, x : x + GRID * cell][mask] = value(avoid=plate)
    return img[None] * tint[:, None, None] + rng.normal(0, NOISE, (3, size, size))


def make_learnable(
    n_per_class: int, n_classes: int, *, seed: int = 0, size: int = 32, clutter: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, size, size) uint8 images and (N,) int64 labels, N = n_per_class * n_classes, classes shuffled.

    `seed` draws the nuisance and the order; the glyphs are fixed per class. size >= 12 (2-px cells); about 2k
    images per second on one core.
    """
    if size < 2 * (GRID + 1):
        raise ValueError(f"size must be >= {2 * (GRID + 1)}, got {size}")
    rng = np.random.default_rng(seed)
    shapes = glyphs(n_classes)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    rng.shuffle(labels)
    images = np.stack([_draw(shapes[c], rng, size, clutter) for c in labels])
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
    """Learnable 32x32 images in the official CIFAR-100 python layout (train drawn with `seed`, test with
    seed + 1): root/cifar-100-python.tar.gz (archive=True) or the extracted root/cifar-100-python/. Labels are
    the first `n_classes` of the 100 fine classes (the format always names 100). Returns the archive or folder."""
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
