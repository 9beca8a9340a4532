"""Audio in and out: soundfile for I/O, torchaudio for resampling.

    wav = load_audio("prompt.flac", sample_rate=16000)            # float32 mono at 16 kHz
    wav = prepare_prompt("prompt.wav", sample_rate=16000)         # + trimmed, loudness-normalised, checked
    save_audio("out.wav", wav, 16000)                             # atomic write (no half-written files)

Everything that goes wrong raises :class:`~latentspeech.errors.AudioError` with one line
that names the file and the problem.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf

from ..errors import AudioError

AudioLike = Union[str, os.PathLike, np.ndarray, "torch.Tensor"]  # noqa: F821

#: Target RMS level (dBFS) of :func:`normalize_loudness`.
DEFAULT_LOUDNESS_DB = -20.0
#: A signal whose peak is below this level (dBFS) counts as silent.
SILENCE_PEAK_DB = -60.0

__all__ = [
    "load_audio",
    "save_audio",
    "resample",
    "to_mono",
    "normalize_loudness",
    "trim_silence",
    "check_audio",
    "prepare_prompt",
    "audio_info",
]


def _name(src) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else "audio array"


def to_mono(wav: np.ndarray) -> np.ndarray:
    """(T,) or (T, C) → (T,) by averaging channels."""
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    elif wav.ndim != 1:
        raise AudioError(f"expected a 1-D or (samples, channels) array, got shape {wav.shape}")
    return wav


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's sinc interpolation)."""
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    import torch
    import torchaudio.functional as AF

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    return AF.resample(x, int(orig_sr), int(target_sr)).numpy()


def audio_info(path: str | os.PathLike) -> tuple[int, int, float]:
    """(sample_rate, channels, duration in seconds) without reading the samples."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types, all mean "cannot read"
        raise AudioError(f"cannot read audio {path}: {_short(e)}") from None
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()
    return msg[-1] if msg else type(e).__name__


def load_audio(src: AudioLike, sample_rate: int | None = None, source_rate: int | None = None) -> np.ndarray:
    """Read ``src`` as float32 mono, resampled to ``sample_rate`` (None keeps the file's rate).

    ``src`` is a path (anything libsndfile reads: wav, flac, ogg, ...), raw bytes, or an array /
    tensor of samples at ``source_rate`` (defaults to ``sample_rate``).
    """
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    if isinstance(src, (str, os.PathLike, io.IOBase)):
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if not p.exists():
                raise AudioError(f"audio file not found: {p}")
            if p.is_dir():
                raise AudioError(f"expected an audio file, got a directory: {p}")
            if p.stat().st_size == 0:
                raise AudioError(f"audio file is empty (0 bytes): {p}")
        try:
            wav, sr = sf.read(src, dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(f"cannot read audio {_name(src)}: {_short(e)}") from None
    else:
        try:
            import torch

            if isinstance(src, torch.Tensor):
                src = src.detach().cpu().numpy()
        except ImportError:  # pragma: no cover
            pass
        wav = np.asarray(src, dtype=np.float32)
        if wav.ndim == 2 and wav.shape[0] <= 8 and wav.shape[1] > wav.shape[0]:
            wav = wav.T  # (channels, samples) → (samples, channels)
        sr = source_rate or sample_rate
        if sr is None:
            raise AudioError("an audio array needs its sample rate (source_rate=...)")
    wav = to_mono(wav).astype(np.float32, copy=False)
    if wav.size == 0:
        raise AudioError(f"audio has no samples: {_name(src)}")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"audio contains NaN or infinite samples: {_name(src)}")
    if sample_rate is not None and sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    return wav


def save_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write ``wav`` (float, mono) to ``path``; format from the suffix; atomic (temp file + rename)."""
    path = Path(path)
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fmt = (path.suffix[1:] or "wav").upper()
    if fmt not in sf.available_formats():
        raise AudioError(f"cannot write {path}: unknown audio format '{path.suffix}' (use .wav, .flac or .ogg)")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), int(sample_rate), format=fmt,
                 subtype=subtype if fmt in ("WAV", "FLAC") else None)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _db(x: float) -> float:
    return 20.0 * np.log10(max(float(x), 1e-12))


