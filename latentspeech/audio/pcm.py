"""Audio as bytes for a stream: 16-bit PCM samples and a WAV header whose length is left open.

    out.write(wav_header(16000))            # RIFF/WAVE, mono, 16-bit, length "unknown"
    for chunk in tts.stream(text, prompt):
        out.write(pcm16(chunk))

A WAV header must state the data size before the data; a stream does not know it yet, so the sizes
are set to the largest value (``0xFFFFFFFF``), which players that read a pipe (aplay, ffplay, sox,
browsers) take as "until the end of the stream".
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["pcm16", "wav_header", "OPEN_LENGTH"]

OPEN_LENGTH = 0xFFFFFFFF


def pcm16(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] (clipped) → little-endian signed 16-bit PCM bytes."""
    x = np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0)
    return (np.round(x * 32767.0)).astype("<i2").tobytes()


def wav_header(sample_rate: int, num_samples: int | None = None, channels: int = 1) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV; ``num_samples=None``: open length (a stream)."""
    block = 2 * channels
    if num_samples is None:
        data, riff = OPEN_LENGTH, OPEN_LENGTH
    else:
        data = num_samples * block
        riff = 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, 16)
            + b"data" + struct.pack("<I", data))
