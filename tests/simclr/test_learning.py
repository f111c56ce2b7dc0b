"""Proof that SimCLR pretraining learns at CPU scale, and that the kNN monitor ranks encoders as the probe does.

Dataset (tests/learnable.py): 20 glyph classes (chance 5%) at 16x16 -- the glyph is the class; brightness, tint,
clutter and position are nuisance. 2,000 unlabelled pretraining images; the monitor's bank and the probe's train
split are the same 1,000 labelled images (50 a class), its queries and the probe's val split 500 more, as in the
`simclr` objective (bank = probe-train, queries = probe-val). 16x16 rather than CIFAR's 32x32: the CIFAR stem
does not downsample, so a step costs in proportion to pixels (measured: 32x32 trains 3x slower per image).

Budget: 4 epochs of 32 steps at batch 64 (128 Adam steps, 8,000 images, two views each), the monitor and a
checkpoint after every epoch, then the linear probe (100 full-batch epochs) of 5 encoders: the random start and
epochs 1-4; the random start and the last epoch are also probed on 20 glyph classes pretraining never saw
(transfer to new classes). Why 128 steps: bench/learning.py (docs/learning.md) held this setting against
lightly's SimCLR recipe on the same images; the smallest budget it measured at which both implementations beat a
random encoder by at least 5 points, in-domain and on new classes, was 64 steps (epoch 2 of a 6-epoch schedule).
Run as a 2-epoch schedule (half of it warm-up) ours cleared that bar by only 6.6 points in-domain, too little for
a threshold with a safety factor, so the test trains twice that budget. 3.5 minutes for the whole file on 2 AMD
EPYC cores without native bf16 (fp32, 52 training images/s), nothing else running.

Thresholds were fixed from the first run of this configuration (random: monitor 14.4%, probe 11.4%, new classes
9.6%; epoch 4: monitor 25.6%, probe 23.0%, new classes 26.2%) with a safety factor of 2, and not tuned after:
the probe must gain MARGIN = 5 points (half the 11.6 measured, rounded down), 8 on the new classes (half of
16.6), the monitor must rise 5.5 points (half of 11.2) and end at least 10 points above chance (half of 20.6).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from simclr.config import PretrainConfig, ProbeConfig
from simclr.data import ImageSet
from simclr.device import runtime
from simclr.models import Encoder, encoder_from_checkpoint_payload, load_checkpoint, load_encoder
from simclr.pretrain import build_model, knn_monitor, pretrain
from simclr.probe import evaluate_encoder
from tests.learnable import glyphs, make_learnable, write_cifar100_archive

N_CLASSES, SIZE, SEED = 20, 16, 0
CHANCE = 100.0 / N_CLASSES
MARGIN = 5.0  # probe points the trained encoder must gain over the random one (see the module docstring)
MONITOR_RISE = 5.5  # monitor points from the random encoder to the trained one
MONITOR_OVER_CHANCE = 10.0  # monitor points of the trained encoder above chance
TRANSFER_MARGIN = 8.0  # probe points on the 20 unseen classes (see the module docstring)
CONFIG = PretrainConfig(
    epochs=4,
    batch_size=64,  # measured: at batch 32 (same steps, half the images) the monitor stayed at random for 128 steps
    optimizer="adamw",
    lr=2e-3,
    lr_scaling="none",  # the rate trained with, as bench/learning.py states it for lightly's recipe too
    weight_decay=1e-6,
    warmup_epochs=1,
    temperature=0.2,
    crop_min_scale=0.5,  # a 16x16 image's 0.08 crop is a 4-pixel square: no glyph left to match
    jitter_strength=1.0,  # the paper's ImageNet strength: hue +-0.2 hides most of an image's tint
    monitor_every=1,
    checkpoint_every=1,
    knn_k=20,
)
PROBE = ProbeConfig(probe_epochs=100, probe_batch_size=0, probe_lr=0.1)


@dataclass
class Stage:
    name: str  # "random" or "epoch N"
    monitor: float  # knn_top1 of the monitor, percent
    probe: float  # linear-probe val top-1, percent
    new_classes: float | None = None  # linear-probe val top-1 on classes pretraining never saw (random, last epoch)


def image_set(n_per_class: int, seed: int, first_class: int = 0) -> ImageSet:
    """Glyph classes first_class .. first_class + N_CLASSES - 1, labelled 0 .. N_CLASSES - 1."""
    x, y = make_learnable(n_per_class, first_class + N_CLASSES, seed=seed, size=SIZE)
    keep = y >= first_class
    names = [f"glyph_{i}" for i in range(first_class, first_class + N_CLASSES)]
    return ImageSet(x[keep], y[keep] - first_class, names)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks, tied values sharing their mean rank."""

    def ranks(values: list[float]) -> torch.Tensor:
        v = torch.tensor(values, dtype=torch.float64)
        below, equal = (v[None] < v[:, None]).sum(1), (v[None] == v[:, None]).sum(1)
        return below + (equal + 1) / 2  # 1-based; ties get the mean of the ranks they span

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


