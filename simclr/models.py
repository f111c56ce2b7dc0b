"""ResNet-18 encoders (CIFAR or ImageNet stem), the SimCLR projection head, and encoder loading.

An encoder maps normalised images (N, 3, H, W) to 512-d features after global average pooling
(torchvision's `fc` replaced by `Identity`). Encoders come from three places (`load_encoder`):
`random` (seeded init), `imagenet` (torchvision `ResNet18_Weights.IMAGENET1K_V1`) or one of our
checkpoints (written by `save_checkpoint` from simclr/pretrain.py or simclr/supervised.py).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn

from atomic import atomic_write
from errors import UserError, first_line
from simclr.data import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD

STEMS = ("cifar", "imagenet")
FEATURE_DIM = 512  # ResNet-18 width after global average pooling


def resnet18(stem: str = "cifar", num_classes: int = 0) -> nn.Module:
    """torchvision ResNet-18; `num_classes == 0` gives the encoder (fc = Identity, output (N, 512)).

    The CIFAR stem (SimCLR paper, Appendix B.9) replaces the 7x7 stride-2 conv with a 3x3 stride-1 conv and
    drops the max-pool, so a 32x32 image keeps 32x32 resolution into layer1 (4x4 into the pooling).
    """
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    model = torchvision.models.resnet18(weights=None)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        # torchvision initialises its convs kaiming-normal fan_out; the replaced conv gets the same scheme
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
    model.fc = nn.Linear(FEATURE_DIM, num_classes) if num_classes > 0 else nn.Identity()
    return model


def init_weights_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise in place with torchvision's ResNet scheme, drawing only from `generator`.

    Convs kaiming-normal (fan_out, relu), BatchNorm weight 1 / bias 0 / fresh running stats, Linear as
    PyTorch's default (kaiming-uniform a=sqrt(5), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))). The global RNG
    is untouched, so the same seed gives the same weights whatever ran before.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1; draws nothing
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=generator)
                if m.bias is not None:
                    bound = 1 / m.in_features**0.5
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return model


class ProjectionHead(nn.Module):
    """g(h) = BN(W2 ReLU(BN(W1 h))): the SimCLR paper's MLP with one hidden layer (Chen et al. 2020, Sec. 2.1), with
    batch normalisation on its output as in the reference implementation (google-research/simclr, model.py
    `ProjectionHead`: the final layer has `use_bn=True`, no bias, no ReLU) and in lightly's SimCLRProjectionHead.

    (N, in_dim) -> (N, out_dim). No Linear has a bias: BatchNorm right after each would cancel it. The output BN
    is not a detail: without it our encoder learned markedly slower than lightly's recipe at the same budget
    (bench/learning.py; docs/learning.md has the numbers), and the bisection pinned the gap on this layer.
    """

    VERSION = 2  # 1: no output BatchNorm (and a bias on W2); checkpoints of version 1 cannot resume

    def __init__(self, in_dim: int = FEATURE_DIM, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=False),
            nn.BatchNorm1d(out_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class SimCLRModel(nn.Module):
    """Encoder f and projection head g: forward(x) -> (h = f(x) (N, 512), z = g(h) (N, out_dim))."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)  # (N, 512)
        return h, self.head(h)  # (N, 512), (N, out_dim)


@dataclass
class Encoder:
    module: nn.Module  # outputs (N, 512)
    name: str  # what was loaded: "random", "imagenet" or the checkpoint path
    stem: str  # cifar | imagenet
    mean: tuple[float, ...]  # normalisation the encoder expects on [0, 1] images
    std: tuple[float, ...]
    resolution: int | None  # input size; None = the data's native size (CIFAR-stem encoders)
    digest: str  # weights_digest(module): keys the feature cache


def weights_digest(module: nn.Module) -> str:
    """sha256 over the state_dict (sorted names, dtype, shape, bytes on CPU in contiguous layout), hex[:16].

    Independent of device and memory format (channels_last), so it names the weights, not where they live.
    """
    h = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save through atomic_write (temporary file, fsync, os.replace): a crash never leaves a half-written
    checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True) onto the CPU: plain tensors and containers only, never arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, a pickle with globals: all are the user's file
        imports, reason = _why_unloadable(e)
        if imports:
            raise UserError(
                f"checkpoint {path} is refused: it holds more than tensors (it imports {imports}), and loading "
                "anything else could run code; save the weights alone (a state_dict of tensors) with torch.save"
            ) from None
        raise UserError(f"checkpoint {path} is corrupt or not a torch checkpoint ({reason})") from None
    if not isinstance(payload, dict):
        raise UserError(f"checkpoint {path} holds a {type(payload).__name__}, not a checkpoint dict")
    return payload