def normalize_loudness(wav: np.ndarray, target_db: float = DEFAULT_LOUDNESS_DB, max_peak: float = 0.99) -> np.ndarray:
    """Scale to an RMS level of ``target_db`` dBFS (measured on the louder half of 20 ms frames,
    so pauses do not count), without letting the peak exceed ``max_peak``."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        return wav
    frame = 320
    n = max(1, len(wav) // frame)
    frames = wav[: n * frame].reshape(n, -1) if len(wav) >= frame else wav[None]
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = np.sort(rms)[len(rms) // 2 :]
    level = float(np.sqrt(np.mean(active**2)))
    if level < 1e-8:
        return wav
    gain = 10 ** (target_db / 20) / level
    peak = float(np.abs(wav).max()) * gain
    if peak > max_peak:
        gain *= max_peak / peak
    return (wav * gain).astype(np.float32)


def trim_silence(wav: np.ndarray, sample_rate: int, top_db: float = 40.0, pad_ms: float = 50.0) -> np.ndarray:
    """Remove leading and trailing parts quieter than ``top_db`` below the peak (keeps ``pad_ms``)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0:
        return wav
    frame = max(1, int(0.02 * sample_rate))
    hop = max(1, frame // 2)
    if len(wav) < frame:
        return wav
    n = 1 + (len(wav) - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(wav[idx] ** 2, axis=1))
    ref = rms.max()
    if ref <= 0:
        return wav
    loud = np.nonzero(20 * np.log10(np.maximum(rms, 1e-12) / ref) > -top_db)[0]
    if loud.size == 0:
        return wav
    pad = int(pad_ms * sample_rate / 1000)
    start = max(0, loud[0] * hop - pad)
    end = min(len(wav), loud[-1] * hop + frame + pad)
    return wav[start:end]


def check_audio(wav: np.ndarray, sample_rate: int, name: str = "audio", min_seconds: float = 0.0) -> None:
    """Raise :class:`AudioError` for empty, silent or too-short audio."""
    if wav.size == 0:
        raise AudioError(f"{name} has no samples")
    peak = float(np.abs(wav).max())
    if _db(peak) < SILENCE_PEAK_DB:
        raise AudioError(f"{name} is silent (peak {_db(peak):.0f} dBFS)")
    dur = len(wav) / sample_rate
    if dur < min_seconds:
        raise AudioError(f"{name} is too short: {dur:.2f} s of sound, need at least {min_seconds:g} s")


def prepare_prompt(
    src: AudioLike,
    sample_rate: int,
    source_rate: int | None = None,
    min_seconds: float = 1.0,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load a speaker prompt for synthesis: mono, resampled, trimmed, loudness-normalised, checked.

    Stereo is averaged, other rates are resampled (8 kHz audio is upsampled: it works, but the
    voice will sound band-limited), a DC offset is removed (it would hide the pauses from the
    trimming and the level from the loudness normalisation; a prompt that is only an offset is
    silent). A clipped prompt is accepted as it is. Audio longer than ``max_seconds`` keeps its
    first ``max_seconds``.
    """
    name = f"prompt {_name(src)}"
    wav = load_audio(src, sample_rate, source_rate=source_rate)
    if wav.size:
        wav = (wav - wav.mean(dtype=np.float64)).astype(np.float32)
    check_audio(wav, sample_rate, name)
    wav = trim_silence(wav, sample_rate)
    check_audio(wav, sample_rate, name, min_seconds=min_seconds)
    if max_seconds is not None and len(wav) > max_seconds * sample_rate:
        wav = wav[: int(max_seconds * sample_rate)]
    return normalize_loudness(wav)
