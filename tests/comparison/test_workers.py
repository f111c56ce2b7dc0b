"""Several `study.py compare` workers on one store cooperate on one plan: together they run the whole comparison,
every study exactly its planned counted trials, the SimCLR probe on the hyperparameter study's best trial; a worker
killed with SIGKILL mid-SimCLR-trial is made up by the others with a resumed trial; the report is written once and
has the rows a single worker's has; a worker with another --set is refused in one line and changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
import torchvision

from comparison.plan import Request, plan, start_knobs
from comparison.regimes import REGIMES as TABLE
from comparison.resume import remaining
from comparison.worker import ensure_study
from reports import rows
from storage import open_storage, schema
from tests.comparison.test_run import IMAGENET_FILE, LABELS, ROLES, TINY
from tests.helpers import REPO, file_state, run_cli
from tests.objectives.workers import on_cpu, store_for, unique_name, wait_all

IMAGENET = {  # with a weights file in the torch hub cache the ImageNet regimes run too (and get label curves)
    "cmp-labels-probe-imagenet": "labels_probe_imagenet",
    "cmp-labels-finetune-imagenet": "labels_finetune_imagenet",
}


def compare_worker(store, prefix: str, data_dir: Path, out: Path, *extra: str) -> subprocess.Popen:
    """`study.py compare` in its own process (one torch thread: three of them share 2 cores)."""
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "study.py"),
            "compare",
            "--preset",
            "smoke",
            "--prefix",
            prefix,
            "--trials",
            "1",
            *on_cpu(store),
            "--heartbeat",
            "1",
            "--grace-period",
            "4",
            "--out",
            str(out),
            "--set",
            f"data_dir={data_dir}",
            *SLOWER,
            *extra,
        ],
        cwd=store.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(store.cwd / "torch")},
    )


class Watch:
    """Polls the store for a RUNNING trial of study `name` that has saved a checkpoint. One storage, opened once the
    store exists, and one cheap read a poll: a trial of the tiny data runs for seconds, and reopening the store
    every poll (and losing polls to a busy SQLite file) could miss its window."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.storage: optuna.storages.BaseStorage | None = None
        self.study_id: int | None = None

    def worker(self) -> str | None:
        """The worker (HOST:PID) of such a trial, if any now."""
        try:
            if self.storage is None:
                self.storage = open_storage(self.url, read_only=True)
            if self.study_id is None:
                self.study_id = self.storage.get_study_id_from_name(self.name)
            trials = self.storage.get_all_trials(
                self.study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
        except Exception:  # no store or study yet (KeyError), or the file busy this instant: the next poll
            return None
        for t in trials:
            if t.user_attrs.get(schema.CHECKPOINT_EPOCH) and t.user_attrs.get(schema.WORKER):
                return t.user_attrs[schema.WORKER]
        return None


REGIMES = [regime.role for regime in TABLE]
# a SimCLR trial long enough to be killed between two of its checkpoints
SLOWER = ["epochs=12" if s.startswith("epochs=") else s for s in TINY]


def comparison_studies(url: str, prefix: str) -> dict[str, rows.StudyData]:
    return {s.name: s for s in rows.load_studies(url) if s.user_attrs.get(schema.COMPARISON) == prefix}


@pytest.mark.slow  # three processes, a whole comparison
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_three_workers_share_one_comparison_and_make_up_a_killed_one(kind, tmp_path, data_dir):
    store = store_for(kind, tmp_path)
    prefix = unique_name("cmp").replace("-", "")
    outs = [tmp_path / f"report{k}.html" for k in range(3)]
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), hub / IMAGENET_FILE)  # random values: the file matters
    try:
        # three workers start at once: one stores its plan, the others take it; the one running the hyperparameter
        # search's SimCLR trial is killed with SIGKILL once that trial has saved an epoch
        workers = [compare_worker(store, prefix, data_dir, out) for out in outs]
        deadline, watch = time.monotonic() + 240, Watch(store.url, f"{prefix}-hparams")
        while (running := watch.worker()) is None:
            ended = [w.communicate()[1][-4000:] for w in workers if w.poll() is not None]
            assert not ended, f"a worker ended before the search saved a checkpoint: {ended[0]}"
            assert time.monotonic() < deadline, "no checkpointed trial of the search within 240 s"
            time.sleep(0.05)
        killed = next(w for w in workers if running.endswith(f":{w.pid}"))
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
        outs = [out for out, w in zip(outs, workers, strict=True) if w is not killed]
        # the other two retry the lost trial (resuming it) and share the rest
        done = wait_all([w for w in workers if w is not killed], timeout=900)
        for d in done:
            assert d.rc == 0, d.err[-4000:]
            assert "Traceback" not in d.err and "locked" not in d.err.lower(), d.err[-4000:]
        both = done[0].err + done[1].err
        assert "worker lost (no heartbeat for" in both and "resuming from epoch" in both

        studies = comparison_studies(store.url, prefix)
        assert {name.removeprefix(prefix): s.role for name, s in studies.items()} == {
            name.removeprefix("cmp"): role for name, role in {**ROLES, **LABELS, **IMAGENET}.items()
        }
        # every study exactly its planned counted trials; a trial a race started beyond them ran nothing
        planned = {p.name: p for p in plan_of(studies, prefix)}
        for name, s in studies.items():
            budget = planned[name] if name in planned else None
            if budget is not None:
                assert remaining(budget, s.trials)[0] == budget.trials, (name, [t.state.name for t in s.trials])
            others = [t for t in s.trials if t.state.name not in ("COMPLETE", "PRUNED")]
            assert all(
                str(t.user_attrs.get(schema.ERROR, "")).startswith(
                    (schema.WORKER_LOST, schema.BUDGET_TAKEN, schema.GRID_TAKEN)
                )
                for t in others
            ), (name, [(t.state.name, t.user_attrs.get(schema.ERROR)) for t in others])
        # the lost trial: failed as such, retried, resumed from its checkpoint
        hparams = studies[f"{prefix}-hparams"].trials
        lost = [t for t in hparams if str(t.user_attrs.get(schema.ERROR, "")).startswith(schema.WORKER_LOST)]
        assert len(lost) == 1
        retry = next(t for t in hparams if t.user_attrs.get(schema.RETRY_OF) == lost[0].number)
        assert retry.state.name == "COMPLETE" and retry.user_attrs[schema.RESUMED_FROM_EPOCH] >= 1
        # the SimCLR probe's encoder is the hyperparameter study's best trial, pinned once
        best = optuna.load_study(study_name=f"{prefix}-hparams", storage=store.url).best_trial
        assert studies[f"{prefix}-probe-simclr"].user_attrs[schema.ENCODER_TRIAL] == best.number
        # one plan, stored by one worker, on every study
        assert len({s.user_attrs[schema.TIME_PLAN] for s in studies.values()}) == 1
        # the report: written once, by the worker that finished the last trial, with a single worker's rows
        written = [out for out in outs if out.exists()]
        assert len(written) == 1, both
        assert sum("the report is written by the worker that finished the last trial" in d.err for d in done) == 1
        got = {r["regime"]: r["status"] for r in rows.comparison_rows(list(studies.values()))}
        assert got == dict.fromkeys(REGIMES, "ok")
        # each worker said what it did
        assert Counter("this worker ran" in line for line in both.splitlines())[True] >= 2
        print(both)
    finally:
        if kind == "postgres":
            for name in comparison_studies(store.url, prefix):
                optuna.delete_study(study_name=name, storage=store.url)


