"""Shared fixtures. ``../shared`` (next to the checkout) holds the reference fixtures and
CamVid; tests that need it skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QGESCO_SHARED", REPO.parent / "shared"))

torch.set_num_threads(min(2, os.cpu_count() or 1))
# The CLI would otherwise sample /proc/stat on every call and pick its own count (qgesco.runtime.threads).
os.environ.setdefault("QGESCO_THREADS", "1")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout, or set QGESCO_SHARED)")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread avoids the cost of synchronising threads on every small op,
    which dominates (10x and more) when other work shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _need(SHARED / "reference")


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    return _need(SHARED / "datasets" / "camvid")
