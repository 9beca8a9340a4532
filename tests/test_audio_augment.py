"""Training-audio augmentations (latentspeech.audio.augment) and their use in the codec's crops."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from latentspeech.audio.augment import AugmentConfig, augment, room_impulse_response
from latentspeech.errors import ConfigError

SR = 16000


def voiced(seconds: float = 1.0, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 40) if f0 * k < SR / 2)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_impulse_response_decays_by_60_db_at_rt60():
    rng = np.random.default_rng(0)
    h = room_impulse_response(SR, 0.4, 6.0, rng)
    assert h[0] == 1.0 and len(h) == int(0.4 * SR)
    tail = h[1:] ** 2
    early = tail[int(0.01 * SR):int(0.05 * SR)].mean()
    late = tail[int(0.35 * SR):].mean()
    assert 10 * np.log10(early / late) > 40  # ~52 dB between 30 ms and 375 ms
    assert abs(10 * np.log10(1.0 / tail.sum()) - 6.0) < 1e-6  # direct-to-reverberant ratio


def test_each_effect_does_what_it_says():
    x = voiced()
    rng = np.random.default_rng(1)
    # band limit: nothing left above the cut-off
    y = augment(x, SR, AugmentConfig(band_prob=1.0, band_cutoff_hz=[3000.0, 3000.0]), rng)
    assert band_energy(y, 3100, 8000) < 1e-9 * band_energy(x, 3100, 8000) + 1e-9
    assert band_energy(y, 300, 2900) == pytest.approx(band_energy(x, 300, 2900), rel=1e-3)  # the pass band kept
    # noise at a fixed SNR
    y = augment(x, SR, AugmentConfig(noise_prob=1.0, snr_db=[20.0, 20.0]), rng)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 20.0) < 0.5, snr
    # reverberation keeps the level and smears a click over time
    click = np.zeros(SR, dtype=np.float32)
    click[100] = 0.5
    y = augment(click, SR, AugmentConfig(reverb_prob=1.0, reverb_rt60=[0.5, 0.5], reverb_drr_db=[0.0, 0.0]), rng)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(click**2)), rel=1e-3)
    assert np.sum(y[180:] ** 2) > 0.3 * np.sum(y**2)  # at DRR 0 dB half the energy comes after the direct path
    assert len(y) == len(click) and np.abs(y).max() <= 0.99 + 1e-6


def test_off_by_default_silence_untouched_and_seeded():
    x = voiced()
    assert not AugmentConfig().enabled
    assert augment(x, SR, AugmentConfig(), np.random.default_rng(0)) is x
    silent = np.zeros(SR, dtype=np.float32)
    cfg = AugmentConfig(reverb_prob=1.0, band_prob=1.0, noise_prob=1.0)
    assert np.array_equal(augment(silent, SR, cfg, np.random.default_rng(0)), silent)
    a = augment(x, SR, cfg, np.random.default_rng(5))
    b = augment(x, SR, cfg, np.random.default_rng(5))
    c = augment(x, SR, cfg, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ConfigError, match="noise_prob"):
        AugmentConfig(noise_prob=1.5).validate()
    with pytest.raises(ConfigError, match="snr_db"):
        AugmentConfig(snr_db=[30.0, 10.0]).validate()


def test_codec_crops_are_augmented_when_configured(tmp_path):
    from latentspeech.data.dataset import AudioCropDataset

    d = tmp_path / "data"
    d.mkdir()
    sf.write(d / "a.wav", voiced(2.0), SR)
    (d / "wav.scp").write_text("a a.wav\n")
    (d / "utt2spk").write_text("a s\n")
    (d / "spk2utt").write_text("s a\n")
    (d / "utt2dur").write_text("a 2.0\n")
    plain = AudioCropDataset([d], SR, crop_seconds=2.0, gain_db=None, seed=0)
    noisy = AudioCropDataset([d], SR, crop_seconds=2.0, gain_db=None, seed=0,
                             augment=AugmentConfig(noise_prob=1.0, snr_db=[10.0, 10.0]))
    x, y = plain[0].numpy(), noisy[0].numpy()
    assert np.allclose(x, voiced(2.0), atol=1e-4)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - 10.0) < 0.5