@pytest.fixture(scope="module")
def stages(tmp_path_factory: pytest.TempPathFactory) -> list[Stage]:
    """One SimCLR run; the random encoder it starts from and the encoders of its checkpoints (every epoch), each
    with the monitor the run reported and the linear probe's val top-1."""
    torch.set_num_threads(2)  # the budget's two cores, whatever the host has
    started = time.perf_counter()
    rt = runtime("cpu", "auto", True, False)
    train, bank, queries = image_set(100, SEED), image_set(50, SEED + 1), image_set(25, SEED + 2)
    pixels = train.images.float().div(255)
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).tolist()  # as CIFAR's own stats
    saved: dict[int, Encoder] = {}

    def keep(path: Path, epoch: int) -> None:  # last.pt is replaced by the next checkpoint: load it now
        saved[epoch] = encoder_from_checkpoint_payload(load_checkpoint(path), name=f"epoch {epoch}")

    result = pretrain(
        CONFIG,
        train,
        rt=rt,
        seed=SEED,
        monitor=(bank, queries),
        checkpoint_dir=tmp_path_factory.mktemp("simclr"),
        on_checkpoint=keep,
        mean=mean,
        std=std,
    )
    monitors = {h["epoch"]: h["knn_top1"] for h in result.history if "knn_top1" in h}
    assert sorted(monitors) == sorted(saved) == list(range(1, CONFIG.epochs + 1))
    # the run's starting point, through the same monitor function the loop calls
    monitors[0] = knn_monitor(
        build_model(CONFIG, SEED).encoder,
        bank,
        queries,
        rt=rt,
        mean=mean,
        std=std,
        k=CONFIG.knn_k,
        temperature=CONFIG.knn_temperature,
    )
    saved[0] = load_encoder("random", seed=SEED, mean=mean, std=std)
    splits = {"train": bank, "val": queries}
    unseen = {"train": image_set(50, SEED + 3, N_CLASSES), "val": image_set(25, SEED + 4, N_CLASSES)}
    out = []
    for epoch in sorted(saved):
        probe = evaluate_encoder(saved[epoch], splits, PROBE, rt=rt, cache_dir=None, data_key="learnable", seed=SEED)
        out.append(Stage("random" if epoch == 0 else f"epoch {epoch}", monitors[epoch], probe.val_top1))
        if epoch in (0, CONFIG.epochs):  # transfer: the same encoder, probed on 20 classes it never saw
            new = evaluate_encoder(saved[epoch], unseen, PROBE, rt=rt, cache_dir=None, data_key="unseen", seed=SEED)
            out[-1].new_classes = new.val_top1
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s ({result.images_per_second:.0f} images/s in training, {rt.describe()})")
    for s in out:
        new = f"  new classes {s.new_classes:5.1f}%" if s.new_classes is not None else ""
        print(f"{s.name:>8}: monitor {s.monitor:5.1f}%  probe {s.probe:5.1f}%{new}")
    return out


@pytest.mark.slow
def test_pretraining_beats_the_random_encoder_by_the_margin(stages):
    random, trained = stages[0], stages[-1]
    assert trained.probe - random.probe >= MARGIN, stages


@pytest.mark.slow
def test_pretraining_transfers_to_classes_it_never_saw(stages):
    random, trained = stages[0], stages[-1]
    assert trained.new_classes - random.new_classes >= TRANSFER_MARGIN, stages


@pytest.mark.slow
def test_monitor_ranks_encoders_as_the_linear_probe_does(stages):
    rho = spearman([s.monitor for s in stages], [s.probe for s in stages])
    assert rho >= 0.8, (rho, stages)


@pytest.mark.slow
def test_monitor_of_the_trained_encoder_is_well_above_chance_and_rises(stages):
    monitors = [s.monitor for s in stages]  # random, epoch 1, ..., the last epoch
    assert monitors[-1] >= CHANCE + MONITOR_OVER_CHANCE, stages
    assert monitors[-1] - monitors[0] >= MONITOR_RISE, stages  # above the random encoder it started from
    assert monitors[-1] > monitors[1], stages  # and above the first monitored epoch


def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 4, 5]) == pytest.approx(0.9)  # 1 - 6 * 2 / (5 * 24)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)  # ranks 1, 2.5, 2.5, 4


def test_learnable_images_are_deterministic_and_balanced():
    x, y = make_learnable(3, 4, seed=7, size=16)
    assert x.dtype == torch.uint8 and x.shape == (12, 3, 16, 16) and y.dtype == torch.int64
    assert torch.equal(torch.bincount(y), torch.full((4,), 3))
    x2, y2 = make_learnable(3, 4, seed=7, size=16)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(make_learnable(3, 4, seed=8, size=16)[0], x)


def test_glyphs_survive_a_flip_and_differ_between_classes():
    shapes = torch.from_numpy(glyphs(100))
    assert torch.equal(shapes, shapes.flip(-1))  # a horizontal flip keeps the class
    differ = (shapes[:, None] != shapes[None]).sum(dim=(-1, -2))  # (100, 100) cells apart
    assert differ[~torch.eye(100, dtype=torch.bool)].min() >= 4
    assert torch.equal(torch.from_numpy(glyphs(10)), shapes[:10])  # classes do not depend on the class count


def test_cifar100_archive_loads_through_the_real_reader(tmp_path):
    from simclr.cifar import read_cifar

    write_cifar100_archive(tmp_path, 2, 1, n_classes=10, seed=3)
    x, y, names = read_cifar("cifar100", "train", tmp_path, download=False)
    assert x.shape == (20, 3, 32, 32) and sorted(set(y.tolist())) == list(range(10)) and len(names) == 100
    assert torch.equal(torch.from_numpy(x), make_learnable(2, 10, seed=3)[0])
