"""simclr.data: CIFAR archives through the real code path, the restricted unpickler, folders, subsets, splits."""

from __future__ import annotations

import os
import pickle
import re
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from errors import UserError
from simclr import cifar, data
from simclr.config import DataConfig
from simclr.data import (
    ImageSet,
    dataset_key,
    load_dataset,
    load_pretrain_set,
    load_probe_splits,
    probe_data_key,
    probe_split,
    stats_for,
    stratified_subset,
)
from tests import fakedata

# name -> (writer, per-class train/test counts the writers use below, classes, batch file with labels, labels key)
SPECS = {
    "cifar10": (fakedata.write_cifar10, (6, 2), 10, "data_batch_1", "labels"),
    "cifar100": (fakedata.write_cifar100, (2, 1), 100, "train", "fine_labels"),
}


def write(name: str, root: Path, *, archive: bool, py2: bool = False) -> Path:
    writer, (n_train, n_test), *_ = SPECS[name]
    if py2:
        return fakedata.write_cifar_py2(root, name, archive=archive, n_train_per_class=n_train, n_test_per_class=n_test)
    return writer(root, n_train, n_test, archive=archive)


def expected(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    _, (n_train, n_test), n_classes, *_ = SPECS[name]
    return fakedata.make_images(n_train if split == "train" else n_test, n_classes, seed=0 if split == "train" else 1)


def test_file_names_match_torchvision():
    from torchvision.datasets import CIFAR10, CIFAR100

    for spec, cls in ((cifar.SPECS["cifar10"], CIFAR10), (cifar.SPECS["cifar100"], CIFAR100)):
        assert (spec.archive, spec.folder, spec.meta_file, spec.names_key) == (
            cls.filename,
            cls.base_folder,
            cls.meta["filename"],
            cls.meta["key"],
        )
        assert spec.train_files == tuple(f for f, _ in cls.train_list)
        assert spec.test_files == tuple(f for f, _ in cls.test_list)


@pytest.mark.parametrize("py2", [False, True], ids=["py3-pickles", "py2-pickles"])
@pytest.mark.parametrize("archive", [True, False], ids=["archive", "folder"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_what_was_written(tmp_path, name, archive, py2):
    write(name, tmp_path, archive=archive, py2=py2)
    for split in ("train", "test"):
        got = load_dataset(name, split, tmp_path, download=False)
        x, y = expected(name, split)
        assert got.images.dtype == torch.uint8 and got.images.is_contiguous()
        assert got.labels.dtype == torch.int64
        assert torch.equal(got.images, torch.from_numpy(x))
        assert torch.equal(got.labels, torch.from_numpy(y))
        assert got.num_classes == SPECS[name][2]
    assert got.classes[:2] == (["airplane", "automobile"] if name == "cifar10" else ["class_00", "class_01"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_equals_torchvision(tmp_path, monkeypatch, name):
    import torchvision.datasets.cifar as tv

    # torchvision checks the official md5 of every file, which our small files cannot match
    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv, "check_integrity", lambda *a, **k: True)
    write(name, tmp_path, archive=False, py2=True)  # the official (Python 2) pickle layout torchvision expects
    cls = tv.CIFAR10 if name == "cifar10" else tv.CIFAR100
    for split in ("train", "test"):
        ref = cls(str(tmp_path), train=split == "train", download=False)
        got = load_dataset(name, split, tmp_path, download=False)
        assert torch.equal(got.images.permute(0, 2, 3, 1), torch.from_numpy(ref.data))  # torchvision keeps HWC
        assert got.labels.tolist() == ref.targets
        assert got.classes == ref.classes


def test_a_split_read_again_comes_from_memory_until_its_files_change(tmp_path, monkeypatch):
    write("cifar10", tmp_path, archive=True)
    first = load_dataset("cifar10", "train", tmp_path, download=False)
    reads = []
    monkeypatch.setattr(cifar, "_read_archive", lambda *a: reads.append(a) or pytest.fail("read the archive again"))
    first.images[0] = 0  # a caller's change to what it got does not reach the next caller
    again = load_dataset("cifar10", "train", tmp_path, download=False)
    assert torch.equal(again.images, torch.from_numpy(expected("cifar10", "train")[0]))
    monkeypatch.undo()
    fakedata.write_cifar10(tmp_path, n_train_per_class=3, n_test_per_class=1, archive=True, seed=5)  # new files
    changed = load_dataset("cifar10", "train", tmp_path, download=False)
    assert len(changed) == 30 and not torch.equal(changed.images[:30], again.images[:30])


def test_folder_preferred_over_archive_and_archive_used_when_folder_incomplete(tmp_path):
    write("cifar10", tmp_path, archive=True)
    (tmp_path / "cifar-10-batches-py").mkdir()  # an interrupted extraction: empty folder next to the archive
    assert len(load_dataset("cifar10", "test", tmp_path, download=False)) == 20


def _batch_path(tmp_path: Path, name: str) -> Path:
    return tmp_path / cifar.SPECS[name].folder / SPECS[name][3]


def _rewrite(path: Path, change) -> None:
    entry = pickle.loads(path.read_bytes())
    change(entry)
    path.write_bytes(pickle.dumps(entry, protocol=2))


def _set(key, value):
    return lambda entry: entry.__setitem__(key, value(entry) if callable(value) else value)


MALFORMED = {
    "data-shape": (_set(b"data", lambda e: e[b"data"].reshape(-1, 3, 32, 32)), "shape (N, 3072)"),
    "data-width": (_set(b"data", lambda e: e[b"data"][:, :3000].copy()), "shape (N, 3072)"),
    "data-dtype": (_set(b"data", lambda e: e[b"data"].astype(np.float32)), "uint8"),
    "data-not-array": (_set(b"data", [1, 2, 3]), "uint8"),
    "label-range": (_set("LABELS", lambda e: [1000] + e["LABELS"][1:]), "must lie in"),
    "label-negative": (_set("LABELS", lambda e: [-1] + e["LABELS"][1:]), "must lie in"),
    "label-count": (_set("LABELS", lambda e: e["LABELS"][:-1]), "one per row"),
    "label-type": (_set("LABELS", lambda e: ["cat"] * len(e["LABELS"])), "integers"),
    "missing-data": (lambda e: e.pop(b"data"), "missing key 'data'"),
    "missing-labels": (lambda e: e.pop("LABELS"), "missing key"),
}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_batch_names_file_and_problem(tmp_path, name, case):
    change, message = MALFORMED[case]
    labels_key = SPECS[name][4].encode()

    def apply(entry):  # the labels key differs per dataset: "LABELS" stands for it
        entry["LABELS"] = entry.pop(labels_key)
        change(entry)
        if "LABELS" in entry:
            entry[labels_key] = entry.pop("LABELS")

    write(name, tmp_path, archive=False)
    path = _batch_path(tmp_path, name)
    _rewrite(path, apply)
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_dataset(name, "train", tmp_path, download=False)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_wrong_class_name_count(tmp_path, name):
    write(name, tmp_path, archive=False)
    meta = tmp_path / cifar.SPECS[name].folder / cifar.SPECS[name].meta_file
    key = cifar.SPECS[name].names_key.encode()
    _rewrite(meta, _set(key, lambda e: e[key][:-1]))
    with pytest.raises(UserError, match=f"{SPECS[name][2]} class names") as info:
        load_dataset(name, "test", tmp_path, download=False)
    assert str(meta) in str(info.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/simclr_pwned",))


def _evil_bytes(kind: str) -> bytes:
    if kind == "fakedata":
        return fakedata.evil_pickle_bytes()
    if kind == "protocol5":  # STACK_GLOBAL rather than GLOBAL
        return pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=5)
    if kind == "object-array":  # an object array is a container for anything: refused by dtype
        return pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": [0]}, protocol=2)
    if kind == "codecs":  # _codecs.encode is admitted only for latin1
        return b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x06\x00\x00\x00base64\x86R."
    if kind == "truncated":
        return fakedata.py2_pickle_dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:3000]
    if kind == "garbage":
        return b"this is not a pickle at all"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["fakedata", "protocol5", "object-array", "codecs", "truncated", "garbage"])
@pytest.mark.parametrize("archive", [False, True], ids=["folder", "archive"])
def test_bad_pickles_refused_without_executing(tmp_path, kind, archive):
    pwned = Path("/tmp/simclr_pwned")
    pwned.unlink(missing_ok=True)
    write("cifar10", tmp_path, archive=False)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes(_evil_bytes(kind))
    where = str(folder / "test_batch")
    if archive:
        members = {f"cifar-10-batches-py/{f.name}": f.read_bytes() for f in folder.iterdir()}
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(fakedata.tar_bytes(members))
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        where = f"{tmp_path / 'cifar-10-python.tar.gz'}:cifar-10-batches-py/test_batch"
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", "test", tmp_path, download=False)
    assert where in str(info.value) and "\n" not in str(info.value)
    if kind in ("fakedata", "protocol5"):
        assert "posix.system" in str(info.value) or "os.system" in str(info.value)
    assert not pwned.exists()


def test_truncated_archive(tmp_path):
    archive = write("cifar10", tmp_path, archive=True)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UserError, match="cannot read the archive") as info:
        load_dataset("cifar10", "train", tmp_path, download=False)
    assert str(archive) in str(info.value)


def test_archive_missing_member(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(fakedata.tar_bytes({"cifar-100-python/meta": b"x"}))
    with pytest.raises(UserError, match="has no cifar-100-python/test"):
        load_dataset("cifar100", "test", tmp_path, download=False)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_without_download(tmp_path, name):
    with pytest.raises(UserError) as info:
        load_dataset(name, "train", tmp_path / "nothing", download=False)
    msg = str(info.value)
    assert cifar.SPECS[name].archive in msg and cifar.SPECS[name].folder in msg
    assert str((tmp_path / "nothing").resolve()) in msg


def test_download_offline_is_a_user_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(url, download_root, filename=None, md5=None, **kwargs):
        Path(download_root, filename).write_bytes(b"partial")  # what a broken transfer leaves behind
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(UserError, match="download of https://.*cifar-10-python.tar.gz failed.*no network") as info:
        load_dataset("cifar10", "train", tmp_path / "d", download=True)
    assert str((tmp_path / "d").resolve()) in str(info.value)
    assert not (tmp_path / "d" / "cifar-10-python.tar.gz").exists()


def test_download_uses_official_url_and_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu
    from torchvision.datasets import CIFAR100

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append((url, filename, md5))
        write("cifar100", Path(download_root), archive=False)  # as if downloaded and extracted

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    got = load_dataset("cifar100", "test", tmp_path, download=True)
    assert calls == [(CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5)]
    assert torch.equal(got.labels, torch.from_numpy(expected("cifar100", "test")[1]))
    load_dataset("cifar100", "train", tmp_path, download=True)
    assert len(calls) == 1  # present now: no second download


def test_every_missing_archive_is_named_in_one_message(tmp_path):
    """Not one archive per run: a user without network places both CIFARs after one message."""
    cfg = DataConfig(data_dir=str(tmp_path), download=False)
    with pytest.raises(UserError) as info:
        data.require_datasets(cfg, ["cifar10", "folder:elsewhere", "cifar100", "cifar10"])
    msg = str(info.value)
    assert msg.startswith("cifar10 and cifar100 not found: put cifar-10-python.tar.gz (https://")
    assert "or its extracted folder cifar-100-python/, into " + str(tmp_path.resolve()) in msg
    assert msg.endswith("(or set download=true to fetch them)") and "\n" not in msg
    write("cifar100", tmp_path, archive=True)  # one there: only the other is named
    with pytest.raises(UserError, match=r"^cifar10 not found: put cifar-10-python\.tar\.gz .*fetch it\)$"):
        data.require_datasets(cfg, ["cifar10", "cifar100"])
    write("cifar10", tmp_path, archive=False)
    data.require_datasets(cfg, ["cifar10", "cifar100"])  # both there: no error


def test_every_failed_download_is_named_in_one_message(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    tried = []

    def offline(url, download_root, filename=None, md5=None, **kwargs):
        tried.append(filename)
        Path(download_root, filename).write_bytes(b"partial")  # what a broken transfer leaves behind
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(UserError) as info:
        data.require_datasets(DataConfig(data_dir=str(tmp_path / "d"), download=True), ["cifar10", "cifar100"])
    msg = str(info.value)
    assert tried == ["cifar-10-python.tar.gz", "cifar-100-python.tar.gz"]
    assert msg.startswith("cifar10 and cifar100 not found and the download failed (URLError: ")
    assert "cifar-10-python.tar.gz" in msg and "cifar-100-python.tar.gz" in msg
    assert list((tmp_path / "d").iterdir()) == []  # no half-downloaded archive left


@pytest.mark.parametrize("name, split", [("cifar1000", "train"), ("cifar10", "val"), ("folder:", "train")])
def test_unknown_name_or_split(tmp_path, name, split):
    with pytest.raises(UserError):
        load_dataset(name, split, tmp_path, download=False)


# ----------------------------------------------------------------------------------------------- folders


def test_folder_dataset_resized_and_sorted(tmp_path):
    from PIL import Image
    from torchvision.transforms import CenterCrop, Compose, PILToTensor, Resize

    root = fakedata.write_image_folder(tmp_path / "imgs", n_per_class=3, n_classes=3, size=40)
    wide = np.random.default_rng(0).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)  # H=30, W=50
    Image.fromarray(wide).save(root / "train" / "class_1" / "wide.png")
    (root / "train" / "class_1" / "notes.txt").write_text("not an image: ignored")
    got = load_dataset(f"folder:{root}", "train", "unused", image_size=24)
    assert got.classes == ["class_0", "class_1", "class_2"]
    assert got.images.shape == (10, 3, 24, 24) and got.images.dtype == torch.uint8
    assert got.labels.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    reference = Compose([Resize(24), CenterCrop(24), PILToTensor()])  # torchvision's PIL path
    files = sorted((root / "train" / "class_1").glob("*.png"))
    for i, f in enumerate(files):
        with Image.open(f) as img:
            assert torch.equal(got.images[3 + i], reference(img.convert("RGB")))
    test = load_dataset(f"folder:{root}", "test", "unused", image_size=24)
    assert test.classes == got.classes and len(test) == 9


def _bad_folder(root: Path, case: str) -> str:
    fakedata.write_image_folder(root, n_per_class=1, n_classes=2, size=8)
    if case == "no-test":
        for f in (root / "test").rglob("*.png"):
            f.unlink()
        for d in (root / "test").iterdir():
            d.rmdir()
        (root / "test").rmdir()
        return str(root / "test")
    if case == "no-classes":
        return _bad_folder_no_classes(root)
    if case == "no-images":
        for f in (root / "test").rglob("*.png"):
            f.unlink()
        return str(root / "test")
    if case == "undecodable":
        (root / "test" / "class_0" / "broken.png").write_bytes(b"\x89PNG not really")
        return str(root / "test" / "class_0" / "broken.png")
    if case == "extra-class":
        (root / "test" / "class_9").mkdir()
        return "class_9"
    raise AssertionError(case)


def _bad_folder_no_classes(root: Path) -> str:
    for f in (root / "train").rglob("*.png"):
        f.unlink()
    for d in (root / "train").iterdir():
        d.rmdir()
    return str(root / "train")


@pytest.mark.parametrize("case", ["no-test", "no-classes", "no-images", "undecodable", "extra-class"])
def test_bad_folder(tmp_path, case):
    where = _bad_folder(tmp_path / "f", case)
    with pytest.raises(UserError) as info:
        load_dataset(f"folder:{tmp_path / 'f'}", "test", tmp_path, image_size=8)
    assert where in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- subsets


def _uneven_labels(seed: int = 0) -> torch.Tensor:
    sizes = [1, 2, 3, 7, 10, 40, 101]  # classes 0..6 with very different sizes, shuffled
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))], sizes


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_stratified_subset_nested_and_proportional(seed):
    labels, sizes = _uneven_labels()
    previous = set()
    for fraction in (0.01, 0.1, 0.25, 0.5, 0.9, 1.0):
        idx = stratified_subset(labels, fraction, seed)
        assert idx.dtype == torch.int64 and torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == len(idx)
        counts = torch.bincount(labels[idx], minlength=len(sizes)).tolist()
        assert counts == [max(1, int(np.floor(fraction * n + 0.5))) for n in sizes]
        assert previous <= set(idx.tolist())  # nested
        previous = set(idx.tolist())
    assert previous == set(range(len(labels)))


