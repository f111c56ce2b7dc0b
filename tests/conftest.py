"""Fixtures of every test package: no store from the environment, tiny generated CIFAR archives, a filled store.

Budgets are tiny so that a training trial is seconds on 2 shared cores: CIFAR-10 with 2 images per class,
CIFAR-100 archives with only 5 classes used, one epoch, batch 8 (tests.helpers.tiny_sets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fakedata
from tests.helpers import run_cli, tiny_sets


@pytest.fixture(autouse=True)
def _no_env_store(monkeypatch):
    monkeypatch.delenv("STUDY_STORAGE", raising=False)
    monkeypatch.delenv("STUDY_ARTIFACTS", raising=False)
    monkeypatch.delenv("STUDY_DATA", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _own_cost_model(tmp_path_factory):
    """What the tests' tiny comparisons teach the cost model goes to a file of their own (inherited by the worker
    processes they start), never to the user's: their ratios would skew the user's next estimate."""
    before = os.environ.get("STUDY_COSTS")
    os.environ["STUDY_COSTS"] = str(tmp_path_factory.mktemp("costs") / "costs.json")
    yield
    if before is None:
        os.environ.pop("STUDY_COSTS", None)
    else:
        os.environ["STUDY_COSTS"] = before


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


@pytest.fixture(scope="session")
def one_torch_thread():
    """One intra-op thread: on 2 cores shared with other test processes, OpenMP's spinning threads make a tiny
    training step 5-8x slower than one thread does (measured: a supervised trial 8 s vs 1.2 s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
