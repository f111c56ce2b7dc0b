"""`create` refuses what a worker could never run, before anything is written: sizes beyond any recipe, an
encoder file that is corrupt or holds more than tensors, `best:` over a study whose trials make no encoder, a
feature cache that cannot be written; ImageNet weights missing on this machine are a warning (a worker elsewhere
may have them)."""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers import check_refused, file_state, run_cli, tiny_sets


def create(url: str, objective: str, *sets: str, name: str = "new"):
    return run_cli("create", "--objective", objective, "--name", name, "--storage", url, "--set", *sets)


@pytest.fixture
def url(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert create(url, "supervised", *tiny_sets("supervised", data_dir), name="first").rc == 0  # the store exists
    return url


@pytest.mark.parametrize(
    "setting, said",
    [
        ("epochs=99999999999999999999999", "epochs=99999999999999999999999: must be in (0, 10000]"),
        ("batch_size=10000000000", "must be in (0, 65536] (SimCLR's largest batch is 32768: more is a typo)"),
        ("warmup_epochs=1e9", "warmup_epochs=1000000000.0: must be in [0, 10000]"),
    ],
)
def test_sizes_beyond_any_recipe_are_refused(url, tmp_path, data_dir, setting, said):
    before = file_state(tmp_path / "s.db")
    check_refused(create(url, "simclr", *tiny_sets("simclr", data_dir), setting), said)
    assert file_state(tmp_path / "s.db") == before


def test_an_encoder_file_that_cannot_be_one_is_refused_at_create(url, tmp_path, data_dir):
    before = file_state(tmp_path / "s.db")
    probe = tiny_sets("linear_probe", data_dir)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    check_refused(create(url, "linear_probe", *probe, f"encoder={tmp_path / 'junk.pt'}"), "corrupt or not a torch")
    torch.save({"run": os.system}, tmp_path / "evil.pt")
    check_refused(
        create(url, "linear_probe", *probe, f"encoder={tmp_path / 'evil.pt'}"), "refused: it holds more than tensors"
    )
    torch.save(
        {"encoder": {"w": torch.zeros(2)}, "stem": "cifar", "mean": [0.5] * 3, "std": [0.2] * 3}, tmp_path / "w.pt"
    )
    check_refused(create(url, "linear_probe", *probe, f"encoder={tmp_path / 'w.pt'}"), "do not fit a cifar-stem")
    assert file_state(tmp_path / "s.db") == before


def test_a_feature_cache_that_cannot_be_written_is_refused(url, tmp_path, data_dir):
    (tmp_path / "a-file").write_text("")
    sets = [*tiny_sets("linear_probe", data_dir), f"cache_dir={tmp_path / 'a-file' / 'features'}"]
    check_refused(create(url, "linear_probe", *sets), "is not a directory; use --set cache_dir=DIR")


def test_missing_imagenet_weights_are_a_warning_at_create(url, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no weights there
    r = create(url, "linear_probe", *tiny_sets("linear_probe", data_dir), "encoder=imagenet")
    assert r.rc == 0 and r.out.strip() == "new", r.err
    assert r.err.startswith("warning: ImageNet weights resnet18-f37072fd.pth are not in ")
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in r.err


def test_best_over_a_study_that_makes_no_encoder_is_refused(filled_store):
    before = file_state(filled_store.path)
    r = run_cli(
        "create",
        "--objective",
        "finetune",
        "--name",
        "x",
        "--storage",
        filled_store.url,
        "--set",
        *tiny_sets("finetune", filled_store.data_dir),
        "encoder=best:probe-best",
    )
    check_refused(r, "study 'probe-best' is a linear_probe study, whose trials make no encoder")
    assert file_state(filled_store.path) == before
