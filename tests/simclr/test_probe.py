"""The linear protocol: accuracy on known problems, a float64 reference of the optimisation, the callback
contract, test-set isolation, per-image test hits, and a backbone that stays frozen (bit-identical, BatchNorm
statistics included)."""

import copy
import dataclasses
import math

import pytest
import torch

from errors import NonFiniteLoss
from simclr.config import ProbeConfig
from simclr.data import ImageSet
from simclr.device import runtime
from simclr.models import load_encoder
from simclr.probe import ProbeResult, cosine_lr, evaluate_encoder, linear_probe, topk_accuracy


def clusters(n_per_class, n_classes, dim, spread, generator, centres=None):
    """Gaussian blobs around `centres` (drawn far apart when not given): linearly separable for small spread."""
    if centres is None:
        centres = torch.randn(n_classes, dim, generator=generator) * 10
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


def blobs(seed=0, n_classes=6, dim=16, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * 10
    return [clusters(n, n_classes, dim, spread, g, centres) for n in (40, 10, 10)]


# ---------------------------------------------------------------------------------------------------------
# top-k and the schedule


def reference_topk(logits, labels, k):
    hits = 0
    for row, y in zip(logits.tolist(), labels.tolist(), strict=True):
        order = sorted(range(len(row)), key=lambda c: -row[c])
        hits += y in order[: min(k, len(row))]
    return 100.0 * hits / len(labels)


@pytest.mark.parametrize("n_classes", [1, 3, 5, 10])
@pytest.mark.parametrize("ks", [(1, 5), (1, 2, 3), (5,)])
def test_topk_matches_reference(n_classes, ks):
    g = torch.Generator().manual_seed(n_classes)
    logits, labels = torch.randn(50, n_classes, generator=g), torch.randint(0, n_classes, (50,), generator=g)
    got = topk_accuracy(logits, labels, ks)
    assert got == pytest.approx([reference_topk(logits, labels, k) for k in ks])
    assert got == sorted(got)  # top-k never falls as k grows
    if n_classes <= min(ks):
        assert got[0] == 100.0  # top-5 of 3 classes is top-3


def test_topk_rejects_empty_and_mismatched():
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("total, base", [(1, 0.1), (10, 1.0), (4400, 0.1)])
def test_cosine_lr_ends(total, base):
    assert cosine_lr(0, total, base) == base
    assert cosine_lr(total, total, base) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(total + 5, total, base) == pytest.approx(0.0, abs=1e-12)
    if total % 2 == 0:
        assert cosine_lr(total // 2, total, base) == pytest.approx(base / 2)


# ---------------------------------------------------------------------------------------------------------
# accuracy on problems with known answers


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("adam", 0.01)])
@pytest.mark.parametrize("batch_size", [0, 16])
def test_separable_features_reach_100(optimizer, lr, batch_size):
    train, val, test = blobs()
    cfg = ProbeConfig(probe_epochs=15, probe_optimizer=optimizer, probe_lr=lr, probe_batch_size=batch_size)
    r = linear_probe(train, val, test, cfg, num_classes=6)
    assert isinstance(r, ProbeResult)
    assert (r.val_top1, r.test_top1) == (100.0, 100.0)
    assert r.val_top5 == r.test_top5 == 100.0
    assert r.best_epoch == 15 and len(r.history) == 15 and r.seconds > 0


def test_top5_at_least_top1_on_hard_problem():
    train, val, test = blobs(seed=3, n_classes=10, spread=12.0)  # overlapping: well below 100%
    r = linear_probe(train, val, test, ProbeConfig(probe_epochs=5, probe_batch_size=32), num_classes=10)
    assert r.val_top1 < 100 and r.test_top1 < 100
    assert r.val_top5 >= r.val_top1 and r.test_top5 >= r.test_top1


def test_fewer_than_five_classes_top5_is_100():
    train, val, test = blobs(n_classes=3, spread=30.0)
    r = linear_probe(train, val, test, ProbeConfig(probe_epochs=2), num_classes=3)
    assert r.val_top5 == r.test_top5 == 100.0


def test_random_labels_give_chance():
    g = torch.Generator().manual_seed(1)
    n_classes = 10

    def split(n):
        return torch.randn(n, 32, generator=g), torch.randint(0, n_classes, (n,), generator=g)

    cfg = ProbeConfig(probe_epochs=10, probe_batch_size=128)
    r = linear_probe(split(1000), split(2000), split(2000), cfg, num_classes=n_classes)
    # chance is 10%; the standard error of 2000 draws is 0.67 points, so 5 sigma either side
    assert 6.5 < r.val_top1 < 13.5 and 6.5 < r.test_top1 < 13.5
    assert 43 < r.test_top5 < 57


