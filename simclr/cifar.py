"""CIFAR-10/100 in the official python format: where the files are, how to read them without running code, and
what a valid file looks like; the download.

CIFAR files are Python pickles, and `pickle.load` runs whatever callables a file names. We read them with
`_RestrictedUnpickler`, which resolves only the handful of numpy globals an array needs; anything else is
refused before it is imported. Instead of file checksums we validate the structure (keys, shapes, dtype,
label ranges, class names), so users may bring CIFAR-format data of their own. Checksums are verified where
they mean something: on download (torchvision's `download_and_extract_archive` with the official md5).

Numpy only: `simclr.data.load_dataset` turns what `read_cifar` returns into an ImageSet. A process keeps the
splits it read (`_CACHE`, keyed by the files' path, size and modification time): `compare` runs a dozen studies in
one process, and reading a split from its archive costs seconds on a CPU.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import UserError, first_line


@dataclass(frozen=True)
class CifarSpec:
    name: str  # "cifar10" | "cifar100"; also the torchvision class (CIFAR10/CIFAR100) the download uses
    archive: str  # the official archive's file name
    folder: str  # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: str  # class names in the meta file
    labels_key: str  # labels in each batch file
    num_classes: int


SPECS = {
    "cifar10": CifarSpec(
        name="cifar10",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        names_key="label_names",
        labels_key="labels",
        num_classes=10,
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        names_key="fine_label_names",
        labels_key="fine_labels",
        num_classes=100,
    ),
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (carries "module.name")."""


def _numpy_global(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


try:  # numpy >= 2 moved numpy.core to numpy._core; py2-era CIFAR files name the old module
    _reconstruct = _numpy_global("numpy._core.multiarray", "_reconstruct")
    _scalar = _numpy_global("numpy._core.multiarray", "scalar")
    _frombuffer = _numpy_global("numpy._core.numeric", "_frombuffer")
except (ImportError, AttributeError):  # numpy 1.x
    _reconstruct = _numpy_global("numpy.core.multiarray", "_reconstruct")
    _scalar = _numpy_global("numpy.core.multiarray", "scalar")
    _frombuffer = _numpy_global("numpy.core.numeric", "_frombuffer")


def _plain_dtype(*args):
    """numpy.dtype, refusing object dtypes (an object array is a container for arbitrary pickled objects)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"object dtype {dtype} refused")
    return dtype


def _array_reconstruct(subtype, shape, typecode):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("numpy _reconstruct of a non-ndarray type refused")
    return _reconstruct(subtype, shape, typecode)


def _latin1_encode(text, encoding="utf-8"):
    """Python 3 pickles bytes at protocol <= 2 as _codecs.encode(str, 'latin1'); nothing else is admitted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} refused")
    return text.encode("latin1")


# What a CIFAR-format pickle may import. The official (Python 2) files need _reconstruct, ndarray and dtype;
# Python 3 writers add _codecs.encode (protocol 2 bytes), _frombuffer (protocol 5 arrays) and scalar (numpy
# ints in label lists). Each maps to a fixed object here: find_class never imports a module it is given.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _array_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _array_reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _reason(error: BaseException) -> str:
    """What went wrong inside a library call, in one line: "Type: first line of its message"."""
    return f"{type(error).__name__}: {first_line(error, 200)}"


