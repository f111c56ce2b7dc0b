"""Does our SimCLR learn as well as a trusted implementation, and how fast does it get there?

Our pipeline (simclr.pretrain.pretrain: uint8 images on the device, batched augmentation, precision auto) and
lightly's SimCLR recipe (bench/lightly_recipe.py: SimCLRTransform on PIL images in a DataLoader with workers,
torchvision's ResNet-18 with the CIFAR stem, SimCLRProjectionHead, NTXentLoss) train on the same images with the
same budget and hyperparameters (epochs, batch, optimiser, peak learning rate, warm-up + cosine per step,
temperature, colour strength, crop scale, head sizes), for several seeds each. After every epoch both encoders
are judged by the same external probe (bench/frozen_eval.py: scikit-learn kNN, and logistic regression at the
epochs in --linear-at) on every probe set: in-domain (the pretraining images' own classes) and transfer (the other
data set), next to two random encoders (our initialisation and torchvision's).

Data (16x16, so a CPU run takes minutes: the CIFAR stem does not downsample, so cost follows pixels):
- glyph: tests/learnable.py's identicons, 20 classes; pretraining 2,000 images (seed 0), probe-train 1,000 (seed
  1), probe-test 500 (seed 2): images the project generates, but not the draws any setting was tuned on.
- digits: scikit-learn's 1,797 scanned handwritten digits (8x8 grey, 10 classes), written as an ImageFolder
  (train/<digit>/*.png, test/<digit>/*.png, a stratified two-thirds for train) and read back through
  `simclr.data.load_dataset("folder:...")`, resized to 16x16; pretraining on its train split without labels.

Time to accuracy: per pretraining set, the target is lightly's final in-domain kNN accuracy (mean over seeds); each
run's time is its training wall time (evaluation excluded) at the first epoch whose in-domain kNN reaches it.

    python bench/learning.py [--data glyph digits] [--seeds 0 1 2] [--epochs glyph=6 digits=10] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from frozen_eval import ProbeSet, judge
from learning_table import print_tables, speed_lines
from lightly_recipe import cifar_resnet18, train_lightly

import common
from simclr.config import PretrainConfig
from simclr.data import ImageSet, load_dataset, stratified_subset
from simclr.device import runtime
from simclr.models import encoder_from_checkpoint_payload, load_checkpoint, load_encoder
from simclr.pretrain import pretrain

SIZE = 16
FORWARD_FLOP_32PX = 1.11e9  # ResNet-18 (CIFAR stem), one 32x32 image forward (DESIGN.md's FLOP model)
# The learning test's setting (tests/simclr/test_learning.py), for both implementations.
RECIPE = PretrainConfig(
    epochs=6,
    batch_size=64,
    optimizer="adamw",
    lr=2e-3,
    lr_scaling="none",  # the rate both implementations train with (lightly's recipe states rates as is)
    weight_decay=1e-6,
    warmup_epochs=1,
    temperature=0.2,
    crop_min_scale=0.5,
    jitter_strength=1.0,
    monitor_every=0,
    checkpoint_every=1,
)
EPOCHS = {"glyph": 6, "digits": 10}  # ~190 steps each: 32 and 19 steps per epoch at batch 64


def glyph_data() -> tuple[ImageSet, ProbeSet, ProbeSet]:
    """Pretraining images of glyph classes 0-19, their probe (in-domain), and a probe of classes 20-39, which
    pretraining never saw (transfer to new classes of the same kind, as CIFAR-10 -> CIFAR-100)."""
    from tests.learnable import make_learnable

    def images(n_per_class: int, seed: int, classes: range) -> ImageSet:
        x, y = make_learnable(n_per_class, classes.stop, seed=seed, size=SIZE)
        keep = y >= classes.start
        return ImageSet(x[keep], y[keep] - classes.start, [f"glyph_{i}" for i in classes])

    seen, unseen = range(0, 20), range(20, 40)
    in_domain = ProbeSet("glyph", images(50, 1, seen), images(25, 2, seen))
    new_classes = ProbeSet("glyph-new", images(50, 3, unseen), images(25, 4, unseen))
    return images(100, 0, seen), in_domain, new_classes


def write_digits_folder(root: Path) -> Path:
    """scikit-learn's digits as an ImageFolder of 8x8 greyscale PNGs: root/train/<digit>/, root/test/<digit>/."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = torch.from_numpy(digits.target)
    train = set(stratified_subset(labels, 2 / 3, seed=0).tolist())
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / ("train" if i in train else "test") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype("uint8"), mode="L").save(folder / f"{i:04d}.png")
    return root