# ---------------------------------------------------------------------------------------------------------
# the optimisation, step for step, against a float64 reference written from the formulas


def reference_losses(train, cfg, n_classes, seed):
    """Per-epoch mean train loss: standardise with train mean/std; W ~ N(0, 0.01) from Generator(seed), b = 0;
    per epoch a permutation from the same generator (unless full batch); softmax-CE gradient by hand; L2 on W
    only; SGD momentum 0.9 Nesterov or Adam as PyTorch documents them; lr = cosine per step."""
    x, y = train
    x = x.double()
    x = (x - x.mean(0)) / x.std(0, correction=0)
    n, d = x.shape
    g = torch.Generator().manual_seed(seed)
    w, b = (torch.randn(n_classes, d, generator=g) * 0.01).double(), torch.zeros(n_classes, dtype=torch.float64)
    batch = n if cfg.probe_batch_size == 0 else min(cfg.probe_batch_size, n)
    total = cfg.probe_epochs * math.ceil(n / batch)
    state = {"m": [torch.zeros_like(w), torch.zeros_like(b)], "v": [torch.zeros_like(w), torch.zeros_like(b)]}
    step, losses = 0, []
    for _ in range(cfg.probe_epochs):
        order = torch.randperm(n, generator=g) if batch < n else torch.arange(n)
        loss_sum = 0.0
        for start in range(0, n, batch):
            idx = order[start : start + batch]
            xb, yb = x[idx], y[idx]
            logits = xb @ w.T + b
            p = torch.softmax(logits, 1)
            loss_sum += float(-(torch.log(p[torch.arange(len(idx)), yb])).sum())
            grad = p.clone()
            grad[torch.arange(len(idx)), yb] -= 1
            grad /= len(idx)
            grads = [grad.T @ xb + cfg.probe_weight_decay * w, grad.sum(0)]
            lr = 0.5 * cfg.probe_lr * (1 + math.cos(math.pi * step / total))
            step += 1
            for i, (param, gr) in enumerate(zip((w, b), grads, strict=True)):
                if cfg.probe_optimizer == "sgd":
                    m = state["m"][i] = gr.clone() if step == 1 else 0.9 * state["m"][i] + gr
                    param -= lr * (gr + 0.9 * m)
                else:
                    state["m"][i] = 0.9 * state["m"][i] + 0.1 * gr
                    state["v"][i] = 0.999 * state["v"][i] + 0.001 * gr * gr
                    m_hat, v_hat = state["m"][i] / (1 - 0.9**step), state["v"][i] / (1 - 0.999**step)
                    param -= lr * m_hat / (v_hat.sqrt() + 1e-8)
        losses.append(loss_sum / n)
    return losses


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.5), ("adam", 0.05)])
@pytest.mark.parametrize("batch_size", [0, 7, 64])
def test_matches_float64_reference(optimizer, lr, batch_size):
    train, val, _ = blobs(seed=2, spread=8.0)
    cfg = ProbeConfig(
        probe_epochs=4, probe_optimizer=optimizer, probe_lr=lr, probe_weight_decay=0.01, probe_batch_size=batch_size
    )
    r = linear_probe(train, val, None, cfg, num_classes=6, seed=5)
    expected = reference_losses(train, cfg, 6, seed=5)
    assert [h["loss"] for h in r.history] == pytest.approx(expected, rel=1e-4, abs=1e-5)


# ---------------------------------------------------------------------------------------------------------
# the callback, determinism, the test split


def test_on_epoch_called_each_epoch():
    train, val, test = blobs(seed=4, spread=6.0)
    seen = []
    cfg = ProbeConfig(probe_epochs=6, probe_batch_size=16, probe_lr=0.05)
    r = linear_probe(train, val, test, cfg, num_classes=6, on_epoch=seen.append)
    assert [s["epoch"] for s in seen] == list(range(1, 7))
    assert all(set(s) == {"epoch", "val_top1", "loss", "lr"} for s in seen)
    assert seen == r.history
    assert seen[-1]["val_top1"] >= seen[0]["val_top1"] and seen[-1]["loss"] < seen[0]["loss"]
    lrs = [s["lr"] for s in seen]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < cfg.probe_lr and lrs[-1] < 0.01 * cfg.probe_lr
    assert r.val_top1 == seen[-1]["val_top1"]  # the final-epoch model is the one reported


