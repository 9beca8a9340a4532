"""Compact utterance tables for corpora of millions of utterances: numpy arrays in place of dicts.

A Python dict of lists costs kilobytes per utterance (every id, token and int an object). These
tables hold the same data in a few flat arrays:

* :class:`UttKeys`: the utterance ids, sorted (UTF-8 byte order, which is code point order), as one
  fixed-width bytes array; lookups by binary search.
* :class:`RaggedTable`: ``{utt: list[int]}`` (phone ids, durations) as one concatenated uint8/int16/int32
  array (the narrowest that holds the values) plus row offsets.
* :class:`LabelTable`: ``{utt: str}`` (``utt2spk``) as one int32 code per row plus the sorted labels.

Both tables are read-only :class:`~collections.abc.Mapping` s with the interface of the dicts they
replace (``table[utt]``, ``utt in table``, ``len``, iteration in sorted order, ``==`` against a dict).

:func:`cached_arrays` builds the arrays of a text file once and keeps them as ``.npy`` files in a
``.cache/`` folder beside it, stamped with the file's size and modification time. Every later reader
(each rank of a multi-GPU run, each restart) maps them read-only, so the processes, and the dataloader
workers they fork, share one copy in the page cache. A file lock lets one process build while the
others wait; where the folder cannot be written the arrays stay in the process's memory.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import DataDirError

__all__ = ["UttKeys", "RaggedTable", "LabelTable", "cached_arrays", "parse_table", "build_ragged", "build_labels",
           "sort_unique", "CACHE_DIR"]

#: The folder, beside a source file, that holds its cached arrays.
CACHE_DIR = ".cache"
#: Bumped when the layout of cached arrays changes (older caches are rebuilt).
CACHE_FORMAT = 2
#: Lines parsed per chunk when building a table (bounds the Python objects alive at once).
CHUNK_LINES = 200_000


def _encode(utts: Iterable[str]) -> np.ndarray:
    arr = np.array([u.encode("utf-8") for u in utts], dtype=bytes)
    return arr if arr.size else np.zeros(0, dtype="S1")


class UttKeys:
    """Sorted, unique utterance ids as one fixed-width bytes array (``dtype S<width>``)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr

    def __len__(self) -> int:
        return len(self.arr)

    def __getitem__(self, row: int) -> str:
        return bytes(self.arr[row]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for k in self.arr:
            yield bytes(k).decode("utf-8")

    def find(self, utt: str) -> int:
        """The row of ``utt``, or -1."""
        b = utt.encode("utf-8")
        if not len(self.arr) or len(b) > self.arr.dtype.itemsize or b.endswith(b"\0"):
            return -1
        r = int(np.searchsorted(self.arr, b))
        return r if r < len(self.arr) and self.arr[r] == b else -1

    def rows(self, other: "UttKeys") -> np.ndarray:
        """The row of each of ``other``'s ids in this table (int64, -1 where missing)."""
        if len(other.arr) == len(self.arr) and np.array_equal(other.arr, self.arr):
            return np.arange(len(self.arr), dtype=np.int64)  # the usual case: the same utterances
        if not len(self.arr):
            return np.full(len(other.arr), -1, dtype=np.int64)
        width = max(self.arr.dtype.itemsize, other.arr.dtype.itemsize)
        mine = self.arr.astype(f"S{width}", copy=False)
        theirs = other.arr.astype(f"S{width}", copy=False)
        r = np.searchsorted(mine, theirs)
        r = np.minimum(r, len(mine) - 1)
        return np.where(mine[r] == theirs, r, -1).astype(np.int64)


def sort_unique(keys: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sort rows by key; of repeated keys the last row wins (as in a dict)."""
    if len(keys) > 1 and not np.all(keys[1:] > keys[:-1]):
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]
        order = order[last]
        keys = keys[last]
        columns = tuple(c[order] for c in columns)
    return keys, list(columns)


class KeyedByUtt(Mapping):
    """A read-only mapping over the sorted utterance ids ``self.utts`` (a :class:`UttKeys`)."""

    utts: "UttKeys"

    def __len__(self) -> int:
        return len(self.utts)

    def __iter__(self) -> Iterator[str]:
        return iter(self.utts)

    def __contains__(self, utt) -> bool:
        return isinstance(utt, str) and self.utts.find(utt) >= 0


class RaggedTable(KeyedByUtt):
    """``{utt: list[int]}`` as arrays: ``keys`` (:class:`UttKeys`), ``offsets`` (int64, rows + 1) and
    ``values`` (all rows concatenated). ``table[utt]`` is a list of ints, ``row(r)`` a numpy view."""

    def __init__(self, keys: np.ndarray, offsets: np.ndarray, values: np.ndarray):
        self.utts = UttKeys(keys)
        self.offsets = offsets
        self.values = values

    @classmethod
    def from_dict(cls, table: Mapping[str, Iterable[int]]) -> "RaggedTable":
        if isinstance(table, RaggedTable):
            return table
        utts = sorted(table, key=lambda u: u.encode("utf-8"))
        rows = [np.asarray(list(table[u]), dtype=np.int64) for u in utts]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return cls(_encode(utts), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), _narrow(values))

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "RaggedTable":
        return cls(arrays["keys"], arrays["offsets"], arrays["values"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.utts.arr, "offsets": self.offsets, "values": self.values}

    def __getitem__(self, utt: str) -> list[int]:
        r = self.utts.find(utt) if isinstance(utt, str) else -1
        if r < 0:
            raise KeyError(utt)
        return self.row(r).tolist()

    def row(self, r: int) -> np.ndarray:
        return self.values[self.offsets[r] : self.offsets[r + 1]]

    def lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Row lengths (int64), of all rows or of ``rows``."""
        if rows is None:
            return np.diff(self.offsets)
        rows = np.asarray(rows, dtype=np.int64)
        return self.offsets[rows + 1] - self.offsets[rows]

    def sums(self, rows: np.ndarray) -> np.ndarray:
        """The sum of each of ``rows`` (int64), gathered in chunks so no full-size temporary is made."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.int64)
        for a in range(0, len(rows), 16384):
            r = rows[a : a + 16384]
            lens = self.offsets[r + 1] - self.offsets[r]
            nz = np.flatnonzero(lens)
            if not len(nz):
                continue
            lens, starts = lens[nz], self.offsets[r[nz]]
            first = np.concatenate([[0], np.cumsum(lens)[:-1]])
            idx = np.repeat(starts - first, lens) + np.arange(int(lens.sum()))
            out[a + nz] = np.add.reduceat(np.asarray(self.values[idx], dtype=np.int64), first)
        return out


class LabelTable(KeyedByUtt):
    """``{utt: label}`` as arrays: ``utts`` (:class:`UttKeys`), ``codes`` (int32 per row) and
    ``labels`` (the sorted distinct labels, bytes). ``table[utt]`` is the label as a str."""

    def __init__(self, keys: np.ndarray, codes: np.ndarray, labels: np.ndarray):
        self.utts = UttKeys(keys)
        self.codes = codes
        self.labels = labels

    @classmethod
    def from_dict(cls, table: Mapping[str, str]) -> "LabelTable":
        if isinstance(table, LabelTable):
            return table
        utts = sorted(table, key=lambda u: u.encode("utf-8"))
        labels, codes = np.unique(_encode([table[u] for u in utts]), return_inverse=True)
        return cls(_encode(utts), codes.astype(np.int32), labels)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "LabelTable":
        return cls(arrays["keys"], arrays["codes"], arrays["labels"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.utts.arr, "codes": self.codes, "labels": self.labels}

    def __getitem__(self, utt: str) -> str:
        r = self.utts.find(utt) if isinstance(utt, str) else -1
        if r < 0:
            raise KeyError(utt)
        return bytes(self.labels[self.codes[r]]).decode("utf-8")

    @property
    def num_labels(self) -> int:
        return len(self.labels)


def _narrow(values: np.ndarray) -> np.ndarray:
    """uint8 where the values fit (phone ids of a small vocabulary, frames per token), else int16, else int32."""
    if not values.size:
        return values.astype(np.int16)
    lo, hi = values.min(), values.max()
    if lo >= 0 and hi < 2**8:
        return values.astype(np.uint8)
    if lo >= -(2**15) and hi < 2**15:
        return values.astype(np.int16)
    return values.astype(np.int32)


def parse_table(path: Path, what: str, row: Callable[[list[bytes]], object], form: str = "'<utt-id> ...'",
                min_fields: int = 1) -> Iterator[tuple[list[bytes], list]]:
    """Chunks ``(keys, rows)`` of a Kaldi-style table ``<utt> <field> ...``: ``row(fields)`` of every
    non-blank line. A missing file (``what`` says what it holds), a line with fewer than ``min_fields``
    fields or one that ``row`` rejects (ValueError) is a one-line :class:`DataDirError` (``form``: the
    expected line)."""
    if not path.is_file():
        raise DataDirError(f"{path}: no such file ({what})")
    keys: list[bytes] = []
    rows: list = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 1 + min_fields:
                text = line.decode("utf-8", "replace").rstrip("\n")
                raise DataDirError(f"{path}:{n}: expected {form}, got {text!r}")
            keys.append(parts[0])
            try:
                rows.append(row(parts[1:]))
            except ValueError:
                text = line.decode("utf-8", "replace").rstrip("\n")[:80]
                raise DataDirError(f"{path}:{n}: expected {form}, got {text!r}") from None
            if len(keys) >= CHUNK_LINES:
                yield keys, rows
                keys, rows = [], []
    if keys:
        yield keys, rows


def build_ragged(path: Path, what: str, row: Callable[[list[bytes]], Iterable[int]], **parse) -> dict[str, np.ndarray]:
    """The arrays of a :class:`RaggedTable` read from a Kaldi-style text file (``parse``: of :func:`parse_table`)."""
    keys, lengths, values = [], [], []
    for k, rows in parse_table(path, what, row, **parse):
        keys.append(np.array(k, dtype=bytes))
        lengths.append(np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows)))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths[-1].sum()))
        values.append(_narrow(flat))
    if not keys:
        return {"keys": np.zeros(0, "S1"), "offsets": np.zeros(1, np.int64), "values": np.zeros(0, np.int16)}
    width = max(k.dtype.itemsize for k in keys)
    key = np.concatenate([k.astype(f"S{width}") for k in keys])
    lens = np.concatenate(lengths)
    vals = np.concatenate(values)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if len(key) > 1 and not np.all(key[1:] > key[:-1]):  # not sorted: reorder the rows
        key, (order,) = sort_unique(key, np.arange(len(key)))
        lens, starts = lens[order], offsets[order]
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        vals = vals[np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])]
    return {"keys": key, "offsets": offsets, "values": _narrow(vals)}


def build_labels(path: Path, what: str) -> dict[str, np.ndarray]:
    """The arrays of a :class:`LabelTable` read from a Kaldi-style ``<utt> <label>`` file."""
    keys, labels = [], []
    for k, rows in parse_table(path, what, lambda f: f[0], form="'<utt-id> <label>'"):
        keys.append(np.array(k, dtype=bytes))
        labels.append(np.array(rows, dtype=bytes))
    if not keys:
        return {"keys": np.zeros(0, "S1"), "codes": np.zeros(0, np.int32), "labels": np.zeros(0, "S1")}
    key = np.concatenate(keys)
    lab = np.concatenate(labels)
    key, (lab,) = sort_unique(key, lab)
    uniq, codes = np.unique(lab, return_inverse=True)
    return {"keys": key, "codes": codes.astype(np.int32), "labels": uniq}


# -------------------------------------------------------------------------------------------------- cache

def _stamp(src: Path, tag: str) -> dict:
    st = src.stat()
    return {"source": src.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "tag": tag, "format": CACHE_FORMAT}


def _fresh(folder: Path, stamp: dict) -> list[str] | None:
    """The array names of a cache folder whose stamp matches, else None."""
    try:
        info = json.loads((folder / "stamp.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("stamp") != stamp:
        return None
    arrays = info.get("arrays", [])
    if not all((folder / f"{n}.npy").is_file() for n in arrays):
        return None
    return arrays


def _load(folder: Path, names: list[str]) -> dict[str, np.ndarray]:
    return {n: np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}


def cached_arrays(src: str | os.PathLike, name: str, tag: str,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``build()`` derives from the file ``src``, cached in ``<src dir>/.cache/<name>/``.

    A cache is used when its stamp (the size and modification time of ``src``, and ``tag``: whatever
    else the arrays depend on, e.g. the phone vocabulary) matches; otherwise it is rebuilt under a file
    lock. The arrays come back memory-mapped read-only (in memory when the folder is not writable).
    """
    src = Path(src)
    if not src.is_file():
        return build()  # its one-line error names the missing file
    stamp = _stamp(src, tag)
    folder = src.parent / CACHE_DIR / name
    names = _fresh(folder, stamp)
    if names is not None:
        return _load(folder, names)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder.parent / f"{name}.lock", "a")
    except OSError:
        return build()
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        names = _fresh(folder, stamp)
        if names is not None:
            return _load(folder, names)
        arrays = build()
        try:
            (folder / "stamp.json").unlink(missing_ok=True)
            for n, a in arrays.items():
                tmp = folder / f".{n}.npy.tmp"
                with open(tmp, "wb") as f:
                    np.save(f, np.ascontiguousarray(a), allow_pickle=False)
                os.replace(tmp, folder / f"{n}.npy")
            tmp = folder / ".stamp.json.tmp"
            tmp.write_text(json.dumps({"stamp": stamp, "arrays": list(arrays)}))
            os.replace(tmp, folder / "stamp.json")
        except OSError:
            return arrays
    return _load(folder, list(arrays))
