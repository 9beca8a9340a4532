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

        torch.set_num_threads(1)  # measured: 2 threads are much slower when the 2 cores are shared
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


def _drop_unloaded_speechbrain_lazy_modules():
    """speechbrain registers lazy placeholder modules (e.g. its k2 integration) in sys.modules;
    hypothesis scans sys.modules for constants and touching such a placeholder imports it,
    which fails when the optional dependency (k2) is absent. Drop the never-loaded ones."""
    import sys

    for name, mod in list(sys.modules.items()):
        if type(mod).__name__ in ("LazyModule", "DeprecatedModuleRedirect") and getattr(mod, "lazy_module", None) is None:
            del sys.modules[name]


def pytest_runtest_setup(item):
    if "speechbrain" in __import__("sys").modules:
        _drop_unloaded_speechbrain_lazy_modules()
