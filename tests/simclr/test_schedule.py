"""lr_at at its ends and in its pieces; LARS against a hand-computed update; parameter groups; batches; LossLog."""

import math

import pytest
import torch
from torch import nn

from errors import NonFiniteLoss
from simclr.schedule import LARS, LossLog, build_optimizer, epoch_batches, lr_at, param_groups


@pytest.mark.parametrize("total,warmup,base", [(100, 10, 0.3), (1000, 0, 1.0), (7, 3, 2.5), (50, 1, 0.1)])
def test_lr_at_ends_and_pieces(total, warmup, base):
    lrs = [lr_at(s, total, warmup, base) for s in range(total + 1)]
    if warmup:
        assert lrs[0] == pytest.approx(base / warmup)  # small, but the first step moves
        assert all(a < b for a, b in zip(lrs[: warmup - 1], lrs[1:warmup], strict=True))  # warmup increases
        assert lrs[warmup - 1] == pytest.approx(base)
    assert lrs[warmup] == pytest.approx(base)
    assert lrs[total] == 0.0
    assert all(a >= b for a, b in zip(lrs[warmup:-1], lrs[warmup + 1 :], strict=True))  # cosine decreases
    mid = warmup + (total - warmup) / 2
    if mid == int(mid):
        assert lr_at(int(mid), total, warmup, base) == pytest.approx(base / 2)  # half-cosine midpoint
    assert lr_at(total + 5, total, warmup, base) == 0.0


def test_lr_at_closed_form():
    # step 30 of 100 after 10 warmup: progress 20/90
    assert lr_at(30, 100, 10, 0.3) == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 20 / 90)))
    assert lr_at(4, 100, 10, 0.3) == pytest.approx(0.3 * 5 / 10)


def test_lr_at_all_warmup_and_bad_args():
    assert [lr_at(s, 4, 10, 1.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 0.0]  # warmup clamped to total
    with pytest.raises(ValueError):
        lr_at(0, 0, 0, 1.0)
    with pytest.raises(ValueError):
        lr_at(-1, 10, 0, 1.0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_matches_hand_computed_update(nesterov):
    torch.manual_seed(0)
    w0 = torch.randn(4, 3)
    w = nn.Parameter(w0.clone())
    b = nn.Parameter(torch.randn(4))
    lr, m, wd, eta = 0.5, 0.9, 1e-2, 1e-3
    opt = LARS(
        [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0, "adapt": False}],
        lr=lr,
        momentum=m,
        eta=eta,
        nesterov=nesterov,
    )
    grads = [torch.randn(4, 3) for _ in range(2)]
    bgrads = [torch.randn(4) for _ in range(2)]
    ref_w, ref_b = w0.clone().double(), b.detach().clone().double()
    v = torch.zeros_like(ref_w)
    vb = torch.zeros_like(ref_b)
    for g, gb in zip(grads, bgrads, strict=True):
        w.grad, b.grad = g.clone(), gb.clone()
        opt.step()
        gd = g.double() + wd * ref_w
        trust = eta * ref_w.norm() / gd.norm()
        v = m * v + lr * trust * gd
        ref_w = ref_w - (m * v + lr * trust * gd if nesterov else v)
        vb = m * vb + lr * gb.double()  # excluded: no decay, no trust ratio
        ref_b = ref_b - (m * vb + lr * gb.double() if nesterov else vb)
    torch.testing.assert_close(w.detach().double(), ref_w, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.detach().double(), ref_b, rtol=1e-5, atol=1e-6)


def test_lars_zero_weight_uses_trust_one():
    w = nn.Parameter(torch.zeros(3, 2))
    opt = LARS([w], lr=0.1, momentum=0.0)
    w.grad = torch.ones(3, 2)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3, 2), -0.1))


def test_param_groups_exclude_bn_and_bias():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0 and no_decay["adapt"] is False
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("lars", LARS), ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, name, lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(opt, cls)
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    with pytest.raises(ValueError):
        build_optimizer(model, "rmsprop", lr=0.1)


@pytest.mark.parametrize("n,bs,drop,sizes", [(10, 4, True, [4, 4]), (10, 4, False, [4, 4, 2]), (3, 8, True, [3])])
def test_epoch_batches(n, bs, drop, sizes):
    batches = epoch_batches(n, bs, torch.Generator().manual_seed(0), drop_last=drop)
    assert [len(b) for b in batches] == sizes
    assert len(torch.cat(batches).unique()) == sum(sizes)


def test_loss_log_raises_at_first_bad_step():
    log = LossLog(4, epoch=3, first_step=20, device=torch.device("cpu"))
    log.add(torch.tensor(1.0))
    with pytest.raises(NonFiniteLoss) as info:
        log.add(torch.tensor(float("nan")))
    assert (info.value.epoch, info.value.step) == (3, 21) and math.isnan(info.value.value)


def test_loss_log_mean():
    log = LossLog(3, epoch=1, first_step=0, device=torch.device("cpu"))
    for v in (1.0, 2.0, 6.0):
        log.add(torch.tensor(v))
    assert log.mean() == pytest.approx(3.0)
