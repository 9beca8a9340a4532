"""Audio entries of ``wav.scp``: a path, a ``<cmd> |`` pipe, or a ``<file.ark>:<offset>`` archive entry.

Relative paths resolve against the folder that holds the data dir's ``wav.scp`` when the file
exists there (as in ../shared/data), otherwise against the current directory (the Kaldi
convention: recipes run from ``egs/<corpus>/<task>``). ``cmd |`` entries run through ``/bin/sh``
in the current directory and must write a wav/flac file to stdout. Archive entries must hold a
RIFF wav (as ``wav-copy`` writes them).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from ...errors import AudioError

__all__ = ["is_pipe", "read_wav_entry", "entry_duration"]

_ARK_RE = re.compile(r"^(.+):(\d+)$")


def is_pipe(entry: str) -> bool:
    """True for a ``<cmd> |`` entry."""
    return entry.rstrip().endswith("|")


def _resolve(entry: str, base: Path | None) -> Path:
    """A plain wav.scp path: relative to the data dir when it exists there, else to the cwd."""
    p = Path(entry)
    if not p.is_absolute() and base is not None and (base / p).exists():
        return base / p
    return p


def _run_pipe(entry: str) -> bytes:
    cmd = entry.rstrip()[:-1].strip()
    try:
        res = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as e:  # pragma: no cover (the shell itself missing)
        raise AudioError(f"cannot run wav.scp command '{cmd}': {e}") from None
    if res.returncode != 0 or not res.stdout:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        why = err[-1] if err else ("no output" if res.returncode == 0 else f"exit status {res.returncode}")
        raise AudioError(f"wav.scp command failed: '{cmd}': {why}")
    return res.stdout


def _read_ark(path: Path, offset: int) -> bytes:
    """The RIFF wav stored at ``offset`` of a Kaldi wav archive (as written by ``wav-copy``)."""
    with open(path, "rb") as f:
        f.seek(offset)
        head = f.read(8)
        if len(head) < 8 or head[:4] != b"RIFF":
            raise AudioError(f"no wav data at {path}:{offset} (only RIFF wav archives are supported)")
        size = int.from_bytes(head[4:8], "little")
        return head + f.read(size)


def _entry_source(entry: str, base: Path | None) -> bytes | Path:
    """The encoded audio (pipe / ark) or the file path of a wav.scp value.

    A value that names an existing file is that file, even when it ends in ``:<digits>``.
    """
    if is_pipe(entry):
        return _run_pipe(entry)
    path = _resolve(entry, base)
    if not path.exists():
        m = _ARK_RE.match(entry)
        if m:
            ark = _resolve(m.group(1), base)
            if ark.exists():
                return _read_ark(ark, int(m.group(2)))
    return path


def read_wav_entry(
    entry: str,
    base: str | os.PathLike | None = None,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Samples of one wav.scp value (path, ``cmd |`` or ``file.ark:offset``) as float32 mono.

    ``start``/``end`` (seconds; ``end`` None or negative = to the end) cut a segment;
    ``sample_rate`` resamples (None keeps the file's rate). Raises :class:`AudioError`.
    """
    import soundfile as sf

    from ...audio import load_audio

    src = _entry_source(entry, Path(base) if base is not None else None)
    if start == 0.0 and (end is None or end < 0):
        return load_audio(src, sample_rate)
    if isinstance(src, Path):
        from ...audio import audio_info

        sr, _, _ = audio_info(src)
        stop = None if end is None or end < 0 else int(round(end * sr))
        try:
            wav, sr = sf.read(str(src), start=int(round(start * sr)), stop=stop, dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(f"cannot read audio {src}: {str(e).strip().splitlines()[-1]}") from None
    else:
        try:
            wav, sr = sf.read(io.BytesIO(src), dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(f"cannot decode audio of '{entry}': {str(e).strip().splitlines()[-1]}") from None
        wav = wav[int(round(start * sr)) : None if end is None or end < 0 else int(round(end * sr))]
    if len(wav) == 0:
        span = f"{start:g}-{end:g} s" if end is not None and end >= 0 else f"from {start:g} s"
        raise AudioError(f"segment {span} of '{entry}' is empty (past the end of the audio?)")
    return load_audio(wav, sample_rate, source_rate=sr)


def entry_duration(entry: str, base: str | os.PathLike | None = None) -> float:
    """Duration in seconds of one wav.scp value (header only for files; pipes are run)."""
    import soundfile as sf

    src = _entry_source(entry, Path(base) if base is not None else None)
    try:
        info = sf.info(io.BytesIO(src) if isinstance(src, bytes) else str(src))
    except Exception as e:
        raise AudioError(f"cannot read audio of '{entry}': {str(e).strip().splitlines()[-1]}") from None
    if isinstance(src, bytes) and info.frames <= 0:  # a header written to a pipe has no length
        wav, sr = sf.read(io.BytesIO(src), dtype="float32", always_2d=True)
        return len(wav) / sr
    return info.frames / max(info.samplerate, 1)
