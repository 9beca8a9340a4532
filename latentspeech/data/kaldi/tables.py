"""Kaldi tables: files of ``<key> <value>`` lines sorted by key in C-locale (byte) order.

Sorting is by the UTF-8 bytes of the key, which is what ``LC_ALL=C sort -k1,1`` does; see
:func:`c_sorted`. :func:`read_table` keeps every line (duplicates too) for the checks of
:mod:`.validation` and :mod:`.fixing`; :func:`read_keyed` and :func:`read_dict` are the strict
readers :class:`~.datadir.DataDir` loads with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from ...errors import DataDirError

__all__ = [
    "EXTRA_UTT_FILES",
    "CORE_FILES",
    "TableLine",
    "c_sort_key",
    "c_sorted",
    "read_table",
    "read_keyed",
    "read_dict",
    "write_table",
    "render_table",
    "format_float",
    "iter_tables",
]

#: Utterance-keyed tables besides text/utt2spk/segments/utt2dur that load, subset and fix keep in step.
EXTRA_UTT_FILES = ("phones", "utt2num_frames", "utt2lang", "utt2category", "utt2uniq", "feats.scp", "text.pseudo")

#: Files with a fixed meaning (the rest of a dir is left alone by fix/save).
CORE_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "spk2gender", "reco2dur")


def c_sort_key(key: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort``: compare the UTF-8 bytes (same as code-point order)."""
    return key.encode("utf-8")


def c_sorted(keys: Iterable[str]) -> list[str]:
    """``keys`` in C-locale order (``LC_ALL=C sort``)."""
    return sorted(keys, key=c_sort_key)


class TableLine(NamedTuple):
    """One parsed line of a table: the key, the rest of the line, and the 1-based line number."""

    key: str
    value: str
    lineno: int


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataDirError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not UTF-8 (byte {e.start})") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def read_table(path: str | os.PathLike) -> list[TableLine]:
    """All ``<key> <value>`` lines of a Kaldi table in file order (duplicates kept).

    The value is the rest of the line after the first run of whitespace, with trailing
    whitespace (and a Windows ``\\r``) removed; blank lines are skipped.
    """
    path = Path(path)
    out = []
    for i, line in enumerate(_read_lines(path), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        out.append(TableLine(parts[0], parts[1].rstrip() if len(parts) > 1 else "", i))
    return out


def read_keyed(path: Path, allow_empty_value: bool = False) -> dict[str, TableLine]:
    """A table keyed by id; duplicate ids or (unless allowed) empty values raise DataDirError."""
    out: dict[str, TableLine] = {}
    for line in read_table(path):
        if line.key in out:
            raise DataDirError(f"{path}:{line.lineno}: duplicate id '{line.key}' (run `latentspeech data fix {path.parent}`)")
        if not line.value and not allow_empty_value:
            raise DataDirError(f"{path}:{line.lineno}: '{line.key}' has no value")
        out[line.key] = line
    return out


def read_dict(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """A table as an id → value dict (see :func:`read_keyed`)."""
    return {k: ln.value for k, ln in read_keyed(path, allow_empty_value).items()}


def write_table(path: str | os.PathLike, rows: dict[str, object] | Iterable[tuple[str, object]]) -> Path:
    """Write ``key value`` lines sorted in C order, atomically (temp file + rename).

    Values that are lists are joined with spaces; floats are written without trailing zeros.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(render_table(rows))
    os.replace(tmp, path)
    return path


def render_table(rows: dict[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """The bytes :func:`write_table` writes: ``key value`` lines in C order, UTF-8."""
    items = rows.items() if isinstance(rows, dict) else rows
    lines = []
    for key, value in sorted(items, key=lambda kv: c_sort_key(kv[0])):
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = format_float(value)
        lines.append(f"{key} {value}".rstrip() + "\n")
    return "".join(lines).encode("utf-8")


def format_float(x: float) -> str:
    """A table value for a float: at most 6 decimals, no trailing zeros (``1.5``, ``0``)."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def iter_tables(path: str | os.PathLike) -> Iterator[str]:
    """Names of the known tables present in a data dir."""
    path = Path(path)
    for name in CORE_FILES + EXTRA_UTT_FILES:
        if (path / name).is_file():
            yield name
