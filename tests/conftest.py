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


@pytest.fixture(scope="session")
def tiny_latentlm_dir(tmp_path_factory) -> Path:
    """A self-contained LatentLM model dir: tiny random LatentLM + tiny random 16 kHz, 25 Hz, 8-d codec in
    codec/ (the real classes and text front end; inference 2 steps, no guidance). Copy it before changing it."""
    import torch

    from latentspeech.models.codec import AudioCodec, save_codec
    from latentspeech.models.codec.config import CodecConfig
    from latentspeech.config import from_dict
    from latentspeech.models.latentlm import LatentLM, LatentLMConfig
    from latentspeech.models.transformer import TransformerConfig
    from latentspeech.text import PhoneVocab
    from latentspeech.models.latentlm import save_latentlm

    root = tmp_path_factory.mktemp("tiny_latentlm")
    torch.manual_seed(0)
    codec = AudioCodec(from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 320, "frame_hop": 160, "downsample": [2, 2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1, 1]},
    })).eval()
    codec_dir = save_codec(codec, root / "codec")
    vocab = PhoneVocab()
    lm = LatentLM(LatentLMConfig(latent_dim=8, vocab_size=vocab.size, pad_id=vocab.pad_id, frame_rate=25.0,
                                 transformer=TransformerConfig(dim=32, n_layers=2, n_heads=4, max_seq_len=512),
                                 head_blocks=1, guard_min_frames=2, frames_per_phone=0.5))
    return save_latentlm(lm, root / "lm", codec_dir, {"phone_vocab": vocab.to_dict(), "inference": {"steps": 2, "cfg": 1.0}})


@pytest.fixture
def write_lm_corpus():
    """``write(root, vocab, phones, latents)`` → (Kaldi data dir with utt2spk + phones, latent store with
    identity normalisation) under ``root``: what `latentspeech align` / `recognizer` read."""

    def write(root: Path, vocab, phones: dict, latents: dict) -> tuple[Path, Path]:
        from latentspeech.data.latents import LatentWriter

        data, store = Path(root) / "data", Path(root) / "dump"
        data.mkdir(parents=True)
        (data / "utt2spk").write_text("".join(f"{u} s\n" for u in sorted(phones)))
        (data / "phones").write_text("".join(f"{u} {' '.join(vocab.tokens[i] for i in phones[u])}\n"
                                             for u in sorted(phones)), encoding="utf-8")
        dim = int(np.shape(next(iter(latents.values())))[-1])
        meta = {"latent_dim": dim, "frame_rate": 25.0, "hop_length": 640, "sample_rate": 16000, "codec": None,
                "latent_mean": [0.0] * dim, "latent_std": [1.0] * dim}
        with LatentWriter(store, meta) as w:
            for u in sorted(latents):
                w.add(u, latents[u])
        return data, store

    return write
