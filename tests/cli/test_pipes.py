"""A reader that stops early (`study.py show NAME | head -1`): the command ends quietly with 141, as `yes | head -1`
does (128 + SIGPIPE), never with a store error; stdout has what the reader took, stderr nothing.

The store is filled without training (optuna.trial.create_trial), big enough that `list`, `show` and
`show --json` outgrow a pipe's 64 KiB buffer: the writer is still writing when `head` goes away.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from storage import schema
from tests.helpers import REPO, run_cli

PIPE_BUFFER = 64 * 1024  # Linux's default pipe capacity
BIG = PIPE_BUFFER + 32 * 1024  # more than the pipe holds plus what `head` reads at once
WIDE_NAME = "w" * 490  # `list` pads every line to the longest name


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> str:
    """200 studies (one with a 490-character name) and a study "wide" of 100 failed trials with 1.5 kB errors."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path_factory.mktemp('pipes') / 'studies.db'}"
    storage = optuna.storages.get_storage(url)
    wide = optuna.create_study(storage=storage, study_name="wide", direction="maximize")
    attrs = {"objective": "supervised", "schema": schema.SCHEMA_VERSION, "config": "{}", "space": "{}"}
    for key, value in attrs.items():  # a study as study.py makes it (storage/schema.py)
        wide.set_user_attr(key, value)
    error = "NonFiniteLoss: " + "x" * 1500
    wide.add_trials(
        [create_trial(state=TrialState.FAIL, user_attrs={schema.ERROR: f"{k} {error}"}) for k in range(100)]
    )
    for k in range(198):
        optuna.create_study(storage=storage, study_name=f"s{k:03d}")
    optuna.create_study(storage=storage, study_name=WIDE_NAME)
    return url


COMMANDS = [["list"], ["show", "wide"], ["show", "wide", "--json"], ["keys"]]


def command_line(url: str, argv: list[str]) -> str:
    return shlex.join([sys.executable, str(REPO / "study.py"), *argv, "--storage", url])


@pytest.mark.parametrize("argv", COMMANDS[:3], ids=" ".join)
def test_the_outputs_outgrow_a_pipe(big_store, argv):
    """What makes the pipe tests below mean something: `head` leaves while the writer still has output."""
    r = run_cli(*argv, "--storage", big_store)
    assert r.rc == 0 and len(r.out.encode()) > BIG, (r.rc, len(r.out), r.err)


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_head_takes_the_first_line_and_the_command_ends_quietly(big_store, argv):
    full = run_cli(*argv, "--storage", big_store).out
    script = f"{command_line(big_store, argv)} | head -1"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.stdout == full.splitlines(keepends=True)[0] and r.stderr == ""
    # pipefail: the pipeline's status is study.py's (head's is 0)
    if argv != ["keys"]:
        assert r.returncode == 141
    else:  # 16 kB fit in the pipe: whether `head` left before the last write is a race (see the test below)
        assert r.returncode in (0, 141)


def test_show_json_into_head_c(big_store):
    """`head -c 10` leaves in the middle of a line (of a JSON document here)."""
    argv = ["show", "wide", "--json"]
    full = run_cli(*argv, "--storage", big_store).out
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{command_line(big_store, argv)} | head -c 10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (141, full[:10], "")
    assert json.loads(full)["n_trials"] == 100


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_pipe_closed_before_the_first_write(big_store, argv):
    """The reader is gone before the command starts (deterministic for `keys` too): 141, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            [sys.executable, str(REPO / "study.py"), *argv, "--storage", big_store],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (141, "")
