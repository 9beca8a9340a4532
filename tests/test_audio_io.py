import numpy as np
import pytest
import soundfile as sf

from latentspeech.audio import (
    check_audio,
    load_audio,
    normalize_loudness,
    prepare_prompt,
    resample,
    save_audio,
    trim_silence,
)
from latentspeech.errors import AudioError


def test_save_load_roundtrip(tmp_path, tone):
    wav, sr = tone
    path = save_audio(tmp_path / "a.wav", wav, sr)
    back = load_audio(path)
    assert back.dtype == np.float32 and back.shape == wav.shape
    assert np.abs(back - wav).max() < 1e-3
    assert not list(tmp_path.glob(".*tmp")), "no temp file left behind"


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_other_formats(tmp_path, tone, fmt):
    wav, sr = tone
    save_audio(tmp_path / f"a.{fmt}", wav, sr)
    back = load_audio(tmp_path / f"a.{fmt}", 16000)
    assert abs(len(back) - len(wav)) < 100


def test_stereo_is_averaged_and_resampled(tmp_path, tone):
    wav, sr = tone
    stereo = np.stack([wav, -wav * 0 + wav], axis=1)
    sf.write(tmp_path / "s.wav", stereo, sr)
    back = load_audio(tmp_path / "s.wav", 24000)
    assert back.ndim == 1 and len(back) == 24000


def test_resample_8k_to_16k_keeps_frequency():
    sr = 8000
    t = np.arange(sr) / sr
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, 8000, 16000)
    assert len(y) == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 440) <= 1


def test_array_input_needs_rate():
    with pytest.raises(AudioError, match="sample rate"):
        load_audio(np.zeros(100, dtype=np.float32))
    assert len(load_audio(np.ones((2, 800), dtype=np.float32), 16000, source_rate=8000)) == 1600


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty"), (b"this is not audio at all" * 20, "cannot read audio")],
)
def test_bad_files_give_one_line_errors(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=match) as e:
        load_audio(p)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_silent_and_short_prompts_rejected(tone):
    wav, sr = tone
    with pytest.raises(AudioError, match="silent"):
        prepare_prompt(np.zeros(sr * 2, dtype=np.float32), sr)
    with pytest.raises(AudioError, match="too short"):
        prepare_prompt(wav[: sr // 4], sr)


def test_dc_offset_is_removed_from_prompts(tone):
    """An offset would hide the pauses from the trimming and the level from the loudness
    normalisation; the prompt prepared with one is the prompt prepared without it."""
    wav, sr = tone
    padded = np.concatenate([np.zeros(sr), wav, np.zeros(sr)]).astype(np.float32)
    clean = prepare_prompt(padded, sr)
    shifted = prepare_prompt(padded + 0.3, sr)
    assert len(shifted) == len(clean) < len(padded)
    np.testing.assert_allclose(shifted, clean, atol=1e-3)
    with pytest.raises(AudioError, match="silent"):
        prepare_prompt(np.full(sr * 2, 0.5, dtype=np.float32), sr)


def test_trim_silence_removes_edges(tone):
    wav, sr = tone
    padded = np.concatenate([np.zeros(sr), wav, np.zeros(sr)]).astype(np.float32)
    trimmed = trim_silence(padded, sr, pad_ms=0)
    assert abs(len(trimmed) - len(wav)) < 0.05 * sr


def test_normalize_loudness_level_and_peak(tone):
    wav, _ = tone
    out = normalize_loudness(wav * 0.01, target_db=-20)
    rms_db = 20 * np.log10(np.sqrt(np.mean(out**2)))
    assert abs(rms_db - (-20)) < 0.5
    loud = normalize_loudness(np.sign(wav), target_db=0)  # square wave: the peak cap wins
    assert np.abs(loud).max() <= 0.99 + 1e-6


def test_clipped_prompt_is_accepted(tone):
    wav, sr = tone
    clipped = np.clip(wav * 20, -1, 1)
    out = prepare_prompt(clipped, sr)
    assert np.abs(out).max() <= 0.99 + 1e-6


def test_check_audio_passes_real_speech(voices_dir):
    path = sorted((voices_dir / "flac").glob("*.flac"))[0]
    wav = load_audio(path, 16000)
    assert len(wav) >= 16000
    assert check_audio(wav, 16000, min_seconds=1.0) is None  # real speech passes: no AudioError
    with pytest.raises(AudioError, match="silent"):
        check_audio(wav * 1e-6, 16000, min_seconds=1.0)  # the same clip at -120 dB is refused
    with pytest.raises(AudioError, match="too short"):
        check_audio(wav[:8000], 16000, min_seconds=1.0)  # and so is half a second of it
