"""YIN pitch (`latentspeech.audio.pitch`) and the harmonic source of the codec (`latentspeech.models.codec.source`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentspeech.audio.pitch import yin
from latentspeech.models.codec.source import harmonic_excitation

SR = 16000


def sawtooth(f0: float | np.ndarray, seconds: float = 1.0, amp: float = 0.3) -> torch.Tensor:
    """Band-limited sawtooth (all harmonics below Nyquist, amplitude 1/k) at a fixed or per-sample F0."""
    n = int(seconds * SR)
    f = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.where(k * f < SR / 2, np.sin(k * phase) / k, 0.0) for k in range(1, int(SR / 2 / f.min()) + 1))
    return torch.from_numpy(amp * x).float()


@pytest.mark.parametrize("f0", [70.0, 110.0, 220.0, 330.0, 450.0])
def test_yin_finds_the_pitch_of_a_harmonic_tone(f0):
    est, voiced = yin(sawtooth(f0), SR, hop=160)
    assert est.shape == voiced.shape == (SR // 160,)
    inner = est[3:-3]
    assert voiced[3:-3].all()
    assert (inner / f0 - 1).abs().max() < 0.01, (f0, inner.min(), inner.max())


def test_yin_tracks_a_gliding_pitch():
    t = np.arange(SR) / SR
    f = 140 + 40 * np.sin(2 * np.pi * 2 * t)
    est, voiced = yin(sawtooth(f), SR, hop=160)
    centres = (np.arange(len(est)) * 160 + 80).clip(max=SR - 1)
    ok = voiced.numpy()
    err = np.abs(est.numpy()[ok] / f[centres][ok] - 1)
    assert ok[3:-3].all() and np.median(err) < 0.01 and err.max() < 0.05


def test_yin_noise_and_silence_are_unvoiced_and_framing_is_centred():
    torch.manual_seed(0)
    _, voiced = yin(0.1 * torch.randn(SR), SR, hop=160)
    assert voiced.float().mean() < 0.05
    f0, voiced = yin(torch.zeros(SR), SR, hop=160)
    assert not voiced.any() and (f0 == 0).all()
    # a tone that starts half-way: frames centred before the onset are silent, the ones after voiced
    x = torch.cat([torch.zeros(SR // 2), sawtooth(200.0, 0.5)])
    f0, voiced = yin(x[None], SR, hop=160)  # batched input
    assert f0.shape == (1, 100)
    first = int(voiced[0].float().argmax())
    assert 47 <= first <= 50, first
    assert voiced[0, 52:-3].all() and not voiced[0, :45].any()
    assert yin(torch.zeros(100), SR, hop=160)[0].shape == (0,)


def test_harmonic_excitation_is_a_band_limited_pulse_train():
    frames, hop = 50, 160
    f0 = torch.full((1, frames), 200.0)
    e = harmonic_excitation(f0, torch.ones(1, frames), hop, SR)
    assert e.shape == (1, frames * hop) and torch.isfinite(e).all()
    assert abs(float(e.square().mean().sqrt()) - math.sqrt(0.5)) < 0.02  # Σ cos(kφ) / √K
    spec = torch.fft.rfft(e[0]).abs()  # 0.5 s → 2 Hz bins, 200 Hz exactly periodic
    freqs = torch.fft.rfftfreq(e.shape[-1], 1 / SR)
    peaks = freqs[spec > 0.5 * spec.max()]
    assert torch.allclose(peaks / 200, torch.round(peaks / 200), atol=0.02)  # only multiples of F0
    assert len(peaks) == 39  # every harmonic of 200 Hz below 8 kHz (7,800 Hz is the last)
    silent = harmonic_excitation(f0, torch.zeros(1, frames), hop, SR)
    assert silent.abs().max() == 0


def test_harmonic_excitation_follows_f0_and_voicing_per_frame():
    frames, hop = 40, 160
    f0 = torch.cat([torch.full((20,), 100.0), torch.full((20,), 250.0)])[None]
    gate = torch.cat([torch.ones(30), torch.zeros(10)])[None]
    e = harmonic_excitation(f0, gate, hop, SR)
    est, voiced = yin(e[0], SR, hop)
    assert (est[3:17] / 100 - 1).abs().max() < 0.01 and (est[23:28] / 250 - 1).abs().max() < 0.01
    assert e[0, 31 * hop:].abs().max() == 0 and not voiced[32:].any()
