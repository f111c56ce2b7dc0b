"""--log tensorboard:DIR (objectives/scalars.py): each trial's epoch metrics as TensorBoard scalars under
DIR/STUDY/trial-N, read back with TensorBoard's own reader; a missing package or a bad value is one line."""

from __future__ import annotations

import sys

import pytest

from objectives.scalars import run_dir_name
from tests.helpers import check_refused, file_state, run_cli, show, tiny_sets

MONITOR = {"simclr": "knn_top1", "supervised": "val_top1"}  # what each objective reports to the pruner


def _two_epochs(objective: str, data_dir) -> list[str]:
    return [s if not s.startswith("epochs=") else "epochs=2" for s in tiny_sets(objective, data_dir)]


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of a TensorBoard run directory, as TensorBoard reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("objective", [pytest.param("simclr", marks=pytest.mark.slow), "supervised"])  # 8 s, 4 s
def test_each_trial_writes_one_value_per_epoch_of_its_metrics(objective, data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install -r requirements-extras.txt (CI installs it)")
    url, logs = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "runs"
    args = ["--storage", url, "--sampler", "random", "--set", *_two_epochs(objective, data_dir)]
    assert run_cli("create", "--objective", objective, "--name", "tb/x", *args).rc == 0
    r = run_cli(
        "optimize", "tb/x", "--trials", "2", "--device", "cpu", "--storage", url, "--log", f"tensorboard:{logs}"
    )
    assert r.rc == 0, r.err
    assert sorted(p.name for p in (logs / "tb_x").iterdir()) == ["trial-0", "trial-1"]  # "/" stays inside DIR
    for trial in show(url, "tb/x")["trials"]:
        history = trial["user_attrs"]["history"]
        assert [h["epoch"] for h in history] == [1, 2]
        scalars = _scalars(logs / "tb_x" / f"trial-{trial['number']}")
        assert {"loss", "lr", MONITOR[objective], "images_per_second"} <= set(scalars), sorted(scalars)
        assert "epoch" not in scalars and "step" not in scalars  # the x axis is the epoch
        for tag in ("loss", "lr", MONITOR[objective], "images_per_second"):
            expected = [(h["epoch"], pytest.approx(h[tag], rel=1e-5, abs=1e-6)) for h in history]
            assert scalars[tag] == expected, tag


@pytest.mark.parametrize("command", [["optimize", "ssl"], ["compare", "--out", "r.html", "--set", "download=false"]])
def test_a_missing_tensorboard_package_is_one_line_before_anything_runs(command, data_dir, tmp_path, monkeypatch):
    url, logs = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "runs"
    assert (
        run_cli(
            "create",
            "--objective",
            "simclr",
            "--name",
            "ssl",
            "--storage",
            url,
            "--set",
            *tiny_sets("simclr", data_dir),
        ).rc
        == 0
    )
    before = file_state(tmp_path / "s.db")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what `import tensorboard` does when it is not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # (torch's writer may be imported already)
    monkeypatch.chdir(tmp_path)
    r = run_cli(*command, "--device", "cpu", "--storage", url, "--log", f"tensorboard:{logs}")
    check_refused(r, "--log tensorboard needs the tensorboard package: pip install tensorboard")
    assert file_state(tmp_path / "s.db") == before and not logs.exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("wandb:runs", "unknown logger 'wandb'; use tensorboard:DIR"),
        ("runs", "unknown logger 'runs'; use tensorboard:DIR"),
        ("tensorboard", "give the directory, e.g. --log tensorboard:runs"),
        ("tensorboard: ", "give the directory"),
    ],
)
def test_a_bad_log_value_is_one_line(value, fragment, tmp_path):
    r = run_cli("optimize", "ssl", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--log", value)
    check_refused(r, fragment)
    assert not (tmp_path / "s.db").exists()


def test_an_unwritable_log_directory_stops_optimize_before_any_trial(data_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install -r requirements-extras.txt (CI installs it)")
    url, blocker = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "a-file"
    blocker.write_text("not a directory")
    args = ["--storage", url, "--set", *tiny_sets("supervised", data_dir)]
    assert run_cli("create", "--objective", "supervised", "--name", "sup", *args).rc == 0
    r = run_cli("optimize", "sup", "--device", "cpu", "--storage", url, "--log", f"tensorboard:{blocker}")
    check_refused(r, "is not writable")
    assert show(url, "sup")["trials"] == []


@pytest.mark.parametrize(
    "name, expected", [("ssl", "ssl"), ("a/b", "a_b"), ("..", "_.."), ("../up", "_.._up"), ("x y", "x_y")]
)
def test_a_study_name_becomes_one_directory_inside_dir(name, expected):
    assert run_dir_name(name) == expected
