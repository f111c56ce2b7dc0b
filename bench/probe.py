"""Seconds for the linear probe: 100 epochs on 45,000 x 512 features, 100 classes (CIFAR-100 probe-train),
validated on 5,000 each epoch, with the default ProbeConfig (and full batch for comparison).

    python bench/probe.py [--epochs 100] [--n 45000]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

import common  # noqa: F401
from simclr.config import ProbeConfig
from simclr.probe import linear_probe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--n", type=int, default=45000)
    p.add_argument("--classes", type=int, default=100)
    args = p.parse_args()
    common.header("linear probe on cached features")
    g = torch.Generator().manual_seed(0)
    centers = 0.12 * torch.randn(args.classes, 512, generator=g)  # overlapping classes: accuracy well below 100%

    def split(n):
        y = torch.randint(0, args.classes, (n,), generator=g)
        return centers[y] + torch.randn(n, 512, generator=g), y

    train, val, test = split(args.n), split(args.n // 9), split(10000)
    for name, cfg in (
        ("default (minibatch)", ProbeConfig(probe_epochs=args.epochs)),
        ("full batch", dataclasses.replace(ProbeConfig(probe_epochs=args.epochs), probe_batch_size=0, probe_lr=1.0)),
    ):
        t0 = time.perf_counter()
        r = linear_probe(train, val, test, cfg, num_classes=args.classes)
        s = time.perf_counter() - t0
        print(
            f"{name:20s} {args.epochs} epochs on {args.n} x 512, {args.classes} classes: {s:6.2f} s "
            f"(val top-1 {r.val_top1:.1f}%, test top-1 {r.test_top1:.1f}%, top-5 {r.test_top5:.1f}%)"
        )
    print(f"peak RSS: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