def test_stratified_subset_seeded():
    labels = torch.arange(1000) % 10
    a = stratified_subset(labels, 0.3, 7)
    assert torch.equal(a, stratified_subset(labels, 0.3, 7))
    assert not torch.equal(a, stratified_subset(labels, 0.3, 8))
    assert torch.equal(a, stratified_subset(labels.numpy(), 0.3, 7))  # a numpy array works too


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_stratified_subset_rejects_fraction(fraction):
    with pytest.raises(UserError):
        stratified_subset(torch.zeros(5, dtype=torch.int64), fraction, 0)


def test_probe_split_cifar100_sizes():
    labels = torch.arange(50_000) % 100  # CIFAR-100 train: 500 per class
    train, val = probe_split(labels, 0.1, seed=0)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert torch.bincount(labels[val], minlength=100).tolist() == [50] * 100
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(50_000))  # disjoint, covering
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    assert torch.equal(val, probe_split(labels, 0.1, seed=0)[1])
    assert not torch.equal(val, probe_split(labels, 0.1, seed=1)[1])


def test_probe_split_small_classes():
    labels, sizes = _uneven_labels()
    train, val = probe_split(labels, 0.2, seed=3)
    val_counts = torch.bincount(labels[val], minlength=len(sizes)).tolist()
    assert val_counts == [0, 1, 1, 1, 2, 8, 20]  # >= 1 per class, but a one-sample class stays in train
    assert len(set(train.tolist()) & set(val.tolist())) == 0 and len(train) + len(val) == len(labels)
    assert len(probe_split(labels, 0.0, seed=3)[1]) == 0