def _why_unloadable(error: Exception) -> tuple[str | None, str]:
    """(the Python global a refused file imports, or None; why torch.load(weights_only=True) failed, one line).
    In our words: torch's message opens with advice to load the file again with weights_only=False, which would run
    whatever code the file holds, so it is never quoted."""
    text = str(error)
    weights_only = text.startswith("Weights only load failed")
    found = re.search(r"GLOBAL ([\w.]+)", text) if weights_only else None  # "Unsupported global: GLOBAL posix.system"
    reason = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)  # e.g. "Unsupported operand 110": not a pickle
    detail = reason.group(1) if reason else "not a file of tensors" if weights_only else error
    return (found.group(1) if found else None), f"{type(error).__name__}: {first_line(detail, 200)}"


def _three_floats(value: object) -> tuple[float, ...] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    return None


def _resnet18_with(stem: str, state: dict, mismatch: str) -> nn.Module:
    """A `stem` ResNet-18 encoder holding `state` strictly, a classifier (`fc.*`) dropped; weights that do not fit
    are the user's file, so UserError "`mismatch` (why)"."""
    module = resnet18(stem)
    try:
        module.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"{mismatch} ({type(e).__name__}: {first_line(e, 200)})") from None
    return module


def encoder_from_checkpoint_payload(payload: dict, *, name: str = "checkpoint", resolution: int = 224) -> Encoder:
    """An Encoder from our checkpoint format: {"encoder": state_dict, "stem", "mean", "std", ["config", ...]}.

    A classifier (`fc.*`, from supervised checkpoints) is dropped: the encoder ends at the pooled features.
    `resolution` applies to ImageNet-stem encoders; CIFAR-stem ones use the data's native size.
    """
    state, stem = payload.get("encoder"), payload.get("stem")
    mean, std = _three_floats(payload.get("mean")), _three_floats(payload.get("std"))
    if not isinstance(state, dict) or stem not in STEMS or mean is None or std is None:
        raise UserError(f"{name} is not a simclr-study checkpoint (needs 'encoder', 'stem', 'mean', 'std')")
    module = _resnet18_with(stem, state, f"{name}: encoder weights do not fit a {stem}-stem ResNet-18")
    return Encoder(module, name, stem, mean, std, None if stem == "cifar" else resolution, weights_digest(module))


def imagenet_weights_file() -> Path:
    """Where torchvision keeps the IMAGENET1K_V1 weights: <torch hub dir>/checkpoints/resnet18-f37072fd.pth."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _imagenet_state_dict() -> dict:
    """torchvision's IMAGENET1K_V1 weights from <torch hub dir>/checkpoints, downloading them when absent."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = imagenet_weights_file()
    filename = cached.name
    existed = cached.is_file()
    try:
        # check_hash: a downloaded file must match the sha256 prefix in its name (f37072fd)
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except Exception as e:
        imports, reason = _why_unloadable(e)
        if existed:
            reason = f"refused: it holds more than tensors, it imports {imports}" if imports else reason
            raise UserError(
                f"ImageNet weights {cached} are unreadable ({reason}); delete the file to download it again"
            ) from None
        raise UserError(
            f"ImageNet ResNet-18 weights {filename} are not in {cached.parent} and downloading "
            f"{weights.url} failed ({reason}); put the file there or run with network access once"
        ) from None


def load_encoder(
    spec: str | Path,
    *,
    resolution: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
) -> Encoder:
    """An encoder from `spec`: "random", "imagenet", or a path to one of our checkpoints.

    - "random": CIFAR-stem ResNet-18 initialised from torch.Generator(seed) (same seed, same digest);
      normalised with `mean`/`std` (default: CIFAR-10's, from simclr.data).
    - "imagenet": torchvision ResNet18_Weights.IMAGENET1K_V1, ImageNet stem and ImageNet mean/std, fc
      dropped, inputs resized to `resolution`. Offline without the cached file: UserError naming the
      file and torch.hub.get_dir()/checkpoints.
    - a path: our checkpoint (see `encoder_from_checkpoint_payload`), loaded with weights_only=True.
    """
    spec = str(spec)
    if spec == "random":
        if mean is None or std is None:
            mean, std = mean or CIFAR10_MEAN, std or CIFAR10_STD
        with torch.random.fork_rng(devices=[]):  # building draws from the global RNG; leave it as it was
            module = init_weights_(resnet18("cifar"), torch.Generator().manual_seed(seed))
        return Encoder(
            module, "random", "cifar", tuple(map(float, mean)), tuple(map(float, std)), None, weights_digest(module)
        )
    if spec == "imagenet":
        module = _resnet18_with(
            "imagenet", _imagenet_state_dict(), "ImageNet weights do not fit torchvision's ResNet-18"
        )
        return Encoder(module, "imagenet", "imagenet", IMAGENET_MEAN, IMAGENET_STD, resolution, weights_digest(module))
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"encoder {spec!r}: not 'random', 'imagenet' or an existing checkpoint file")
    return encoder_from_checkpoint_payload(load_checkpoint(path), name=str(path), resolution=resolution)
