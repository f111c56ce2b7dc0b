"""compare --time-budget: the plan sized by a (fake) cost model, stored with the studies, and the learned costs."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

from comparison import budget, costs, run, sizing, work
from comparison.plan import Request, plan, start_knobs
from comparison.resume import stored_time_plan
from errors import UserError
from storage import open_storage

# The smoke preset's data sizes (objectives/presets.py): pretraining 1,000, probe 2,200/300/500.
SMOKE = Request.of("cmp", preset="smoke")
SIZES = work.Sizes(pretrain=1000, probe_train=2200, probe_val=300, test=500, data_fraction=0.02, probe_fraction=0.05)


def fake_estimate(rate: float, sets=()):
    """The real cost model (comparison.work.work) at a fake speed-test rate instead of a measured one (each plan
    estimated once: fit asks again for the knobs it passed through)."""
    seen: dict[sizing.Knobs, dict[str, float]] = {}

    def estimate(knobs: sizing.Knobs) -> dict[str, float]:
        if knobs not in seen:
            plans = plan(Request.of("cmp", preset="smoke", sets=sets), knobs)
            seen[knobs] = work.estimate_seconds(plans, SIZES, rate)
        return dict(seen[knobs])

    return estimate


def test_a_large_budget_keeps_the_presets_full_plan():
    start = start_knobs(Request.of("cmp", preset="smoke"))
    assert start == sizing.Knobs(
        hparams_trials=3,
        regime_trials=3,
        simclr_epochs=5,
        supervised_epochs=3,
        data_fraction=0.02,
        probe_fraction=0.05,
        finetune_epochs=3,
        labelled_epochs=5,
    )
    sized = sizing.fit(start, fake_estimate(rate=100.0), budget_s=10 * 3600)
    assert sized.knobs == start and sized.cuts == []
    assert [p.spec() for p in plan(Request.of("cmp", preset="smoke"), sized.knobs)] == [
        p.spec() for p in plan(Request.of("cmp", preset="smoke"))
    ]
    assert sizing.fit(start, fake_estimate(rate=1.0), budget_s=None).knobs == start  # no budget: never cut
    default = start_knobs(Request.of("cmp", preset="default"))  # one knob each: scratch's 200, fine-tuning's 30
    assert (default.supervised_epochs, default.finetune_epochs) == (200, 30)
    sized = {p.role: p.spec().config.get("epochs") for p in plan(Request.of("cmp", preset="default"), default)}
    assert (sized["scratch"], sized["finetune"], sized["finetune_imagenet"]) == (200, 30, 30)
    old = sizing.Knobs.from_json({k: v for k, v in start.to_json().items() if k != "finetune_epochs"})
    assert old.finetune_epochs is None  # a plan stored before fine-tuning was compared: its epochs never cut


@pytest.mark.parametrize("rate", [20.0, 40.0, 80.0])
def test_a_tight_budget_cuts_trials_first_then_epochs_and_fits(rate):
    start = start_knobs(Request.of("cmp", preset="smoke"))
    estimate = fake_estimate(rate)
    full = sum(estimate(start).values())
    budget_s = 0.55 * full
    sized = sizing.fit(start, estimate, budget_s)
    assert sized.total <= budget_s < full
    assert sized.total == pytest.approx(sum(estimate(sized.knobs).values()))
    k = sized.knobs
    if k.simclr_epochs < start.simclr_epochs:  # epochs only once both trial counts are at their floor
        assert (k.hparams_trials, k.regime_trials) == (sizing.MIN_TRIALS, sizing.MIN_TRIALS)
    if k.data_fraction < start.data_fraction:  # images last
        assert k.simclr_epochs == k.supervised_epochs == sizing.MIN_EPOCHS
    assert sized.cuts[0] == f"SimCLR hyperparameter trials 3 -> {k.hparams_trials}"
    plans = plan(Request.of("cmp", preset="smoke"), k)  # the sized plan is what compare creates
    by_name = {p.name: p for p in plans}
    assert by_name["cmp-hparams"].trials == k.hparams_trials
    assert {by_name[f"cmp-{r}"].trials for r in ("probe-simclr", "probe-imagenet", "probe-random", "scratch")} == {
        k.regime_trials
    }  # the compared regimes keep one tuning budget
    assert by_name["cmp-hparams"].spec().config["epochs"] == k.simclr_epochs
    assert by_name["cmp-scratch"].spec().config["epochs"] == k.supervised_epochs


def test_cuts_follow_the_documented_order_as_the_budget_shrinks():
    start, estimate = start_knobs(Request.of("cmp", preset="smoke")), fake_estimate(30.0)
    full = sum(estimate(start).values())
    previous, fitted = None, 0
    for fraction in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1):
        try:
            k = sizing.fit(start, estimate, fraction * full).knobs
        except UserError:  # below the smallest plan: every smaller budget is refused too
            break
        fitted += 1
        order = (
            k.hparams_trials,
            k.regime_trials,
            k.simclr_epochs,
            k.supervised_epochs,
            k.data_fraction,
            k.probe_fraction,
        )
        if previous is not None:  # a smaller budget never gives a larger knob
            assert all(a <= b for a, b in zip(order, previous, strict=True))
        previous = order
    assert fitted >= 8  # the smallest plan costs at most a fifth of the preset's
    floor = start.data_fraction * sizing.MIN_FRACTION_RATIO  # 0.007 of smoke's 0.02
    assert previous[:4] == (2, 2, 2, 2) and previous[4] == pytest.approx(floor) and previous[5] < 0.05
    with pytest.raises(
        UserError,
        match=r"\(SimCLR hyperparameter trials 2, trials of each compared regime 2, SimCLR "
        r"epochs 2, scratch epochs 2, fine-tuning epochs 2, CIFAR-10-supervised epochs 2, pretraining data_fraction "
        r"0.007, CIFAR-100 probe_fraction "
        r"0.015\)",
    ):
        sizing.fit(start, estimate, 1.0)  # every knob at its floor


def test_too_small_a_budget_says_by_how_much():
    start = start_knobs(Request.of("cmp", preset="smoke"))
    with pytest.raises(
        UserError,
        match=r"--time-budget 30 s is too small for this machine: the smallest plan .* "
        r"needs ~[\d.]+ min, [\d.]+ min more",
    ):
        sizing.fit(start, fake_estimate(rate=20.0), budget_s=30)


def test_a_knob_the_user_fixed_is_never_cut():
    sets = ("epochs=5", "data_fraction=0.02")
    start = start_knobs(Request.of("cmp", preset="smoke", sets=sets))
    assert start.simclr_epochs is None and start.supervised_epochs is None and start.data_fraction is None
    assert start.probe_fraction == 0.05
    estimate = fake_estimate(30.0, sets)
    sized = sizing.fit(start, estimate, 0.8 * sum(estimate(start).values()))
    plans = plan(Request.of("cmp", preset="smoke", sets=sets), sized.knobs)
    assert {p.spec().config["epochs"] for p in plans if p.objective in ("simclr", "supervised")} == {5}
    assert (
        start_knobs(Request.of("cmp", preset="smoke", trials=4)).hparams_trials is None
    )  # --trials fixes the trial counts


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("15m", 900),
        ("2h", 7200),
        ("1h30m", 5400),
        ("90s", 90),
        ("600", 600),
        ("0.5h", 1800),
        ("none", None),
        (None, None),
    ],
)
def test_parse_duration(text, seconds):
    assert sizing.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15 minutes", "m", "-5m", "0", "1x", "15m3"])
def test_parse_duration_refuses(text):
    with pytest.raises(UserError, match="--time-budget"):
        sizing.parse_duration(text)


def test_preset_default_budget():
    assert sizing.preset_time_budget(None, "smoke") == 900
    assert sizing.preset_time_budget(None, "default") is None
    assert sizing.preset_time_budget("2h", "default") == 7200


def _fake_machine(monkeypatch, rate: float):
    runtime = SimpleNamespace(describe=lambda: "cpu fp32 channels_last")
    monkeypatch.setattr(budget, "preflight", lambda plans, device: (SIZES, runtime))
    monkeypatch.setattr(budget, "speed_test", lambda rt: rate)


def test_the_sized_plan_is_stored_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_COSTS", str(tmp_path / "costs.json"))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    lines: list[str] = []
    _fake_machine(monkeypatch, rate=45.0)
    plans, time_plan, machine = budget.size_plan(SMOKE, known=None, budget_s=900, device="cpu", say=lines.append)
    assert time_plan["budget_s"] == 900 and time_plan["cuts"] and machine.endswith("cpu fp32 channels_last")
    assert sum(time_plan["estimate_s"].values()) <= 900
    assert any(line.startswith("  sized to fit: SimCLR hyperparameter trials") for line in lines)
    storage = open_storage(url, create=True)
    for planned in plans:
        if not planned.probes_simclr:  # its encoder does not exist yet; the others suffice
            run.ensure_study(storage, planned, None, url, time_plan)
    assert stored_time_plan(storage, "cmp") == json.loads(json.dumps(time_plan))
    _fake_machine(monkeypatch, rate=1000.0)  # another, much faster machine; another budget
    again, kept, _ = budget.size_plan(SMOKE, known=storage, budget_s=3600, device="cpu", say=lines.append)
    assert kept["knobs"] == time_plan["knobs"] and [p.spec() for p in again] == [p.spec() for p in plans]
    assert any("keeping the plan stored with them (sized for 15.0 min)" in line for line in lines)


def test_time_lines_compare_estimate_and_actual():
    plans = plan(Request.of("cmp", preset="smoke"))
    time_plan = {"budget_s": 900.0, "estimate_s": {"cmp-scale": 300.0, "cmp-scratch": 120.0}}
    lines = budget.time_lines(plans, time_plan, {"cmp-scale": 360.0, "cmp-scratch": 60.0}, wall=1000.0)
    assert lines[1].split() == ["cmp-scale", "~", "5.0", "min", "6.0", "min"]
    assert lines[2].split() == ["cmp-scratch", "~", "2.0", "min", "1.0", "min"]
    assert lines[-1] == "  wall time 16.7 min (budget 15.0 min: 1.7 min over)"


def test_cost_model_learns_per_machine(tmp_path):
    path = tmp_path / "costs.json"
    assert costs.learned("m", path) == {}
    costs.learn("m", {"simclr": (100.0, 50.0), "supervised": (10.0, 0.0)}, path)  # nothing learned from 0 s
    assert costs.learned("m", path) == {"simclr": pytest.approx(0.5)}
    # the next estimate was already corrected by 0.5; it came out 20% short: fold in half of that correction
    costs.learn("m", {"simclr": (50.0, 60.0)}, path)
    assert costs.learned("m", path)["simclr"] == pytest.approx(math.sqrt(0.5 * 0.6))
    assert costs.learned("other machine", path) == {}
    costs.learn("m", {"simclr": (1.0, 1e6)}, path)  # a broken clock is clamped, not learned as is
    assert costs.learned("m", path)["simclr"] <= costs.RATIO_RANGE[1]
    path.write_text("{not json")
    assert costs.learned("m", path) == {}  # a damaged file only costs the correction
    learned = {"simclr": 2.0}
    slow = work.estimate_seconds(plan(Request.of("cmp", preset="smoke")), SIZES, 50.0, learned)
    fast = work.estimate_seconds(plan(Request.of("cmp", preset="smoke")), SIZES, 50.0)
    assert slow["cmp-hparams"] == pytest.approx(2 * fast["cmp-hparams"])
    assert slow["cmp-scratch"] == pytest.approx(fast["cmp-scratch"])


def test_what_this_machine_measured_corrects_the_next_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_COSTS", str(tmp_path / "costs.json"))
    _fake_machine(monkeypatch, rate=36.0)
    kwargs = dict(known=None, budget_s=None, device="cpu")
    first: list[str] = []
    _, plain, machine = budget.size_plan(SMOKE, say=first.append, **kwargs)
    costs.learn(machine, {"simclr": (100.0, 200.0)})  # SimCLR took twice its estimate here
    again: list[str] = []
    _, corrected, _ = budget.size_plan(SMOKE, say=again.append, **kwargs)
    assert corrected["estimate_s"]["cmp-scale"] == pytest.approx(2 * plain["estimate_s"]["cmp-scale"])
    assert corrected["estimate_s"]["cmp-scratch"] == pytest.approx(plain["estimate_s"]["cmp-scratch"])
    head = lambda lines: next(line for line in lines if line.startswith("budget ("))  # noqa: E731
    assert "corrected by" not in head(first)
    assert "corrected by what earlier runs here measured: simclr x2.00" in head(again)


def test_the_speed_test_sees_other_processes_load_and_not_its_own():
    """Other processes' share of the cores while the speed test runs: busy sibling processes show, the test's own
    work does not. The plan then says it was sized on a busy machine, and how to size it again."""
    import os
    import subprocess
    import sys
    import time

    from comparison.budget import BUSY_SHARE, others_share, speed_lines

    def spin(seconds: float) -> float:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return 1.0

    _, own = others_share(lambda: spin(1.0))  # this process busy, nobody else
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        _, busy = others_share(lambda: time.sleep(1.0) or 1.0)  # this process idle, every core taken by others
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert own is not None and busy is not None
    assert own < BUSY_SHARE < 0.6 < busy, (own, busy)
    lines = speed_lines(120.0, busy, "cmp")
    assert lines[0].startswith("speed test: 120 training images/s; other processes kept ")
    assert (
        "the machine was busy" in lines[1] and "rerun compare with a new --prefix" in lines[1] and "cmp-*" in lines[1]
    )
    assert speed_lines(120.0, 0.05, "cmp") == [
        f"speed test: 120 training images/s; other processes kept 5% of the {os.cpu_count()} cores busy meanwhile"
    ]


def test_the_critical_path_is_the_longest_chain_at_the_workers_parallelism():
    seconds = {"a": 90.0, "b": 10.0, "c": 80.0, "d": 10.0}
    trials = {"a": 3, "b": 1, "c": 1, "d": 1}
    needs = {"b": ["a"], "d": ["b", "c"]}  # a -> b -> d, c -> d
    assert sizing.critical_path(seconds, trials, needs, workers=1) == (110.0, ["a", "b", "d"])
    # three workers run a's 3 trials side by side (30 s): c -> d is now the longest chain
    assert sizing.critical_path(seconds, trials, needs, workers=3) == (90.0, ["c", "d"])
    assert sizing.wall_seconds(seconds, trials, needs, workers=1) == 190.0  # one worker: the total
    assert sizing.wall_seconds(seconds, trials, needs, workers=2) == 95.0  # the work divided
    assert sizing.wall_seconds(seconds, trials, needs, workers=100) == 90.0  # no more workers beat the path


def test_a_plan_sized_for_three_workers_keeps_more_and_prints_its_critical_path(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_COSTS", str(tmp_path / "costs.json"))
    _fake_machine(monkeypatch, rate=45.0)
    one: list[str] = []
    _, alone, _ = budget.size_plan(SMOKE, known=None, budget_s=600, device="cpu", say=one.append)
    three: list[str] = []
    _, shared, _ = budget.size_plan(SMOKE, known=None, budget_s=600, device="cpu", say=three.append, workers=3)
    assert alone["cuts"] and len(shared["cuts"]) < len(alone["cuts"])  # the same 10 minutes buy more on 3 workers
    assert shared["workers"] == 3 and sum(shared["estimate_s"].values()) > 600  # the work is more than the budget
    path = next(line for line in three if "critical path" in line)
    assert path.startswith("  on 3 workers: ~")
    chain = path.split("critical path ")[-1].split(":")[0].split(" -> ")
    assert chain[0] in ("hparams", "supervised-pretrain") and len(chain) >= 2  # a pretraining, then what waits on it
    assert next(line for line in one if "critical path" in line).startswith("  on 1 worker (--workers N")
    assert shared["request"] == SMOKE.to_json() and shared["path"] == path


def test_a_worker_joining_a_planned_comparison_reads_its_plan_without_a_speed_test(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_COSTS", str(tmp_path / "costs.json"))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    _fake_machine(monkeypatch, rate=45.0)
    plans, time_plan, _ = budget.size_plan(SMOKE, known=None, budget_s=600, device="cpu", say=print, workers=3)
    storage = open_storage(url, create=True)
    run.ensure_study(storage, plans[0], None, url, time_plan)  # the first worker stores the plan with its study

    def no_speed_test(rt):
        raise AssertionError("a joining worker sized nothing")

    monkeypatch.setattr(budget, "speed_test", no_speed_test)
    lines: list[str] = []
    again, kept, _ = budget.size_plan(SMOKE, known=storage, budget_s=None, device="cpu", say=lines.append)
    assert kept["knobs"] == time_plan["knobs"] and [p.spec() for p in again] == [p.spec() for p in plans]
    assert "keeping the plan stored with them (sized for 10.0 min on 3 workers)" in "\n".join(lines)
    assert time_plan["path"] in lines and any(line.startswith("  sized to fit: ") for line in lines)
    # another --set is refused before anything is read or written, naming the difference
    with pytest.raises(UserError, match=r"--set epochs: stored not given, this command 3\); start every worker"):
        budget.size_plan(Request.of("cmp", preset="smoke", sets=["epochs=3"]), known=storage, **_ARGS)


_ARGS = {"budget_s": None, "device": "cpu", "say": print}


@pytest.mark.parametrize(
    "objective, epochs, first",
    [("simclr", 100, 63), ("simclr", 8, 5), ("supervised_pretrain", 100, 50), ("supervised_pretrain", 200, 100)],
)
def test_the_plan_says_from_which_epoch_a_monitored_search_is_pruned(objective, epochs, first):
    """SimCLR searches are pruned from 5/8 of their epochs, the same-data supervised arm's from half
    (objectives.registry: simclr_axis, training_axis); the plan line says the epoch, on a bank large enough."""
    from simclr.config import make_config

    cfg = make_config(objective, {"epochs": epochs, "warmup_epochs": 1, "monitor_every": 1, "monitor_size": 0})
    section = cfg.pretrain if objective == "simclr" else cfg.supervised
    sizes = work.Sizes(pretrain=50_000, probe_train=45_000, probe_val=5_000, test=10_000, classes=100)
    text = budget.pruning_text(section, sizes, objective)
    assert text == f"pruned from epoch {first} of {epochs} on a kNN bank of 45,000 images"