class Stop(Exception):
    pass


def test_on_epoch_exception_propagates():
    calls = []

    def on_epoch(metrics):
        calls.append(metrics["epoch"])
        if metrics["epoch"] == 2:
            raise Stop  # as optuna.TrialPruned would

    with pytest.raises(Stop):
        linear_probe(*blobs()[:2], None, ProbeConfig(probe_epochs=5), num_classes=6, on_epoch=on_epoch)
    assert calls == [1, 2]


@pytest.mark.parametrize("batch_size", [0, 8])
def test_deterministic_for_a_seed(batch_size):
    train, val, test = blobs(seed=6, spread=8.0)
    cfg = ProbeConfig(probe_epochs=3, probe_batch_size=batch_size)
    runs = [linear_probe(train, val, test, cfg, num_classes=6, seed=s) for s in (7, 7, 8)]
    same = [dataclasses.replace(r, seconds=0.0) for r in runs]
    assert same[0] == same[1] and torch.equal(same[0].test_correct, same[1].test_correct)
    assert same[0].history != same[2].history  # another seed: another init (and order)


def test_test_split_never_selects_anything():
    train, val, (x_test, y_test) = blobs(seed=8, spread=8.0)
    cfg = ProbeConfig(probe_epochs=4, probe_batch_size=16)
    with_test = linear_probe(train, val, (x_test, y_test), cfg, num_classes=6)
    scrambled = linear_probe(train, val, (x_test, y_test.roll(1)), cfg, num_classes=6)
    without = linear_probe(train, val, None, cfg, num_classes=6)
    assert with_test.history == scrambled.history == without.history
    assert with_test.val_top1 == without.val_top1 and with_test.best_epoch == without.best_epoch
    assert without.test_top1 is None and without.test_top5 is None and without.test_correct is None
    assert scrambled.test_top1 < with_test.test_top1


def test_test_correct_is_the_top1_hit_of_each_test_image_in_order():
    train, val, (x_test, y_test) = blobs(seed=10, n_classes=10, spread=12.0)  # overlapping: some misses
    cfg = ProbeConfig(probe_epochs=4, probe_batch_size=16)
    r = linear_probe(train, val, (x_test, y_test), cfg, num_classes=10)
    assert r.test_correct.dtype == torch.bool and r.test_correct.shape == (len(y_test),)
    assert 0 < int(r.test_correct.sum()) < len(y_test)
    assert r.test_top1 == pytest.approx(100.0 * r.test_correct.float().mean().item(), abs=1e-9)
    order = torch.randperm(len(y_test), generator=torch.Generator().manual_seed(0))
    shuffled = linear_probe(train, val, (x_test[order], y_test[order]), cfg, num_classes=10)
    assert torch.equal(shuffled.test_correct, r.test_correct[order])  # one entry per image, in the split's order


def test_inputs_unchanged_and_standardised_on_train_only():
    train, val, test = blobs(seed=9)
    before = [t.clone() for split in (train, val, test) for t in split]
    shifted_val = (val[0] + 1000.0, val[1])  # with val's own statistics this shift would vanish
    r = linear_probe(train, shifted_val, test, ProbeConfig(probe_epochs=3), num_classes=6)
    assert all(torch.equal(a, b) for a, b in zip(before, [t for s in (train, val, test) for t in s], strict=True))
    assert r.val_top1 < 50 and r.test_top1 == 100.0


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda tr: (torch.full_like(tr[0], float("nan")), tr[1]), ValueError),
        (lambda tr: (tr[0], tr[1] + 100), ValueError),
        (lambda tr: (tr[0][:, :3], tr[1]), ValueError),
    ],
)
def test_rejects_bad_inputs(change, error):
    train, val, _ = blobs()
    with pytest.raises(error):
        linear_probe(train, change(val), None, ProbeConfig(probe_epochs=1), num_classes=6)


def test_rejects_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd or adam"):
        linear_probe(*blobs()[:2], None, ProbeConfig(probe_optimizer="lbfgs"), num_classes=6)


def test_divergence_raises_non_finite_loss():
    cfg = ProbeConfig(probe_epochs=3, probe_lr=1e38, probe_batch_size=8)
    with pytest.raises(NonFiniteLoss):
        linear_probe(*blobs(spread=30.0)[:2], None, cfg, num_classes=6)


