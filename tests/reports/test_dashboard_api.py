"""optuna-dashboard as a real client: `study.py dashboard` in a subprocess on the filled store; its HTTP API shows
the studies, trials, params, user attrs and checkpoint artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from storage import schema
from tests.helpers import REPO, free_port, get

pytestmark = pytest.mark.slow  # end-to-end: several processes or a whole study each


@pytest.fixture
def dashboard(filled_store):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "study.py"), "dashboard", "--port", str(port), "--storage", filled_store.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                get(f"{base}/api/studies", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    out, err = proc.communicate(timeout=5)
                    pytest.fail(f"dashboard did not come up (rc {proc.returncode}): {err[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def attrs(items: list[dict]) -> dict:
    return {item["key"]: item["value"] for item in items}


def test_dashboard_api_shows_the_store(dashboard, filled_store):
    status, body = get(f"{dashboard}/api/studies")
    assert status == 200
    summaries = {s["study_name"]: s for s in json.loads(body)["study_summaries"]}
    assert set(summaries) == {"ssl", "probe-best", "scratch", "ft"}
    assert attrs(summaries["ssl"]["user_attrs"])["objective"] == "simclr"

    for name, objective in [
        ("ssl", "simclr"),
        ("probe-best", "linear_probe"),
        ("scratch", "supervised"),
        ("ft", "finetune"),
    ]:
        status, body = get(f"{dashboard}/api/studies/{summaries[name]['study_id']}")
        assert status == 200
        study = json.loads(body)
        assert attrs(study["user_attrs"])[schema.OBJECTIVE] == objective
        assert len(study["trials"]) == 2
        space = json.loads(attrs(study["user_attrs"])[schema.SPACE])
        for trial in study["trials"]:
            assert trial["state"] == "Complete"
            assert {p["name"] for p in trial["params"]} == set(space)
            assert trial["intermediate_values"], "per-epoch values for the dashboard's plots"
            user = attrs(trial["user_attrs"])
            assert {
                schema.VAL_TOP1,
                schema.TEST_TOP1,
                schema.TEST_TOP5,
                schema.N_TRAIN_IMAGES,
                schema.STEPS,
                schema.SECONDS,
                schema.DEVICE,
            } <= set(user)
            if objective != "linear_probe":  # trained weights are artifacts the dashboard lists and serves
                listed = [a["artifact_id"] for a in trial["artifacts"]]
                assert listed == [user[schema.CHECKPOINT]]

    ssl = json.loads(get(f"{dashboard}/api/studies/{summaries['ssl']['study_id']}")[1])
    trial = ssl["trials"][0]
    artifact = trial["artifacts"][0]
    url = f"{dashboard}/artifacts/{summaries['ssl']['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}"
    status, body = get(url, timeout=60)
    assert status == 200
    assert body == (filled_store.artifacts / artifact["artifact_id"]).read_bytes()  # the checkpoint itself


def test_dashboard_refuses_a_missing_store(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "study.py"),
            "dashboard",
            "--port",
            str(free_port()),
            "--storage",
            f"sqlite:///{tmp_path / 'none.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr.startswith("error: no study store at") and p.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
