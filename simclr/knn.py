"""Weighted k-nearest-neighbour accuracy: the cheap monitor of representation quality used for pruning.

The InstDisc rule (Wu et al. 2018, Sec. 3.4), as in solo-learn's `WeightedKNNClassifier`: features are
L2-normalised, a query's k most cosine-similar bank entries vote for their labels with weight
exp(s / temperature), and the class with the largest summed weight is predicted.

By default the features are first standardised per dimension with the *bank's* mean and std (queries too, with
the bank's statistics), the "CL2N" of SimpleShot (Wang et al. 2019, "SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning", Sec. 3: centring then L2 normalisation) with the per-dimension scale of
the linear probe's standardisation. Why: ResNet features after ReLU + global average pooling are all positive,
so raw vectors share one large mean direction and their cosines sit near 1 whatever the image; a few
high-variance dimensions (brightness, mean colour) then decide the neighbours. On a 100-class dataset where the
linear probe reached 59%, the raw-cosine monitor stayed at chance (1%) through the whole run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    k: int,
    temperature: float,
    chunk_size: int,
) -> None:
    if train_features.dim() != 2 or test_features.dim() != 2:
        raise ValueError(f"features must be (N, D), got {tuple(train_features.shape)} and {tuple(test_features.shape)}")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(f"feature dims differ: bank {train_features.shape[1]}, queries {test_features.shape[1]}")
    if train_features.shape[0] == 0:
        raise ValueError("the kNN bank (train_features) is empty")
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must be ({train_features.shape[0]},), got {tuple(train_labels.shape)}")
    if k < 1 or not temperature > 0 or chunk_size < 1:
        raise ValueError(f"need k >= 1, temperature > 0, chunk_size >= 1; got {k}, {temperature}, {chunk_size}")


def bank_standardizer(bank: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std (population) of the bank's features, float32 (D,) each; a dimension that is
    constant over the bank gets std 1 (it is then 0 after centring and drops out of every cosine)."""
    std, mean = torch.std_mean(bank.float(), dim=0, correction=0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    standardize: bool = True,
) -> Tensor:
    """Predicted labels (Q,) int64 for test_features (Q, D) from the bank (M, D) with labels (M,).

    standardize: bank and queries become (x - mean) / std with the bank's `bank_standardizer` before the L2
    normalisation (see the module docstring); False gives the plain InstDisc rule on raw features. Predictions are
    invariant, raw, to positive scales of bank and queries (each its own); standardised, to one per-dimension map
    x -> a * x + b (a > 0) applied to both.
    k is clamped to M. Queries are processed `chunk_size` at a time, so memory is chunk_size x M floats.
    Computed in float32 with autocast off (bf16 similarities would reorder close neighbours).
    """
    _check(train_features, train_labels, test_features, k, temperature, chunk_size)
    device = train_features.device
    labels = train_labels.to(device=device, dtype=torch.long)
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"train_labels must lie in [0, {num_classes})")
    k = min(k, train_features.shape[0])
    preds = []
    with torch.autocast(device_type=device.type, enabled=False):
        bank = train_features.float()  # (M, D)
        mean, std = bank_standardizer(bank) if standardize else (bank.new_zeros(()), bank.new_ones(()))
        bank = F.normalize((bank - mean) / std, dim=1)
        for start in range(0, test_features.shape[0], chunk_size):
            queries = (test_features[start : start + chunk_size].to(device).float() - mean) / std  # (C, D)
            queries = F.normalize(queries, dim=1)
            sim, idx = (queries @ bank.T).topk(k, dim=1)  # (C, k), sorted descending
            # exp((s - s_max) / t): the same argmax as exp(s / t), without overflow for small t
            weights = ((sim - sim[:, :1]) / temperature).exp()  # (C, k)
            scores = torch.zeros(queries.shape[0], num_classes, device=device)  # (C, classes)
            scores.scatter_add_(1, labels[idx], weights)
            preds.append(scores.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long, device=device)


def knn_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, **options: Any
) -> float:
    """Top-1 accuracy in percent of the weighted kNN classifier on labelled test queries.

    `options` are `knn_predict`'s keywords (k, temperature, num_classes, chunk_size, standardize); num_classes
    defaults to one more than the largest label of the bank and the queries.
    """
    if test_labels.shape != (test_features.shape[0],):
        raise ValueError(f"test_labels must be ({test_features.shape[0]},), got {tuple(test_labels.shape)}")
    if test_features.shape[0] == 0:
        raise ValueError("no test queries: accuracy is undefined")
    if options.get("num_classes") is None and len(train_labels):  # an empty bank is refused by knn_predict
        options["num_classes"] = int(max(train_labels.max(), test_labels.max())) + 1
    preds = knn_predict(train_features, train_labels, test_features, **options)
    return 100.0 * (preds.cpu() == test_labels.cpu().long()).float().mean().item()


# Images a class below which a kNN bank does not rank trials for pruning (measured: see `bank_problem`).
MIN_BANK_PER_CLASS = 40


def bank_problem(bank_size: int, n_classes: int) -> str | None:
    """Why a kNN bank of `bank_size` labelled images over `n_classes` classes is too small for the monitor to
    rank trials (pruning), in one line; None when it holds at least MIN_BANK_PER_CLASS images a class.

    `bank_size` is the bank the monitor will use, after any bound: with the `simclr` objective, min(monitor_size,
    probe-train images), or all probe-train images when monitor_size is 0.

    Measured by bench/monitor_bank.py: 6 SimCLR runs differing in temperature and lr on 20 generated glyph classes,
    the monitor recomputed on 20 stratified banks per size (each draw shared by all runs, as a study's trials share
    one); Spearman's rho against the runs' final linear probes. First at epoch 2 of 4 (then the pruning step),
    mean over the draws: 5 a class 0.39, 10 a class 0.37, 20 a class 0.55, 40 a class 0.71 (the test's threshold:
    0.6). Again at the pruning step now, epoch 5 of 8 (objectives.registry.simclr_axis; seed 3): mean 0.72, 0.75,
    0.75, 0.71, but a study draws one bank, and the worst of 20 draws was 0.23, 0.26, 0.52 for 5, 10, 20 a class:
    below 40 a class a bank may not rank the trials. A floor, not a guarantee: 6 trials, 20 classes.
    """
    if n_classes < 1 or bank_size < 0:
        raise ValueError(f"need n_classes >= 1 and bank_size >= 0, got {n_classes} and {bank_size}")
    if bank_size >= MIN_BANK_PER_CLASS * n_classes:
        return None
    return (
        f"a kNN bank of {bank_size} images over {n_classes} classes ({bank_size / n_classes:.3g} a class) is too "
        f"small to rank trials: the monitor needs at least {MIN_BANK_PER_CLASS} a class "
        f"({MIN_BANK_PER_CLASS * n_classes} images)"
    )
