"""Frozen feature extraction against an explicit reference, and the on-disk cache: hits skip the encoder,
identities separate entries, corrupt or mismatched entries are recomputed, writes are atomic."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from errors import UserError
from simclr.augment import normalize
from simclr.device import Runtime, runtime
from simclr.features import cache_identity, cache_path, cached_features, extract_features
from simclr.models import load_encoder

FP32 = runtime("cpu", "fp32")


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("random", seed=0)


def make_images(n=10, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def reference_features(encoder, images, size):
    """The protocol written out: [0, 1] floats, bilinear antialiased resize, normalise, eval mode, no_grad."""
    module = copy.deepcopy(encoder.module).eval()
    x = images.double().div(255).float()
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        return module(normalize(x, encoder.mean, encoder.std))


def counting(encoder):
    calls = []
    handle = encoder.module.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    return calls, handle


# ---------------------------------------------------------------------------------------------------------
# extraction


@pytest.mark.parametrize("resolution", [None, 24])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch_size", [3, 256])
def test_matches_reference(encoder, resolution, channels_last, batch_size):
    enc = dataclasses.replace(encoder, resolution=resolution)
    images = make_images()
    expected = reference_features(enc, images, resolution)
    rt = runtime("cpu", "fp32", channels_last=channels_last)
    got = extract_features(enc, images, rt=rt, batch_size=batch_size)
    assert got.dtype == torch.float32 and got.shape == (10, 512) and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_bf16_close_to_fp32(encoder):
    images = make_images(n=6)
    fp32 = extract_features(encoder, images, rt=FP32)
    bf16 = extract_features(encoder, images, rt=Runtime(torch.device("cpu"), "bf16", True))
    assert bf16.dtype == torch.float32
    assert F.cosine_similarity(bf16, fp32, dim=1).min() > 0.99
    assert (bf16 - fp32).norm() / fp32.norm() < 0.1
    assert not torch.equal(bf16, fp32)  # it did run in bf16


def test_leaves_encoder_frozen_and_unchanged():
    enc = load_encoder("random", seed=2)
    before = copy.deepcopy(enc.module.state_dict())
    assert enc.module.training  # fresh modules are in train mode: extraction must switch it
    extract_features(enc, make_images(n=5), rt=FP32)
    after = enc.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not enc.module.training and not any(m.training for m in enc.module.modules())
    assert not any(p.requires_grad or p.grad is not None for p in enc.module.parameters())


def test_rejects_bad_images(encoder):
    with pytest.raises(ValueError, match="uint8"):
        extract_features(encoder, make_images().float(), rt=FP32)
    with pytest.raises(ValueError, match="uint8"):
        cached_features(encoder, make_images()[:, :1], key="k", cache_dir=None, rt=FP32)


def test_empty_input(encoder):
    assert extract_features(encoder, make_images(n=0), rt=FP32).shape == (0, 512)


# ---------------------------------------------------------------------------------------------------------
# the cache


def test_hit_returns_identical_without_running_encoder(encoder, tmp_path):
    images = make_images()
    calls, handle = counting(encoder)
    try:
        first = cached_features(encoder, images, key="d/train", cache_dir=tmp_path, rt=FP32, batch_size=4)
        assert sum(calls) == 10
        calls.clear()
        second = cached_features(encoder, images, key="d/train", cache_dir=tmp_path, rt=FP32, batch_size=4)
    finally:
        handle.remove()
    assert calls == []
    assert torch.equal(first, second)
    files = sorted(tmp_path.iterdir())
    assert [p.suffix for p in files] == [".pt"]  # atomic write: no temporary left behind
    entry = torch.load(files[0], weights_only=True)
    assert {"features", "digest", "key", "n"} <= set(entry)
    assert (entry["digest"], entry["key"], entry["n"]) == (encoder.digest, "d/train", 10)


def test_no_cache_dir_always_computes(encoder, tmp_path):
    images = make_images(n=4)
    calls, handle = counting(encoder)
    try:
        a = cached_features(encoder, images, key="k", cache_dir=None, rt=FP32)
        b = cached_features(encoder, images, key="k", cache_dir=None, rt=FP32)
    finally:
        handle.remove()
    assert sum(calls) == 8 and torch.equal(a, b)


def test_identity_separates_entries(encoder, tmp_path):
    images = make_images(n=4)
    variants = [
        (encoder, "d/train", FP32),
        (encoder, "d/val", FP32),
        (dataclasses.replace(encoder, digest="0" * 16), "d/train", FP32),
        (dataclasses.replace(encoder, resolution=20), "d/train", FP32),
        (dataclasses.replace(encoder, mean=(0.5, 0.5, 0.5)), "d/train", FP32),
        (encoder, "d/train", Runtime(torch.device("cpu"), "bf16", True)),
    ]
    for enc, key, rt in variants:
        cached_features(enc, images, key=key, cache_dir=tmp_path, rt=rt)
    names = {cache_path(tmp_path, cache_identity(e, key=k, n=4, precision=rt.precision)) for e, k, rt in variants}
    assert len(names) == len(variants)
    assert set(tmp_path.iterdir()) == names
    # the same key with fewer images is another entry too
    cached_features(encoder, images[:3], key="d/train", cache_dir=tmp_path, rt=FP32)
    assert len(list(tmp_path.iterdir())) == len(variants) + 1


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path):
    path.write_bytes(b"\x00not a torch file" * 50)


def empty(path):
    path.write_bytes(b"")


def resave(**change):
    def corrupt(path):
        entry = torch.load(path, weights_only=True)
        entry.update({k: (v(entry) if callable(v) else v) for k, v in change.items()})
        torch.save(entry, path)

    return corrupt


EXECUTED = []


def _run_code(note):
    EXECUTED.append(note)


class Evil:
    """Unpickling this calls a function: weights_only=True loading must refuse, not run it."""

    def __reduce__(self):
        return (_run_code, ("unpickled",))


CORRUPTIONS = {
    "truncated": truncate,
    "garbage": garbage,
    "empty": empty,
    "wrong shape": resave(features=lambda e: e["features"][:, :10].contiguous()),
    "wrong rows": resave(features=lambda e: e["features"][:-1].contiguous()),
    "float64": resave(features=lambda e: e["features"].double()),
    "nan": resave(features=lambda e: e["features"].clone().fill_(float("nan"))),
    "other identity": resave(identity=lambda e: {**e["identity"], "key": "other"}),
    "not a dict": lambda path: torch.save(torch.zeros(10, 512), path),
    "code in the pickle": lambda path: torch.save({"features": Evil()}, path),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_entry_is_recomputed(encoder, tmp_path, corruption):
    images = make_images()
    good = cached_features(encoder, images, key="d/train", cache_dir=tmp_path, rt=FP32)
    (path,) = tmp_path.iterdir()
    CORRUPTIONS[corruption](path)
    calls, handle = counting(encoder)
    try:
        again = cached_features(encoder, images, key="d/train", cache_dir=tmp_path, rt=FP32)
        assert sum(calls) == 10  # recomputed, not trusted
        calls.clear()
        third = cached_features(encoder, images, key="d/train", cache_dir=tmp_path, rt=FP32)
        assert calls == []  # and rewritten: the next call hits
    finally:
        handle.remove()
    assert torch.equal(again, good) and torch.equal(third, good)
    assert list(tmp_path.iterdir()) == [path]
    assert EXECUTED == []


def test_other_images_under_the_same_key_are_recomputed(encoder, tmp_path):
    """The key names the data, but a stale entry (say, a folder dataset edited in place) is not trusted."""
    first = cached_features(encoder, make_images(seed=0), key="folder/train", cache_dir=tmp_path, rt=FP32)
    other = make_images(seed=1)
    again = cached_features(encoder, other, key="folder/train", cache_dir=tmp_path, rt=FP32)
    assert not torch.equal(first, again)
    torch.testing.assert_close(again, extract_features(encoder, other, rt=FP32))


def test_failed_write_leaves_nothing(encoder, tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match="No space left"):
        cached_features(encoder, make_images(n=3), key="k", cache_dir=tmp_path, rt=FP32)
    assert list(tmp_path.iterdir()) == []


def test_unusable_cache_dir_is_a_user_error(encoder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UserError, match="feature cache"):
        cached_features(encoder, make_images(n=2), key="k", cache_dir=blocker / "sub", rt=FP32)
