"""Device, precision, memory format and seeding choices in one place.

`auto` device: cuda, then mps, then cpu. `auto` precision: bf16 autocast on CUDA that supports it and
on CPUs with native bf16 (avx512_bf16 / AMX); fp16 + GradScaler on older CUDA; fp32 otherwise.
Never fp16 on a CPU: measured ~1 GFLOP/s against 406 for bf16 on the 2-core EPYC (DESIGN.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass

import torch

from errors import UserError


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (avx512_bf16 or AMX), read from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:K or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        if device.index is not None:  # one worker per GPU: the process's default CUDA device too (caches, bf16 check)
            torch.cuda.set_device(device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but MPS is not available here")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise UserError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 on a CPU is hundreds of times slower than bf16; use bf16 or fp32")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed; built once per command by `runtime()`."""

    device: torch.device
    precision: str  # bf16 | fp16 | fp32 (resolved, never auto)
    channels_last: bool = True
    compile: bool = False

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self):
        """The one autocast context (nanoGPT style): a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Enabled only for fp16, where gradients underflow without loss scaling."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move a model to the device and memory format (compile is applied by the caller to a step)."""
        return model.to(self.device, memory_format=self.memory_format)

    def describe(self) -> str:
        extras = [name for name, on in (("channels_last", self.channels_last), ("compile", self.compile)) if on]
        return " ".join([str(self.device), self.precision, *extras])


def runtime(
    device: str = "auto", precision: str = "auto", channels_last: bool = True, compile: bool = False
) -> Runtime:
    dev = resolve_device(device)
    return Runtime(dev, resolve_precision(precision, dev), channels_last, compile)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (CPU and CUDA); return a fresh CPU generator seeded the same for explicit use."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def rng_state() -> dict:
    """RNG state for checkpoints: plain tensors only, so torch.load(weights_only=True) reads it."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
