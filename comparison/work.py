"""The cost model of a comparison: each planned study's budget as image passes (units of a CIFAR ResNet-18 image at
32x32), turned into rough seconds by a speed test of this machine (comparison.budget), corrected by what earlier
runs here measured (comparison.costs). One function per objective (`WORK`); the input cost follows the regime's
resolution key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comparison import labels, sizing
from comparison.plan import PlannedStudy, Request, plan
from comparison.regimes import PRETRAINING, SEEDED, dependencies
from simclr.config import make_config


@dataclass
class Sizes:
    """Image counts of the comparison's data (from the preflight)."""

    pretrain: int  # pretraining images at the preset's (full) data_fraction
    probe_train: int
    probe_val: int
    test: int
    data_fraction: float = 0.0  # the data_fraction and probe_fraction these counts were taken at (0: unknown)
    probe_fraction: float = 0.0
    classes: int = 0  # of the probe data (0: unknown)

    def at(self, config) -> Sizes:
        """The counts a config with other fractions (a sized plan) would see, in proportion."""
        flat = config.flat()
        d = flat.get("equal_steps_as") or flat.get("data_fraction") or self.data_fraction
        p = config.data.probe_fraction
        a = d / self.data_fraction if self.data_fraction else 1.0
        b = p / self.probe_fraction if self.probe_fraction else 1.0
        train, val = round(self.probe_train * b), round(self.probe_val * b)
        return Sizes(round(self.pretrain * a), train, val, self.test, d, p, self.classes)


def _imagenet_cost(resolution: int) -> float:
    """Forward cost of the ImageNet-stem ResNet-18 at `resolution` relative to the CIFAR one at 32x32
    (1.82 vs 0.56 GMACs at 224: the 7x7 stride-2 stem and max-pool shrink the maps 16-fold)."""
    return 1.82 / 0.56 * (resolution / 224) ** 2