def _unpickle(where: str, payload: bytes) -> dict[str, object]:
    """A CIFAR pickle's top-level dict with str keys; UserError naming `where` for anything else."""
    try:
        # latin1 as torchvision does: Python 2 str (keys, array bytes) become str that numpy accepts
        obj = _RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except _RefusedGlobal as e:
        raise UserError(f"{where}: refused to unpickle: the file imports {e}, which CIFAR data never needs") from None
    except Exception as e:  # untrusted bytes: any failure is a bad file, not a bug here
        raise UserError(f"{where}: not a readable CIFAR pickle (truncated or corrupt? {_reason(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a dict at the top of the pickle, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _require(where: str, entry: dict[str, object], key: str) -> object:
    if key not in entry:
        raise UserError(f"{where}: missing key {key!r} (keys: {', '.join(sorted(map(str, entry)))})")
    return entry[key]


def _check_batch(where: str, entry: dict[str, object], spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    data = _require(where, entry, "data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), found {found}")
    raw = _require(where, entry, spec.labels_key)
    try:
        labels = np.asarray(raw)
    except ValueError:  # ragged nesting
        labels = np.asarray([None])
    if labels.ndim == 1 and labels.size == 0:
        labels = labels.astype(np.int64)  # an empty list arrives as float64
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise UserError(
            f"{where}: {spec.labels_key!r} must be {len(data)} integers (one per row of 'data'), "
            f"found {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise UserError(
            f"{where}: {spec.labels_key!r} must lie in 0..{spec.num_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return data, labels.astype(np.int64)


def _check_names(where: str, entry: dict[str, object], spec: CifarSpec) -> list[str]:
    names = _require(where, entry, spec.names_key)
    ok = isinstance(names, (list, tuple)) and all(isinstance(n, (str, bytes)) for n in names)
    if not ok or len(names) != spec.num_classes:
        raise UserError(
            f"{where}: {spec.names_key!r} must list {spec.num_classes} class names, "
            f"found {len(names) if ok else type(names).__name__}"
        )
    return [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n for n in names]


def _read_folder(folder: Path, members: tuple[str, ...]) -> dict[str, tuple[str, bytes]]:
    out = {}
    for m in members:
        path = folder / m
        try:
            out[m] = (str(path), path.read_bytes())
        except OSError as e:
            raise UserError(f"{path}: cannot read ({_reason(e)})") from None
    return out


def _read_archive(archive: Path, folder: str, members: tuple[str, ...]) -> dict[str, tuple[str, bytes]]:
    """The named members of folder/ in the archive, in one streaming pass (no extraction, no seeking)."""
    wanted = {f"{folder}/{m}": m for m in members}
    out = {}
    try:
        with tarfile.open(archive, "r|*") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if info.isfile() and name in wanted:
                    out[wanted[name]] = (f"{archive}:{name}", tar.extractfile(info).read())
                    if len(out) == len(members):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(f"{archive}: cannot read the archive (truncated or corrupt? {_reason(e)})") from None
    missing = [f"{folder}/{m}" for m in members if m not in out]
    if missing:
        raise UserError(f"{archive}: the archive has no {', '.join(missing)}")
    return out


def _torchvision_source(spec: CifarSpec) -> tuple[str, str, str]:
    """(url, file name, md5) of the official archive, as torchvision's dataset class records them."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if spec.name == "cifar10" else CIFAR100
    return cls.url, cls.filename, cls.tgz_md5


def _where_to_put(specs: Sequence[CifarSpec], data_dir: Path) -> str:
    each = [f"{s.archive} ({_torchvision_source(s)[0]}) or its extracted folder {s.folder}/" for s in specs]
    return f"put {', and '.join(each)}{',' if len(each) > 1 else ''} into {data_dir.resolve()}"


def _fetch(spec: CifarSpec, data_dir: Path) -> str | None:
    """Download and extract `spec`'s archive into data_dir (md5 checked); why it failed, None when it did not."""
    from torchvision.datasets.utils import download_and_extract_archive

    url, filename, md5 = _torchvision_source(spec)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):  # progress and messages never land in a table on stdout
            download_and_extract_archive(url, str(data_dir), filename=filename, md5=md5)
    except Exception as e:  # offline, HTTP error, checksum mismatch (RuntimeError), disk full, bad archive
        (data_dir / filename).unlink(missing_ok=True)  # absent before we started: never leave half a file
        return _reason(e)
    return None


def _download(spec: CifarSpec, data_dir: Path) -> None:
    reason = _fetch(spec, data_dir)
    if reason is not None:
        url = _torchvision_source(spec)[0]
        raise UserError(f"{spec.name}: download of {url} failed ({reason}); {_where_to_put([spec], data_dir)}")


def require(names: Sequence[str], data_dir: Path, download: bool) -> None:
    """Each CIFAR dataset among `names` (other names are skipped) is in data_dir, as its folder or archive, or
    is downloaded there when `download`. Else one UserError names every archive still missing and where to put
    it: a user without network learns of both CIFARs at once, not of the second after placing the first."""
    missing = [SPECS[n] for n in dict.fromkeys(names) if n in SPECS and _source_key(SPECS[n], data_dir) is None]
    if not missing:
        return
    if not download:
        raise UserError(
            f"{' and '.join(s.name for s in missing)} not found: {_where_to_put(missing, data_dir)} "
            f"(or set download=true to fetch {'them' if len(missing) > 1 else 'it'})"
        )
    reasons = {s.name: _fetch(s, data_dir) for s in missing}
    failed = [s for s in missing if reasons[s.name] is not None]
    if failed:
        raise UserError(
            f"{' and '.join(s.name for s in failed)} not found and the download failed "
            f"({reasons[failed[0].name]}); {_where_to_put(failed, data_dir)}"
        )


def _cifar_files(spec: CifarSpec, data_dir: Path, members: tuple[str, ...], download: bool):
    """Raw bytes of `members`: from the extracted folder when complete (fastest), else from the archive."""
    folder, archive = data_dir / spec.folder, data_dir / spec.archive
    for attempt in range(2):
        if folder.is_dir() and all((folder / m).is_file() for m in members):
            return _read_folder(folder, members)
        if archive.is_file():
            return _read_archive(archive, spec.folder, members)
        if folder.is_dir():
            missing = ", ".join(m for m in members if not (folder / m).is_file())
            raise UserError(f"{folder}: incomplete CIFAR folder, missing {missing}; {_where_to_put([spec], data_dir)}")
        if attempt or not download:
            raise UserError(
                f"{spec.name} not found: {_where_to_put([spec], data_dir)}"
                + ("" if download else " (or set download=true to fetch it)")
            )
        _download(spec, data_dir)
    raise AssertionError("unreachable")


# (name, split, source identity) -> (images, labels, classes) read in this process; a few entries at most
_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, list[str]]] = {}
_CACHE_ENTRIES = 4  # CIFAR-10 and CIFAR-100, train and test: ~360 MB


