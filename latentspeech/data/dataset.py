"""Audio datasets over Kaldi data dirs (codec training): fixed-length random crops.

    ds = AudioCropDataset(["data/train", "data/real_train"], sample_rate=16000, crop_seconds=1.0)
    wav = ds[i]                       # float32 tensor [crop_samples]

The dataset holds one entry per utterance (segment): arrays of its dir, its row in the dir and its
duration. Index ``i`` of an epoch maps to an utterance through the cumulative crop counts: each
utterance takes ``ceil(duration / crop_seconds)`` indices, so an epoch covers about all the audio
once whatever the utterance lengths, and each access draws a new random crop. A crop starts at a
uniformly random offset; utterances shorter than a crop are zero-padded on the right. Optional
augmentations (room reverberation, band limits, background noise: :mod:`latentspeech.audio.augment`)
and a random gain (uniform in dB, peak kept under 0.99) make the codec robust to how real recordings
sound.

Decoded utterances are cached in memory as int16 up to ``cache_mb`` megabytes. Past that, a crop
of an audio file is read on its own (a seek to the crop's samples: soundfile reads nothing else),
so a corpus of hours-long recordings cut into segments costs a crop's worth of reading per item.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..audio.augment import AugmentConfig, augment
from ..errors import DataDirError

__all__ = ["AudioCropDataset"]


class AudioCropDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        data_dirs: Sequence[str | os.PathLike],
        sample_rate: int,
        crop_seconds: float = 1.0,
        min_seconds: float = 0.2,
        gain_db: tuple[float, float] | None = (-6.0, 6.0),
        cache_mb: float = 1024.0,
        seed: int = 0,
        augment: AugmentConfig | None = None,
    ):
        from .kaldi import DataDir

        if not data_dirs:
            raise DataDirError("no data dir given for audio crops")
        self.sample_rate = sample_rate
        self.crop = max(1, int(round(crop_seconds * sample_rate)))
        self.gain_db = gain_db
        self.augment = augment if augment is not None and augment.enabled else None
        self.cache_bytes = int(cache_mb * 2**20)
        self.seed = seed
        self.crop_seconds = crop_seconds
        self.dirs = [DataDir.load(p) for p in data_dirs]
        self._utts = [data.utt_ids for data in self.dirs]  # per dir: its utterance ids (the rows below)
        dirs, rows, durs = [], [], []
        for d, data in enumerate(self.dirs):
            table = data.utt2dur
            dur = np.fromiter((table.get(u, crop_seconds) for u in self._utts[d]), dtype=np.float64,
                              count=len(self._utts[d]))
            keep = np.flatnonzero(dur >= min_seconds)
            dirs.append(np.full(len(keep), d, dtype=np.int32))
            rows.append(keep.astype(np.int64))
            durs.append(dur[keep])
        self.utt_dir = np.concatenate(dirs)
        self.utt_row = np.concatenate(rows)
        self.utt_dur = np.concatenate(durs)
        if not len(self.utt_dir):
            raise DataDirError(f"no utterance of at least {min_seconds} s in {', '.join(map(str, data_dirs))}")
        crops = np.maximum(1, np.ceil(self.utt_dur / crop_seconds)).astype(np.int64)
        self.crop_ends = np.cumsum(crops)  # index i of an epoch is utterance searchsorted(crop_ends, i, "right")
        self._cache: dict[tuple[int, str], np.ndarray] = {}
        self._cached_bytes = 0
        self._rng: np.random.Generator | None = None

    @property
    def num_utterances(self) -> int:
        return len(self.utt_dir)

    @property
    def hours(self) -> float:
        return sum(sum(d.utt2dur.values()) for d in self.dirs) / 3600.0

    def __len__(self) -> int:
        return int(self.crop_ends[-1])

    def _entry(self, index: int) -> int:
        """The utterance (entry of the ``utt_*`` arrays) of epoch index ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"crop index {index} out of range 0..{len(self) - 1}")
        return int(np.searchsorted(self.crop_ends, index, side="right"))

    def _key(self, k: int) -> tuple[int, str]:
        d = int(self.utt_dir[k])
        return d, self._utts[d][int(self.utt_row[k])]

    def utterance(self, index: int) -> tuple[int, str]:
        """(dir index, utt id) of epoch index ``index``."""
        return self._key(self._entry(index))

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else 0
            self._rng = np.random.default_rng([self.seed, wid, os.getpid(), torch.initial_seed() % 2**31])
        return self._rng

    def load(self, key: tuple[int, str]) -> np.ndarray:
        """Float32 audio of one (dir index, utt id), through the int16 cache."""
        if key in self._cache:
            return self._cache[key].astype(np.float32) / 32767.0
        wav = self.dirs[key[0]].load_utterance(key[1], self.sample_rate)
        if self._cached_bytes + wav.size * 2 <= self.cache_bytes:
            self._cache[key] = np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16)
            self._cached_bytes += wav.size * 2
        return wav

    def _read_crop(self, key: tuple[int, str], dur: float, rng: np.random.Generator) -> np.ndarray | None:
        """A random crop of an utterance read from its file on its own, or None where that does not
        apply (cached, cache not yet full, shorter than a crop, a pipe)."""
        from .kaldi import is_pipe, read_wav_entry

        if key in self._cache or self._cached_bytes < self.cache_bytes or dur <= self.crop_seconds:
            return None
        data = self.dirs[key[0]]
        entry, start, end = data.recording_entry(key[1])
        if is_pipe(entry):
            return None
        n = int(round(dur * self.sample_rate))
        offset = int(rng.integers(0, max(1, n - self.crop + 1))) / self.sample_rate
        wav = read_wav_entry(entry, data.base, self.sample_rate, start + offset,
                             start + offset + self.crop / self.sample_rate)
        return wav[: self.crop]

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self._generator()
        k = self._entry(index)
        key = self._key(k)
        wav = self._read_crop(key, float(self.utt_dur[k]), rng)
        if wav is None:
            wav = self.load(key)
            if len(wav) > self.crop:
                start = int(rng.integers(0, len(wav) - self.crop + 1))
                wav = wav[start:start + self.crop]
        if self.augment is not None:
            wav = augment(wav, self.sample_rate, self.augment, rng)
        if len(wav) < self.crop:
            wav = np.pad(wav, (0, self.crop - len(wav)))
        if self.gain_db is not None:
            gain = 10 ** (rng.uniform(*self.gain_db) / 20)
            peak = float(np.abs(wav).max()) * gain
            if peak > 0.99:
                gain *= 0.99 / peak
            wav = wav * gain
        return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))

    def describe(self) -> str:
        names = ", ".join(Path(d.path).name for d in self.dirs if d.path is not None)
        return f"{self.num_utterances} utterances, {self.hours:.2f} h in {names}; {len(self)} crops per epoch"
