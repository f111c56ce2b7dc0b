"""Small datasets written in the real CIFAR file formats, so tests load them through the real code path.

The official archives are Python-2 pickles of dicts with bytes keys whose `data` is a numpy uint8 array
(N, 3072) in CHW row order. We write the same structure (pickle protocol 2, numpy arrays) into the same
file names and the same .tar.gz archive names that torchvision's CIFAR classes expect.

Images are *learnable*: each class has its own colour and stripe orientation plus noise, so that a short
SimCLR or supervised run can be seen to learn something.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"


def make_images(n_per_class: int, n_classes: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) uint8 images and (N,) int64 labels, classes interleaved (not sorted)."""
    rng = np.random.default_rng(seed)
    class_rng = np.random.default_rng(1234)  # class prototypes do not depend on the split's seed
    colours = class_rng.uniform(40, 215, size=(n_classes, 3))
    angles = class_rng.uniform(0, np.pi, size=n_classes)
    freqs = class_rng.uniform(0.25, 0.9, size=n_classes)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    labels = np.tile(np.arange(n_classes), n_per_class)
    rng.shuffle(labels)
    images = np.empty((len(labels), 3, size, size), dtype=np.uint8)
    for i, c in enumerate(labels):
        phase = rng.uniform(0, 2 * np.pi)
        stripes = np.sin(freqs[c] * (np.cos(angles[c]) * xx + np.sin(angles[c]) * yy) + phase)
        img = colours[c][:, None, None] + 45 * stripes[None] + rng.normal(0, 12, size=(3, size, size))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(
    root: str | Path, n_train_per_class: int = 10, n_test_per_class: int = 4, *, archive: bool = True, seed: int = 0
) -> Path:
    """Write CIFAR-10 in the official python format: extracted folder or (archive=True) the .tar.gz."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / CIFAR10_DIR
    folder.mkdir(exist_ok=True)
    x, y = make_images(n_train_per_class, 10, seed=seed)
    batches = np.array_split(np.arange(len(y)), 5)
    for b, idx in enumerate(batches, start=1):
        _dump(
            folder / f"data_batch_{b}",
            {
                b"batch_label": f"training batch {b} of 5".encode(),
                b"labels": [int(v) for v in y[idx]],
                b"data": x[idx].reshape(len(idx), -1),
                b"filenames": [f"img_{i}.png".encode() for i in idx],
            },
        )
    xt, yt = make_images(n_test_per_class, 10, seed=seed + 1)
    _dump(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in yt],
            b"data": xt.reshape(len(yt), -1),
            b"filenames": [f"t_{i}.png".encode() for i in range(len(yt))],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(
        folder / "batches.meta",
        {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": len(batches[0]), b"num_vis": 3072},
    )
    return _maybe_archive(root, folder, CIFAR10_ARCHIVE, archive)


def write_cifar100(
    root: str | Path,
    n_train_per_class: int = 5,
    n_test_per_class: int = 2,
    *,
    archive: bool = True,
    seed: int = 0,
    n_classes: int = 100,
) -> Path:
    """Write CIFAR-100 in the official python format (fine and coarse labels, meta with names)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / CIFAR100_DIR
    folder.mkdir(exist_ok=True)
    for split, n, s in (("train", n_train_per_class, seed), ("test", n_test_per_class, seed + 1)):
        x, y = make_images(n, n_classes, seed=s)
        _dump(
            folder / split,
            {
                b"filenames": [f"{split}_{i}.png".encode() for i in range(len(y))],
                b"batch_label": f"{split}ing batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in y],
                b"coarse_labels": [int(v) // 5 for v in y],
                b"data": x.reshape(len(y), -1),
            },
        )
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [f"class_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"super_{i:02d}".encode() for i in range(20)],
        },
    )
    return _maybe_archive(root, folder, CIFAR100_ARCHIVE, archive)


def _maybe_archive(root: Path, folder: Path, name: str, archive: bool) -> Path:
    if not archive:
        return folder
    path = root / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return path


def write_image_folder(root: str | Path, n_per_class: int = 4, n_classes: int = 3, size: int = 40) -> Path:
    """An ImageFolder layout root/{train,test}/<class>/*.png (PNG via PIL, which torchvision depends on)."""
    from PIL import Image

    root = Path(root)
    for split, seed in (("train", 0), ("test", 1)):
        x, y = make_images(n_per_class, n_classes, size=size, seed=seed)
        for i, (img, c) in enumerate(zip(x, y, strict=True)):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(d / f"{i}.png")
    return root


def evil_pickle_bytes() -> bytes:
    """A pickle that, if loaded with pickle.load, would call os.system: the restricted loader must refuse it."""

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned > /tmp/simclr_pwned",))

    return pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2)


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote: bytes (and latin-1 str) as py2 `str` (BINSTRING opcodes, no
    _codecs.encode), numpy globals under `numpy.core` (the module name before numpy 2)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if isinstance(obj, str):
            try:
                obj = obj.encode("latin1")
            except UnicodeEncodeError:
                return pickle._Pickler.save_str(self, obj)
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)


def py2_pickle_dumps(obj) -> bytes:
    """`obj` pickled as Python 2 wrote the official CIFAR files (protocol 2, py2 str for bytes)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_cifar_py2(root: str | Path, dataset: str = "cifar10", *, archive: bool = True, **kwargs) -> Path:
    """Like write_cifar10/write_cifar100 (kwargs passed on), every pickle rewritten in the Python 2 format of the
    official files: loaded with encoding="latin1" (as torchvision does) the keys come out as str."""
    writer = write_cifar10 if dataset == "cifar10" else write_cifar100
    folder = writer(root, archive=False, **kwargs)
    for f in folder.iterdir():
        f.write_bytes(py2_pickle_dumps(pickle.loads(f.read_bytes())))
    name = CIFAR10_ARCHIVE if dataset == "cifar10" else CIFAR100_ARCHIVE
    return _maybe_archive(Path(root), folder, name, archive)
