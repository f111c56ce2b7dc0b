"""The cost of a comparison before it runs: the data sizes (a preflight that loads the data and resolves the
device, so a UserError stops `compare` before anything is created), a speed test of this machine, and a cost
model that turns each planned study's budget into a rough time."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from objectives import make_objective
from objectives.compare import PlannedStudy
from simclr.config import make_config


@dataclass
class Sizes:
    """Image counts of the comparison's data (from the preflight)."""

    pretrain: int  # pretraining images at the preset's (full) data_fraction
    probe_train: int
    probe_val: int
    test: int


def preflight(plans: Sequence[PlannedStudy], device: str) -> tuple[Sizes, Any]:
    """Load the data and resolve the device as the hyperparameter study will (downloading CIFAR when allowed and
    missing): a UserError here stops compare before anything is created. Returns the sizes and the runtime."""
    planned = next(s for s in plans if s.role == "simclr_hparams")
    objective = make_objective(planned.spec(), device=device)
    objective.prepare()
    config = objective.config
    splits = objective.data.probe_splits(config)
    sizes = Sizes(
        len(objective.data.pretrain_set(config)), len(splits["train"]), len(splits["val"]), len(splits["test"])
    )
    return sizes, objective.runtime(config)


def speed_test(rt, seconds: float = 1.5) -> float:
    """Training images per second of the CIFAR ResNet-18 (forward + backward + SGD) on this runtime, the median
    of steps timed for about `seconds` after two warm-up steps: the calibration of the rough time estimate."""
    import statistics

    import torch

    from simclr.models import resnet18

    batch = 256 if rt.device.type == "cuda" else 32  # CPU steps are long already at 32
    model = rt.prepare(resnet18("cifar", num_classes=10)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=rt.device).contiguous(memory_format=rt.memory_format)
    y = torch.randint(0, 10, (batch,), device=rt.device)

    def step() -> float:
        start = time.perf_counter()
        with rt.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # waits for the device
        return time.perf_counter() - start

    step(), step()
    times: list[float] = []
    while len(times) < 3 or sum(times) < seconds:
        times.append(step())
    return batch / statistics.median(times)


def _imagenet_cost(resolution: int) -> float:
    """Forward cost of the ImageNet-stem ResNet-18 at `resolution` relative to the CIFAR one at 32x32
    (1.82 vs 0.56 GMACs at 224: the 7x7 stride-2 stem and max-pool shrink the maps 16-fold)."""
    return 1.82 / 0.56 * (resolution / 224) ** 2


def work(planned: PlannedStudy, sizes: Sizes) -> tuple[float, float]:
    """(training image passes, forward-only image passes) of one study's full budget: a cost model in units of a
    CIFAR ResNet-18 image. Probe training on cached features is small and left out."""
    config = make_config(planned.objective, planned.spec().config)
    probe_images = sizes.probe_train + sizes.probe_val + sizes.test
    if planned.objective == "simclr":
        if planned.sampler == "grid" and not config.pretrain.equal_steps_as:
            fractions = [float(v) for v in planned.spec().space["data_fraction"].choices]
            pretrain = sum(fractions) * sizes.pretrain / max(fractions)  # the largest is the full fraction
        else:  # equal steps: every scale point costs what the full fraction's run costs
            pretrain = planned.trials * sizes.pretrain
        cfg = config.pretrain
        epochs, every = cfg.epochs, cfg.monitor_every
        monitor = (epochs // every if every else 0) * (min(cfg.monitor_size, sizes.probe_train) + sizes.probe_val)
        return 2 * epochs * pretrain, planned.trials * (monitor + probe_images)
    if planned.objective == "supervised":
        epochs = config.supervised.epochs
        return planned.trials * epochs * sizes.probe_train, planned.trials * (epochs * sizes.probe_val + sizes.test)
    cost = _imagenet_cost(config.encoder.resolution) if planned.encoder == "imagenet" else 1.0
    return 0.0, cost * probe_images  # features are extracted once per encoder and cached


def estimate_seconds(plans: Sequence[PlannedStudy], sizes: Sizes, train_rate: float) -> dict[str, float]:
    """Rough seconds per study: training passes at `train_rate`, forward passes 4x faster (measured: 100 and 400
    images/s on 2 CPU cores), plus 10 s of loading data. An upper bound where trials are pruned."""
    out = {}
    for planned in plans:
        train, forward = work(planned, sizes)
        out[planned.name] = 10.0 + train / train_rate + forward / (4 * train_rate)
    return out


def _images(n: float) -> str:
    return f"{n:,.0f}"


def budget_lines(plans: Sequence[PlannedStudy], sizes: Sizes, estimate: dict[str, float] | None) -> list[str]:
    """The budget printed before starting: per study its trials, epochs, images (and a rough time)."""
    width = max(len(s.name) for s in plans)
    lines = []
    for k, planned in enumerate(plans, 1):
        spec = planned.spec()
        config = make_config(planned.objective, spec.config)
        if planned.objective == "simclr":
            if planned.sampler == "grid":
                fractions = [float(v) for v in spec.space["data_fraction"].choices]
                scale = sizes.pretrain / max(fractions)
                what = "data_fraction " + ", ".join(f"{f:g} (~{_images(f * scale)})" for f in fractions)
            else:
                what = f"{_images(sizes.pretrain)} pretraining images; search {', '.join(spec.space)}"
            epochs = f"{config.pretrain.epochs} epochs (+ probe {config.probe.probe_epochs})"
        elif planned.objective == "supervised":
            what = f"{_images(sizes.probe_train)} training images; search {', '.join(spec.space)}"
            epochs = f"{config.supervised.epochs} epochs"
        else:
            encoder = planned.encoder + (f" at {config.encoder.resolution}px" if planned.encoder == "imagenet" else "")
            what = f"encoder {encoder}; {_images(sizes.probe_train)} images; search {', '.join(spec.space)}"
            epochs = f"{config.probe.probe_epochs} probe epochs"
        time_text = f"  ~{estimate[planned.name] / 60:.1f} min" if estimate else ""
        lines.append(
            f"  {k}/{len(plans)} {planned.name:<{width}}  {planned.trials:>3} trials  {epochs}; {what}{time_text}"
        )
    lines.append(
        f"  data: probe-train {_images(sizes.probe_train)}, probe-val {_images(sizes.probe_val)}, "
        f"test {_images(sizes.test)} images"
    )
    if estimate:
        total = sum(estimate.values()) / 60
        lines.append(f"  rough total: ~{total:.0f} min if nothing is pruned (a cost model calibrated by a speed test)")
    return lines
