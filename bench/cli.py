"""Seconds for `python study.py list` against `optuna studies` on the same store (whole processes, interpreter
start included), and for `reports.study_list(URL)` in a process of its own: what `list` costs without the rest
of study.py.

    python bench/cli.py [--studies 50] [--trials 20] [--runs 5]

The store is SQLite in a temporary directory, filled the way objectives fill it: schema attrs per study; per
trial 3 params, the complete-trial attrs and 10 intermediate values; 70% complete, 20% pruned, 10% failed.
No torch: this bench imports only Optuna (bench/common.py would load torch).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

REPO = Path(__file__).resolve().parents[1]
SPACE = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "temperature": FloatDistribution(0.1, 1.0),
    "batch_size": CategoricalDistribution([128, 256, 512]),
}


def fill(url: str, n_studies: int, n_trials: int, seed: int = 0) -> None:
    """n_studies studies of n_trials trials each, as objectives/ writes them."""
    import sqlalchemy

    storage = optuna.storages.RDBStorage(url)
    # a bench store: no fsync per commit (filling 1,000 trials takes 3 s instead of 20)
    sqlalchemy.event.listen(storage.engine, "connect", lambda con, _: con.execute("PRAGMA synchronous=OFF"))
    storage.engine.dispose()
    rng = random.Random(seed)
    for s in range(n_studies):
        study = optuna.create_study(storage=storage, study_name=f"simclr-{s:03d}", direction="maximize")
        for key, value in {
            "objective": "simclr",
            "schema": 1,
            "preset": "smoke",
            "role": "simclr_hparams",
            "config": json.dumps({"epochs": 10}),
            "space": "{}",
        }.items():
            study.set_user_attr(key, value)
        study.add_trials([_trial(rng) for _ in range(n_trials)])
    storage.engine.dispose()


def _trial(rng: random.Random) -> optuna.trial.FrozenTrial:
    state = rng.choices([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL], [0.7, 0.2, 0.1])[0]
    value = rng.uniform(20, 60)
    attrs = {
        "val_top1": value,
        "val_top5": value + 25,
        "test_top1": value - 1,
        "test_top5": value + 24,
        "n_train_images": 45000,
        "steps": 1760,
        "seconds": 95.0,
        "images_per_second": 4700.0,
        "device": "cpu",
        "encoder": "trial:simclr:0",
    }
    epochs = 10 if state == TrialState.COMPLETE else 3
    return create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"lr": 10 ** rng.uniform(-4, 0), "temperature": rng.uniform(0.1, 1.0), "batch_size": 256},
        distributions=SPACE,
        user_attrs=attrs if state == TrialState.COMPLETE else {"error": "pruned"} if state == TrialState.FAIL else {},
        intermediate_values={e: value * (e + 1) / epochs for e in range(epochs)},
    )


def median_seconds(command: list[str], runs: int) -> float:
    """Median wall time of `runs` runs of a process (after one untimed run that warms the file cache)."""
    env = {k: v for k, v in os.environ.items() if k not in ("STUDY_STORAGE", "STUDY_ARTIFACTS")}
    times = []
    for k in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
        if k:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=50)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'studies.db'}"
        fill(url, args.studies, args.trials)
        optuna_cli = str(Path(sys.executable).parent / "optuna")
        commands = {
            "python study.py list": [sys.executable, "study.py", "list", "--storage", url],
            "optuna studies": [optuna_cli, "studies", "--storage", url],
            "reports.study_list(URL) alone": [
                sys.executable,
                "-c",
                "import sys; from reports import study_list; study_list(sys.argv[1])",
                url,
            ],
        }
        print(f"# {args.studies} studies x {args.trials} trials, SQLite; median of {args.runs} runs (whole process)")
        seconds = {name: median_seconds(command, args.runs) for name, command in commands.items()}
    reference = seconds["optuna studies"]
    for name, value in seconds.items():
        print(f"{name:<32} {value:6.3f} s   {reference / value:5.2f}x faster than optuna studies")


if __name__ == "__main__":
    main()
