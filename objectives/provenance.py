"""What code made a study: the project's version and git revision, and the versions of the libraries that
shape its numbers. Stored in each study's "provenance" attr when it is created (MoCo/DINO print the same at
the start of a run); read without importing torch (package metadata only), so `create` stays fast."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "torchvision", "optuna", "optuna-dashboard", "plotly")


def project_version() -> str:
    """The version in pyproject.toml (the project is run from its checkout, not installed)."""
    try:
        text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"


def git_revision() -> str | None:
    """HEAD's commit, with "+dirty" when tracked files differ from it; None outside a git checkout."""
    if not (ROOT / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance() -> dict[str, Any]:
    return {
        "project": project_version(),
        "git": git_revision(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
    }
