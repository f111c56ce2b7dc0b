"""The comparison's protocol: equal-step scale points, balanced batches, the paper's colour-jitter convention (and
old stores refused), presets that follow their sources, pruning never inside warm-up, one pinned encoder per probe
study."""

from __future__ import annotations

import json
import shutil

import optuna
import pytest
import torch

from comparison.plan import Request, plan
from objectives import build_spec
from objectives.presets import PRESETS
from simclr.config import PretrainConfig
from simclr.pretrain import plan_run
from simclr.schedule import balanced_batches, effective_lr
from storage import schema
from tests.helpers import check_refused, run_cli, show, tiny_sets


def create(url: str, name: str, objective: str, *args) -> None:
    r = run_cli("create", "--objective", objective, "--name", name, "--storage", url, *args)
    assert r.rc == 0, r.err


@pytest.mark.parametrize("n, batch", [(500, 256), (1000, 128), (100, 128), (7, 2), (256, 256)])
def test_balanced_batches_drop_nothing_and_differ_by_at_most_one(n, batch):
    batches = balanced_batches(n, batch, torch.Generator().manual_seed(0))
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n // batch) and max(sizes) - min(sizes) <= 1 and max(sizes) <= batch
    assert sorted(torch.cat(batches).tolist()) == list(range(n))  # every image once per epoch


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
def test_scale_points_train_the_full_runs_steps(fraction):
    """The default preset's scale curve: 100 epochs of 50,000 images at batch 256 = 19,600 steps for every point
    (epochs follow), where equal epochs gave the 1% point 200 steps; no point drops images."""
    full = PretrainConfig(epochs=100, batch_size=256, warmup_epochs=10, data_fraction=1.0)
    point = PretrainConfig(epochs=100, batch_size=256, warmup_epochs=10, data_fraction=fraction, equal_steps_as=1.0)
    n = round(50_000 * fraction)
    reference, run = plan_run(full, 50_000), plan_run(point, n)
    assert run.total_steps == reference.total_steps == 100 * 196
    assert run.warmup_steps == reference.warmup_steps == 1960
    assert run.epochs == -(-run.total_steps // -(-n // 256)) and run.epochs_done == pytest.approx(100 / fraction, 0.02)
    assert run.images_seen(n) == pytest.approx(reference.images_seen(50_000), rel=0.02)
    equal_epochs = plan_run(PretrainConfig(epochs=100, batch_size=256, data_fraction=fraction), n)
    assert equal_epochs.epochs == 100 and equal_epochs.images_seen(n) == 100 * n


def test_compare_plans_the_scale_study_at_equal_steps_unless_told_otherwise():
    scale = plan(Request.of("p", preset="default"))[1]
    assert scale.role == "simclr_scale" and scale.spec().config["equal_steps_as"] == 1.0
    assert scale.spec().config["monitor_every"] == 0  # no pruning there: no monitor cost
    epochs = plan(Request.of("p", preset="default", sets=["equal_steps_as=0"]))[1]
    assert epochs.spec().config["equal_steps_as"] == 0.0
    hparams = plan(Request.of("p", preset="default"))[0]
    assert hparams.spec().config["equal_steps_as"] == 0.0  # the hparams study: epochs


@pytest.mark.slow
def test_scale_trials_record_steps_epochs_and_images_seen(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 's.db'}"
    sets = [s for s in tiny_sets("simclr", data_dir) if not s.startswith(("data_fraction", "batch_size"))]
    sets += ["batch_size=4", "equal_steps_as=1.0"]
    create(url, "s", "simclr", "--sampler", "grid", "--param", "data_fraction=choice:0.25,1.0", "--set", *sets)
    assert run_cli("optimize", "s", "--trials", "2", "--device", "cpu", "--storage", url).rc == 0
    trials = {t["params"]["data_fraction"]: t["user_attrs"] for t in show(url, "s")["trials"]}
    small, full = trials[0.25], trials[1.0]
    assert small[schema.STEPS] == full[schema.STEPS] == 5  # 20 images, batch 4, 1 epoch: 5 steps for both
    # 0.25 of 10 classes x 2 images: one per class (stratified), 10 images in batches of 4, 3, 3
    assert small[schema.N_PRETRAIN_IMAGES] == 10 and small[schema.EPOCHS] == pytest.approx(5 / 3, abs=1e-4)
    assert full[schema.EPOCHS] == 1.0 and full[schema.IMAGES_SEEN] == 20
    assert small[schema.IMAGES_SEEN] == 10 + 4 + 3  # one epoch, then the first two batches of the next


def test_jitter_strength_is_the_papers_s_and_old_stores_are_refused(tmp_path, data_dir):
    assert build_spec("simclr", preset="paper").config["jitter_strength"] == 0.5 == PretrainConfig().jitter_strength
    url = f"sqlite:///{tmp_path / 's.db'}"
    create(url, "old", "supervised", "--set", *tiny_sets("supervised", data_dir))
    optuna.load_study(study_name="old", storage=url).set_user_attr(schema.SCHEMA, 1)  # as a store from before
    r = run_cli("optimize", "old", "--device", "cpu", "--storage", url)
    check_refused(r, "schema 1")
    assert "jitter_strength" in r.err and "create a new study" in r.err
    assert run_cli("show", "old", "--storage", url).rc == 0  # still readable
    optuna.load_study(study_name="old", storage=url).set_user_attr(schema.SCHEMA, 2)  # lr read as the rate trained
    r = run_cli("optimize", "old", "--device", "cpu", "--storage", url)
    check_refused(r, "schema 2")
    assert "lr became a rate per 256 images" in r.err and "jitter_strength" not in r.err


def test_presets_state_their_budgets():
    assert PRESETS["default"]["supervised"]["epochs"] == PRESETS["paper"]["supervised"]["epochs"] == 200
    paper = build_spec("simclr", preset="paper").config
    assert (paper["optimizer"], paper["batch_size"], paper["lr"], paper["temperature"]) == ("lars", 1024, 1.0, 0.5)
    assert (paper["weight_decay"], paper["blur_p"], paper["warmup_epochs"]) == (1e-6, 0.0, 10)
    # lr is per 256 images, as google-research/simclr's learning_rate: the paper's 1.0 trains with 4.0 at 1024
    assert paper["lr_scaling"] == "linear" and effective_lr(paper["lr"], paper["batch_size"]) == 4.0
    trained = {}
    for preset, objective in (("smoke", "simclr"), ("default", "simclr"), ("default", "supervised")):
        config = build_spec(objective, preset=preset).config
        trained[preset, objective] = effective_lr(config["lr"], config["batch_size"], config["lr_scaling"])
    # the rates smoke, default's SimCLR and the CIFAR-100 scratch recipe trained with before lr was per 256 images
    assert trained == {("smoke", "simclr"): 0.3, ("default", "simclr"): 0.3, ("default", "supervised"): 0.1}
    space = build_spec("simclr", preset="paper").space["lr"]
    assert space.low * 1024 / 256 <= 4.0 <= space.high * 1024 / 256  # the source's rate is inside the search
    assert build_spec("linear_probe", preset="smoke").config["resolution"] == 64  # not a 1x1 final map


def test_simclr_is_pruned_after_five_eighths_of_its_epochs_and_never_inside_warm_up():
    default = build_spec("simclr", preset="default")
    assert default.pruner["n_warmup_steps"] == 63  # 100 epochs: 5/8 (registry.SIMCLR_PRUNE_AFTER), the report at 65
    long_warmup = build_spec("simclr", preset="default", sets=["warmup_epochs=62"])
    assert long_warmup.pruner["n_warmup_steps"] == 65  # the first report after a warm-up longer than half


def _curve(start: float, end: float, epochs: int, delay: float = 0.0) -> list[float]:
    """Validation top-1 per epoch (synthetic): a rise that is fast early and slows down, starting after `delay` of
    the epochs, as a higher learning rate's noisy first epochs delay it."""
    out = []
    for epoch in range(1, epochs + 1):
        t = max(0.0, (epoch / epochs - delay) / (1 - delay))
        out.append(start + (end - start) * (1 - (1 - t) ** 3))
    return out


@pytest.mark.parametrize("objective", ["supervised", "finetune"])
def test_a_slow_starting_run_that_ends_best_is_not_pruned_early(objective):
    """Scratch and fine-tuning are pruned only after half their epochs (objectives.registry.training_axis):
    a higher learning rate that trails early and ends best survives the median pruner; pruned from the first
    epoch after warm-up, as before, it would not."""
    sets = [f"epochs={20}", "warmup_epochs=1"] + (["encoder=random"] if objective == "finetune" else [])
    spec = build_spec(objective, sets=sets)
    assert spec.pruner["n_warmup_steps"] == 10

    def pruned_at(n_warmup_steps: int) -> int | None:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=n_warmup_steps)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for end in (40.0, 41.0, 42.0):  # small learning rates: fast start, low plateau
            trial = study.ask()
            for step, value in enumerate(_curve(10.0, end, 20), 1):
                trial.report(value, step)
            study.tell(trial, end)
        trial = study.ask()
        for step, value in enumerate(_curve(5.0, 50.0, 20, delay=0.2), 1):  # ends best
            trial.report(value, step)
            if trial.should_prune():
                return step
        return None

    assert pruned_at(spec.pruner["n_warmup_steps"]) is None
    assert pruned_at(1) is not None  # the old axis: pruned right after warm-up


