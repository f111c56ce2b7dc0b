"""simclr/augment.py and simclr/colour.py against torchvision.transforms.v2.functional, op by op and end to end.

References loop over samples (only here, in the tests) and call torchvision with the very parameters the
batched code drew or was given; everything must agree to 1e-4 on float images.
"""

from __future__ import annotations

import colorsys
import itertools
import math

import pytest
import torch
import torchvision.transforms as T1
import torchvision.transforms.v2.functional as F

from errors import UserError
from simclr import augment as A
from simclr import colour as C
from simclr.config import PretrainConfig

ATOL = 1e-4
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TV_JITTER = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)


def uint8_images(n: int, h: int, w: int | None = None, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """Smooth-ish random images (a blurred field + noise) with some gray, saturated, black and white ones."""
    g = torch.Generator().manual_seed(seed)
    w = h if w is None else w
    base = torch.rand(n, 3, max(h // 4, 1), max(w // 4, 1), generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    x = (x + 0.15 * torch.rand(n, 3, h, w, generator=g)).clamp(0, 1)
    if n >= 6:
        x[0] = x[0, :1]  # gray image
        x[1] = 1.0  # white
        x[2] = 0.0  # black
        x[3, 0], x[3, 1], x[3, 2] = 1.0, 0.0, x[3, 2].round()  # saturated primaries/secondaries
        x[4, 1] = x[4, 0]  # ties between the max channels
        x[5, :, : h // 2] = x[5, :1, : h // 2]  # half gray
    return (x * 255).round().to(torch.uint8).to(device)


def float_images(*args, **kwargs) -> torch.Tensor:
    return F.to_dtype(uint8_images(*args, **kwargs), torch.float32, scale=True)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < atol


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("h,w,size", [(32, 32, 32), (32, 32, 64), (96, 96, 32), (48, 40, 24), (48, 48, (20, 28))])
def test_resized_crop_matches_torchvision(h, w, size):
    n = 12
    x = float_images(n, h, w, seed=1)
    top, left, height, width = A.sample_crop_params(n, h, w, generator=torch.Generator().manual_seed(2))
    # plus boxes at the extremes: the whole image, one pixel, a thin strip at the far corner
    top[:3], left[:3] = torch.tensor([0, 5, h - 2]), torch.tensor([0, 7, 0])
    height[:3], width[:3] = torch.tensor([h, 1, 2]), torch.tensor([w, 1, w])
    out_hw = [size, size] if isinstance(size, int) else list(size)
    expected = torch.stack(
        [
            F.resized_crop(x[i], int(top[i]), int(left[i]), int(height[i]), int(width[i]), out_hw, antialias=True)
            for i in range(n)
        ]
    )
    assert_close(A.resized_crop(x, top, left, height, width, size), expected)


def test_crop_matrices_fold_the_flip():
    x = float_images(8, 40, seed=3)
    top, left, height, width = A.sample_crop_params(8, 40, 40, generator=torch.Generator().manual_seed(4))
    flip = torch.tensor([True, False] * 4)
    wy, wx = A._crop_matrices(top, left, height, width, 24, 40, 40, flip=flip)
    expected = A.hflip(A.resized_crop(x, top, left, height, width, 24), flip)
    assert_close(A._apply_matrices(x, wy, wx), expected)


def test_hflip_matches_torchvision():
    x = float_images(6, 16, 20)
    mask = torch.tensor([True, False, True, True, False, False])
    expected = torch.stack([F.horizontal_flip(x[i]) if mask[i] else x[i] for i in range(6)])
    assert torch.equal(A.hflip(x, mask), expected)


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_padded_crop_matches_torchvision(padding):
    x = uint8_images(2 * (2 * padding + 1) ** 2, 12, 10, seed=5)
    offsets = torch.tensor(list(itertools.product(range(2 * padding + 1), repeat=2)) * 2)  # every offset
    top, left = offsets[:, 0], offsets[:, 1]
    flip = torch.arange(len(x)) % 3 == 0
    out = A.padded_crop(x, top, left, padding, flip)
    for i in range(len(x)):
        ref = F.crop(F.pad(x[i], [padding]), int(top[i]), int(left[i]), 12, 10)
        assert torch.equal(out[i], F.horizontal_flip(ref) if flip[i] else ref)


@pytest.mark.parametrize("device", DEVICES)
def test_supervised_augment_reproduces_its_offsets(device):
    x = uint8_images(16, 32, seed=6, device=device)
    out = A.supervised_augment(x, torch.Generator(device).manual_seed(7), padding=4)
    top, left, flip = A.sample_supervised_params(
        16, padding=4, generator=torch.Generator(device).manual_seed(7), device=device
    )
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == device
    assert 0 <= out.min() and out.max() <= 1
    for i in range(16):
        ref = F.crop(F.pad(x[i], [4]), int(top[i]), int(left[i]), 32, 32)
        ref = F.to_dtype(F.horizontal_flip(ref) if flip[i] else ref, torch.float32, scale=True)
        assert_close(out[i], ref, 1e-6)


def test_supervised_offsets_cover_the_range():
    top, left, flip = A.sample_supervised_params(4000, padding=4, generator=torch.Generator().manual_seed(0))
    assert set(top.tolist()) == set(range(9)) == set(left.tolist())
    assert abs(flip.float().mean().item() - 0.5) < 0.04


# -------------------------------------------------------------------------------------------- colour
FACTORS = torch.tensor([0.0, 0.3, 0.6, 0.95, 1.0, 1.05, 1.4, 2.0, 3.5, 0.8, 1.2, 0.0])


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (C.adjust_brightness, F.adjust_brightness),
        (C.adjust_contrast, F.adjust_contrast),
        (C.adjust_saturation, F.adjust_saturation),
    ],
)
def test_blend_ops_match_torchvision(ours, theirs):
    x = float_images(len(FACTORS), 20, 24, seed=8)
    expected = torch.stack([theirs(x[i], float(FACTORS[i])) for i in range(len(FACTORS))])
    assert_close(ours(x, FACTORS), expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_adjust_hue_matches_torchvision(seed):
    n = 41
    factors = torch.linspace(-0.5, 0.5, n)  # includes -0.5, 0 and 0.5
    x = float_images(n, 16, seed=seed)
    x[6] = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(seed))  # not on the uint8 grid
    expected = torch.stack([F.adjust_hue(x[i], float(factors[i])) for i in range(n)])
    assert_close(C.adjust_hue(x, factors), expected, 1e-5)


def test_adjust_hue_every_hue_and_factor():
    # pixels on and between every sextant boundary, saturated, half saturated and gray, against many factors
    pixels = [colorsys.hsv_to_rgb(h / 96, s, v) for h in range(97) for s in (1.0, 0.5, 0.0) for v in (1.0, 0.6)]
    image = torch.tensor(pixels, dtype=torch.float32).T.reshape(3, 6, 97)
    factors = torch.tensor([-0.5, -0.37, -0.25, -1 / 6, -1 / 12, 0.0, 1 / 12, 1 / 6, 0.25, 0.37, 0.5])
    x = image.expand(len(factors), -1, -1, -1).contiguous()
    expected = torch.stack([F.adjust_hue(image, float(f)) for f in factors])
    assert_close(C.adjust_hue(x, factors), expected, 1e-5)


def test_rgb_to_grayscale_matches_torchvision():
    x = float_images(6, 16)
    mask = torch.tensor([True, False, True, False, True, True])
    expected = torch.stack([F.rgb_to_grayscale(x[i], num_output_channels=3) if mask[i] else x[i] for i in range(6)])
    assert_close(C.rgb_to_grayscale(x, mask), expected, 1e-6)


@pytest.mark.parametrize("enabled", [(True, True, True, True), (True, False, True, False)])
def test_color_jitter_applies_ops_in_each_samples_order(enabled):
    n = 48
    g = torch.Generator().manual_seed(9)
    x = float_images(n, 16, seed=9)
    factors = torch.stack(
        [torch.rand(n, generator=g) * 1.2 + 0.4 for _ in range(3)] + [torch.rand(n, generator=g) - 0.5], dim=1
    )
    order = torch.stack([torch.randperm(4, generator=g) for _ in range(n)])
    apply = torch.rand(n, generator=g) < 0.8
    out = C.color_jitter(x, factors, order, apply, enabled)
    for i in range(n):
        ref = x[i]
        for op in order[i].tolist() if apply[i] else []:
            if enabled[op]:
                ref = TV_JITTER[op](ref, float(factors[i, op]))
        assert_close(out[i], ref)


@pytest.mark.parametrize("size,kernel_size", [(16, 3), (32, 3), (24, 5), (20, 9)])
def test_gaussian_blur_matches_torchvision(size, kernel_size):
    n = 10
    x = float_images(n, size, size + 4, seed=10)
    sigma = torch.linspace(0.1, 2.0, n)
    mask = torch.arange(n) % 4 != 1
    expected = torch.stack(
        [
            F.gaussian_blur(x[i], [kernel_size, kernel_size], [float(sigma[i])] * 2) if mask[i] else x[i]
            for i in range(n)
        ]
    )
    assert_close(A.gaussian_blur(x, sigma, kernel_size, mask), expected)


def test_blur_kernel_size_is_a_tenth_and_odd():
    assert [A.blur_kernel_size(s) for s in (16, 32, 64, 96, 224)] == [3, 3, 7, 9, 23]


# ------------------------------------------------------------------------------------------ sampling
def tv_boxes(n, h, w, scale, ratio, seed=0):
    torch.manual_seed(seed)
    image = torch.empty(1, h, w)
    return torch.tensor([T1.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(n)])


@pytest.mark.parametrize(
    "h,w,scale,ratio",
    [
        (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),  # SimCLR's
        (24, 40, (0.2, 1.0), (0.3, 3.0)),  # non-square, wide ratios
        (32, 32, (0.6, 1.0), (0.4, 2.5)),  # many rejected attempts
        (32, 32, (0.9, 1.0), (0.5, 2.0)),  # ~20% of samples fall back to the central crop
    ],
)
def test_crop_params_follow_torchvision_distribution(h, w, scale, ratio):
    n = 3000
    top, left, height, width = A.sample_crop_params(
        n, h, w, scale=scale, ratio=ratio, generator=torch.Generator().manual_seed(11)
    )
    assert (top >= 0).all() and (left >= 0).all() and (height >= 1).all() and (width >= 1).all()
    assert (top + height <= h).all() and (left + width <= w).all()
    ref = tv_boxes(n, h, w, scale, ratio).float()  # (n, 4): top, left, height, width
    ours = torch.stack([top, left, height, width], 1).float()
    area, ref_area = ours[:, 2] * ours[:, 3] / (h * w), ref[:, 2] * ref[:, 3] / (h * w)
    assert (area >= scale[0] * 0.8).all()  # the scale range, widened by rounding the sides to pixels
    log_ar, ref_log_ar = (ours[:, 3] / ours[:, 2]).log(), (ref[:, 3] / ref[:, 2]).log()
    assert (log_ar.abs() <= max(abs(math.log(r)) for r in ratio) + 0.35).all()  # rounding to pixels widens it
    q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
    assert (area.quantile(q) - ref_area.quantile(q)).abs().max() < 0.05
    assert abs(area.mean() - ref_area.mean()) < 0.03
    assert (log_ar.quantile(q) - ref_log_ar.quantile(q)).abs().max() < 0.1
    for col in range(4):  # positions and sides, in pixels
        assert abs(ours[:, col].mean() - ref[:, col].mean()) < 0.04 * max(h, w)
    whole, ref_whole = (area == 1).float().mean(), (ref_area == 1).float().mean()  # incl. the fallback share
    assert abs(whole - ref_whole) < 0.04


@pytest.mark.parametrize(
    "h,w,scale,ratio",
    [
        (32, 32, (0.5, 1.0), (10.0, 20.0)),  # too wide: full-width strip
        (32, 32, (0.5, 1.0), (0.05, 0.1)),  # too tall: full-height strip
        (32, 40, (2.0, 3.0), (1.0, 2.0)),  # too big: the whole image
        (30, 20, (0.9, 1.0), (2.0, 3.0)),
    ],
)
def test_crop_params_fallback_is_torchvisions_central_crop(h, w, scale, ratio):
    boxes = torch.stack(A.sample_crop_params(5, h, w, scale=scale, ratio=ratio), 1)
    expected = tv_boxes(1, h, w, scale, ratio)
    assert torch.equal(boxes, expected.expand(5, 4))


def test_view_param_rates_and_ranges():
    n = 20000
    images = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    p = A.sample_view_params(
        images,
        torch.Generator().manual_seed(12),
        flip_p=0.5,
        jitter=(0.4, 0.3, 0.2, 0.1),
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=0.3,
        blur_sigma=(0.1, 2.0),
    )
    for mask, rate in [(p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.2), (p.blur, 0.3)]:
        assert abs(mask.float().mean().item() - rate) < 0.02
    for col, (lo, hi) in enumerate([(0.6, 1.4), (0.7, 1.3), (0.8, 1.2), (-0.1, 0.1)]):
        f = p.factors[:, col]
        assert lo <= f.min() and f.max() <= hi and abs(f.mean().item() - (lo + hi) / 2) < 0.01 * (hi - lo) + 1e-3
    assert 0.1 <= p.sigma.min() and p.sigma.max() <= 2.0
    assert torch.equal(p.order.sort(1).values, torch.arange(4).expand(n, 4))  # permutations
    counts = torch.unique(p.order, dim=0, return_counts=True)[1]
    assert len(counts) == 24 and counts.min() > n / 24 * 0.8 and counts.max() < n / 24 * 1.2


def test_zero_strength_jitter_ops_are_skipped():
    p = A.sample_view_params(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), jitter=(0.4, 0.0, 0.4, 0.0))
    assert p.enabled == (True, False, True, False)
    assert (p.factors[:, 1] == 1).all() and (p.factors[:, 3] == 0).all()


# ---------------------------------------------------------------------------------------- end to end
def reference_view(image: torch.Tensor, p: A.ViewParams, i: int) -> torch.Tensor:
    """One view by torchvision, step by step, with the sampled parameters of sample i."""
    x = F.to_dtype(image, torch.float32, scale=True)
    x = F.resized_crop(
        x, int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]), list(p.size), antialias=True
    )
    if p.flip[i]:
        x = F.horizontal_flip(x)
    if p.jitter[i]:
        for op in p.order[i].tolist():
            if p.enabled[op]:
                x = TV_JITTER[op](x, float(p.factors[i, op]))
    if p.gray[i]:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    if p.blur[i]:
        x = F.gaussian_blur(x, [p.kernel_size] * 2, [float(p.sigma[i])] * 2)
    return x


