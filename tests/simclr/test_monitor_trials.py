"""The kNN monitor where pruning uses it: at the pruning step, across trials with different hyperparameters.

tests/simclr/test_learning.py ranks the monitor along the epochs of one run, which any number that grows with
training passes. Pruning compares *trials* at one step (the simclr objective's pruning axis in
objectives/registry.py, `training_axis`), so this file trains K = 6 short SimCLR runs that differ in temperature and
learning rate (SETTINGS: four inside the default search space, temperature 0.1-1.0 and 0.1x-3x the configured lr,
and two clearly worse ones) and asks whether the monitor each run reported at that step ranks the runs as their
final linear probes do: Spearman's rho >= RHO_MIN, fixed before the first run.

Data (tests/learnable.py): 20 glyph classes at 16x16 (chance 5%), 800 unlabelled pretraining images; the monitor's
bank and the probe's train split are the same 800 labelled images (40 a class), its queries and the probe's val
split 400 more (20 a class), as the `simclr` objective pairs them. Schedule shaped like the smoke preset's (warm-up
of half an epoch, the monitor every epoch); one seed for every run, as in a study. Budget: 6 runs of 4 epochs of 13
steps at batch 64 (3,200 images each, two views), the monitor every epoch, the linear probe at the end.

Measured (2 AMD EPYC cores without avx512_bf16, fp32; a second run gave the same numbers to the last digit):

    run (temperature, lr)  final probe  monitor at epoch 1    2     3     4
    random start               11.2%               11.0
    T 0.20 lr 2.0e-03          19.5%                7.2  13.5  14.7  14.0
    T 0.50 lr 2.0e-03           8.5%                6.5   6.8   8.3   8.3
    T 1.00 lr 6.0e-03           2.7%                4.0   3.8   3.5   5.5
    T 0.10 lr 2.0e-04           7.0%               10.0  10.2   9.7   8.5
    T 5.00 lr 2.0e-03           7.2%                7.2   5.5   5.2   6.0
    T 0.20 lr 2.0e-05           7.8%                9.5  11.0  10.0   9.7
    rho, monitor vs probe                          0.06  0.71  0.71  0.71

At epoch 1 (the first report after warm-up, where pruning used to fire) the monitor did NOT rank the trials: every
run sat below the random start, having left the random features and not yet learned. From epoch 2 (half the run)
it does. So pruning waits for half the epochs (objectives.registry.training_axis), and this test asserts the
ranking there. Weak evidence either way: 6 trials, and within this budget only one run learned (probe 19.5% against
the random start's 11.2%). The bank-size study behind simclr.knn.MIN_BANK_PER_CLASS is bench/monitor_bank.py.

Not reproduced on another machine (2 Intel Xeon cores with AMX and avx512_bf16, 2026-12-07): rho by epoch was
0.09 at epoch 2 under bf16 autocast and -0.20 / 0.26 / 0.60 / 0.49 in fp32, so at the pruning step the monitor did
not rank these six trials there. The assertion is kept as it was fixed, marked as an expected failure (not strict)
until the pruning step or the evidence is settled on more trials: the test still runs and prints its numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import Tensor

from objectives import registry
from simclr.config import PretrainConfig, ProbeConfig
from simclr.data import ImageSet
from simclr.device import Runtime, runtime
from simclr.features import extract_features
from simclr.knn import MIN_BANK_PER_CLASS, bank_problem
from simclr.models import encoder_from_checkpoint_payload, load_checkpoint, load_encoder
from simclr.pretrain import build_model, knn_monitor, pretrain
from simclr.probe import evaluate_encoder
from tests.learnable import make_learnable
from tests.simclr.test_learning import spearman

N_CLASSES, SIZE, SEED = 20, 16, 0
PRETRAIN_PER_CLASS, BANK_PER_CLASS, QUERIES_PER_CLASS = 40, 40, 20
# Fixed before the first run, not tuned after: with 6 trials rho = 1 - sum(d^2) / 35, so 0.6 allows rank errors with
# sum(d^2) <= 14 (a reversed order has 70): a few neighbours swapped (two adjacent swaps: 0.89), not a shuffled order.
RHO_MIN = 0.6
BASE = PretrainConfig(
    epochs=4,
    batch_size=64,
    optimizer="adamw",
    lr=2e-3,
    lr_scaling="none",
    weight_decay=1e-6,
    warmup_epochs=0.5,  # as the smoke preset: pruning may fire after epoch 1
    temperature=0.2,
    crop_min_scale=0.5,  # test_learning.py's views: a 16x16 image's 0.08 crop holds no glyph
    jitter_strength=1.0,
    monitor_every=1,
    checkpoint_every=1,  # the encoder at the pruning step is read from its checkpoint (on_checkpoint)
    knn_k=20,
)
SETTINGS = (  # (temperature, lr)
    (0.2, 2e-3),  # test_learning.py's setting
    (0.5, 2e-3),  # the SimCLR paper's CIFAR temperature
    (1.0, 6e-3),  # a corner of the search space: its highest temperature, 3x the lr
    (0.1, 2e-4),  # the opposite corner: its lowest temperature, 0.1x the lr
    (5.0, 2e-3),  # clearly worse: 5x the space's highest temperature (flat softmax, weak gradients)
    (0.2, 2e-5),  # clearly worse: a hundredth of the lr (the encoder stays near its random start)
)
PROBE = ProbeConfig(probe_epochs=100, probe_batch_size=0, probe_lr=0.1)


@dataclass
class Run:
    name: str  # "T 0.20 lr 2.0e-03", or "random" for the reference
    monitors: list[float]  # knn_top1 the run reported, one per epoch, percent
    probe: float  # final linear-probe val top-1, percent
    # epoch -> (bank (M, 512), queries (Q, 512)) features of the encoder at that epoch
    features: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)


@dataclass
class Trials:
    runs: list[Run]  # one per SETTINGS entry
    random: Run  # the encoder every run starts from: its monitor (one value) and probe, for reference
    bank_labels: Tensor = field(repr=False)  # (M,)
    query_labels: Tensor = field(repr=False)  # (Q,)
    prune_at: int  # the epoch pruning may first fire at (the simclr objective's report_axis)

    def rho(self, epoch: int) -> float:
        """Spearman's rho of the monitor the runs reported at `epoch` against their final probes."""
        return spearman([r.monitors[epoch - 1] for r in self.runs], [r.probe for r in self.runs])