# ----------------------------------------------------------------------------------------------- configs


def test_load_probe_splits(tmp_path):
    fakedata.write_cifar100(tmp_path, 10, 4, archive=False)  # 1000 train, 400 test
    cfg = DataConfig(
        data_dir=str(tmp_path),
        download=False,
        probe_data="cifar100",
        probe_fraction=0.5,
        val_fraction=0.2,
        test_fraction=0.5,
    )
    splits = load_probe_splits(cfg, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 400, "val": 100, "test": 200}
    for part in splits.values():
        assert torch.bincount(part.labels, minlength=100).min() >= 1 and part.num_classes == 100
    rows = {bytes(img.numpy()) for part in ("train", "val") for img in splits[part].images}
    assert len(rows) == 500  # train and val are disjoint images
    again = load_probe_splits(cfg, seed=0)
    assert torch.equal(again["val"].images, splits["val"].images)
    other = load_probe_splits(cfg, seed=1)
    assert not torch.equal(other["val"].images, splits["val"].images)
    assert torch.equal(other["test"].images, splits["test"].images)  # the test subset does not follow the seed


def test_label_fractions_are_nested_class_balanced_and_keep_val_and_test(tmp_path):
    """Label efficiency: a label fraction reduces probe-train only, keeps every class, nests across fractions, and
    leaves probe-val and test the same images (each point is selected and scored alike); its cache key differs
    from the full set's while the full set's key is what it was before the key existed."""
    fakedata.write_cifar100(tmp_path, 20, 2, archive=False)  # 2000 train, 200 test
    base = DataConfig(data_dir=str(tmp_path), download=False, probe_data="cifar100", val_fraction=0.1)
    full = load_probe_splits(base, seed=3)
    parts = {f: load_probe_splits(replace(base, label_fraction=f), seed=3) for f in (0.1, 0.5)}
    rows = lambda s: {bytes(img.numpy()) for img in s.images}  # noqa: E731
    assert [len(parts[f]["train"]) for f in (0.1, 0.5)] == [200, 900]  # 18 per class: 2 and 9
    for splits in parts.values():
        assert torch.equal(splits["val"].images, full["val"].images)
        assert torch.equal(splits["test"].images, full["test"].images)
        assert torch.bincount(splits["train"].labels, minlength=100).min() >= 1
        assert rows(splits["train"]) <= rows(full["train"])
    assert rows(parts[0.1]["train"]) <= rows(parts[0.5]["train"])  # nested
    keys = {f: probe_data_key(replace(base, label_fraction=f), 3) for f in (0.1, 0.5, 1.0)}
    assert len(set(keys.values())) == 3 and "label_fraction" not in keys[1.0]


