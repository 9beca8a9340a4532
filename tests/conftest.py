"""Shared fixtures: paths to ../shared data, small synthetic signals, single-threaded torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LATENTSPEECH_SHARED", REPO.parent / "shared"))
VOICES = SHARED / "data" / "librispeech_voices"
TESTDATA = SHARED / "data" / "librivox_testdata"


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set LATENTSPEECH_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def voices_dir(shared_dir) -> Path:
    return VOICES


@pytest.fixture(scope="session")
def testdata_dir(shared_dir) -> Path:
    return TESTDATA


@pytest.fixture
def tone():
    """A 1 s, 16 kHz, 220 Hz tone at -12 dBFS peak (float32)."""
    sr = 16000
    t = np.arange(sr) / sr
    return (0.25 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr
