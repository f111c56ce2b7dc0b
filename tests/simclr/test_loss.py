"""nt_xent against loop-by-loop references written from SimCLR's Algorithm 1 (Chen et al. 2020)."""

import math

import pytest
import torch

from simclr.loss import NTXentLoss, nt_xent


def algorithm1_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Algorithm 1 with Python loops in float64: rows 2k and 2k+1 (0-based) are the k-th pair."""
    n = z1.shape[0]
    z = []
    for k in range(n):  # interleave as in the paper: z_{2k-1}, z_{2k}
        z += [z1[k].double(), z2[k].double()]

    def s(i, j):
        return float(z[i] @ z[j] / (z[i].norm() * z[j].norm()))

    def loss_ij(i, j):  # l(i, j) in the paper
        denom = sum(math.exp(s(i, k) / t) for k in range(2 * n) if k != i)
        return -math.log(math.exp(s(i, j) / t) / denom)

    return sum(loss_ij(2 * k, 2 * k + 1) + loss_ij(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


def lightly_style_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """A second formulation (lightly's NTXentLoss): positives on the off-diagonal of z1 z2^T, negatives from
    both the cross and the same-view blocks, logits [positive, negatives] with label 0, averaged."""
    a = torch.nn.functional.normalize(z1.double(), dim=1)
    b = torch.nn.functional.normalize(z2.double(), dim=1)
    n = a.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    losses = []
    for x, y in ((a, b), (b, a)):
        cross, same = x @ y.T / t, x @ x.T / t  # (N, N)
        pos = cross.diagonal()[:, None]  # (N, 1)
        neg = torch.cat([cross[~eye].view(n, n - 1), same[~eye].view(n, n - 1)], dim=1)  # (N, 2N-2)
        logits = torch.cat([pos, neg], dim=1)
        losses.append(torch.nn.functional.cross_entropy(logits, torch.zeros(n, dtype=torch.long), reduction="none"))
    return torch.cat(losses).mean()


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("d", [2, 16, 128])
@pytest.mark.parametrize("n", [2, 3, 8])
def test_matches_algorithm1(n, d, t):
    g = torch.Generator().manual_seed(n * 1000 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = nt_xent(z1, z2, t)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(algorithm1_reference(z1, z2, t), rel=1e-5)
    assert got.item() == pytest.approx(lightly_style_reference(z1, z2, t).item(), rel=1e-5)
    assert NTXentLoss(t)(z1, z2).item() == got.item()


def test_symmetric_in_the_views_and_invariant_to_scale():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)
    assert nt_xent(3 * z1, 0.5 * z2).item() == pytest.approx(nt_xent(z1, z2).item(), rel=1e-5)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert nt_xent(z1, z2).dtype == torch.float64  # float64 stays float64: gradcheck at its default tolerances
    assert torch.autograd.gradcheck(lambda a, b: nt_xent(a, b, 0.5), (z1, z2))


def test_gradient_matches_reference_autograd():
    g = torch.Generator().manual_seed(3)
    z1 = torch.randn(5, 7, generator=g, requires_grad=True)
    z2 = torch.randn(5, 7, generator=g, requires_grad=True)
    nt_xent(z1, z2, 0.2).backward()
    r1, r2 = z1.detach().double().requires_grad_(), z2.detach().double().requires_grad_()
    lightly_style_reference(r1, r2, 0.2).backward()
    torch.testing.assert_close(z1.grad.double(), r1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(z2.grad.double(), r2.grad, rtol=1e-4, atol=1e-6)


def test_aligned_pairs_have_lower_loss_than_random_pairs():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(16, 32, generator=g)
    aligned = nt_xent(z, z + 0.01 * torch.randn(16, 32, generator=g))
    random = nt_xent(z, torch.randn(16, 32, generator=g))
    assert aligned < random
    assert random.item() == pytest.approx(math.log(2 * 16 - 1), rel=0.3)  # ~uniform over 2N-1 candidates


@pytest.mark.parametrize(
    "shape1, shape2, t, match",
    [
        ((4, 8), (4, 8), 0.0, "temperature"),
        ((4, 8), (4, 8), -1.0, "temperature"),
        ((4, 8), (4, 8), float("nan"), "temperature"),
        ((4, 8), (5, 8), 0.5, "same shape"),
        ((4, 8), (4, 9), 0.5, "same shape"),
        ((4,), (4,), 0.5, r"\(N, D\)"),
        ((4, 8, 2), (4, 8, 2), 0.5, r"\(N, D\)"),
        ((1, 8), (1, 8), 0.5, "N >= 2"),
    ],
)
def test_invalid_arguments_raise(shape1, shape2, t, match):
    with pytest.raises(ValueError, match=match):
        nt_xent(torch.randn(shape1), torch.randn(shape2), t)


def test_module_validates_temperature():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0)


def test_bf16_inputs_and_autocast_compute_in_float32():
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    fp32 = nt_xent(z1, z2, 0.1)
    bf16 = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.1)
    assert bf16.dtype == torch.float32
    assert bf16.item() == pytest.approx(fp32.item(), rel=2e-2)  # only the input rounding differs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = nt_xent(z1, z2, 0.1)
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(fp32.item(), rel=1e-6)  # the matmul was not lowered to bf16
