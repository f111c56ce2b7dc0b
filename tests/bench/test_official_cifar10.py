"""bench/official_cifar10.py is the command a CUDA user runs to hold our SimCLR against the published CIFAR-10
numbers; nobody here has a GPU or the real CIFAR-10, so it runs on generated archives in the real format for one
epoch, and the recipe it trains with is checked against the source's numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simclr.schedule import effective_lr
from tests import fakedata

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "official_cifar10.py"
sys.path.insert(0, str(REPO / "bench"))

from official_cifar10 import recipe  # noqa: E402


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_recipe_is_the_official_cifar10_one():
    cfg = recipe(1000, 50)
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.warmup_epochs) == (1000, 512, "lars", 10)
    assert (cfg.lr, cfg.lr_scaling) == (1.0, "linear")  # learning rate 1.0 per 256 images, as the source's flag
    assert effective_lr(cfg.lr, cfg.batch_size, cfg.lr_scaling) == pytest.approx(2.0)  # trained with at batch 512
    assert (cfg.temperature, cfg.jitter_strength, cfg.blur_p, cfg.weight_decay) == (0.5, 0.5, 0.0, 1e-6)
    small = recipe(10, 5, batch=128)
    assert effective_lr(small.lr, small.batch_size, small.lr_scaling) == pytest.approx(0.5)


@pytest.mark.slow
def test_one_epoch_on_generated_cifar10_prints_knn_and_linear_then_resumes(tmp_path):
    fakedata.write_cifar10(tmp_path / "data", n_train_per_class=8, n_test_per_class=4)
    args = ["--data-dir", "data", "--work-dir", "run", "--epochs", "1", "--every", "1", "--batch", "32"]
    first = run(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "80 train / 40 test images; lr 0.125 (= 1 x 32 / 256)" in first.stdout
    lines = [line for line in first.stdout.splitlines() if line.startswith("epoch")]
    assert len(lines) == 1 and "kNN" in lines[0] and "linear" in lines[0], first.stdout
    assert (tmp_path / "run" / "last.pt").is_file()
    again = run(*args, cwd=tmp_path)  # resumed at its end: nothing left to train
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("epoch")]
    other = run(*args[:-2], "--batch", "16", cwd=tmp_path)  # another recipe against the same checkpoint
    assert other.returncode == 2 and other.stderr.startswith("error: cannot resume") and "Traceback" not in other.stderr
    assert other.stderr.count("\n") == 1
