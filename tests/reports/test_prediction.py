"""The prediction section as the report, `report --json` and `study.py predict` show it: one computation
(reports.prediction) so they agree; the runs a curve is fitted on (the scale study and its seeds re-runs); the
reference row; a failed back-test in red without extrapolated numbers; too few sizes said in words; accuracy
against compute summing the studies' stored seconds, and FLOPs counted from ResNet-18's architecture (held against
a count of torch's own layers)."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

import reports
import reports.html
from reports import compute
from reports.prediction import predict
from storage import schema
from tests.helpers import check_refused, run_cli
from tests.reports.stores import FAIL, _study, _trial

SIZES = (500, 1000, 2000, 4000, 8000, 16000)


def law(n: float) -> float:  # top-1 of a known law: error 30 + 400 n^-0.5
    return 100 - (30 + 400 * n**-0.5)


def _in_cmp(storage, name, trials, **kwargs) -> None:
    _study(storage, name, trials, **kwargs).set_user_attr(schema.COMPARISON, "cmp")


def _runs(sizes, top1, rng, seconds: float) -> list:
    return [
        _trial(value=top1(n), test_top1=top1(n) + rng.normal(0, 0.3), n_pretrain_images=n, seconds=seconds)
        for n in sizes
    ]


def fill(storage, sizes=SIZES, top1=law) -> None:
    """A comparison's scale curve (one run a size; its seeds re-runs the second), its search, a probe of its
    encoder, the ImageNet probe (the reference) and scratch, each trial with its seconds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(0)
    _in_cmp(storage, "cmp-scale", _runs(sizes, top1, rng, 10.0), objective="simclr", role="simclr_scale")
    _in_cmp(storage, "cmp-seeds-scale", _runs(sizes, top1, rng, 11.0), objective="simclr", role="seeds_scale")
    search = [_trial(value=40.0, seconds=30.0, images_seen=2000, n_train_images=900), _trial(FAIL, seconds=5.0)]
    _in_cmp(storage, "cmp-hparams", search, objective="simclr", role="simclr_hparams")
    probe = [_trial(value=41.0, test_top1=40.0, seconds=4.0, n_train_images=900)]
    _in_cmp(storage, "cmp-probe-simclr", probe, objective="linear_probe", role="probe_simclr")
    imagenet = [_trial(value=69.0, test_top1=68.5, seconds=6.0, n_train_images=900)]  # the law's 68.5: 10x
    config = {"resolution": 64}
    _in_cmp(
        storage,
        "cmp-probe-imagenet",
        imagenet,
        objective="linear_probe",
        role="probe_imagenet",
        encoder="imagenet",
        config=config,
    )
    scratch = [_trial(value=31.0, test_top1=30.0, seconds=50.0, n_train_images=900)]
    _in_cmp(storage, "cmp-scratch", scratch, objective="supervised", role="scratch", config={"epochs": 3})


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    fill(optuna.storages.RDBStorage(url))
    return url


def test_the_report_and_predict_give_the_same_law_and_answers(url):
    report = reports.build_report(url)
    (shown,) = report.to_json()["scaling"]
    said = run_cli("predict", "cmp-scale", "--json", "--storage", url)
    assert said.rc == 0, said.err
    assert json.loads(said.out)["fit"] == shown["fit"] and shown["fit"]["status"] == "fit"
    assert len(shown["runs"]) == 2 * len(SIZES)  # the scale study's runs and its seeds re-runs
    assert shown["reference"] == {"label": "ImageNet-supervised -> linear probe", "top1": 68.5}
    text = run_cli("predict", "cmp-scale", "--storage", url).out.splitlines()
    assert text == shown["lines"]
    assert any(line.startswith("predicted at 2x (32,000 images): ") for line in text)
    assert any(line.startswith("images to reach ImageNet-supervised -> linear probe (68.5%): ") for line in text)
    page = reports.html.render(report)
    assert '<h2 id="prediction">' in page and all(reports.html._e(line) in page for line in text)


def test_a_target_is_answered_and_bad_input_is_one_line(url):
    r = run_cli("predict", "cmp-scale", "--target", "60%", "--storage", url)
    assert r.rc == 0 and any(line.startswith("images to reach 60%: ") for line in r.out.splitlines()), r.out
    check_refused(run_cli("predict", "cmp-scratch", "--storage", url), "has no data-scale curve")
    check_refused(run_cli("predict", "nope", "--storage", url), "no study named 'nope'")
    assert run_cli("predict", "cmp-scale", "--target", "140", "--storage", url).rc == 2