def digits_data(root: Path, labels_per_class: int) -> tuple[ImageSet, ProbeSet]:
    """Pretraining: the train split without labels; probe-train: `labels_per_class` labelled images a class of it
    (all 10 classes, stratified: with all ~120 a class, a random encoder's features already score 98%)."""
    name = f"folder:{write_digits_folder(root)}"
    train, test = (load_dataset(name, split, root, image_size=SIZE) for split in ("train", "test"))
    labelled = train.subset(stratified_subset(train.labels, 10 * labels_per_class / len(train), seed=0))
    return train, ProbeSet("digits", labelled, test)


def stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = images.float().div(255)
    return tuple(pixels.mean(dim=(0, 2, 3)).tolist()), tuple(pixels.std(dim=(0, 2, 3)).tolist())


class Recorder:
    """Judges an encoder after each epoch on every probe set and keeps the rows (evaluation time not counted)."""

    def __init__(self, probes: list[ProbeSet], linear_at: set[int], mean, std, rows: list[dict], **ids: object):
        self.probes, self.linear_at, self.mean, self.std, self.rows, self.ids = probes, linear_at, mean, std, rows, ids

    def __call__(self, epoch: int, module: torch.nn.Module, seconds: float, steps: int) -> None:
        for probe in self.probes:
            scores = judge(module, self.mean, self.std, probe, linear=epoch in self.linear_at, seed=self.ids["seed"])
            self.rows.append({**self.ids, "probe": probe.name, "epoch": epoch, "steps": steps, "seconds": seconds})
            self.rows[-1].update(scores)
        knn = [f"{r['probe']} {r['knn']:.1f}" for r in self.rows[-len(self.probes) :]]
        ids = f"{self.ids['impl']:>7} seed {self.ids['seed']} epoch {epoch}"
        print(f"  {ids}: {seconds:6.1f} s, kNN {', '.join(knn)}", flush=True)


def run_ours(cfg: PretrainConfig, images: ImageSet, seed: int, record: Recorder) -> None:
    rt = runtime("cpu", "auto", True, False)
    seconds, steps = [0.0], [0]
    n = len(images)

    def on_epoch(metrics: dict) -> None:  # training time of the epoch: its images over its throughput
        seconds[0] += n / metrics["images_per_second"]
        steps[0] = metrics["step"]

    def on_checkpoint(path: Path, epoch: int) -> None:
        encoder = encoder_from_checkpoint_payload(load_checkpoint(path), name=f"epoch {epoch}")
        record(epoch, encoder.module, seconds[0], steps[0])

    with tempfile.TemporaryDirectory() as tmp:
        pretrain(
            cfg,
            images,
            rt=rt,
            seed=seed,
            checkpoint_dir=tmp,
            on_epoch=on_epoch,
            on_checkpoint=on_checkpoint,
            mean=record.mean,
            std=record.std,
        )