@pytest.mark.parametrize(
    "h,size,kwargs",
    [
        (32, None, {}),
        (32, 32, dict(jitter=(0.8, 0.8, 0.8, 0.5), gray_p=0.5)),
        (96, 48, dict(blur_p=0.5, crop_scale=(0.2, 1.0))),
        (48, 64, dict(jitter=(0.4, 0.0, 0.4, 0.1), blur_p=1.0)),
    ],
)
def test_simclr_views_match_torchvision_pipeline(h, size, kwargs):
    n = 32 if h == 32 else 12
    images = uint8_images(n, h, seed=13)
    views = A.simclr_views(images, torch.Generator().manual_seed(14), size=size, **kwargs)
    params = A.sample_view_params(images, torch.Generator().manual_seed(14), size=size, **kwargs)
    s = h if size is None else size
    assert views.shape == (n, 3, s, s) and views.dtype == torch.float32
    assert 0 <= views.min() and views.max() <= 1
    expected = torch.stack([reference_view(images[i], params, i) for i in range(n)])
    assert_close(views, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_simclr_views_seeded_and_per_sample(device):
    images = uint8_images(1, 32, seed=15, device=device).expand(16, -1, -1, -1)  # one image, 16 times
    a = A.simclr_views(images, torch.Generator(device).manual_seed(0))
    b = A.simclr_views(images, torch.Generator(device).manual_seed(0))
    c = A.simclr_views(images, torch.Generator(device).manual_seed(1))
    assert a.device.type == device and a.shape == (16, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    flat = a.flatten(1)
    distinct = torch.cdist(flat, flat) > 1e-3
    assert distinct.sum() == 16 * 15  # every pair of views of the same image differs


def test_simclr_views_global_rng_when_no_generator():
    images = uint8_images(8, 32, seed=16)
    torch.manual_seed(3)
    a = A.simclr_views(images)
    torch.manual_seed(3)
    assert torch.equal(a, A.simclr_views(images))


def test_simclr_views_deterministic_settings():
    images = uint8_images(8, 32, seed=17)
    fixed = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0)
    x = F.to_dtype(images, torch.float32, scale=True)
    assert_close(A.simclr_views(images, flip_p=0.0, gray_p=0.0, **fixed), x, 1e-6)
    assert_close(A.simclr_views(images, flip_p=1.0, gray_p=0.0, **fixed), x.flip(-1), 1e-6)
    gray = A.simclr_views(images, flip_p=0.0, gray_p=1.0, **fixed)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_simclr_params_from_config():
    kwargs = A.simclr_params_from(
        PretrainConfig(crop_min_scale=0.2, jitter_strength=0.5, jitter_p=0.7, gray_p=0.1, blur_p=0.5)
    )
    assert kwargs["crop_scale"] == (0.2, 1.0) and kwargs["jitter_p"] == 0.7 and kwargs["gray_p"] == 0.1
    # the paper's strength s: ColorJitter(0.8s, 0.8s, 0.8s, 0.2s), so s = 0.5 (its CIFAR setting) is 0.4, 0.4, 0.4, 0.1
    assert kwargs["jitter"] == pytest.approx((0.4, 0.4, 0.4, 0.1)) and kwargs["blur_p"] == 0.5
    assert A.simclr_params_from(PretrainConfig())["jitter"] == pytest.approx((0.4, 0.4, 0.4, 0.1))  # the default
    assert A.simclr_views(uint8_images(4, 32), **kwargs).shape == (4, 3, 32, 32)
    with pytest.raises(UserError, match="jitter_strength <= 2.5"):
        A.simclr_views(uint8_images(4, 32), **A.simclr_params_from(PretrainConfig(jitter_strength=3.0)))


@pytest.mark.parametrize(
    "bad",
    [dict(crop_scale=(0.5, 0.1)), dict(jitter=(0.4, 0.4, 0.4, 0.7)), dict(gray_p=1.5), dict(blur_sigma=(0.0, 1.0))],
)
def test_simclr_views_rejects_bad_settings(bad):
    with pytest.raises(UserError):
        A.simclr_views(uint8_images(2, 8), **bad)


# ---------------------------------------------------------------------------------------------- eval
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.mark.parametrize("h,size", [(32, None), (32, 32), (32, 64), (32, 20), (48, 224)])
def test_eval_preprocess_matches_torchvision(h, size):
    images = uint8_images(4, h, seed=18)
    x = F.to_dtype(images, torch.float32, scale=True)
    if size is not None:
        x = F.resize(x, [size, size], antialias=True)
    expected = F.normalize(x, list(CIFAR_MEAN), list(CIFAR_STD))
    out = A.eval_preprocess(images, size=size, mean=CIFAR_MEAN, std=CIFAR_STD)
    assert_close(out, expected, 1e-5)
    assert_close(A.normalize(x, CIFAR_MEAN, CIFAR_STD), expected, 1e-6)
