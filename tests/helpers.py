"""Helpers shared by the test packages: the CLI run in-process, tiny study settings, the checks every
"refused" case makes. Test modules import these from here, never from each other."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import socket
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution

import study
from storage import schema

REPO = Path(__file__).resolve().parents[1]


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


def check_refused(r: Result, fragment: str = "") -> None:
    """Bad input: exit 2, one line "error: ..." on stderr containing `fragment`, no traceback, nothing on stdout."""
    lines = r.err.strip().splitlines()
    assert r.rc == 2, (r.rc, r.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err and r.out == ""
    assert fragment in lines[0], lines[0]


def show(url: str, name: str) -> dict:
    r = run_cli("show", name, "--json", "--storage", url)
    assert r.rc == 0, r.err
    return json.loads(r.out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def fixed_params(space) -> dict:
    """A point of the space: the first choice, or the geometric/arithmetic middle of a range."""
    out = {}
    for key, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[key] = d.choices[0]
        elif d.log:
            out[key] = type(d.low)(math.sqrt(d.low * d.high))
        else:
            out[key] = type(d.low)((d.low + d.high) / 2)
    return out


def queue_retry_of_trial_0(study: optuna.Study, params: dict, space: dict, checkpoint: str) -> None:
    """What a heartbeat retry of a killed trial 0 looks like: a WAITING trial with its params, the retry history
    Optuna writes, and the checkpoint (after epoch 1) the dead trial left in its user attrs."""
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=params,
            distributions=space,
            user_attrs={schema.CHECKPOINT: checkpoint, schema.CHECKPOINT_EPOCH: 1},
            system_attrs={"failed_trial": 0, "retry_history": [0]},
        )
    )
