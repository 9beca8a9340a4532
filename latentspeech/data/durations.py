"""Per-token durations of a set: the ``durations`` file next to its latent store.

One line per utterance, ``<utt-id> <d_1> ... <d_L>``: the number of latent frames each phone token
of the utterance's ``phones`` line takes (0 for tokens that make no sound of their own). The MAS
aligner writes it (``latentspeech align``); pointer-mode LMs read it in training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataDirError

__all__ = ["DURATIONS", "read_durations", "write_durations", "frame_tokens"]

#: File name of the per-token durations next to a latent store.
DURATIONS = "durations"


def read_durations(path: str | os.PathLike) -> dict[str, list[int]]:
    """A ``durations`` file → {utt: per-token frame counts}."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such file (per-token durations: run `latentspeech align`)")
    out: dict[str, list[int]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            out[parts[0]] = [int(x) for x in parts[1:]]
        except ValueError:
            raise DataDirError(f"{path}:{n}: expected '<utt> <int> <int> ...', got {line[:80]!r}") from None
    return out


def frame_tokens(durations: Iterable[int]) -> np.ndarray:
    """Per-token durations → the token index of every frame."""
    d = np.asarray(list(durations), dtype=np.int64)
    return np.repeat(np.arange(len(d)), d)


def write_durations(path: str | os.PathLike, durations: Mapping[str, Sequence[int]]) -> Path:
    """Write {utt: per-token frame counts} to ``path`` atomically (the format :func:`read_durations` reads)."""
    lines = [u + " " + " ".join(str(int(x)) for x in d) for u, d in durations.items()]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, path)
    return path