def plan_of(studies: dict, prefix: str):
    """The planned studies (roots) of the comparison as stored, to count their budgets: --trials 1."""
    spec = schema.read_spec(next(iter(studies.values())).user_attrs)
    request = Request.of(prefix, preset="smoke", sets=[f"data_dir={spec.config['data_dir']}", *SLOWER], trials=1)
    return plan(request)


def test_a_worker_with_other_settings_is_refused_in_one_line(tmp_path, data_dir):
    """The plan stored by the first worker holds its request; a worker with another --set is refused before it
    touches the store (exit 2, one line naming the key)."""
    url, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "report.html"
    common = ["compare", "--preset", "smoke", "--prefix", "cmp", "--trials", "1", "--device", "cpu"]
    sets = ["--set", f"data_dir={data_dir}", *TINY]
    request = Request.of("cmp", preset="smoke", sets=[f"data_dir={data_dir}", *TINY], trials=1)
    stored = {"knobs": start_knobs(request).to_json(), "request": request.to_json()}
    ensure_study(open_storage(url, create=True), plan(request)[0], None, url, stored)  # as the first worker does
    before = file_state(tmp_path / "s.db")
    other = [s.replace("probe_epochs=3", "probe_epochs=4") for s in sets]
    r = run_cli(*common, "--storage", url, "--out", out, *other)
    assert r.rc == 2 and r.err.count("\n") == 1, r.err
    assert "--set probe_epochs: stored 3, this command 4" in r.err and "same --preset, --set and --trials" in r.err
    assert file_state(tmp_path / "s.db") == before