def test_too_few_sizes_are_said_not_fitted(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    fill(optuna.storages.RDBStorage(url), sizes=(1000, 3000, 10000))  # smoke's three fractions
    (shown,) = reports.build_report(url).to_json()["scaling"]
    assert shown["lines"] == ["cmp-scale: 6 runs: not enough points to fit: 3 sizes, need 4"]
    assert "not enough points to fit: 3 sizes, need 4" in reports.html.render(reports.build_report(url))


def test_a_law_that_fails_its_back_test_shows_no_extrapolation(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    broken = lambda n: law(n) + (12.0 if n >= 16000 else 0.0)  # noqa: E731  (the largest size jumps off the law)
    fill(optuna.storages.RDBStorage(url), top1=broken)
    report = reports.build_report(url)
    (shown,) = report.to_json()["scaling"]
    assert shown["fit"]["status"] == "fit" and not shown["fit"]["answers_shown"]
    assert not any(line.startswith("predicted at") for line in shown["lines"])
    page = reports.html.render(report)
    assert '<li style="color:#b00">the law failed its back-test' in page


def test_compute_points_sum_the_studies_stored_seconds(url):
    points = {p["regime"]: p for p in reports.build_report(url).to_json()["compute"]}
    # SimCLR's probe carries its encoder's search (failed trials too: they were paid for)
    assert points["probe_simclr"]["seconds"] == pytest.approx(4.0 + 30.0 + 5.0)
    assert sorted(points["probe_simclr"]["studies"]) == ["cmp-hparams", "cmp-probe-simclr"]
    assert points["probe_imagenet"]["seconds"] == 6.0 and "not counted" in points["probe_imagenet"]["note"]
    assert points["scratch"]["seconds"] == 50.0
    cifar, imagenet = 2 * compute.resnet18_macs("cifar", 32), 2 * compute.resnet18_macs("imagenet", 64)
    assert points["scratch"]["flops"] == pytest.approx(cifar * 3 * 3 * 900)  # 3 epochs x 900 images x fwd+bwd
    assert points["probe_imagenet"]["flops"] == pytest.approx(imagenet * 900)  # one forward an image
    assert points["probe_simclr"]["flops"] == pytest.approx(cifar * (900 + 3 * 2 * 2000 + 900))
    # ImageNet's probe is the most accurate and cheaper than the SimCLR probe: the front is it and the cheaper ones
    assert points["probe_imagenet"]["pareto_seconds"] and not points["probe_simclr"]["pareto_seconds"]


@pytest.mark.parametrize("stem, side", [("cifar", 32), ("imagenet", 224), ("imagenet", 64)])
def test_resnet18_macs_match_the_networks_layers(stem, side):
    """The analytic count against torch's layers: every conv's (and the stem's) multiply-accumulates, counted by
    hooks on a forward pass of simclr.models.resnet18."""
    import torch

    from simclr.models import resnet18

    counted = []

    def count(module, inputs, output):
        counted.append(output[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1])

    model = resnet18(stem)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    assert compute.resnet18_macs(stem, side) == sum(counted)


def test_predict_agrees_with_the_report_module(url):
    storage = optuna.storages.RDBStorage(url)
    assert predict(storage, "cmp-scale")["fit"] == reports.build_report(url).to_json()["scaling"][0]["fit"]


def test_pretraining_flops_count_the_images_it_trained_on_not_the_probes():
    """A pretraining trial (SimCLR: two views an image; the same-data supervised arm: one) costs its images seen
    x 3, plus one forward per image its probe extracts: never epochs x the probe's images."""
    from reports.rows import StudyData

    cifar = 2 * compute.resnet18_macs("cifar", 32)
    attrs = {"images_seen": 5000, "n_train_images": 900}
    for objective, views in (("simclr", 2), ("supervised_pretrain", 1)):
        study = StudyData("p", {"objective": objective, "config": json.dumps({"epochs": 5})}, "maximize")
        trial = _trial(value=40.0, **attrs)
        assert compute.trial_flops(study, trial) == pytest.approx(cifar * (3 * views * 5000 + 900)), objective
