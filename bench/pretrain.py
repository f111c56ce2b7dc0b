"""SimCLR training throughput: our pipeline vs the classic one, and the fraction of the bf16 matmul peak.

Ours: uint8 images in memory on the training device, batched per-sample augmentation (simclr.augment),
bf16 autocast where native, channels_last; measured through the real `simclr.pretrain.pretrain` loop.
Classic (what the seed projects do): torchvision v1 transforms on PIL images in a DataLoader, fp32,
contiguous memory. Both run ResNet-18 (CIFAR stem) + projection head + NT-Xent, SGD, on the same
random 32x32 images. FLOP model: 1.11 GFLOP per 32x32 forward, training = 3x forward per view.

    python bench/pretrain.py [--batch 256] [--steps 6] [--device auto] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch

import common  # noqa: F401  (puts the repo on sys.path)
from simclr.config import PretrainConfig
from simclr.data import ImageSet
from simclr.device import runtime
from simclr.loss import nt_xent
from simclr.models import ProjectionHead, SimCLRModel, resnet18
from simclr.pretrain import pretrain

TRAIN_FLOP_PER_VIEW = 3 * 1.11e9


def ours(images: torch.Tensor, batch: int, steps: int, device: str, precision: str, compile: bool) -> float:
    rt = runtime(device, precision, channels_last=True, compile=compile)
    n = batch * steps
    data = ImageSet(images[:n], torch.zeros(n, dtype=torch.long), ["x"])
    cfg = PretrainConfig(epochs=2, batch_size=batch, warmup_epochs=0, checkpoint_every=0, monitor_every=0)
    seen = []
    pretrain(cfg, data, rt=rt, seed=0, on_epoch=seen.append)  # epoch 1 warms up (and compiles)
    return 2 * seen[-1]["images_per_second"]  # two views per image


def classic(images: torch.Tensor, batch: int, steps: int, workers: int) -> float:
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose(
        [
            T.RandomResizedCrop(32),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(0.2),
            T.ToTensor(),
            T.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
        ]
    )
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images[: batch * (steps + 1)]]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return tf(pil[i]), tf(pil[i])

    loader = torch.utils.data.DataLoader(
        Pairs(), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0
    )
    model = SimCLRModel(resnet18("cifar"), ProjectionHead())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t0, done = None, 0
    for i, (v1, v2) in enumerate(loader):
        if i == 1:  # first step is warm-up (workers start, allocator)
            t0 = time.perf_counter()
        _, z = model(torch.cat([v1, v2]))
        loss = nt_xent(*z.chunk(2), 0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += i >= 1
    return 2 * batch * done / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=6, help="steps timed per pipeline")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the classic pipeline")
    p.add_argument("--skip-classic", action="store_true")
    args = p.parse_args()
    common.header("SimCLR pretraining throughput (ResNet-18 CIFAR, 32x32)")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch * (args.steps + 1), 3, 32, 32), dtype=torch.uint8)
    rt = runtime(args.device, args.precision)
    peak = common.matmul_rate(torch.bfloat16 if rt.precision == "bf16" else torch.float32, device=str(rt.device))
    print(f"matmul peak ({rt.precision}, 2048^3):  {peak / 1e9:8.1f} GFLOP/s")
    ours_vps = ours(images, args.batch, args.steps, args.device, args.precision, args.compile)
    print(
        f"ours ({rt.describe()}{', compile' if args.compile else ''}): {ours_vps:8.1f} views/s  "
        f"= {ours_vps * TRAIN_FLOP_PER_VIEW / 1e9:.1f} GFLOP/s = {100 * ours_vps * TRAIN_FLOP_PER_VIEW / peak:.0f}% "
        f"of the measured matmul peak"
    )
    if not args.skip_classic:
        cls = classic(images, args.batch, max(2, args.steps // 2), args.workers)
        print(f"classic (PIL + v1 transforms, DataLoader x{args.workers}, fp32, contiguous): {cls:8.1f} views/s")
        print(f"speed-up ours / classic: {ours_vps / cls:.2f}x")
    print(f"peak RSS: {common.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
