"""One external judge for every encoder of bench/learning.py: scikit-learn on frozen features.

The encoder is copied, put in eval mode and run under no_grad on the probe images (512-d features after global
average pooling, the encoder's own normalisation, no augmentation). Features are standardised with the probe-train
split's per-dimension mean and std, then
- linear: multinomial logistic regression (lbfgs), its L2 strength C chosen from C_GRID on a stratified fifth of
  probe-train held out, then refit on all of probe-train; accuracy on probe-test;
- kNN: k = 20 nearest probe-train neighbours by cosine similarity, votes weighted by 1 / distance; accuracy on
  probe-test.
Neither our probe (simclr.probe) nor our monitor (simclr.knn) is used, so a defect in either cannot flatter us.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch

try:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
except ModuleNotFoundError as e:  # one line, not a traceback
    raise SystemExit(
        f"error: {e.name} is not installed; it is benchmark-only: pip install -r bench/requirements.txt"
    ) from None

import common  # noqa: F401  (puts the repo on sys.path)
from simclr.data import ImageSet

C_GRID = (0.01, 0.1, 1.0)
KNN_K = 20


@dataclass(frozen=True)
class ProbeSet:
    """Labelled images an encoder is judged on: fit on `train`, scored on `test`."""

    name: str
    train: ImageSet
    test: ImageSet


def features(module: torch.nn.Module, images: torch.Tensor, mean, std, batch: int = 512) -> np.ndarray:
    """(N, 512) float32 features of uint8 (N, 3, H, W) images under a frozen copy of `module` (left untouched)."""
    frozen = copy.deepcopy(module).eval().requires_grad_(False)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = (images[start : start + batch].float() / 255 - m) / s
            out.append(frozen(x).float().flatten(1))
    return torch.cat(out).numpy()


def _linear(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    fit_x, val_x, fit_y, val_y = train_test_split(train_x, train_y, test_size=0.2, stratify=train_y, random_state=seed)

    def model(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=500)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 500 lbfgs iterations; the score is what counts
        best = max(C_GRID, key=lambda c: model(c).fit(fit_x, fit_y).score(val_x, val_y))
        return 100.0 * model(best).fit(train_x, train_y).score(test_x, test_y)


def _knn(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    knn = KNeighborsClassifier(n_neighbors=KNN_K, metric="cosine", weights="distance", algorithm="brute")
    return 100.0 * knn.fit(train_x, train_y).score(test_x, test_y)


def judge(module: torch.nn.Module, mean, std, probe: ProbeSet, *, linear: bool, seed: int = 0) -> dict[str, float]:
    """{"knn": top-1 %, ["linear": top-1 %]} of `module`'s frozen features on `probe`."""
    train_x = features(module, probe.train.images, mean, std)
    test_x = features(module, probe.test.images, mean, std)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6  # dead ReLU units have sd 0
    train_x, test_x = (train_x - mu) / sd, (test_x - mu) / sd
    train_y, test_y = probe.train.labels.numpy(), probe.test.labels.numpy()
    scores = {"knn": _knn(train_x, train_y, test_x, test_y)}
    if linear:
        scores["linear"] = _linear(train_x, train_y, test_x, test_y, seed)
    return scores
