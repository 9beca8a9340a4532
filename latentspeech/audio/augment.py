"""Augmentations that make clean training audio sound like the recordings users bring.

    cfg = AugmentConfig(reverb_prob=0.3, noise_prob=0.3, band_prob=0.2)
    wav = augment(wav, 16000, cfg, np.random.default_rng(0))

Each effect is applied on its own with its probability, in the order a recording chain has them:

* **room reverberation**: convolution with a synthetic room impulse response, a direct path followed
  by exponentially decaying noise whose decay time (RT60) is drawn from ``reverb_rt60`` seconds, mixed
  in at a direct-to-reverberant ratio drawn from ``reverb_drr_db``;
* **band limit**: what a low-rate source or a telephone line leaves, an FFT low-pass at a cut-off
  drawn from ``band_cutoff_hz`` (an 8 kHz recording resampled to 16 kHz is a 4 kHz low-pass), with a
  high-pass at ``band_highpass_hz`` on half of them;
* **background noise**: stationary noise of a random colour (spectral slope from white to brown) at a
  signal-to-noise ratio drawn from ``snr_db``.

Level is the dataset's own random gain (``gain_db``), applied after these. The effects are a few
lines of numpy each, so they do not bring in a dependency (audiomentations would add librosa, numba
and scikit-learn for the same four operations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

__all__ = ["AugmentConfig", "augment", "room_impulse_response"]


@dataclass
class AugmentConfig:
    reverb_prob: float = 0.0
    reverb_rt60: list[float] = field(default_factory=lambda: [0.15, 0.7])
    reverb_drr_db: list[float] = field(default_factory=lambda: [0.0, 12.0])
    band_prob: float = 0.0
    band_cutoff_hz: list[float] = field(default_factory=lambda: [3400.0, 7000.0])
    band_highpass_hz: float = 200.0
    noise_prob: float = 0.0
    snr_db: list[float] = field(default_factory=lambda: [10.0, 40.0])

    @property
    def enabled(self) -> bool:
        return self.reverb_prob > 0 or self.band_prob > 0 or self.noise_prob > 0

    def validate(self) -> None:
        for name in ("reverb_prob", "band_prob", "noise_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("reverb_rt60", "reverb_drr_db", "band_cutoff_hz", "snr_db"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ConfigError(f"augment.{name} must be [low, high], got {lo_hi}")
        if self.reverb_rt60[0] <= 0 or self.band_cutoff_hz[0] <= 0:
            raise ConfigError("augment.reverb_rt60 and augment.band_cutoff_hz must be positive")


def room_impulse_response(sample_rate: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic impulse response: 1 at t = 0, then noise decaying by 60 dB in ``rt60`` seconds from
    2.5 ms on, scaled so that the direct path is ``drr_db`` above the reverberant energy."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000): -60 dB at rt60
    tail[: int(0.0025 * sample_rate)] = 0.0
    energy = float(np.sum(tail**2))
    if energy > 0:
        tail *= np.sqrt(10 ** (-drr_db / 10) / energy)
    tail[0] = 1.0
    return tail


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return y[: len(x)]


def _band_limit(x: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    spec[(freqs > high_hz) | (freqs < low_hz)] = 0.0
    return np.fft.irfft(spec, len(x))


def _coloured_noise(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as f^slope, the slope drawn from 0 (white) to -2 (brown)."""
    slope = rng.uniform(-2.0, 0.0)
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec *= np.maximum(freqs, 20.0) ** (slope / 2)
    noise = np.fft.irfft(spec, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def augment(wav: np.ndarray, sample_rate: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """``wav`` (float32 mono) through the enabled effects; the same length, peak kept under 0.99."""
    if not cfg.enabled:
        return wav
    x = wav.astype(np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    if rms < 1e-5:  # silence (or padding only): nothing to colour
        return wav
    if rng.random() < cfg.reverb_prob:
        h = room_impulse_response(sample_rate, rng.uniform(*cfg.reverb_rt60), rng.uniform(*cfg.reverb_drr_db), rng)
        x = _fft_convolve(x, h)
        x *= rms / (float(np.sqrt(np.mean(x**2))) + 1e-12)
    if rng.random() < cfg.band_prob:
        low = cfg.band_highpass_hz if rng.random() < 0.5 else 0.0
        x = _band_limit(x, sample_rate, low, min(rng.uniform(*cfg.band_cutoff_hz), sample_rate / 2))
    if rng.random() < cfg.noise_prob:
        snr = rng.uniform(*cfg.snr_db)
        x = x + _coloured_noise(len(x), sample_rate, rng) * rms * 10 ** (-snr / 20)
    peak = float(np.abs(x).max())
    if peak > 0.99:
        x *= 0.99 / peak
    return x.astype(np.float32)
