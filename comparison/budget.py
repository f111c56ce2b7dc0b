"""The cost of a comparison before it runs: the data sizes (a preflight that loads the data and resolves the
device, so a UserError stops `compare` before anything is created), a speed test of this machine, the cost model
(comparison.work) turning each planned study's budget into a rough time, the plan sized to the time budget and
printed, and afterwards estimated vs actual time."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from comparison import costs, labels, sizing
from comparison.plan import PlannedStudy, Request, plan, start_knobs
from comparison.regimes import HPARAMS
from comparison.resume import check_existing, check_request, stored_time_plan, work_left
from comparison.work import Estimator, Sizes, aggregate
from objectives import make_objective, registry
from simclr.config import make_config
from storage import store


def preflight(plans: Sequence[PlannedStudy], device: str) -> tuple[Sizes, Any]:
    """Load the data and resolve the device as the hyperparameter study will (downloading CIFAR when allowed and
    missing): a UserError here stops compare before anything is created. Returns the sizes and the runtime."""
    planned = next(s for s in plans if s.role == HPARAMS.role)
    objective = make_objective(planned.spec(), device=device)
    objective.prepare()
    config = objective.config
    splits = objective.data.probe_splits(config)
    sizes = Sizes(
        len(objective.data.pretrain_set(config)),
        len(splits["train"]),
        len(splits["val"]),
        len(splits["test"]),
        config.pretrain.data_fraction,
        config.data.probe_fraction,
        splits["train"].num_classes,
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


BUSY_SHARE = 0.25  # other processes' share of the cores during the speed test above which the plan says so


def _cpu_busy_seconds() -> float | None:
    """Seconds all cores have been busy since boot (Linux /proc/stat: all but idle and iowait), None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        return (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def others_share(measure: Callable[[], float]) -> tuple[float, float | None]:
    """(measure(), the share of this machine's cores that other processes kept busy while it ran: the whole
    machine's busy time less this process's CPU time, over wall time x cores; None where that cannot be read)."""
    busy, own, wall = _cpu_busy_seconds(), time.process_time(), time.perf_counter()
    value = measure()
    after = _cpu_busy_seconds()
    if busy is None or after is None:
        return value, None
    others = (after - busy) - (time.process_time() - own)
    return value, min(1.0, max(0.0, others / ((time.perf_counter() - wall) * (os.cpu_count() or 1))))


def speed_lines(rate: float, share: float | None, prefix: str, workers: int = 1) -> list[str]:
    """The speed test in words; on a busy machine, that the plan is thinner for it and how to size it again (not
    when this is one of several workers: the others starting beside it are the load each worker will have)."""
    seen = "" if share is None else f"; other processes kept {share:.0%} of the {os.cpu_count()} cores busy meanwhile"
    lines = [f"speed test: {rate:,.0f} training images/s{seen}"]
    if share is not None and share > BUSY_SHARE and workers > 1:
        lines.append(f"  (with --workers {workers}, workers starting beside this one are part of that load)")
    elif share is not None and share > BUSY_SHARE:
        lines.append(
            f"  the machine was busy: the plan below is sized to that speed, so it is thinner (fewer epochs, images "
            f"or trials) than an idle machine's. To size it again, stop the other work and rerun compare with a new "
            f"--prefix (or delete the {prefix}-* studies: a resumed comparison keeps the plan stored with them)"
        )
    return lines


def _images(n: float) -> str:
    return f"{n:,.0f}"


def _steps(epochs: int, images: int, batch: int) -> int:
    return epochs * math.ceil(images / batch)  # balanced batches: ceil(n / batch) steps an epoch


def _pretrain_line(planned: PlannedStudy, config, sizes: Sizes, search: str) -> str:
    cfg = config.pretrain
    steps = _steps(cfg.epochs, sizes.pretrain, cfg.batch_size)
    if planned.grid:
        fractions = [float(v) for v in planned.spec().space["data_fraction"].choices]
        scale = sizes.pretrain / max(fractions)
        what = "data_fraction " + ", ".join(f"{f:g} (~{_images(f * scale)})" for f in fractions)
        what += f", each {steps:,} steps" if cfg.equal_steps_as else ""
    else:
        pruning = pruning_text(cfg, sizes, planned.objective)
        what = f"{_images(sizes.pretrain)} pretraining images; search {search}; {pruning}"
    probe = config.probe.probe_epochs
    return f"{cfg.epochs} epochs = {steps:,} steps at batch {cfg.batch_size} (+ probe {probe}); {what}"


def pruning_text(cfg, sizes: Sizes, objective: str) -> str:
    """How a search over a kNN-monitored objective is pruned, in words: not at all (no monitor), or from which
    epoch (the objective's pruning axis) on a bank of so many images, with simclr.knn.bank_problem's reason where
    that bank is too small to rank trials."""
    from simclr.knn import bank_problem  # torch: only once the plan is printed

    if not cfg.monitor_every:
        return "not pruned (no kNN monitor: monitor_every 0)"
    bank = min(cfg.monitor_size or sizes.probe_train, sizes.probe_train)
    problem = bank_problem(bank, sizes.classes) if sizes.classes else None
    if problem:
        return f"pruned on a monitor that cannot rank trials: {problem}"
    first, last = registry.get(objective).report_axis(dataclasses.asdict(cfg))
    return f"pruned from epoch {first} of {last} on a kNN bank of {_images(bank)} images"


def _encoder_text(planned: PlannedStudy, config) -> str:
    """ "; encoder imagenet at 64px" for a study over an encoder ("" for scratch): what it starts from."""
    if not planned.encoder:
        return ""
    regime = planned.regime
    side = f" at {config.flat()[regime.resolution]}px" if regime and regime.resolution != "image_size" else ""
    return f"; encoder {planned.encoder}{side}"


def _train_line(planned: PlannedStudy, config, sizes: Sizes, search: str) -> str:
    cfg = config.supervised
    steps = _steps(cfg.epochs, sizes.probe_train, cfg.batch_size)
    images = _images(sizes.probe_train)
    encoder = _encoder_text(planned, config)
    return f"{cfg.epochs} epochs = {steps:,} steps at batch {cfg.batch_size}{encoder}; {images} images; search {search}"


def _labelled_line(planned: PlannedStudy, config, sizes: Sizes, search: str) -> str:
    cfg = config.supervised
    steps = _steps(cfg.epochs, sizes.pretrain, cfg.batch_size)
    what = (
        f"{_images(sizes.pretrain)} pretraining images with their labels; search {search}; "
        f"{pruning_text(cfg, sizes, planned.objective)}"
    )
    return (
        f"{cfg.epochs} epochs = {steps:,} steps at batch {cfg.batch_size} (+ probe {config.probe.probe_epochs}); {what}"
    )


def _probe_line(planned: PlannedStudy, config, sizes: Sizes, search: str) -> str:
    images = _images(sizes.probe_train)
    encoder = _encoder_text(planned, config)
    return f"{config.probe.probe_epochs} probe epochs{encoder}; {images} images; search {search}"


# what a study of each objective trains, in one line of the printed plan
LINES = {
    "simclr": _pretrain_line,
    "supervised_pretrain": _labelled_line,
    "supervised": _train_line,
    "finetune": _train_line,
    "linear_probe": _probe_line,
}


def _study_line(planned: PlannedStudy, sizes: Sizes) -> str:
    """What one study trains: epochs, steps at the configured batch size, images; what it searches."""
    spec = planned.spec()
    config = make_config(planned.objective, spec.config)
    return LINES[planned.objective](planned, config, sizes.at(config), ", ".join(spec.space))


def budget_lines(plans: Sequence[PlannedStudy], sizes: Sizes, estimate: dict[str, float] | None) -> list[str]:
    """The budget printed before starting: per study its trials, epochs, steps, images (and a rough time)."""
    width = max(len(s.name) for s in plans)
    lines = []
    for k, planned in enumerate(plans, 1):
        time_text = f"  ~{estimate[planned.name] / 60:.1f} min" if estimate else ""
        lines.append(
            f"  {k}/{len(plans)} {planned.name:<{width}}  {planned.trials:>3} trials  "
            f"{_study_line(planned, sizes)}{time_text}"
        )
    for name, seconds in (estimate or {}).items():
        if name.endswith("-seeds-*"):
            lines.append(
                f"  then {name}: each regime's selected configuration with the other seeds  ~{seconds / 60:.1f} min"
            )
        elif name.endswith("-labels-*") and seconds:
            fractions = ", ".join(f"{f:g}" for f in labels.curve_fractions(plans[0].preset))
            what = f"each regime's selected configuration at label fractions {fractions}"
            lines.append(f"  then {name}: {what}  ~{seconds / 60:.1f} min")
    probe = sizes.at(make_config(plans[-1].objective, plans[-1].spec().config))
    lines.append(
        f"  data: probe-train {_images(probe.probe_train)}, probe-val {_images(probe.probe_val)}, "
        f"test {_images(probe.test)} images"
    )
    if estimate:
        total = sum(estimate.values()) / 60
        lines.append(
            f"  estimated total: ~{total:.1f} min if nothing is pruned (a cost model calibrated by a speed test)"
        )
    return lines


def size_plan(
    request: Request,
    *,
    known,
    budget_s: float | None,
    device: str,
    say: Callable[[str], None],
    header: str = "",
    workers: int = 1,
) -> tuple[list[PlannedStudy], dict | None, str | None]:
    """The comparison's plan sized to `budget_s` on `workers` workers (comparison.sizing), printed with its
    estimate per study and its critical path.

    Returns (plans, the time plan to store on new studies, this machine's cost-model key or None when nothing is
    left to run). A comparison whose studies exist keeps the plan stored with them (or the preset's full plan when
    they were made without one): a resumed run, or another worker, never resizes, on this machine or another; a
    worker started with another --preset, --set or --trials is refused (UserError), before it touches anything."""
    import torch  # not at import: `study.py compare --help` and the plan's tests stay light

    stored = stored_time_plan(known, request.prefix)
    check_request(stored, request)
    start, full = start_knobs(request), plan(request)
    names = set(store.study_names(known)) if known is not None else set()
    resumed = stored is not None or any(p.name in names for p in full)
    knobs = sizing.Knobs.from_json(stored["knobs"]) if stored else start
    plans = plan(request, knobs) if resumed else full
    existing = check_existing(known, plans) if known is not None else []  # a UserError before any line
    if header:
        say(header)
    if existing:
        say(
            f"resuming, or joining the workers running it: {len(existing)} of these studies exist; finished trials "
            "are kept, only what is left runs"
        )
        if stored and (stored.get("budget_s"), stored.get("workers", 1)) != (budget_s, workers):
            say(f"  keeping the plan stored with them (sized for {_budget_text(stored.get('budget_s'), stored)})")
    if not work_left(known, plans):
        return plans, stored, None
    sizes, rt = preflight(plans, device)  # data and device first: a UserError creates nothing
    machine = costs.machine_key(rt.describe(), torch.get_num_threads())
    if resumed:  # the plan as it was sized, on whichever machine sized it: no speed test here
        seconds = (stored or {}).get("estimate_s")
        say(f"budget ({rt.describe()}, {request.preset} preset, as planned{_sized_on(stored)}):")
        for line in budget_lines(plans, sizes, seconds):
            say(line)
        if (stored or {}).get("path"):
            say(stored["path"])
        if _cuts(stored):
            say("  sized to fit: " + "; ".join(_cuts(stored)))
        return plans, stored, machine
    (rate, share), learned = others_share(lambda: speed_test(rt)), costs.learned(machine)
    estimate = Estimator(request, sizes, rate, learned, workers)
    sized = sizing.fit(start, estimate, budget_s, estimate.wall)
    plans, seconds = plan(request, sized.knobs), aggregate(sized.estimate, request.prefix)
    time_plan = {
        "budget_s": budget_s,
        "knobs": sized.knobs.to_json(),
        "cuts": sized.cuts,
        "estimate_s": seconds,
        "machine": machine,
        "learned": learned,
        "workers": workers,
        "path": estimate.path_line(sized.knobs),
        "request": request.to_json(),
    }
    _print_budget(say, rt, request, budget_s, learned, (rate, share), plans, sizes, seconds, workers)
    say(time_plan["path"])
    if sized.cuts:
        say("  sized to fit: " + "; ".join(sized.cuts))
    return plans, time_plan, machine


def _cuts(stored: dict | None) -> list[str]:
    return list((stored or {}).get("cuts") or [])


def _sized_on(stored: dict | None) -> str:
    if not stored:
        return ": the preset's full plan"
    return f" for {_budget_text(stored.get('budget_s'), stored)}"


def _print_budget(say, rt, request: Request, budget_s, learned, speed, plans, sizes, seconds, workers) -> None:
    factors = ", ".join(f"{k} x{v:.2f}" for k, v in sorted(learned.items()))
    corrected = f"; corrected by what earlier runs here measured: {factors}" if learned else ""
    for line in speed_lines(*speed, request.prefix, workers):
        say(line)
    say(f"budget ({rt.describe()}, {request.preset} preset, time budget {_budget_text(budget_s)}{corrected}):")
    for line in budget_lines(plans, sizes, seconds):
        say(line)


def _budget_text(budget_s: float | None, stored: dict | None = None) -> str:
    text = "none (the preset's full plan)" if budget_s is None else sizing.format_duration(budget_s)
    workers = (stored or {}).get("workers", 1)
    return text + (f" on {workers} workers" if workers > 1 else "")


def time_lines(
    plans: Sequence[PlannedStudy], time_plan: dict | None, seconds: dict[str, float], wall: float
) -> list[str]:
    """Estimated vs actual minutes per study that ran in this command, and the whole command's wall time."""
    estimate = (time_plan or {}).get("estimate_s", {})
    width = max(len(p.name) for p in plans)
    lines = ["time: estimated (before pruning) vs actual, this run:"]
    for planned in plans:
        if planned.name in seconds:
            guess = estimate.get(planned.name)
            guess_text = f"~{guess / 60:5.1f} min" if guess else "      -  "
            lines.append(f"  {planned.name:<{width}}  {guess_text}  {seconds[planned.name] / 60:5.1f} min")
    budget = (time_plan or {}).get("budget_s")
    within = (
        ""
        if budget is None
        else f" (budget {sizing.format_duration(budget)}: "
        + ("within it)" if wall <= budget else f"{sizing.format_duration(wall - budget)} over)")
    )
    lines.append(f"  wall time {sizing.format_duration(wall)}{within}")
    return lines


def learn_from(
    machine: str | None,
    plans: Sequence[PlannedStudy],
    time_plan: dict | None,
    whole: Sequence[str],
    seconds: dict[str, float],
) -> dict[str, float]:
    """Fold the studies that ran their whole budget (`whole`, taking `seconds`) into this machine's cost model
    (comparison.costs)."""
    estimate = (time_plan or {}).get("estimate_s", {})
    measured: dict[str, tuple[float, float]] = {}
    for planned in plans:
        same_machine = machine and (time_plan or {}).get("machine") == machine  # estimates made here
        if same_machine and planned.name in whole and estimate.get(planned.name):
            guess, actual = measured.get(planned.objective, (0.0, 0.0))
            measured[planned.objective] = (guess + estimate[planned.name], actual + seconds[planned.name])
    return costs.learn(machine, measured) if measured else {}