def image_set(n_per_class: int, seed: int) -> ImageSet:
    x, y = make_learnable(n_per_class, N_CLASSES, seed=seed, size=SIZE)
    return ImageSet(x, y, [f"glyph_{i}" for i in range(N_CLASSES)])


def train_run(
    cfg: PretrainConfig, train: ImageSet, monitor: tuple[ImageSet, ImageSet], folder: Path | None, **kw
) -> Run:
    """One trial: pretrain with the monitor on, probe the final encoder. With a `folder`, keep the bank and query
    features of the encoder after every epoch (read from its checkpoints: bench/monitor_bank.py). `kw`: rt, mean,
    std."""
    bank, queries = monitor
    run = Run(f"T {cfg.temperature:4.2f} lr {cfg.lr:7.1e}", [], 0.0)

    def keep(path: Path, epoch: int) -> None:  # last.pt is replaced by the next checkpoint: read it now
        encoder = encoder_from_checkpoint_payload(load_checkpoint(path), name=f"epoch {epoch}")
        run.features[epoch] = (
            extract_features(encoder, bank.images, rt=kw["rt"]),
            extract_features(encoder, queries.images, rt=kw["rt"]),
        )

    hooks = {"checkpoint_dir": folder, "on_checkpoint": keep} if folder is not None else {}
    result = pretrain(cfg, train, seed=SEED, monitor=monitor, **hooks, **kw)
    run.monitors = [h["knn_top1"] for h in result.history]
    splits = {"train": bank, "val": queries}
    probe = evaluate_encoder(result.encoder, splits, PROBE, rt=kw["rt"], cache_dir=None, data_key="glyphs", seed=SEED)
    run.probe = probe.val_top1
    return run


