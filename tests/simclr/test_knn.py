"""Weighted kNN (InstDisc / solo-learn rule, on bank-standardised features) against a brute-force float64 loop."""

import math

import pytest
import torch

from simclr.knn import knn_accuracy, knn_predict


def brute_force_predict(bank, bank_labels, queries, k, t, num_classes, standardize=False):
    """For each query: cosine to every bank row, k largest, vote exp(s/t) per label, argmax (float64 loops).
    standardize: first (x - mean) / std per dimension with the bank's population mean and std (SimpleShot's CL2N
    with the linear probe's scaling)."""
    bank, queries = bank.double(), queries.double()
    if standardize:
        mean, std = bank.mean(0), bank.std(0, correction=0)
        bank, queries = (bank - mean) / std, (queries - mean) / std
    preds = []
    for q in queries:
        sims = [(float(q @ b / (q.norm() * b.norm())), int(y)) for b, y in zip(bank.double(), bank_labels, strict=True)]
        sims.sort(key=lambda p: -p[0])
        scores = [0.0] * num_classes
        for s, y in sims[: min(k, len(sims))]:
            scores[y] += math.exp(s / t)
        preds.append(max(range(num_classes), key=lambda c: scores[c]))
    return torch.tensor(preds)


def clusters(n_per_class, n_classes, dim, spread, generator):
    centres = torch.randn(n_classes, dim, generator=generator) * 5
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


@pytest.mark.parametrize("k, t", [(1, 0.1), (5, 0.1), (20, 0.5), (200, 0.07)])
@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
@pytest.mark.parametrize("standardize", [False, True])
def test_matches_brute_force(k, t, chunk_size, standardize):
    g = torch.Generator().manual_seed(k)
    bank, bank_labels = torch.randn(60, 8, generator=g) + 3, torch.randint(0, 5, (60,), generator=g)
    queries = torch.randn(25, 8, generator=g) + 3  # an offset, as ReLU features have: the two rules differ
    got = knn_predict(
        bank, bank_labels, queries, k=k, temperature=t, num_classes=5, chunk_size=chunk_size, standardize=standardize
    )
    assert got.dtype == torch.long and got.shape == (25,)
    assert torch.equal(got, brute_force_predict(bank, bank_labels, queries, k, t, 5, standardize))


@pytest.mark.parametrize("n_classes", [2, 10])
def test_separable_clusters_give_100_percent(n_classes):
    g = torch.Generator().manual_seed(n_classes)
    x, y = clusters(30, n_classes, 16, 0.1, g)
    train, test = torch.arange(len(y)) % 3 != 0, torch.arange(len(y)) % 3 == 0
    assert knn_accuracy(x[train], y[train], x[test], y[test], k=10) == 100.0


def test_random_labels_give_about_chance():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    acc = knn_accuracy(
        bank, torch.randint(0, 10, (2000,), generator=g), queries, torch.randint(0, 10, (2000,), generator=g), k=50
    )
    assert 6.0 < acc < 14.0  # chance is 10%; the binomial sd over 2000 queries is 0.7 points


def test_k_larger_than_bank_and_accuracy_is_percent():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    queries = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert torch.equal(knn_predict(bank, labels, queries, k=200, temperature=0.1), torch.tensor([0, 1]))
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 0]), k=200) == 50.0


def test_small_temperature_does_not_overflow():
    g = torch.Generator().manual_seed(1)
    x, y = clusters(10, 3, 4, 0.1, g)
    assert knn_accuracy(x, y, x, y, k=5, temperature=1e-4) == 100.0


def test_feature_scale_and_dtype_do_not_matter():
    # raw cosine: each side's scale is its own; standardised: the bank's statistics move queries along with the bank,
    # so only a map applied to both (here per-dimension scale and offset) leaves the prediction unchanged
    g = torch.Generator().manual_seed(2)
    bank, labels = torch.randn(50, 6, generator=g), torch.randint(0, 4, (50,), generator=g)
    queries = torch.randn(20, 6, generator=g)
    ref = knn_predict(bank, labels, queries, k=7, standardize=False)
    assert torch.equal(knn_predict(7 * bank, labels, 0.1 * queries.double(), k=7, standardize=False), ref)
    scale, offset = torch.rand(6, generator=g) * 10 + 0.1, torch.randn(6, generator=g) * 100
    ref = knn_predict(bank, labels, queries, k=7)
    assert torch.equal(knn_predict(bank * scale + offset, labels, (queries * scale + offset).double(), k=7), ref)


def features_with_nuisance(
    centres: torch.Tensor, n_per_class: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """What ReLU + average-pooled features look like to a cosine: all positive (offset 100), class signal (the
    centres (10, 64), spread 1) and 4 dims of class-free nuisance 30x larger (brightness, mean colour)."""
    labels = torch.arange(10).repeat_interleave(n_per_class)
    x = centres[labels] + torch.randn(len(labels), 64, generator=generator) + 100
    x[:, :4] += 30 * torch.randn(len(labels), 4, generator=generator)
    return x, labels


def test_standardising_recovers_classes_that_nuisance_dims_hide_from_raw_cosine():
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(10, 64, generator=g)
    bank, bank_labels = features_with_nuisance(centres, 20, g)
    queries, labels = features_with_nuisance(centres, 20, g)
    raw = knn_accuracy(bank, bank_labels, queries, labels, k=20, standardize=False)
    standardised = knn_accuracy(bank, bank_labels, queries, labels, k=20)
    # measured: raw 11% (7-20% over seeds 3-7; chance 10%: the 4 nuisance dims pick the neighbours), standardised 100%
    assert raw < 30.0 and standardised > 95.0, (raw, standardised)


@pytest.mark.parametrize(
    "bank, labels, queries, test_labels, kwargs, match",
    [
        ((10, 4), (10,), (5, 3), (5,), {}, "dims differ"),
        ((10,), (10,), (5,), (5,), {}, r"\(N, D\)"),
        ((10, 4), (9,), (5, 4), (5,), {}, "train_labels"),
        ((10, 4), (10,), (5, 4), (4,), {}, "test_labels"),
        ((0, 4), (0,), (5, 4), (5,), {}, "empty"),
        ((10, 4), (10,), (0, 4), (0,), {}, "no test queries"),
        ((10, 4), (10,), (5, 4), (5,), {"k": 0}, "k >= 1"),
        ((10, 4), (10,), (5, 4), (5,), {"temperature": 0.0}, "temperature"),
        ((10, 4), (10,), (5, 4), (5,), {"num_classes": 1}, r"\[0, 1\)"),
    ],
)
def test_invalid_arguments_raise(bank, labels, queries, test_labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_accuracy(
            torch.randn(bank),
            torch.arange(labels[0]) % 3,
            torch.randn(queries),
            torch.arange(test_labels[0]) % 3,
            **kwargs,
        )
