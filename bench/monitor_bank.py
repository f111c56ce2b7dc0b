"""How large a kNN bank must be for the monitor to rank trials: the measurement behind simclr.knn.MIN_BANK_PER_CLASS.

Trains tests/simclr/test_monitor_trials.py's six SimCLR runs (20 glyph classes at 16x16, temperatures and learning
rates that differ) keeping every run's bank (40 images a class) and query features after every epoch, then
recomputes the monitor on stratified banks of 5, 10 and 20 images a class (20 draws each, one draw shared by every
run, as a study's trials share the bank its seed draws) and prints, per epoch and bank size, Spearman's rho of the
monitor against the runs' final linear probes (mean and min over the draws) and the monitor's spread over draws.

    python bench/monitor_bank.py

Measured with the first, 4-epoch design of those runs (2 AMD EPYC cores, fp32, seed 0): the whole bank (40 a class)
0.06 at epoch 1, 0.71 at epochs 2-4; at epoch 2 (then the pruning step) 5 a class 0.39, 10 a class 0.37, 20 a class
0.55. With the 8-epoch design (2 AMD EPYC cores with avx512_bf16, bf16, seed 3, 493 s), at epoch 5 (the pruning
step now): mean over draws 0.72, 0.75, 0.75 for 5, 10, 20 a class, worst draw 0.23, 0.26, 0.52; the whole bank
0.71. Small banks rank as well on average but not in every draw, and a study draws one: the rule stays 40 a class.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header  # noqa: E402
from simclr.data import stratified_subset  # noqa: E402
from simclr.knn import knn_accuracy  # noqa: E402
from tests.simclr.test_learning import spearman  # noqa: E402
from tests.simclr.test_monitor_trials import BANK_PER_CLASS, BASE, N_CLASSES, SEED, Run, Trials, make_trials  # noqa: E402

SMALL_BANKS = (5, 10, 20)  # images a class; 5 is the smoke preset's bank (500 images over CIFAR-100's 100 classes)
DRAWS = 20  # stratified banks drawn per size


def monitor_on(trials: Trials, run: Run, epoch: int, bank_idx: torch.Tensor) -> float:
    """The monitor of `run` at `epoch` with the bank cut to `bank_idx`: the loop's rule (standardised kNN)."""
    bank, queries = run.features[epoch]
    return knn_accuracy(
        bank[bank_idx],
        trials.bank_labels[bank_idx],
        queries,
        trials.query_labels,
        k=BASE.knn_k,
        temperature=BASE.knn_temperature,
        num_classes=N_CLASSES,
        standardize=True,
    )


def bank_study(trials: Trials, epoch: int, per_class: int) -> tuple[list[float], float]:
    """Spearman's rho of the monitor at `epoch` against the final probes, one per stratified bank of `per_class`
    images a class (the whole bank: one), and the monitor's spread over the draws (sd in points, mean over runs)."""
    labels = trials.bank_labels
    draws = [torch.arange(len(labels))]
    if per_class < BANK_PER_CLASS:
        draws = [stratified_subset(labels, per_class / BANK_PER_CLASS, SEED + d) for d in range(DRAWS)]
    table = [[monitor_on(trials, run, epoch, idx) for run in trials.runs] for idx in draws]  # (draws, runs)
    probes = [run.probe for run in trials.runs]
    spread = statistics.mean(statistics.pstdev(column) for column in zip(*table, strict=True))
    return [spearman(monitors, probes) for monitors in table], spread


def main() -> None:
    header("kNN bank size vs the monitor's ranking of trials")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        count = iter(range(10**6))
        trials = make_trials(lambda: Path(root) / f"run{next(count)}")
        whole = torch.arange(len(trials.bank_labels))
        for run in trials.runs:  # the features kept are the ones the runs' own monitor saw
            for epoch in range(1, BASE.epochs + 1):
                assert abs(monitor_on(trials, run, epoch, whole) - run.monitors[epoch - 1]) < 1e-3, run.name
        print(f"pruning may first fire at epoch {trials.prune_at} of {BASE.epochs}")
        for epoch in range(1, BASE.epochs + 1):
            for per_class in (*SMALL_BANKS, BANK_PER_CLASS):
                rhos, spread = bank_study(trials, epoch, per_class)
                print(
                    f"epoch {epoch} bank {per_class:2d}/class: rho mean {statistics.mean(rhos):6.3f} "
                    f"min {min(rhos):6.3f} (monitor sd over draws {spread:.2f} points)"
                )
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
