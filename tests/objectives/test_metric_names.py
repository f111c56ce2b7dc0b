"""The name of a study's value, stored with Optuna's set_metric_names, which optuna-dashboard shows instead of
"Objective 0": set when a study is created, and on an older study's next `optimize`; show and report ignore it."""

from __future__ import annotations

import json

import optuna
import pytest

import objectives.create
from objectives import build_spec, registry
from objectives.create import create_study, name_metric
from tests.helpers import run_cli, tiny_sets

# what each objective returns (objectives/*_objective.py): a pretraining trial's value is its encoder's linear probe
METRICS = {
    "simclr": "linear-probe val top-1 (%)",
    "linear_probe": "linear-probe val top-1 (%)",
    "supervised": "val top-1 (%)",
    "finetune": "val top-1 (%)",
    "supervised_pretrain": "linear-probe val top-1 (%)",
}


@pytest.mark.parametrize("objective", [info.name for info in registry.BUILT_IN])
def test_a_new_study_names_its_metric(tmp_path, objective):
    storage = optuna.storages.get_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = create_study(storage, "s", build_spec(objective))
    assert optuna.load_study(study_name="s", storage=storage).metric_names == [METRICS[objective]]
    assert study.user_attrs["objective"] == objective  # the spec is written as before


def old_study(url: str, name: str, objective: str, data_dir, monkeypatch) -> optuna.Study:
    """A study as `create` made it before metric names were set."""
    with monkeypatch.context() as m:
        m.setattr(objectives.create, "name_metric", lambda study, objective: None)
        r = run_cli(
            "create",
            "--objective",
            objective,
            "--name",
            name,
            "--storage",
            url,
            "--set",
            *tiny_sets(objective, data_dir),
        )
    assert r.rc == 0, r.err
    study = optuna.load_study(study_name=name, storage=url)
    assert study.metric_names is None
    return study


def test_an_old_study_gets_its_metric_name_on_its_next_optimize(tmp_path, data_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    old_study(url, "probe", "linear_probe", data_dir, monkeypatch)
    r = run_cli("optimize", "probe", "--trials", "1", "--device", "cpu", "--storage", url)
    assert r.rc == 0, r.err
    study = optuna.load_study(study_name="probe", storage=url)
    assert study.metric_names == [METRICS["linear_probe"]] and len(study.trials) == 1


def test_show_and_report_print_the_same_with_or_without_it(tmp_path, data_dir, monkeypatch):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = old_study(url, "scratch", "supervised", data_dir, monkeypatch)

    def printed() -> list:
        outs = [run_cli(*argv, "--storage", url) for argv in (["show", "scratch"], ["show", "scratch", "--json"])]
        report = run_cli("report", "--json", "--storage", url)
        assert all(r.rc == 0 for r in (*outs, report)), [r.err for r in (*outs, report)]
        return [r.out for r in outs] + [{k: v for k, v in json.loads(report.out).items() if k != "created"}]

    before = printed()
    name_metric(study, "supervised")
    assert study.metric_names == [METRICS["supervised"]] and printed() == before
