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

import json
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


#: numpy dtypes of the safetensors dtypes a store may hold (others are read through safetensors).
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U8": "u1", "U16": "<u2"}


def _shard_header(path: Path) -> tuple[dict, int] | None:
    """(header, first data byte) of a safetensors file, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return json.loads(f.read(n)), 8 + n
    except (OSError, ValueError):
        return None


def build_index(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a store's index: ``keys`` (sorted utterance ids), per row ``shard`` (int32),
    ``frames`` (int32) and ``offset`` (int64: the byte where the array starts in its shard, -1 when it
    must be read through safetensors), per shard ``shards`` (file names), ``dtype`` and ``dim``."""
    from .tables import CHUNK_LINES, sort_unique

    index = path / INDEX
    shard_ids: dict[bytes, int] = {}
    keys, shard, frames = [], [], []
    with open(index, "rb") as f:
        k, s, fr = [], [], []
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip(b"\r\n").split(b"\t")
            if len(parts) != 3 or not parts[2].isdigit():
                text = line.decode("utf-8", "replace").rstrip("\n")
                raise DataDirError(f"{index}:{n}: expected '<utt>\\t<shard>\\t<frames>', got {text!r}")
            k.append(parts[0])
            s.append(shard_ids.setdefault(parts[1], len(shard_ids)))
            fr.append(int(parts[2]))
            if len(k) >= CHUNK_LINES:
                keys.append(np.array(k, dtype=bytes))
                shard.append(np.array(s, np.int32))
                frames.append(np.array(fr, np.int32))
                k, s, fr = [], [], []
        if k:
            keys.append(np.array(k, dtype=bytes))
            shard.append(np.array(s, np.int32))
            frames.append(np.array(fr, np.int32))
    if not keys:
        return {"keys": np.zeros(0, "S1"), "shard": np.zeros(0, np.int32), "frames": np.zeros(0, np.int32),
                "offset": np.zeros(0, np.int64), "shards": np.zeros(0, "S1"), "dtype": np.zeros(0, "S4"),
                "dim": np.zeros(0, np.int32)}
    width = max(x.dtype.itemsize for x in keys)
    key, (sh, fr) = sort_unique(np.concatenate([x.astype(f"S{width}") for x in keys]),
                                 np.concatenate(shard), np.concatenate(frames))
    # shard ids in name order, so that reading by shard id reads the files in order
    names = sorted(shard_ids, key=lambda b: b)
    remap = np.empty(len(names), np.int32)
    for new, name in enumerate(names):
        remap[shard_ids[name]] = new
    sh = remap[sh]
    offset = np.full(len(key), -1, np.int64)
    dtype = np.full(len(names), b"", dtype="S4")
    dim = np.full(len(names), -1, np.int32)
    order = np.argsort(sh, kind="stable")
    bounds = np.searchsorted(sh[order], np.arange(len(names) + 1))
    for sid, name in enumerate(names):
        rows = order[bounds[sid] : bounds[sid + 1]]
        got = _shard_header(path / name.decode("utf-8"))
        if got is None or not len(rows):
            continue
        header, start = got
        first = header.get(bytes(key[rows[0]]).decode("utf-8"))
        if not first or first.get("dtype") not in _DTYPES or len(first.get("shape", ())) != 2:
            continue
        dtype[sid], dim[sid] = first["dtype"].encode(), first["shape"][1]
        for r in rows.tolist():
            e = header.get(bytes(key[r]).decode("utf-8"))
            if e and e["dtype"] == first["dtype"] and e["shape"] == [int(fr[r]), first["shape"][1]]:
                offset[r] = start + e["data_offsets"][0]
    return {"keys": key, "shard": sh, "frames": fr, "offset": offset,
            "shards": np.array(names, dtype=bytes), "dtype": dtype, "dim": dim}


class LatentStore:
    """Read-only view of a latent store directory (see the module docstring).

    The index lives in arrays (sorted utterance ids, shard id, frames and byte offset per utterance),
    built once from ``index.tsv`` and cached beside it (:func:`latentspeech.data.tables.cached_arrays`),
    so every process reading the store shares them; an array is read from its shard at its offset.
    """

    def __init__(self, path: str | os.PathLike):
        from .tables import UttKeys, cached_arrays

        self.path = Path(path)
        if not (self.path / INDEX).is_file():
            raise DataDirError(f"not a latent store: {self.path} has no {INDEX} (run `latentspeech codec extract`)")
        arrays = cached_arrays(self.path / INDEX, "index", "latent-index", lambda: build_index(self.path))
        self.utts = UttKeys(arrays["keys"])
        self._shard, self._frames, self._offset = arrays["shard"], arrays["frames"], arrays["offset"]
        self._names = [bytes(n).decode("utf-8") for n in arrays["shards"]]
        self._dtype = [_DTYPES.get(bytes(d).decode(), None) for d in arrays["dtype"]]
        self._dim = [int(d) for d in arrays["dim"]]
        self.meta = load_yaml(self.path / META) if (self.path / META).is_file() else {}
        self._handles: dict[str, object] = {}

    @property
    def utt_ids(self) -> list[str]:
        return list(self.utts)

    @property
    def latent_dim(self) -> int | None:
        return self.meta.get("latent_dim")

    @property
    def frame_rate(self) -> float | None:
        return self.meta.get("frame_rate")

    def __len__(self) -> int:
        return len(self.utts)

    def __contains__(self, utt: str) -> bool:
        return isinstance(utt, str) and self.utts.find(utt) >= 0

    def find(self, utt: str) -> int:
        """The row of ``utt`` in the index, or -1."""
        return self.utts.find(utt)

    def rows(self, keys) -> np.ndarray:
        """The rows of :class:`~latentspeech.data.tables.UttKeys` ``keys`` in the index (-1: not stored)."""
        return self.utts.rows(keys)

    def row_frames(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._frames)[np.asarray(rows, dtype=np.int64)]

    def frames(self, utt: str) -> int:
        r = self.utts.find(utt)
        if r < 0:
            raise KeyError(f"utterance '{utt}' is not in the latent store {self.path}")
        return int(self._frames[r])

    def _handle(self, shard: str):
        from safetensors import safe_open

        if shard not in self._handles:
            f = self.path / shard
            if not f.is_file():
                raise DataDirError(f"latent store {self.path}: shard {shard} listed in {INDEX} is missing")
            self._handles[shard] = safe_open(str(f), framework="np")
        return self._handles[shard]

    def read_row(self, r: int) -> np.ndarray:
        """The array of index row ``r``."""
        sid, off, n = int(self._shard[r]), int(self._offset[r]), int(self._frames[r])
        name = self._names[sid]
        if off < 0:
            return self._handle(name).get_tensor(self.utts[r])
        try:
            a = np.fromfile(self.path / name, dtype=self._dtype[sid], count=n * self._dim[sid], offset=off)
        except OSError:
            raise DataDirError(f"latent store {self.path}: shard {name} listed in {INDEX} is missing") from None
        if a.size != n * self._dim[sid]:
            raise DataDirError(f"latent store {self.path}: shard {name} is shorter than its index says")
        return a.reshape(n, self._dim[sid])

    def __getitem__(self, utt: str) -> np.ndarray:
        r = self.utts.find(utt) if isinstance(utt, str) else -1
        if r < 0:
            raise KeyError(f"utterance '{utt}' is not in the latent store {self.path}")
        return self.read_row(r)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(utt, array) in shard order (fast sequential reading)."""
        for r in np.argsort(self._shard, kind="stable").tolist():
            yield self.utts[r], self.read_row(r)

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