def test_probe_val_is_not_the_pretraining_draw(tmp_path):
    fakedata.write_cifar10(tmp_path, 20, 1, archive=False)
    cfg = DataConfig(data_dir=str(tmp_path), download=False, pretrain_data="cifar10", probe_data="cifar10")
    val = load_probe_splits(cfg, seed=0)["val"]
    pre = load_pretrain_set(cfg, 0.1, seed=0)
    assert len(val) == len(pre) == 20 and not torch.equal(val.images, pre.images)


def test_load_pretrain_set_nested(tmp_path):
    fakedata.write_cifar10(tmp_path, 10, 1, archive=True)
    cfg = DataConfig(data_dir=str(tmp_path), download=False, pretrain_data="cifar10")
    full = load_pretrain_set(cfg, 1.0, seed=5)
    assert len(full) == 100
    quarter, half = load_pretrain_set(cfg, 0.25, seed=5), load_pretrain_set(cfg, 0.5, seed=5)
    assert torch.equal(quarter.images, full.subset(stratified_subset(full.labels, 0.25, 5)).images)
    as_rows = lambda s: {bytes(img.numpy()) for img in s.images}  # noqa: E731
    assert len(quarter) == 30 and len(half) == 50 and as_rows(quarter) <= as_rows(half)


def test_dataset_key(tmp_path):
    assert dataset_key("cifar100", "train") == dataset_key("cifar100", "train")
    assert dataset_key("cifar100", "train", seed=0) != dataset_key("cifar100", "train", seed=1)
    assert dataset_key("cifar100", "train", a=1, b=2) == dataset_key("cifar100", "train", b=2, a=1)
    assert dataset_key(f"folder:{tmp_path}", "test", image_size=32) != dataset_key(
        f"folder:{tmp_path}", "test", image_size=64
    )
    assert str(tmp_path.resolve()) in dataset_key(f"folder:{tmp_path}", "test")
    cfg = DataConfig()
    assert probe_data_key(cfg, 0) != probe_data_key(cfg, 1)
    assert probe_data_key(cfg, 0) != probe_data_key(DataConfig(val_fraction=0.2), 0)


def test_stats_and_imageset():
    assert stats_for("cifar10") == (data.CIFAR10_MEAN, data.CIFAR10_STD)
    assert stats_for("cifar100") == (data.CIFAR100_MEAN, data.CIFAR100_STD)
    assert stats_for("folder:/x") == (data.IMAGENET_MEAN, data.IMAGENET_STD)
    with pytest.raises(UserError):
        stats_for("mnist")
    s = ImageSet(torch.zeros(4, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2, 1]), ["a", "b", "c"])
    sub = s.subset(torch.tensor([1, 3]))
    assert (len(s), s.num_classes, len(sub), sub.labels.tolist()) == (4, 3, 2, [1, 1])
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(4, 3, 2, 2), torch.tensor([0, 1, 2, 1]), ["a"])
