"""Shared helpers for the bench/ scripts: a bf16 matmul reference rate, peak memory, a header."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def header(title: str) -> None:
    try:
        rev = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
            ).stdout.strip()
            or "uncommitted"
        )
    except OSError:
        rev = "unknown"
    print(f"# {title}")
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, "
        f"git {rev}"
    )


def matmul_rate(dtype: torch.dtype = torch.bfloat16, n: int = 2048, seconds: float = 2.0, device: str = "cpu") -> float:
    """Measured dense matmul rate in FLOP/s for an n x n x n product (the roof our training is compared to)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