def run_lightly(cfg: PretrainConfig, images: ImageSet, seed: int, record: Recorder, workers: int) -> None:
    steps_per_epoch = -(-len(images) // cfg.batch_size)
    train_lightly(
        cfg,
        images.images,
        mean=record.mean,
        std=record.std,
        seed=seed,
        workers=workers,
        on_epoch=lambda epoch, module, seconds: record(epoch, module, seconds, epoch * steps_per_epoch),
    )


def random_rows(probes: list[ProbeSet], mean, std, seed: int, rows: list[dict], **ids: object) -> None:
    torch.manual_seed(seed)
    inits = {"random (ours)": load_encoder("random", seed=seed).module, "random (tv)": cifar_resnet18()}
    for impl, module in inits.items():
        for probe in probes:
            rows.append({**ids, "impl": impl, "seed": seed, "probe": probe.name, "epoch": 0, "steps": 0})
            rows[-1].update(judge(module, mean, std, probe, linear=True, seed=seed))


def run_all(args: argparse.Namespace, epochs: dict[str, int]) -> tuple[list[dict], dict[str, int]]:
    """Every (pretraining set, seed): the random encoders, then each implementation; rows and image counts."""
    glyph, glyph_probe, new_classes = glyph_data()
    with tempfile.TemporaryDirectory(prefix="learning-") as tmp:  # the digits' PNGs live only while they are read
        digits = digits_data(Path(tmp) / "digits", args.digits_labels)
    data = {"glyph": (glyph, glyph_probe), "digits": digits}
    probes = [glyph_probe, new_classes, data["digits"][1]]
    rows: list[dict] = []
    for name in args.data:
        images, _ = data[name]
        cfg = PretrainConfig(**{**RECIPE.__dict__, "epochs": epochs[name]})
        mean, std = stats(images.images)
        linear_at = {e for e in args.linear_at if e < cfg.epochs} | {cfg.epochs}
        print(f"{name}: {len(images)} images, {cfg.epochs} epochs at batch {cfg.batch_size}", flush=True)
        for seed in args.seeds:
            random_rows(probes, mean, std, seed, rows, pretrain=name)
            for impl in args.impl:
                record = Recorder(probes, linear_at, mean, std, rows, pretrain=name, impl=impl, seed=seed)
                if impl == "ours":
                    run_ours(cfg, images, seed, record)
                else:
                    run_lightly(cfg, images, seed, record, args.workers)
    return rows, {name: len(data[name][0]) for name in args.data}


def _epochs(p: argparse.ArgumentParser, text: str) -> tuple[str, int]:
    """--epochs NAME=N: one line and exit 2 (argparse's) for anything else."""
    name, _, n = text.partition("=")
    if name not in EPOCHS or not n.isdigit() or int(n) < 1:
        p.error(f"--epochs {text!r}: give NAME=N with NAME one of {', '.join(EPOCHS)} and N >= 1")
    return name, int(n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", default=["glyph", "digits"], choices=["glyph", "digits"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", nargs="*", default=[], help="per pretraining set, e.g. glyph=6 digits=10")
    p.add_argument("--linear-at", nargs="+", type=int, default=[2, 4], help="epochs also judged by the linear probe")
    p.add_argument("--impl", nargs="+", default=["lightly", "ours"], choices=["lightly", "ours"])
    p.add_argument("--digits-labels", type=int, default=10, help="digits probe-train: labelled images a class")
    p.add_argument("--workers", type=int, default=2, help="lightly's DataLoader worker processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write every row (and the speed figures) as JSON here")
    p.add_argument("--tables", type=Path, nargs="+", help="print the tables of earlier --out files; train nothing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    common.header("SimCLR learning: ours vs lightly's recipe, same images and budget")
    fp32 = runtime("cpu", "auto", True, False).precision == "fp32"
    print(f"# {runtime('cpu', 'auto', True, False).describe()}; lightly: DataLoader workers {args.workers}")
    if args.tables:  # several runs' rows (e.g. one file per pretraining set) in one set of tables
        runs = [json.loads(path.read_text()) for path in args.tables]
        rows, epochs, sizes = [r for run in runs for r in run["rows"]], {}, {}
        for run in runs:
            epochs |= run["epochs"]
            sizes |= run.get("images", {})
    else:
        epochs = EPOCHS | dict(_epochs(p, e) for e in args.epochs)
        started = time.perf_counter()
        rows, sizes = run_all(args, epochs)
        print(f"# {time.perf_counter() - started:.0f} s in all")
    peak = common.matmul_rate(torch.float32 if fp32 else torch.bfloat16)
    flop_per_view = FORWARD_FLOP_32PX * (SIZE / 32) ** 2  # the CIFAR stem keeps the input's resolution
    print_tables(rows, epochs, speed_lines(rows, sizes, epochs, flop_per_view, peak))
    if args.out:
        args.out.write_text(json.dumps({"epochs": epochs, "seeds": args.seeds, "images": sizes, "rows": rows}))


if __name__ == "__main__":
    main()