def _source_key(spec: CifarSpec, data_dir: Path) -> tuple | None:
    """What identifies the files a split would be read from (None: nothing there yet)."""
    key = []
    for path in (data_dir / spec.folder, data_dir / spec.archive):
        files = sorted(path.iterdir()) if path.is_dir() else [path] if path.is_file() else []
        key += [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return tuple(key) or None


def read_cifar(name: str, split: str, data_dir: Path, download: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64, class names) of one split ("train" | "test") of "cifar10" or
    "cifar100", from data_dir (extracted folder or archive; downloaded there when absent and `download`). A split
    this process read before from the same files comes from memory, as a fresh copy."""
    source = _source_key(SPECS[name], data_dir)
    cached = _CACHE.get((name, split, source)) if source else None
    if cached is None:
        cached = _read_split(name, split, data_dir, download)
        while len(_CACHE) >= _CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[(name, split, _source_key(SPECS[name], data_dir))] = cached
    images, labels, classes = cached
    return images.copy(), labels.copy(), list(classes)


def _read_split(name: str, split: str, data_dir: Path, download: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = SPECS[name]
    batches = spec.train_files if split == "train" else spec.test_files
    files = _cifar_files(spec, data_dir, (*batches, spec.meta_file), download)
    where, payload = files[spec.meta_file]
    classes = _check_names(where, _unpickle(where, payload), spec)
    datas, labels = [], []
    for member in batches:
        where, payload = files.pop(member)  # drop each file's bytes as soon as it is parsed
        data, y = _check_batch(where, _unpickle(where, payload), spec)
        datas.append(data)
        labels.append(y)
    if sum(len(y) for y in labels) == 0:
        raise UserError(f"{data_dir / spec.folder}: the {split} split has no images")
    # rows are 1024 red, 1024 green, 1024 blue values in row-major 32x32 order: a reshape, no per-image work
    images = np.concatenate(datas).reshape(-1, 3, 32, 32)  # (N, 3, 32, 32), a fresh writable array
    return images, np.concatenate(labels), classes