@pytest.mark.slow
def test_a_probe_study_keeps_the_encoder_pinned_at_creation(filled_store, tmp_path):
    shutil.copy(filled_store.path, tmp_path / "p.db")
    shutil.copytree(filled_store.artifacts, tmp_path / "p_artifacts")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    best = show(url, "ssl")["best_trial"]["number"]
    create(url, "pinned", "linear_probe", "--set", "encoder=best:ssl", "probe_epochs=2")
    attrs = show(url, "pinned")["user_attrs"]
    assert attrs[schema.ENCODER_TRIAL] == best and len(attrs[schema.ENCODER_SHA256]) == 64
    # a better SimCLR trial appears later: the probe study still probes the pinned one
    ssl = optuna.load_study(study_name="ssl", storage=url)
    other = next(t for t in ssl.trials if t.number != best)
    ssl.add_trial(
        optuna.trial.create_trial(
            params=other.params, distributions=other.distributions, value=1000.0, user_attrs=other.user_attrs
        )
    )
    assert run_cli("optimize", "pinned", "--trials", "1", "--device", "cpu", "--storage", url).rc == 0
    assert show(url, "pinned")["trials"][0]["user_attrs"][schema.TRIAL_ENCODER] == f"trial:ssl:{best}"
    # other weights under the pinned trial's checkpoint: refused with one line, no trial runs
    checkpoint = show(url, "ssl")["trials"][best]["user_attrs"][schema.CHECKPOINT]
    shutil.copy(tmp_path / "p_artifacts" / other.user_attrs[schema.CHECKPOINT], tmp_path / "p_artifacts" / checkpoint)
    r = run_cli("optimize", "pinned", "--trials", "1", "--device", "cpu", "--storage", url)
    check_refused(r, "other weights than study 'pinned' pinned")
    assert len(show(url, "pinned")["trials"]) == 1
    assert json.loads(run_cli("list", "--json", "--storage", url).out)
