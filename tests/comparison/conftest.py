"""The comparison tests: one torch thread per test process (tests/conftest.py's `one_torch_thread`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _one_thread(one_torch_thread):
    """Tiny trials on 2 shared cores run 5-8x faster on one intra-op thread (tests/conftest.py)."""
    yield
