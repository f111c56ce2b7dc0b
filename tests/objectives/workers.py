"""Helpers for the tests that run real `study.py optimize` worker processes against one store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from storage import open_storage
from tests.helpers import REPO, run_cli, tiny_sets

POSTGRES_ENV = "STUDY_TEST_POSTGRES_URL"


@dataclass
class Store:
    kind: str  # sqlite | journal | postgres
    url: str
    artifacts: Path
    cwd: Path  # workers run here: nothing they write by default lands in the repository


def store_for(kind: str, tmp_path: Path) -> Store:
    if kind == "postgres":
        url = os.environ.get(POSTGRES_ENV)
        if not url:
            pytest.skip(f"{POSTGRES_ENV} not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    elif kind == "journal":
        url = f"journal:{tmp_path / 'studies.log'}"
    else:
        url = f"sqlite:///{tmp_path / 'studies.db'}"
    return Store(kind, url, tmp_path / "artifacts", tmp_path)


def unique_name(prefix: str) -> str:
    """Own study names per test: a PostgreSQL database is shared by every test run."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def delete_studies(store: Store, names: list[str]) -> None:
    for name in names:
        try:
            optuna.delete_study(study_name=name, storage=storage(store))
        except KeyError:
            pass


def create(store: Store, name: str, objective: str, data_dir: Path, *args: str, sets: tuple[str, ...] = ()) -> None:
    """`study.py create` with the tiny budgets of conftest.tiny_sets, `sets` (KEY=VALUE) overriding them."""
    merged = dict(s.split("=", 1) for s in [*tiny_sets(objective, data_dir), *sets])
    r = run_cli(
        "create",
        "--objective",
        objective,
        "--name",
        name,
        "--storage",
        store.url,
        "--artifacts",
        store.artifacts,
        *args,
        "--set",
        *(f"{k}={v}" for k, v in merged.items()),
    )
    assert r.rc == 0, r.err


def on_cpu(store: Store) -> list[str]:
    """The options every worker process of these tests takes: the CPU, one torch thread, the test's store."""
    return ["--device", "cpu", "--threads", "1", "--storage", store.url, "--artifacts", str(store.artifacts)]


def worker(store: Store, name: str, *args: str) -> subprocess.Popen:
    """`study.py optimize NAME` in its own process: one torch thread (2 shared cores), CPU."""
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "study.py"),
            "optimize",
            name,
            *on_cpu(store),
            *args,
        ],
        cwd=store.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@dataclass
class Finished:
    rc: int
    out: str
    err: str


def wait_all(procs: list[subprocess.Popen], timeout: float = 240) -> list[Finished]:
    deadline = time.monotonic() + timeout
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append(Finished(p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return done


def storage(store: Store) -> optuna.storages.BaseStorage:
    return open_storage(store.url)


def trials(store: Store, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage(store)).get_trials(deepcopy=False)
