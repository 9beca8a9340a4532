"""Audio front end: I/O, resampling, loudness, trimming (io.py) and spectral features (features.py)."""

from .io import (
    audio_info,
    check_audio,
    load_audio,
    normalize_loudness,
    prepare_prompt,
    resample,
    save_audio,
    to_mono,
    trim_silence,
)

__all__ = [
    "audio_info",
    "check_audio",
    "load_audio",
    "normalize_loudness",
    "prepare_prompt",
    "resample",
    "save_audio",
    "to_mono",
    "trim_silence",
]
