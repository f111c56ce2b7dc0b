"""study.py compare end to end on generated CIFAR archives with tiny budgets: every planned study with its role,
the comparison table, the ImageNet regime missing (with the reason) offline and present once a weights file is in
the torch hub cache, interrupt and resume without re-running a finished trial, and bad input (exit 2, one line)."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna
import pytest
import torch
import torchvision

from objectives import run
from reports import rows
from storage import schema
from tests.helpers import file_state, run_cli

IMAGENET_FILE = "resnet18-f37072fd.pth"
ROLES = {
    "cmp-hparams": "simclr_hparams",
    "cmp-scale": "simclr_scale",
    "cmp-supervised-pretrain": "supervised_pretrain",
    "cmp-probe-simclr": "probe_simclr",
    "cmp-finetune-simclr": "finetune",
    "cmp-probe-supervised": "probe_supervised",
    "cmp-finetune-supervised": "finetune_supervised",
    "cmp-probe-imagenet": "probe_imagenet",
    "cmp-finetune-imagenet": "finetune_imagenet",
    "cmp-probe-random": "probe_random",
    "cmp-scratch": "scratch",
    "cmp-probe-simclr-cifar10": "probe_simclr_in_domain",
}
# then each selected configuration at fewer labels (the ImageNet regimes select nothing offline)
LABELS = {
    f"cmp-labels-{k}": f"labels_{v}"
    for k, v in (
        ("probe-simclr", "probe_simclr"),
        ("finetune-simclr", "finetune"),
        ("probe-supervised", "probe_supervised"),
        ("finetune-supervised", "finetune_supervised"),
        ("probe-random", "probe_random"),
        ("scratch", "scratch"),
    )
}
# one epoch, batch 5, the conftest archives whole (20 CIFAR-10 images; 15/5/10 CIFAR-100 probe images)
TINY = [
    "download=false",
    "epochs=1",
    "batch_size=5",
    "data_fraction=1.0",
    "warmup_epochs=0",
    "probe_epochs=3",
    "monitor_size=10",
    "checkpoint_every=1",
    "knn_k=5",
    "probe_fraction=1.0",
    "test_fraction=1.0",
]


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache (TORCH_HOME) and no network: ImageNet weights cannot be had. Returns the directory
    torchvision looks in for them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


COMPARE = ("compare", "--preset", "smoke", "--prefix", "cmp", "--trials", "1", "--device", "cpu")


def run_compare(url: str, data_dir: Path, out: Path, *extra: str):
    return run_cli(
        *COMPARE,
        "--storage",
        url,
        "--out",
        out,
        "--set",
        f"data_dir={data_dir}",
        *TINY,
        *extra,
    )


def trials_of(url: str) -> dict[str, list[tuple]]:
    """Study -> [(number, state, datetime_start, params, error)]: what 'no trial was re-run' compares."""
    storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
    try:
        return {
            s.study_name: [
                (t.number, t.state.name, t.datetime_start, t.params, t.user_attrs.get(schema.ERROR))
                for t in storage.get_all_trials(s._study_id)
            ]
            for s in storage.get_all_studies()
        }
    finally:
        storage.engine.dispose()


def comparison(url: str) -> dict[str, dict]:
    return {r["regime"]: r for r in rows.comparison_rows(rows.load_studies(url))}


@pytest.mark.slow
def test_compare_end_to_end_offline_then_with_imagenet_weights(tmp_path, data_dir, offline):
    url, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "report.html"
    r = run_compare(url, data_dir, out)
    assert r.rc == 0, r.err
    assert "budget (cpu" in r.err and "[11/12] cmp-scratch" in r.err
    assert "cmp-probe-imagenet cannot run" in r.err and IMAGENET_FILE in r.err
    assert "cmp-finetune-imagenet cannot run" in r.err
    # every study, with its role, the comparison and the preset
    studies = {s.name: s for s in rows.load_studies(url)}
    assert {name: s.role for name, s in studies.items()} == {**ROLES, **LABELS}
    assert all(
        s.user_attrs[schema.COMPARISON] == "cmp" and s.user_attrs[schema.PRESET] == "smoke" for s in studies.values()
    )
    assert studies["cmp-probe-simclr"].encoder == studies["cmp-finetune-simclr"].encoder == "best:cmp-hparams"
    assert {n: studies[n].encoder for n in ("cmp-probe-imagenet", "cmp-probe-random")} == {
        "cmp-probe-imagenet": "imagenet",
        "cmp-probe-random": "random",
    }
    # the fair comparison: the same space and seed for the three probes
    probes = [schema.read_spec(studies[f"cmp-probe-{k}"].user_attrs) for k in ("simclr", "imagenet", "random")]
    assert len({(schema.space_to_json(p.space), str(p.sampler)) for p in probes}) == 1
    scale = studies["cmp-scale"]
    assert sorted(t.params["data_fraction"] for t in scale.complete()) == [0.1, 0.3, 1.0]
    for name in ("cmp-hparams", "cmp-probe-simclr", "cmp-finetune-simclr", "cmp-probe-random", "cmp-scratch"):
        assert [t.state.name for t in studies[name].trials] == ["COMPLETE"], name
    for name in ("cmp-hparams", "cmp-supervised-pretrain", "cmp-probe-simclr", "cmp-scratch"):  # the recipe first
        spec = schema.read_spec(studies[name].user_attrs)
        assert studies[name].trials[0].params == {k: spec.config[k] for k in spec.space}, name
    for name in ("cmp-probe-imagenet", "cmp-finetune-imagenet"):
        assert [t.state.name for t in studies[name].trials] == ["WAITING"]  # only its recipe, queued: none ran
        assert IMAGENET_FILE in studies[name].user_attrs[schema.STUDY_ERROR]
    # the printed table: one row per regime; ImageNet missing with the reason; then the report's path
    table = r.out[r.out.index("regime") :].splitlines()
    assert table[-1] == f"report: {out}" and out.is_file()
    protocol = table.index("protocol:")  # the rule under the table, then one protocol line per regime
    named = [line.split(":")[0].strip() for line in table[protocol + 1 : protocol + 10]]
    assert all(row.startswith(name) for row, name in zip(table[1:10], named, strict=True)), named
    assert "in-domain check" in table[protocol + 9] and table[9].split()[-1] != "reference"
    curves = table.index(next(line for line in table if line.startswith("label efficiency")))
    assert len(table[curves + 1 : -1]) == 12  # six regimes at 25% and 100% of the labels
    assert "reference" in table[8] and table[1].startswith("SimCLR -> linear probe")
    assert table[2].startswith("SimCLR -> fine-tuned") and table[3].startswith("CIFAR-10-supervised -> linear")
    assert "missing: cmp-probe-imagenet could not run: ImageNet ResNet-18 weights" in table[5]
    assert " 0 (0/0/0) " in table[5]  # its queued recipe did not run: no trial counts
    assert "gain: fine-tuning (all weights) vs training from scratch" in table[protocol + 2]
    got = comparison(url)
    for regime in ("probe_imagenet", "finetune_imagenet"):
        assert got[regime]["status"] == "missing" and str(offline) in got[regime]["reason"]
    assert all(got[k]["status"] == "ok" for k in ("probe_simclr", "finetune", "probe_random", "scratch"))
    assert "ImageNet" in out.read_text()
    import optuna_dashboard

    note = optuna_dashboard.get_note(optuna.load_study(study_name="cmp-scratch", storage=url))
    assert "Comparison (written by study.py)" in note

    # weights appear in the torchvision cache (random values: only the file matters): the ImageNet regime runs,
    # nothing else is run again
    before = trials_of(url)
    offline.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18().state_dict(), offline / IMAGENET_FILE)
    r = run_compare(url, data_dir, out)
    assert r.rc == 0, r.err
    assert r.err.count("nothing left to run") == 10 + 6  # the studies and the labels studies that ran before
    after = trials_of(url)
    assert {k: v for k, v in after.items() if "imagenet" not in k} == {
        k: v for k, v in before.items() if "imagenet" not in k
    }
    assert {"cmp-labels-probe-imagenet", "cmp-labels-finetune-imagenet"} <= set(after)  # selected now: a curve
    assert [t[1] for t in after["cmp-probe-imagenet"]] == [t[1] for t in after["cmp-finetune-imagenet"]] == ["COMPLETE"]
    got = comparison(url)
    for regime in ("probe_imagenet", "finetune_imagenet"):
        assert got[regime]["status"] == "ok" and got[regime]["test_top1"] is not None
        assert got[regime]["gain_top1"] is not None
    study = optuna.load_study(study_name="cmp-probe-imagenet", storage=url)
    assert study.user_attrs[schema.STUDY_ERROR] == ""  # cleared once it ran
    assert "ok: cmp-probe-imagenet #0" in r.out


@pytest.mark.slow
def test_interrupted_then_resumed_reruns_no_finished_trial(tmp_path, data_dir, offline, monkeypatch):
    import simclr.pretrain

    url, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "report.html"
    real = simclr.pretrain.pretrain
    calls = {"n": 0, "stop_at": 2}

    def pretrain(*args, **kwargs):  # Ctrl-C during the stop_at-th pretraining of this run
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(simclr.pretrain, "pretrain", pretrain)
    # 1. interrupted in the hyperparameter study's first trial: that trial FAILs "interrupted" and is queued again,
    # nothing else starts
    calls.update(stop_at=1)
    r = run_compare(url, data_dir, out)
    assert r.rc == 130 and "run the same command again" in r.err
    first = trials_of(url)
    assert list(first) == ["cmp-hparams"]
    assert [(t[1], t[4]) for t in first["cmp-hparams"]] == [("FAIL", "interrupted"), ("WAITING", None)]
    assert not out.exists()

    # 2. resuming with other settings is refused (another --prefix), the store untouched
    state = file_state(tmp_path / "s.db")
    r = run_cli(
        *COMPARE,
        "--storage",
        url,
        "--set",
        f"data_dir={data_dir}",
        *TINY[:-1],
        "test_fraction=0.5",
    )
    assert r.rc == 2 and r.err.count("\n") == 1 and "--prefix" in r.err and "test_fraction: stored 1.0" in r.err
    assert file_state(tmp_path / "s.db") == state

    # 3. resumed: the queued trial runs (budget 1: the interrupted one does not count), then the scale study at
    # its pick; Ctrl-C in the scale study's second grid point
    calls.update(n=0, stop_at=3)
    r = run_compare(url, data_dir, out)
    assert r.rc == 130
    second = trials_of(url)
    assert [t[1] for t in second["cmp-hparams"]] == ["FAIL", "COMPLETE"]
    assert [(t[0], t[1], t[4]) for t in second["cmp-scale"]] == [
        (0, "COMPLETE", None),
        (1, "FAIL", "interrupted"),
        (2, "WAITING", None),
    ]

    # 4. resumed to the end: only what is left runs; the interrupted grid point again, as a retry
    calls.update(n=0, stop_at=0)
    r = run_compare(url, data_dir, out)
    assert r.rc == 0, r.err
    assert "[1/12] cmp-hparams (simclr, role simclr_hparams): 1/1 trials done, nothing left to run" in r.err
    third = trials_of(url)
    assert third["cmp-hparams"] == second["cmp-hparams"] and third["cmp-scale"][:2] == second["cmp-scale"][:2]
    scale = optuna.load_study(study_name="cmp-scale", storage=url).get_trials()
    assert [t.state.name for t in scale] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert scale[2].params == scale[1].params and scale[2].user_attrs[schema.RETRY_OF] == 1
    assert sorted(t.params["data_fraction"] for t in scale if t.state.name == "COMPLETE") == [0.1, 0.3, 1.0]
    compared = {name: len(t) for name, t in third.items() if name in ROLES and "-scale" not in name}
    assert compared == {
        "cmp-hparams": 2,
        "cmp-supervised-pretrain": 1,
        "cmp-probe-simclr": 1,
        "cmp-finetune-simclr": 1,
        "cmp-probe-supervised": 1,
        "cmp-finetune-supervised": 1,
        "cmp-probe-imagenet": 1,  # its recipe, queued (no weights offline: nothing ran)
        "cmp-finetune-imagenet": 1,
        "cmp-probe-random": 1,
        "cmp-scratch": 1,
        "cmp-probe-simclr-cifar10": 1,
    }
    assert out.is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (
            ["--set", "no_such_key=1"],
            "--set no_such_key: not a config key of simclr, supervised_pretrain, linear_probe, finetune, supervised",
        ),
        (["--set", "encoder=random"], "compare probes its own encoders"),
        (["--set", "epochs=0"], "epochs=0: must be in (0, 10000]"),
        (["--trials", "0"], "--trials must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--prefix", "a\tb"], "study name"),
        (["--out", "/no/such/dir/report.html"], "directory /no/such/dir does not exist"),
        (["--time-budget", "soon"], "--time-budget 'soon': give a duration like 15m"),
    ],
)
def test_bad_input_exit_2_one_line_no_store(tmp_path, args, message):
    path = tmp_path / "s.db"
    r = run_cli("compare", "--storage", f"sqlite:///{path}", "--device", "cpu", *args)
    assert r.rc == 2 and r.err.count("\n") == 1 and r.err.startswith("error:") and message in r.err, r.err
    assert not path.exists()


def test_missing_data_creates_nothing(tmp_path):
    path, empty = tmp_path / "s.db", tmp_path / "empty"
    empty.mkdir()
    r = run_cli(
        "compare", "--storage", f"sqlite:///{path}", "--device", "cpu", "--set", f"data_dir={empty}", "download=false"
    )
    last = r.err.splitlines()[-1]
    assert r.rc == 2 and last.startswith("error:") and "cifar-100-python.tar.gz" in last
    assert not path.exists() and not (tmp_path / "s_artifacts").exists()


def test_a_time_budget_too_small_for_this_machine_exit_2_no_store(tmp_path, data_dir):
    path = tmp_path / "s.db"
    r = run_cli(
        "compare",
        "--storage",
        f"sqlite:///{path}",
        "--device",
        "cpu",
        "--prefix",
        "cmp",
        "--time-budget",
        "1s",
        "--set",
        f"data_dir={data_dir}",
        *TINY,
    )
    last = r.err.splitlines()[-1]
    assert r.rc == 2 and last.startswith("error: --time-budget 1 s is too small for this machine"), r.err
    assert "more; raise --time-budget" in last
    assert not path.exists() and not (tmp_path / "s_artifacts").exists()


# ---------------------------------------------------------------------------------------------------------
# the pure parts


def _trial(state, error=None):
    attrs = {schema.ERROR: error} if error else {}
    return optuna.trial.create_trial(state=state, value=1.0 if state.name == "COMPLETE" else None, user_attrs=attrs)


@pytest.mark.parametrize(
    "state, error, counted",
    [
        ("COMPLETE", None, True),
        ("PRUNED", None, True),
        ("FAIL", "diverged: non-finite loss", True),  # would fail again: budget spent
        ("FAIL", "out of memory: CUDA", True),
        ("FAIL", "interrupted", False),  # Ctrl-C / SIGTERM: runs again
        ("FAIL", None, False),  # a killed worker: the heartbeat retry runs it again
        ("FAIL", f"{schema.GRID_TAKEN}: trial 0 holds this grid point (not run twice)", False),
        ("WAITING", None, False),
    ],
)
def test_which_trials_count_toward_the_budget(state, error, counted):
    assert run.uses_budget(_trial(optuna.trial.TrialState[state], error)) is counted


@pytest.mark.slow
def test_seeds_rerun_each_regimes_selected_configuration(tmp_path, data_dir, offline):
    """seeds=2: after the six studies, one grid study per regime runs the selected configuration with seed + 1;
    the SimCLR one pretrains anew with the hparams study's best config and probes with the tuned probe."""
    url, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "report.html"
    r = run_compare(url, data_dir, out, "seeds=2")
    assert r.rc == 0, r.err
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    # the ImageNet probe cannot run offline: no selection, so no seeds study for it
    assert {"cmp-seeds-simclr", "cmp-seeds-finetune", "cmp-seeds-probe_random", "cmp-seeds-scratch"} <= names
    assert {"cmp-seeds-supervised", "cmp-seeds-finetune_supervised"} <= names  # the same-data arm's too
    # fine-tuning's other seeds fine-tune the very encoder its study was pinned to, not a later best
    finetune = optuna.load_study(study_name="cmp-finetune-simclr", storage=url)
    pinned = finetune.user_attrs[schema.ENCODER_TRIAL]
    seeded = schema.read_spec(optuna.load_study(study_name="cmp-seeds-finetune", storage=url).user_attrs)
    assert seeded.config["encoder"] == f"trial:cmp-hparams:{pinned}"
    assert "cmp-seeds-probe_imagenet" not in names
    for regime, source, objective in (
        ("simclr", "cmp-hparams", "simclr"),
        ("scratch", "cmp-scratch", "supervised"),
        ("probe_random", "cmp-probe-random", "linear_probe"),
    ):
        seeds = optuna.load_study(study_name=f"cmp-seeds-{regime}", storage=url)
        selected = optuna.load_study(study_name=source, storage=url)
        spec = schema.read_spec(seeds.user_attrs)
        assert spec.objective == objective and spec.role == f"seeds_{regime}"
        (trial,) = seeds.trials
        assert trial.state.name == "COMPLETE" and trial.params == {"seed": 1}
        for key, value in selected.best_trial.params.items():
            assert spec.config[key] == value, (regime, key)  # the selected configuration, every key fixed
    probe = optuna.load_study(study_name="cmp-probe-simclr", storage=url).best_trial.params
    assert schema.read_spec(optuna.load_study(study_name="cmp-seeds-simclr", storage=url).user_attrs).config[
        "probe_lr"
    ] == pytest.approx(probe["probe_lr"])
