"""Latent shard store: the codec latents of a whole data dir, in a few safetensors shards.

Layout of a store directory (e.g. ``dump/train/``)::

    meta.yaml                     codec facts: sample_rate, hop_length, frame_rate, latent_dim,
                                  latent_mean / latent_std (the codec's normalisation), codec path
    index.tsv                     <utt-id> <TAB> <shard file> <TAB> <frames>   (one line per utterance)
    shard-00000.safetensors       {utt-id: float32 [frames, latent_dim]} for up to shard_size utterances
    ...

Arrays are raw (un-normalised) latents, frames first: ``(F, D)``. A shard is written to a temp
file and renamed, and only then listed in ``index.tsv``, so an interrupted extraction leaves a
valid store; :class:`LatentWriter` resumes it (``done`` holds the ids already stored) and removes
shard files that the index does not list. Codes of RVQ codecs are stored the same way as int16.

    store = LatentStore("dump/train")
    z = store["utt1"]                     # np.ndarray (F, D) float32
    for utt, z in store.items(): ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import load_yaml, save_yaml
from ..errors import DataDirError

__all__ = ["LatentStore", "LatentWriter", "INDEX", "META"]

INDEX = "index.tsv"
META = "meta.yaml"


def _read_index(path: Path) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].isdigit():
            raise DataDirError(f"{path}:{n}: expected '<utt>\\t<shard>\\t<frames>', got {line!r}")
        out[parts[0]] = (parts[1], int(parts[2]))
    return out


def _drop_partial_line(path: Path) -> None:
    """Cut an index line left half-written by a killed run (no trailing newline)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class LatentStore:
    """Read-only view of a latent store directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / INDEX).is_file():
            raise DataDirError(f"not a latent store: {self.path} has no {INDEX} (run `latentspeech codec extract`)")
        self.index = _read_index(self.path / INDEX)
        self.meta = load_yaml(self.path / META) if (self.path / META).is_file() else {}
        self._handles: dict[str, object] = {}

    @property
    def utt_ids(self) -> list[str]:
        return sorted(self.index, key=lambda s: s.encode("utf-8"))

    @property
    def latent_dim(self) -> int | None:
        return self.meta.get("latent_dim")

    @property
    def frame_rate(self) -> float | None:
        return self.meta.get("frame_rate")

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, utt: str) -> bool:
        return utt in self.index

    def frames(self, utt: str) -> int:
        return self.index[utt][1]

    def _handle(self, shard: str):
        from safetensors import safe_open

        if shard not in self._handles:
            f = self.path / shard
            if not f.is_file():
                raise DataDirError(f"latent store {self.path}: shard {shard} listed in {INDEX} is missing")
            self._handles[shard] = safe_open(str(f), framework="np")
        return self._handles[shard]

    def __getitem__(self, utt: str) -> np.ndarray:
        if utt not in self.index:
            raise KeyError(f"utterance '{utt}' is not in the latent store {self.path}")
        return self._handle(self.index[utt][0]).get_tensor(utt)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(utt, array) in shard order (fast sequential reading)."""
        by_shard: dict[str, list[str]] = {}
        for utt, (shard, _) in self.index.items():
            by_shard.setdefault(shard, []).append(utt)
        for shard in sorted(by_shard):
            h = self._handle(shard)
            for utt in by_shard[shard]:
                yield utt, h.get_tensor(utt)

    def normalization(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) per dimension from the codec that wrote the store, if recorded."""
        if "latent_mean" in self.meta and "latent_std" in self.meta:
            return (np.asarray(self.meta["latent_mean"], np.float32), np.asarray(self.meta["latent_std"], np.float32))
        return None


class LatentWriter:
    """Appends utterances to a store in shards of ``shard_size``; resumable (see module docstring)."""

    def __init__(self, path: str | os.PathLike, meta: dict | None = None, shard_size: int = 1000):
        from safetensors import safe_open  # noqa: F401  (fail early if missing)

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.shard_size = max(1, shard_size)
        _drop_partial_line(self.path / INDEX)
        self.index = _read_index(self.path / INDEX)
        listed = {s for s, _ in self.index.values()}
        for f in self.path.glob("shard-*.safetensors"):
            if f.name not in listed:
                f.unlink()  # written but never indexed: an interrupted run
        for f in self.path.glob(".shard-*.tmp"):
            f.unlink()
        old = load_yaml(self.path / META) if (self.path / META).is_file() else {}
        if meta:
            if self.index and old and any(old.get(k) != meta.get(k) for k in ("latent_dim", "hop_length", "codec")):
                raise DataDirError(
                    f"{self.path} holds latents of another codec ({old.get('codec')}); remove it or choose another OUT_DIR"
                )
            save_yaml(meta, self.path / META)
        self._pending: dict[str, np.ndarray] = {}
        nums = [int(s[6:11]) for s in listed if s[6:11].isdigit()]
        self._next = max(nums) + 1 if nums else 0

    @property
    def done(self) -> set[str]:
        return set(self.index)

    def add(self, utt: str, array: np.ndarray) -> None:
        if "\t" in utt or "\n" in utt:
            raise DataDirError(f"bad utterance id {utt!r} for a latent store")
        self._pending[utt] = np.ascontiguousarray(array)
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write pending arrays as one shard, then list them in the index."""
        from safetensors.numpy import save_file

        if not self._pending:
            return
        name = f"shard-{self._next:05d}.safetensors"
        tmp = self.path / f".{name}.tmp"
        save_file(self._pending, str(tmp))
        os.replace(tmp, self.path / name)
        with open(self.path / INDEX, "a", encoding="utf-8") as f:
            for utt, arr in self._pending.items():
                f.write(f"{utt}\t{name}\t{arr.shape[0]}\n")
                self.index[utt] = (name, arr.shape[0])
            f.flush()
            os.fsync(f.fileno())
        self._pending = {}
        self._next += 1

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "LatentWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
