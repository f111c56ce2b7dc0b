"""Workers that start together on a new SQLite store (several `compare` workers launched by one loop) all open it:
one creates the tables and writes their version row, the others find them and go on."""

from __future__ import annotations

import subprocess
import sys
import time
from subprocess import PIPE

from tests.helpers import REPO

OPEN = """
import sys, time
sys.path.insert(0, {repo!r})
from storage import open_storage
while time.time() < {start}:
    time.sleep(0.001)
open_storage({url!r}, create=True)
print("opened")
"""


def test_workers_opening_a_new_store_at_once_all_open_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    start = time.time() + 3.0  # every process imports first, then all open at this instant
    code = OPEN.format(repo=str(REPO), start=start, url=url)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=PIPE, stderr=PIPE, text=True) for _ in range(10)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, [err[-2000:] for _, err in results]
    assert all(out.strip() == "opened" for out, _ in results)
