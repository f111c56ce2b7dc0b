"""Frozen-encoder feature extraction throughput (images/s): CIFAR-stem ResNet-18 at 32x32, and the
ImageNet-stem ResNet-18 at 32/64/96/224 (the linear protocol's resolutions). Random weights: the cost
does not depend on the values.

    python bench/features.py [--n 1024] [--device auto] [--resolutions 32,64,96,224]
"""

from __future__ import annotations

import argparse
import time

import torch

import common  # noqa: F401
from simclr.device import runtime
from simclr.features import extract_features
from simclr.models import Encoder, resnet18, weights_digest

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def rate(encoder: Encoder, images: torch.Tensor, rt, batch: int) -> float:
    extract_features(encoder, images[:batch], rt=rt, batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    extract_features(encoder, images, rt=rt, batch_size=batch)
    return len(images) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024, help="images per measurement (fewer at 224)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--resolutions", default="32,64,96,224")
    args = p.parse_args()
    common.header("feature extraction (frozen ResNet-18, eval mode, no_grad)")
    rt = runtime(args.device, args.precision)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8)
    cifar = resnet18("cifar")
    enc = Encoder(cifar, "random", "cifar", *CIFAR, None, weights_digest(cifar))
    print(f"CIFAR encoder, 32x32, {rt.describe()}: {rate(enc, images, rt, args.batch):8.1f} images/s")
    inet = resnet18("imagenet")
    for res in (int(r) for r in args.resolutions.split(",")):
        n = args.n if res <= 96 else max(args.batch // 2, args.n // 4)
        enc = Encoder(inet, "imagenet", "imagenet", *IMAGENET, res, weights_digest(inet))
        print(
            f"ImageNet encoder at {res:3d}x{res:<3d} {rt.describe()}: "
            f"{rate(enc, images[:n], rt, min(args.batch, n // 2 or 1)):8.1f} images/s"
        )
    print(f"peak RSS: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
