"""The official SimCLR CIFAR-10 recipe with our pipeline, for a CUDA machine: check the published numbers in one go.

google-research/simclr's README trains ResNet-18 on CIFAR-10 for 1,000 epochs at batch 512 with learning rate
1.0 "per 256 images" (linear scaling: 1.0 x 512 / 256 = 2.0 here), LARS, weight decay 1e-6, temperature 0.5, colour
strength 0.5 and no blur, and reports "around 91%" linear accuracy; solo-learn's SimCLR ResNet-18 reaches 90.7.
This script runs that recipe (10 warm-up epochs, then cosine decay, per step) through `simclr.pretrain.pretrain`
and, every --every epochs, prints the in-domain accuracy of the frozen encoder on CIFAR-10 test: the weighted kNN
(k 200, temperature 0.1, standardised features, bank = the 50,000 training images) and the linear protocol
(simclr.probe: 100 epochs on the 50,000 training features, test top-1). It checkpoints every --every epochs
and, started again with the same --work-dir, resumes where it stopped.

    python bench/official_cifar10.py --data-dir data --work-dir runs/official [--every 50] [--epochs 1000]

On a CPU it runs too (slowly): the tests run it for one epoch on a few generated images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common
from errors import UserError
from simclr.config import PretrainConfig, ProbeConfig
from simclr.data import CIFAR10_MEAN, CIFAR10_STD, ImageSet, load_dataset, stratified_subset
from simclr.device import runtime, seed_everything
from simclr.models import encoder_from_checkpoint_payload, load_checkpoint
from simclr.pretrain import CHECKPOINT_NAME, pretrain
from simclr.probe import evaluate_encoder
from simclr.schedule import effective_lr

BATCH, BASE_LR = 512, 1.0  # the README's --train_batch_size and --learning_rate (per 256 images)


def recipe(epochs: int, every: int, batch: int = BATCH) -> PretrainConfig:
    return PretrainConfig(
        epochs=epochs,
        batch_size=batch,
        optimizer="lars",
        lr=BASE_LR,  # per 256 images, scaled by the batch (lr_scaling="linear", the source's learning_rate_scaling)
        momentum=0.9,
        weight_decay=1e-6,
        warmup_epochs=10,
        temperature=0.5,
        crop_min_scale=0.08,
        jitter_strength=0.5,
        blur_p=0.0,
        checkpoint_every=every,
        monitor_every=every,
        monitor_size=0,  # the whole training set is the kNN bank, the whole test set the queries
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data", help="where cifar-10-python.tar.gz is (downloaded if missing)")
    p.add_argument("--work-dir", type=Path, default=Path("runs/official-cifar10"), help="checkpoint; resumed from")
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--every", type=int, default=50, help="epochs between evaluations (and checkpoints)")
    p.add_argument("--batch", type=int, default=BATCH, help="images per step; the learning rate scales with it")
    p.add_argument("--fraction", type=float, default=1.0, help="stratified share of CIFAR-10 (a quick look only)")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    args = p.parse_args()
    rt = runtime(args.device, "auto", True, args.compile)
    seed_everything(0)
    common.header(f"official SimCLR CIFAR-10 recipe, {rt.describe()}")
    sets: list[ImageSet] = []
    for split in ("train", "test"):
        data = load_dataset("cifar10", split, args.data_dir)
        sets.append(data.subset(stratified_subset(data.labels, args.fraction, 0)) if args.fraction < 1 else data)
    train, test = sets
    cfg = recipe(args.epochs, args.every, args.batch)
    trained = effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling)
    print(f"# {len(train)} train / {len(test)} test images; lr {trained:g} (= {BASE_LR:g} x {cfg.batch_size} / 256)")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    last = args.work_dir / CHECKPOINT_NAME
    started, knn = time.perf_counter(), {}

    def on_epoch(metrics: dict) -> None:
        if "knn_top1" in metrics:
            knn[metrics["epoch"]] = metrics["knn_top1"]

    def on_checkpoint(path: Path, epoch: int) -> None:
        encoder = encoder_from_checkpoint_payload(load_checkpoint(path), name=f"epoch {epoch}")
        splits = {"train": train, "val": test}  # "val" is the test split here: nothing is selected on it
        probe = evaluate_encoder(encoder, splits, ProbeConfig(), rt=rt, cache_dir=None, data_key="cifar10")
        print(
            f"epoch {epoch:>4}: kNN {knn.get(epoch, float('nan')):5.1f}%  linear {probe.val_top1:5.1f}%  "
            f"(CIFAR-10 test; {(time.perf_counter() - started) / 60:.1f} min)",
            flush=True,
        )

    pretrain(
        cfg,
        train,
        rt=rt,
        seed=0,
        monitor=(train, test),
        checkpoint_dir=args.work_dir,
        resume=last if last.exists() else None,
        on_epoch=on_epoch,
        on_checkpoint=on_checkpoint,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
    print("# published: around 91% (google-research/simclr README, ResNet-18), 90.7% (solo-learn)")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:  # no archive offline, a checkpoint of another recipe in --work-dir, ...
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