def random_run(bank: ImageSet, queries: ImageSet, *, rt: Runtime, mean, std) -> Run:
    """The encoder every run starts from, through the loop's own monitor function and the same probe."""
    monitor = knn_monitor(
        build_model(BASE, SEED).encoder,
        bank,
        queries,
        rt=rt,
        mean=mean,
        std=std,
        k=BASE.knn_k,
        temperature=BASE.knn_temperature,
    )
    encoder = load_encoder("random", seed=SEED, mean=mean, std=std)
    splits = {"train": bank, "val": queries}
    probe = evaluate_encoder(encoder, splits, PROBE, rt=rt, cache_dir=None, data_key="glyphs", seed=SEED)
    return Run("random", [monitor], probe.val_top1)


@pytest.fixture(scope="module")
def trials() -> Trials:
    return make_trials()


def make_trials(folders: Callable[[], Path] | None = None) -> Trials:
    """The six runs and the random reference, printed; `folders` (a new directory a call) keeps every run's
    features after every epoch (bench/monitor_bank.py)."""
    torch.set_num_threads(2)  # the budget's two cores, whatever the host has
    started = time.perf_counter()
    rt = runtime("cpu", "auto", True, False)
    train = image_set(PRETRAIN_PER_CLASS, SEED)
    bank, queries = image_set(BANK_PER_CLASS, SEED + 1), image_set(QUERIES_PER_CLASS, SEED + 2)
    pixels = train.images.float().div(255)
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).tolist()
    runs = []
    for temperature, lr in SETTINGS:
        cfg = dataclasses.replace(BASE, temperature=temperature, lr=lr)
        folder = folders() if folders is not None else None
        runs.append(train_run(cfg, train, (bank, queries), folder, rt=rt, mean=mean, std=std))
    random = random_run(bank, queries, rt=rt, mean=mean, std=std)
    out = Trials(
        runs, random, bank.labels, queries.labels, registry.get("simclr").report_axis(dataclasses.asdict(BASE))[0]
    )
    seconds = time.perf_counter() - started
    print(
        f"\n{seconds:.0f} s for {len(runs)} runs and the reference ({rt.describe()}); prune from epoch {out.prune_at}"
    )
    for r in [random, *runs]:
        print(f"{r.name:>18}: probe {r.probe:5.1f}%, monitor by epoch " + " ".join(f"{m:5.1f}" for m in r.monitors))
    print("rho by epoch: " + " ".join(f"{out.rho(e):.3f}" for e in range(1, BASE.epochs + 1)))
    return out


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="rho 0.09 (bf16) / 0.26 (fp32) at the pruning step on an AMX Xeon: docstring")
def test_monitor_at_the_pruning_step_ranks_trials_as_their_final_probes(trials):
    assert trials.rho(trials.prune_at) >= RHO_MIN, (trials.rho(trials.prune_at), trials.runs)


@pytest.mark.parametrize(
    "bank_size, n_classes, too_small",
    [(500, 100, True), (MIN_BANK_PER_CLASS * 100 - 1, 100, True), (MIN_BANK_PER_CLASS * 100, 100, False), (0, 1, True)],
)
def test_bank_problem_says_why_below_the_minimum_per_class(bank_size, n_classes, too_small):
    reason = bank_problem(bank_size, n_classes)
    assert (reason is not None) == too_small
    if too_small:
        assert "\n" not in reason and f"{bank_size} images over {n_classes} classes" in reason
        assert f"at least {MIN_BANK_PER_CLASS} a class" in reason


@pytest.mark.parametrize("bank_size, n_classes", [(10, 0), (-1, 10)])
def test_bank_problem_rejects_impossible_sizes(bank_size, n_classes):
    with pytest.raises(ValueError):
        bank_problem(bank_size, n_classes)