# ---------------------------------------------------------------------------------------------------------
# evaluate_encoder: the backbone stays frozen


def image_splits(seed=0, n_classes=4, size=16):
    g = torch.Generator().manual_seed(seed)

    def split(n):
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        return ImageSet(images, torch.arange(n) % n_classes, [f"c{i}" for i in range(n_classes)])

    return {"train": split(32), "val": split(12), "test": split(12)}


def frozen_violations(before: dict, module: torch.nn.Module) -> list[str]:
    """What changed in `module` against a state_dict copy `before`, and what is not frozen about it."""
    after = module.state_dict()
    problems = [name for name in before if not torch.equal(before[name], after[name].cpu())]
    problems += [f"{name} requires grad" for name, p in module.named_parameters() if p.requires_grad]
    problems += [f"{name} has .grad" for name, p in module.named_parameters() if p.grad is not None]
    problems += [f"{name} in train mode" for name, m in module.named_modules() if m.training]
    return problems


@pytest.mark.parametrize("cached", [False, True])
def test_evaluate_encoder_leaves_backbone_frozen(tmp_path, cached):
    encoder = load_encoder("random", seed=0)
    before = copy.deepcopy(encoder.module.state_dict())
    assert any(k.endswith("num_batches_tracked") for k in before) and any(k.endswith("running_var") for k in before)
    splits = image_splits()
    r = evaluate_encoder(
        encoder,
        splits,
        ProbeConfig(probe_epochs=3, probe_batch_size=8),
        rt=runtime("cpu", "fp32"),
        cache_dir=tmp_path if cached else None,
        data_key="fake/probe",
    )
    assert frozen_violations(before, encoder.module) == []
    assert r.test_top1 is not None and 0 <= r.val_top1 <= 100 and r.seconds >= r.feature_seconds > 0
    assert r.test_correct.shape == (len(splits["test"]),) and r.test_correct.dtype == torch.bool
    if cached:
        assert sorted(p.suffix for p in tmp_path.iterdir()) == [".pt"] * 3  # train, val, test; no .tmp


def test_frozen_check_is_sensitive():
    """A broken freeze (a train-mode forward, or the `.requires_grad = False` attribute anti-pattern) is caught."""
    encoder = load_encoder("random", seed=0)
    before = copy.deepcopy(encoder.module.state_dict())
    images = image_splits()["train"].images.float() / 255
    with torch.no_grad():
        encoder.module.train()(images)  # BatchNorm in train mode updates running_mean/var, num_batches_tracked
    changed = frozen_violations(before, encoder.module)
    assert any(name.endswith("running_mean") for name in changed)
    assert any(name.endswith("num_batches_tracked") for name in changed)
    assert any("train mode" in name for name in changed)
    fresh = load_encoder("random", seed=0).module.eval()
    fresh.requires_grad = False  # sets an attribute; freezes nothing
    assert any("requires grad" in p for p in frozen_violations(fresh.state_dict(), fresh))


def test_evaluate_encoder_second_run_uses_cache(tmp_path):
    encoder = load_encoder("random", seed=1)
    splits, rt, cfg = image_splits(seed=1), runtime("cpu", "fp32"), ProbeConfig(probe_epochs=2, probe_batch_size=8)
    first = evaluate_encoder(encoder, splits, cfg, rt=rt, cache_dir=tmp_path, data_key="fake/probe", seed=3)
    calls = []
    encoder.module.register_forward_hook(lambda *args: calls.append(1))
    second = evaluate_encoder(encoder, splits, cfg, rt=rt, cache_dir=tmp_path, data_key="fake/probe", seed=3)
    assert calls == []
    assert second.history == first.history and second.test_top1 == first.test_top1


def test_evaluate_encoder_without_test_and_missing_split():
    encoder = load_encoder("random", seed=0)
    splits = image_splits()
    del splits["test"]
    cfg, rt = ProbeConfig(probe_epochs=1), runtime("cpu", "fp32")
    r = evaluate_encoder(encoder, splits, cfg, rt=rt, cache_dir=None, data_key="k")
    assert r.test_top1 is None and r.test_correct is None
    del splits["val"]
    with pytest.raises(ValueError, match="val"):
        evaluate_encoder(encoder, splits, cfg, rt=rt, cache_dir=None, data_key="k")