def _pretrain_work(planned: PlannedStudy, config, sizes: Sizes, probe_images: int) -> tuple[float, float]:
    if planned.grid and not config.pretrain.equal_steps_as:
        fractions = [float(v) for v in planned.spec().space["data_fraction"].choices]
        pretrain = sum(fractions) * sizes.pretrain / max(fractions)  # the largest is the full fraction
    else:  # equal steps: every scale point costs what the full fraction's run costs
        pretrain = planned.trials * sizes.pretrain
    cfg = config.pretrain
    epochs, every = cfg.epochs, cfg.monitor_every
    monitor = (epochs // every if every else 0) * (min(cfg.monitor_size, sizes.probe_train) + sizes.probe_val)
    return 2 * epochs * pretrain, planned.trials * (monitor + probe_images)


def _labelled_work(planned: PlannedStudy, config, sizes: Sizes, probe_images: int) -> tuple[float, float]:
    """The same-data supervised arm: one view an image an epoch on the pretraining images, the kNN monitor and the
    probe as a SimCLR trial's."""
    cfg = config.supervised
    every = cfg.monitor_every
    monitor = (cfg.epochs // every if every else 0) * (min(cfg.monitor_size, sizes.probe_train) + sizes.probe_val)
    return planned.trials * cfg.epochs * sizes.pretrain, planned.trials * (monitor + probe_images)


def _input_cost(planned: PlannedStudy, config) -> float:
    """An image's cost relative to the CIFAR ResNet-18 at 32x32: the regime's input resolution decides it (the
    ImageNet-stem encoder reads the `resolution` key; the CIFAR stem the data's own size)."""
    regime = planned.regime
    if regime is None or regime.resolution == "image_size":
        return 1.0
    return _imagenet_cost(config.flat()[regime.resolution])


def _train_work(planned: PlannedStudy, config, sizes: Sizes, probe_images: int) -> tuple[float, float]:
    """Supervised training (from scratch, or fine-tuning an encoder): every epoch trains on probe-train and
    evaluates probe-val; the test set once."""
    epochs, cost = config.supervised.epochs, _input_cost(planned, config)
    train, forward = epochs * sizes.probe_train, epochs * sizes.probe_val + sizes.test
    return planned.trials * cost * train, planned.trials * cost * forward


def _probe_work(planned: PlannedStudy, config, sizes: Sizes, probe_images: int) -> tuple[float, float]:
    return 0.0, _input_cost(planned, config) * probe_images  # features are extracted once per encoder and cached


# the cost model of each objective a comparison runs (its studies' image passes)
WORK = {
    "simclr": _pretrain_work,
    "supervised_pretrain": _labelled_work,
    "supervised": _train_work,
    "finetune": _train_work,
    "linear_probe": _probe_work,
}


def work(planned: PlannedStudy, sizes: Sizes) -> tuple[float, float]:
    """(training image passes, forward-only image passes) of one study's full budget: a cost model in units of a
    CIFAR ResNet-18 image. Probe training on cached features is small and left out."""
    config = make_config(planned.objective, planned.spec().config)
    sizes = sizes.at(config)
    probe_images = sizes.probe_train + sizes.probe_val + sizes.test
    return WORK[planned.objective](planned, config, sizes, probe_images)


# seconds to load a study's data: the first study of a run (reading CIFAR from its archives), every later one
LOAD_SECONDS = (10.0, 3.0)


def estimate_seconds(
    plans: Sequence[PlannedStudy], sizes: Sizes, train_rate: float, learned: dict[str, float] | None = None
) -> dict[str, float]:
    """Rough seconds per study: training passes at `train_rate`, forward passes 4x faster (measured: 100 and 400
    images/s on 2 CPU cores), plus loading the data (LOAD_SECONDS: the first study reads the archives, the others
    find them in memory, simclr.cifar), times what earlier runs on this machine measured against their estimate
    (`learned`: objective -> actual / estimated). An upper bound where trials are pruned."""
    out = {}
    for k, planned in enumerate(plans):
        train, forward = work(planned, sizes)
        ratio = (learned or {}).get(planned.objective, 1.0)
        load = LOAD_SECONDS[min(k, 1)]
        out[planned.name] = ratio * (load + train / train_rate + forward / (4 * train_rate))
    return out


def seeds_seconds(
    plans: Sequence[PlannedStudy], estimate: dict[str, float], seeds: int
) -> dict[str, tuple[float, int]]:
    """The seeds studies' cost (seeds > 1), per study: (seconds, trials). Each seeded regime's selected
    configuration `seeds - 1` more times, i.e. one trial's share of the study that selected it, and each seeded
    grid (the scale curve) `seeds - 1` more times."""
    if seeds <= 1:
        return {}
    by_name = {planned.name: planned for planned in plans}
    prefix = plans[0].comparison
    out = {}
    for regime in SEEDED:  # a SimCLR seed pretrains anew and probes its own encoder: the hparams study's share
        planned = by_name.get(f"{prefix}-{regime.selected_by or regime.study}")
        if planned is not None:
            out[f"{prefix}-seeds-{regime.seeds}"] = ((seeds - 1) * estimate[planned.name] / planned.trials, seeds - 1)
    for pretraining in PRETRAINING:
        planned = by_name.get(f"{prefix}-{pretraining.suffix}")
        if pretraining.seeds and planned is not None:
            out[f"{prefix}-seeds-{pretraining.seeds}"] = (
                (seeds - 1) * estimate[planned.name],
                (seeds - 1) * planned.trials,
            )
    return out


class Estimator:
    """The cost model of one comparison on this machine: each study's rough seconds (the seeds and labels studies
    one by one) and its wall time on `workers` workers (comparison.sizing.wall_seconds over the dependencies of
    comparison.regimes)."""

    def __init__(self, request: Request, sizes: Sizes, rate: float, learned: dict[str, float], workers: int):
        self.request, self.sizes, self.rate, self.learned, self.workers = request, sizes, rate, learned, workers
        self.needs = dependencies(request.prefix)

    def studies(self, knobs: sizing.Knobs) -> dict[str, tuple[float, int]]:
        """Study -> (seconds, trials), the seeds and labels studies each on their own."""
        planned = plan(self.request, knobs)
        seconds = estimate_seconds(planned, self.sizes, self.rate, self.learned)
        seeds, preset = int(planned[1].spec().config["seeds"]), self.request.preset
        out = {p.name: (seconds[p.name], p.trials) for p in planned}
        return {
            **out,
            **seeds_seconds(planned, seconds, seeds),
            **labels.labels_seconds(planned, seconds, preset, seeds),
        }

    def __call__(self, knobs: sizing.Knobs) -> dict[str, float]:
        return {name: seconds for name, (seconds, _) in self.studies(knobs).items()}

    def wall(self, knobs: sizing.Knobs, seconds: dict[str, float]) -> float:
        trials = {name: n for name, (_, n) in self.studies(knobs).items()}
        return sizing.wall_seconds(seconds, trials, self.needs, self.workers)

    def path_line(self, knobs: sizing.Knobs) -> str:
        """The critical path and the wall time on this many workers, in one line."""
        studies = self.studies(knobs)
        seconds, trials = {k: v[0] for k, v in studies.items()}, {k: v[1] for k, v in studies.items()}
        length, chain = sizing.critical_path(seconds, trials, self.needs, self.workers)
        names = " -> ".join(name.removeprefix(f"{self.request.prefix}-") for name in chain)
        wall = sizing.wall_seconds(seconds, trials, self.needs, self.workers)
        workers = f"{self.workers} workers" if self.workers > 1 else "1 worker (--workers N to plan for more)"
        return (
            f"  on {workers}: ~{wall / 60:.1f} min (the work divided among them, or the critical path, whichever "
            f"is longer); critical path {names}: ~{length / 60:.1f} min"
        )


def aggregate(seconds: dict[str, float], prefix: str) -> dict[str, float]:
    """The estimate as stored and printed: the seeds studies together (PREFIX-seeds-*), and the labels studies."""
    out: dict[str, float] = {}
    for name, value in seconds.items():
        group = next((f"{prefix}-{g}-*" for g in ("seeds", "labels") if name.startswith(f"{prefix}-{g}-")), name)
        out[group] = out.get(group, 0.0) + value
    out.setdefault(f"{prefix}-labels-*", 0.0)
    return out
