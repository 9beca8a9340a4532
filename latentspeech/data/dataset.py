"""Audio datasets over Kaldi data dirs (codec training): fixed-length random crops.

    ds = AudioCropDataset(["data/train", "data/real_train"], sample_rate=16000, crop_seconds=1.0)
    wav = ds[i]                       # float32 tensor [crop_samples]

Each utterance appears ``ceil(duration / crop_seconds)`` times per epoch, so an epoch covers
about all the audio once whatever the utterance lengths. A crop starts at a uniformly random
offset; utterances shorter than a crop are zero-padded on the right. An optional random gain
(uniform in dB, peak kept under 0.99) makes the codec robust to loudness. Decoded audio is
cached in memory as int16 up to ``cache_mb`` megabytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

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
    ):
        from .kaldi import DataDir

        if not data_dirs:
            raise DataDirError("no data dir given for audio crops")
        self.sample_rate = sample_rate
        self.crop = max(1, int(round(crop_seconds * sample_rate)))
        self.gain_db = gain_db
        self.cache_bytes = int(cache_mb * 2**20)
        self.seed = seed
        self.dirs = [DataDir.load(p) for p in data_dirs]
        self.items: list[tuple[int, str]] = []
        for d, data in enumerate(self.dirs):
            durs = data.utt2dur
            for utt in data.utt_ids:
                dur = durs.get(utt, crop_seconds)
                if dur < min_seconds:
                    continue
                self.items += [(d, utt)] * max(1, math.ceil(dur / crop_seconds))
        if not self.items:
            raise DataDirError(f"no utterance of at least {min_seconds} s in {', '.join(map(str, data_dirs))}")
        self._cache: dict[tuple[int, str], np.ndarray] = {}
        self._cached_bytes = 0
        self._rng: np.random.Generator | None = None

    @property
    def num_utterances(self) -> int:
        return len(set(self.items))

    @property
    def hours(self) -> float:
        return sum(sum(d.utt2dur.values()) for d in self.dirs) / 3600.0

    def __len__(self) -> int:
        return len(self.items)

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

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self._generator()
        wav = self.load(self.items[index])
        if len(wav) > self.crop:
            start = int(rng.integers(0, len(wav) - self.crop + 1))
            wav = wav[start:start + self.crop]
        elif len(wav) < self.crop:
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
