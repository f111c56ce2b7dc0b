"""Fixtures for the studies tests: tiny generated CIFAR archives, the CLI run in-process, a filled store.

Budgets are tiny so that a training trial is seconds on 2 shared cores: CIFAR-10 with 4 images per class (16
pretraining images at data_fraction 0.4), CIFAR-100 archives with only 10 classes used (30 probe-train, 10
probe-val, 20 test images), one epoch, batch 8.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import study  # noqa: E402
from tests import fakedata  # noqa: E402


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run_cli(*args: str) -> Result:
    """study.main in this process, capturing stdout and stderr (not a terminal: no progress bars)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = study.main([str(a) for a in args])
    return Result(rc, out.getvalue(), err.getvalue())


def tiny_sets(objective: str, data_dir: Path) -> list[str]:
    common = [f"data_dir={data_dir}", "download=false"]
    if objective == "simclr":
        return common + [
            "epochs=1",
            "batch_size=5",
            "data_fraction=0.5",
            "warmup_epochs=0",
            "probe_epochs=3",
            "probe_batch_size=0",
            "monitor_size=10",
            "monitor_every=1",
            "checkpoint_every=1",
            "knn_k=5",
        ]
    if objective == "linear_probe":
        return common + ["probe_epochs=3", "probe_batch_size=0"]
    return common + ["epochs=1", "batch_size=8", "warmup_epochs=0"]


def file_state(path: Path) -> tuple | None:
    """(sha256, mtime_ns) of a file, None when it does not exist: 'the store is unchanged' in one value."""
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch):
    monkeypatch.delenv("STUDY_STORAGE", raising=False)
    monkeypatch.delenv("STUDY_ARTIFACTS", raising=False)
    monkeypatch.delenv("STUDY_DATA", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on 2 cores shared with other test processes, OpenMP's spinning threads make a tiny
    training step 5-8x slower than one thread does (measured: a supervised trial 8 s vs 1.2 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fakedata.write_cifar10(root, n_train_per_class=2, n_test_per_class=1)
    fakedata.write_cifar100(root, n_train_per_class=4, n_test_per_class=2, n_classes=5)
    return root


@dataclass
class FilledStore:
    url: str
    path: Path
    artifacts: Path
    data_dir: Path
    names: dict[str, str]  # objective (and "probe_best") -> study name


@pytest.fixture(scope="session")
def filled_store(tmp_path_factory, data_dir) -> FilledStore:
    """One store with a finished study per objective (2 trials each), the probe over best:<simclr study>."""
    os.environ.pop("STUDY_STORAGE", None)
    root = tmp_path_factory.mktemp("store")
    path = root / "studies.db"
    url = f"sqlite:///{path}"
    names = {"simclr": "ssl", "probe_best": "probe-best", "supervised": "scratch", "finetune": "ft"}
    steps = [
        ("simclr", "ssl", ["--param", "temperature=choice:0.2,0.5"]),
        ("linear_probe", "probe-best", ["--set", "encoder=best:ssl"]),
        ("supervised", "scratch", []),
        ("finetune", "ft", ["--set", "encoder=trial:ssl:0"]),
    ]
    for objective, name, extra in steps:
        r = run_cli(
            "create",
            "--objective",
            objective,
            "--name",
            name,
            "--storage",
            url,
            "--sampler",
            "random",
            "--set",
            *tiny_sets(objective, data_dir),
            *extra,
        )
        assert r.rc == 0, r.err
        r = run_cli("optimize", name, "--trials", "2", "--device", "cpu", "--storage", url)
        assert r.rc == 0, r.err
    return FilledStore(url, path, root / "studies_artifacts", data_dir, names)
