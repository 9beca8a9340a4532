"""Kaldi data directories: read, write, validate, fix, filter and split them.

A data dir is a folder of small text tables, one ``<key> <value>`` line each, sorted by key in
C-locale (byte) order (``LC_ALL=C sort``):

=============  ==========================================================================
``wav.scp``    ``<utt-or-recording-id> <path>`` (or ``<cmd> |``, or ``<file.ark>:<offset>``)
``segments``   ``<utt-id> <recording-id> <start-s> <end-s> [channel]`` (optional; ``end`` -1 = to the end)
``text``       ``<utt-id> <transcript>`` (optional here; ``validate(require_text=True)`` demands it)
``utt2spk``    ``<utt-id> <speaker-id>``
``spk2utt``    ``<speaker-id> <utt-id> <utt-id> ...`` (derived from utt2spk)
``utt2dur``    ``<utt-id> <seconds>`` (computed from the audio when missing)
``spk2gender`` ``<speaker-id> m|f`` (optional)
=============  ==========================================================================

plus other utterance-keyed tables that travel with the utterances (``phones``, ``utt2num_frames``,
``feats.scp``...; see :data:`EXTRA_UTT_FILES`). Dirs made by Kaldi, ESPnet or lhotse load unchanged:

    d = DataDir.load("data/train")
    for u in d.utterances():                       # Utterance(utt_id, speaker, text, start, end)
        wav = d.load_utterance(u.utt_id, 16000)    # float32 mono; segments cut; pipes run
    problems = validate("data/train")             # [] when the dir is valid
    report = fix("data/train")                     # like Kaldi's utils/fix_data_dir.sh

Relative paths in ``wav.scp`` resolve against the folder that holds the data dir's ``wav.scp``
when the file exists there (as in ../shared/data), otherwise against the current directory (the
Kaldi convention: recipes run from ``egs/<corpus>/<task>``). ``cmd |`` entries run through
``/bin/sh`` in the current directory and must write a wav/flac file to stdout.

Sorting is by the UTF-8 bytes of the key, which is what ``LC_ALL=C sort -k1,1`` does; see
:func:`c_sorted`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from ..errors import AudioError, DataDirError

__all__ = [
    "Utterance",
    "Segment",
    "DataDir",
    "FixReport",
    "EXTRA_UTT_FILES",
    "c_sort_key",
    "c_sorted",
    "read_table",
    "write_table",
    "render_table",
    "read_wav_entry",
    "entry_duration",
    "validate",
    "fix",
    "duration_filter",
    "split_data",
    "ensure_utt2dur",
]

#: Utterance-keyed tables besides text/utt2spk/segments/utt2dur that load, subset and fix keep in step.
EXTRA_UTT_FILES = ("phones", "utt2num_frames", "utt2lang", "utt2category", "utt2uniq", "feats.scp", "text.pseudo")

#: Files with a fixed meaning (the rest of a dir is left alone by fix/save).
CORE_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "spk2gender", "reco2dur")


# ---------------------------------------------------------------------------------------------
# Tables


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


def _table_lines(path: Path, allow_empty_value: bool = False) -> dict[str, TableLine]:
    """A table keyed by id; duplicate ids or (unless allowed) empty values raise DataDirError."""
    out: dict[str, TableLine] = {}
    for line in read_table(path):
        if line.key in out:
            raise DataDirError(f"{path}:{line.lineno}: duplicate id '{line.key}' (run `latentspeech data fix {path.parent}`)")
        if not line.value and not allow_empty_value:
            raise DataDirError(f"{path}:{line.lineno}: '{line.key}' has no value")
        out[line.key] = line
    return out


def _table_dict(path: Path, allow_empty_value: bool = False) -> dict[str, str]:
    """A table as an id → value dict (see :func:`_table_lines`)."""
    return {k: ln.value for k, ln in _table_lines(path, allow_empty_value).items()}


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
            value = _fmt_float(value)
        lines.append(f"{key} {value}".rstrip() + "\n")
    return "".join(lines).encode("utf-8")


def _fmt_float(x: float) -> str:
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


# ---------------------------------------------------------------------------------------------
# Audio entries of wav.scp

_ARK_RE = re.compile(r"^(.+):(\d+)$")


def _is_pipe(entry: str) -> bool:
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


def _entry_source(entry: str, base: Path | None):
    """bytes (pipe / ark) or a Path for a wav.scp value."""
    if _is_pipe(entry):
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

    from ..audio import load_audio

    src = _entry_source(entry, Path(base) if base is not None else None)
    if start == 0.0 and (end is None or end < 0):
        return load_audio(src, sample_rate)
    if isinstance(src, Path):
        from ..audio import audio_info

        sr, _, _ = audio_info(src)
        stop = None if end is None or end < 0 else int(round(end * sr))
        try:
            wav, sr = sf.read(str(src), start=int(round(start * sr)), stop=stop, dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(f"cannot read audio {src}: {str(e).strip().splitlines()[-1]}") from None
    else:
        import io

        try:
            wav, sr = sf.read(io.BytesIO(src), dtype="float32", always_2d=False)
        except Exception as e:
            raise AudioError(f"cannot decode audio of '{entry}': {str(e).strip().splitlines()[-1]}") from None
        wav = wav[int(round(start * sr)) : None if end is None or end < 0 else int(round(end * sr))]
    if len(wav) == 0:
        raise AudioError(f"segment {start:g}-{end:g} s of '{entry}' is empty (past the end of the audio?)")
    return load_audio(wav, sample_rate, source_rate=sr)


def entry_duration(entry: str, base: str | os.PathLike | None = None) -> float:
    """Duration in seconds of one wav.scp value (header only for files; pipes are run)."""
    import io

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


# ---------------------------------------------------------------------------------------------
# DataDir


@dataclass(frozen=True)
class Segment:
    """One line of ``segments``: a stretch of a recording (``end`` < 0 = to the end)."""

    recording: str
    start: float
    end: float
    channel: str | None = None

    def line(self) -> str:
        s = f"{self.recording} {_fmt_float(self.start)} {_fmt_float(self.end)}"
        return f"{s} {self.channel}" if self.channel is not None else s


class Utterance(NamedTuple):
    """One utterance of a data dir (``start``/``end`` in seconds when it is a segment, else None)."""

    utt_id: str
    speaker: str
    text: str
    start: float | None = None
    end: float | None = None


def _parse_segment(path: Path, key: str, value: str, lineno: int) -> Segment:
    f = value.split()
    if len(f) not in (3, 4):
        raise DataDirError(f"{path}:{lineno}: expected '<utt> <recording> <start> <end> [channel]', got '{key} {value}'")
    try:
        start, end = float(f[1]), float(f[2])
    except ValueError:
        raise DataDirError(f"{path}:{lineno}: start/end of '{key}' are not numbers: '{value}'") from None
    return Segment(f[0], start, end, f[3] if len(f) == 4 else None)


def _parse_float(path: Path, key: str, value: str, lineno: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataDirError(f"{path}:{lineno}: expected a number for '{key}', got '{value}'") from None


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    """speaker → its utterances, both in C order (what ``utils/utt2spk_to_spk2utt.pl`` gives on sorted input)."""
    out: dict[str, list[str]] = {}
    for utt in c_sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in c_sorted(out)}


@dataclass
class DataDir:
    """A Kaldi data dir in memory. Attributes are plain dicts keyed by id.

    ``wav_scp`` values are kept as written (paths relative to ``path`` stay relative);
    ``utt2dur`` is read from the file, or computed from the audio on first access.
    """

    path: Path | None = None
    wav_scp: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    spk2utt: dict[str, list[str]] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    spk2gender: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    has_text: bool = True
    _utt2dur: dict[str, float] | None = field(default=None, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    # -- loading / saving ---------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, text_file: str = "text") -> "DataDir":
        """Read a data dir (``wav.scp`` and ``utt2spk`` required; the rest optional).

        ``text_file`` picks the transcript table (e.g. ``text.pseudo``; :meth:`save` writes it
        as ``text``). A missing ``spk2utt`` is derived from ``utt2spk``. Malformed lines and duplicate ids raise :class:`DataDirError`.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"data dir not found: {path}")
        for name in ("wav.scp", "utt2spk"):
            if not (path / name).is_file():
                raise DataDirError(f"{path}: missing {name} (not a Kaldi data dir?)")
        d = cls(path=path)
        d.wav_scp = _table_dict(path / "wav.scp")
        d.utt2spk = _table_dict(path / "utt2spk")
        for utt, spk in d.utt2spk.items():
            if len(spk.split()) != 1:
                raise DataDirError(f"{path / 'utt2spk'}: expected '<utt> <speaker>', got '{utt} {spk}'")
        d.has_text = (path / text_file).is_file()
        if d.has_text:
            d.text = _table_dict(path / text_file, allow_empty_value=True)
        if (path / "spk2utt").is_file():
            d.spk2utt = {k: v.split() for k, v in _table_dict(path / "spk2utt").items()}
        else:
            d.spk2utt = spk2utt_from_utt2spk(d.utt2spk)
        if (path / "segments").is_file():
            seg_lines = _table_lines(path / "segments").values()
            d.segments = {ln.key: _parse_segment(path / "segments", *ln) for ln in seg_lines}
        if (path / "spk2gender").is_file():
            d.spk2gender = _table_dict(path / "spk2gender")
        if (path / "utt2dur").is_file():
            dur_lines = _table_lines(path / "utt2dur").values()
            d._utt2dur = {ln.key: _parse_float(path / "utt2dur", *ln) for ln in dur_lines}
        for name in EXTRA_UTT_FILES:
            if name != text_file and (path / name).is_file():
                d.extra[name] = _table_dict(path / name, allow_empty_value=True)
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write every table into ``path`` (C-sorted, atomic per file); spk2utt is regenerated.

        Relative wav.scp paths that resolve inside the source dir become absolute when the
        dir is saved elsewhere, so the copy keeps pointing at the audio.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        same = self.path is not None and out.resolve() == Path(self.path).resolve()
        wav_scp = dict(self.wav_scp)
        if not same and self.path is not None:
            for k, v in wav_scp.items():
                if not _is_pipe(v) and not Path(v).is_absolute() and (Path(self.path) / v).exists():
                    wav_scp[k] = str((Path(self.path) / v).resolve())
        write_table(out / "wav.scp", wav_scp)
        write_table(out / "utt2spk", self.utt2spk)
        self.spk2utt = spk2utt_from_utt2spk(self.utt2spk)
        write_table(out / "spk2utt", self.spk2utt)
        if self.has_text:
            write_table(out / "text", self.text)
        if self.segments:
            write_table(out / "segments", {k: s.line() for k, s in self.segments.items()})
        if self.spk2gender:
            write_table(out / "spk2gender", self.spk2gender)
        if self._utt2dur is not None:
            write_table(out / "utt2dur", {k: float(v) for k, v in self._utt2dur.items()})
        for name, table in self.extra.items():
            write_table(out / name, table)
        return out

    # -- views --------------------------------------------------------------------------------

    @property
    def base(self) -> Path | None:
        """The folder relative wav.scp paths resolve against."""
        return Path(self.path) if self.path is not None else None

    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids (from utt2spk) in C order."""
        return c_sorted(self.utt2spk)

    @property
    def speakers(self) -> list[str]:
        return c_sorted(set(self.utt2spk.values()))

    def __len__(self) -> int:
        return len(self.utt2spk)

    def utterances(self) -> list[Utterance]:
        """Every utterance of utt2spk, in C order."""
        out = []
        for utt in self.utt_ids:
            seg = self.segments.get(utt)
            out.append(
                Utterance(utt, self.utt2spk[utt], self.text.get(utt, ""), seg.start if seg else None, seg.end if seg else None)
            )
        return out

    def recording_entry(self, utt_id: str) -> tuple[str, float, float | None]:
        """(wav.scp value, start, end) of an utterance; raises DataDirError when it has no audio."""
        seg = self.segments.get(utt_id)
        key = seg.recording if seg else utt_id
        if key not in self.wav_scp:
            where = f"recording '{key}' of utterance '{utt_id}'" if seg else f"utterance '{utt_id}'"
            raise DataDirError(f"{self.path}: {where} is not in wav.scp")
        return self.wav_scp[key], (seg.start if seg else 0.0), (seg.end if seg else None)

    def load_utterance(self, utt_id: str, sample_rate: int | None = None) -> np.ndarray:
        """The audio of one utterance as float32 mono (segments cut, pipes run, resampled)."""
        entry, start, end = self.recording_entry(utt_id)
        if utt_id in self.segments and _is_pipe(entry):
            # Several segments usually share one piped recording: decode it once (LRU of 2).
            ck = (entry, sample_rate)
            if ck not in self._cache:
                self._cache[ck] = read_wav_entry(entry, self.base, sample_rate)
                while len(self._cache) > 2:
                    self._cache.popitem(last=False)
            wav = self._cache[ck]
            sr = sample_rate
            if sr is None:
                raise DataDirError("load_utterance of a piped segment needs a sample_rate")
            piece = wav[int(round(start * sr)) : None if end is None or end < 0 else int(round(end * sr))]
            if len(piece) == 0:
                raise AudioError(f"segment '{utt_id}' ({start:g}-{end:g} s) is past the end of its recording")
            return piece
        return read_wav_entry(entry, self.base, sample_rate, start, end)

    # -- durations ----------------------------------------------------------------------------

    @property
    def utt2dur(self) -> dict[str, float]:
        """Seconds per utterance: the utt2dur file, or computed from segments / audio headers."""
        if self._utt2dur is None:
            self._utt2dur = self.compute_utt2dur()
        return self._utt2dur

    @utt2dur.setter
    def utt2dur(self, value: dict[str, float]) -> None:
        self._utt2dur = dict(value)

    @property
    def has_utt2dur(self) -> bool:
        """True when durations are known without touching the audio."""
        return self._utt2dur is not None

    def compute_utt2dur(self, progress: bool = False) -> dict[str, float]:
        """Durations from the audio (headers for files; pipes are run once per recording)."""
        from tqdm import tqdm

        reco_dur: dict[str, float] = {}
        out: dict[str, float] = {}
        for utt in tqdm(self.utt_ids, desc="utt2dur", disable=not progress, leave=False):
            entry, start, end = self.recording_entry(utt)
            if end is not None and end >= 0:
                out[utt] = end - start
                continue
            if entry not in reco_dur:
                reco_dur[entry] = entry_duration(entry, self.base)
            out[utt] = reco_dur[entry] - start
        return out

    def total_hours(self) -> float:
        return sum(self.utt2dur.values()) / 3600.0

    # -- subsets ------------------------------------------------------------------------------

    def subset(self, utt_ids: Iterable[str]) -> "DataDir":
        """A new DataDir with only ``utt_ids`` (unknown ids raise), recordings/speakers pruned."""
        keep = set(utt_ids)
        unknown = keep - set(self.utt2spk)
        if unknown:
            raise DataDirError(f"{self.path}: subset asks for {len(unknown)} unknown utterance(s), e.g. '{min(unknown)}'")
        segments = {u: s for u, s in self.segments.items() if u in keep}
        if segments:
            recos = {s.recording for s in segments.values()}
            wav_scp = {k: v for k, v in self.wav_scp.items() if k in recos}
        else:
            wav_scp = {k: v for k, v in self.wav_scp.items() if k in keep}
        utt2spk = {u: s for u, s in self.utt2spk.items() if u in keep}
        spks = set(utt2spk.values())
        return DataDir(
            path=self.path,
            wav_scp=wav_scp,
            text={u: t for u, t in self.text.items() if u in keep},
            utt2spk=utt2spk,
            spk2utt=spk2utt_from_utt2spk(utt2spk),
            segments=segments,
            spk2gender={s: g for s, g in self.spk2gender.items() if s in spks},
            extra={n: {u: v for u, v in t.items() if u in keep} for n, t in self.extra.items()},
            has_text=self.has_text,
            _utt2dur=None if self._utt2dur is None else {u: d for u, d in self._utt2dur.items() if u in keep},
        )


def ensure_utt2dur(path: str | os.PathLike, progress: bool = False) -> Path:
    """Write ``utt2dur`` into a data dir when it is missing (like Kaldi's ``utils/data/get_utt2dur.sh``)."""
    path = Path(path)
    if not (path / "utt2dur").is_file():
        d = DataDir.load(path)
        write_table(path / "utt2dur", {k: float(v) for k, v in d.compute_utt2dur(progress).items()})
    return path / "utt2dur"


# ---------------------------------------------------------------------------------------------
# Validation


def _check_table(path: Path, problems: list[str], nfields: int | None = None) -> list[TableLine]:
    """Read a table and report: CR line ends, unsorted lines, duplicate ids, wrong field counts."""
    try:
        lines = read_table(path)
    except DataDirError as e:
        problems.append(str(e))
        return []
    name = path.name
    raw = path.read_bytes()
    if b"\r" in raw:
        problems.append(f"{name}: has Windows (CRLF) line endings")
    seen: dict[str, int] = {}
    prev: TableLine | None = None
    unsorted_reported = False
    for ln in lines:
        if ln.key in seen:
            problems.append(f"{name}:{ln.lineno}: duplicate id '{ln.key}' (first on line {seen[ln.key]})")
        else:
            seen[ln.key] = ln.lineno
        if prev is not None and not unsorted_reported and c_sort_key(ln.key) < c_sort_key(prev.key):
            problems.append(
                f"{name}:{ln.lineno}: not sorted (LC_ALL=C): '{ln.key}' comes after '{prev.key}' on line {prev.lineno}"
            )
            unsorted_reported = True
        if nfields is not None and len(ln.value.split()) != nfields - 1:
            problems.append(f"{name}:{ln.lineno}: expected {nfields} fields, got '{ln.key} {ln.value}'")
        prev = ln
    return lines


def _missing(problems: list[str], ids: set[str], ref: set[str], what: str, where: str) -> None:
    diff = ids - ref
    if diff:
        ex = ", ".join(f"'{u}'" for u in c_sorted(diff)[:3])
        if len(diff) == 1:  # "1 utterance of text", "1 speaker"
            what = what.replace("utterances", "utterance").replace("speakers", "speaker")
        problems.append(f"{len(diff)} {what} missing from {where} (e.g. {ex})")


def validate(
    path: str | os.PathLike,
    check_audio: bool = False,
    require_text: bool = False,
    text_file: str = "text",
) -> list[str]:
    """Problems of a data dir, one line each (an empty list means valid).

    Checks what Kaldi's ``utils/validate_data_dir.sh`` checks: every table sorted (C locale)
    without duplicate ids; the same utterances in utt2spk, text, utt2dur, segments/wav.scp and
    the extra tables; spk2utt agreeing with utt2spk; utterance ids sorting like their speaker
    ids (speaker-id prefixes); empty transcripts; segments that point at unknown recordings or
    end before they start; spk2gender values. ``check_audio`` also reads every recording's
    header (pipes are run) and checks segments against the recording length.
    """
    path = Path(path)
    problems: list[str] = []
    if not path.is_dir():
        return [f"data dir not found: {path}"]
    for name in ("wav.scp", "utt2spk"):
        if not (path / name).is_file():
            problems.append(f"missing {name}")
    if require_text and not (path / text_file).is_file():
        problems.append(f"missing {text_file}")
    if problems:
        return problems

    utt2spk_lines = _check_table(path / "utt2spk", problems, nfields=2)
    utt2spk = {ln.key: ln.value for ln in reversed(utt2spk_lines)}
    utts = set(utt2spk)
    if not utts:
        problems.append("utt2spk is empty")
        return problems
    wav_lines = _check_table(path / "wav.scp", problems)
    wav_scp = {ln.key: ln.value for ln in reversed(wav_lines)}
    for ln in wav_lines:
        if not ln.value:
            problems.append(f"wav.scp:{ln.lineno}: '{ln.key}' has no path or command")

    # speaker-id prefixes: utt2spk sorted by speaker must be sorted by utterance too
    by_utt = c_sorted(utts)
    by_spk = sorted(utts, key=lambda u: (c_sort_key(utt2spk[u]), c_sort_key(u)))
    if by_utt != by_spk:
        bad = next(u for u, v in zip(by_utt, by_spk) if u != v)
        problems.append(
            f"utt2spk: utterances do not sort like their speakers (e.g. '{bad}' of speaker '{utt2spk[bad]}'): "
            "make speaker ids prefixes of utterance ids"
        )

    # spk2utt agrees with utt2spk
    if (path / "spk2utt").is_file():
        spk_lines = _check_table(path / "spk2utt", problems)
        want = spk2utt_from_utt2spk(utt2spk)
        got = {ln.key: set(ln.value.split()) for ln in spk_lines}
        if {k: set(v) for k, v in want.items()} != got:
            diff = c_sorted(set(want) ^ set(got)) or c_sorted(k for k in want if set(want[k]) != got.get(k))
            problems.append(f"spk2utt does not agree with utt2spk (e.g. speaker '{diff[0]}'): run `latentspeech data fix`")
    else:
        problems.append("missing spk2utt (run `latentspeech data fix` to generate it)")

    # segments
    if (path / "segments").is_file():
        seg_lines = _check_table(path / "segments", problems)
        segs: dict[str, Segment] = {}
        for ln in seg_lines:
            try:
                segs[ln.key] = _parse_segment(path / "segments", ln.key, ln.value, ln.lineno)
            except DataDirError as e:
                problems.append(str(e).replace(str(path / "segments"), "segments"))
        for utt, s in segs.items():
            if s.recording not in wav_scp:
                problems.append(f"segments: '{utt}' points at recording '{s.recording}' that is not in wav.scp")
            if s.start < 0 or (s.end >= 0 and s.end <= s.start):
                problems.append(f"segments: '{utt}' has end <= start ({_fmt_float(s.start)} .. {_fmt_float(s.end)})")
        _missing(problems, utts, set(segs), "utterances of utt2spk", "segments")
        _missing(problems, set(segs), utts, "utterances of segments", "utt2spk")
        audio_of = {u: s.recording for u, s in segs.items()}
    else:
        segs = {}
        _missing(problems, utts, set(wav_scp), "utterances of utt2spk", "wav.scp")
        _missing(problems, set(wav_scp), utts, "utterances of wav.scp", "utt2spk")
        audio_of = {u: u for u in utts}

    # text and other utterance tables
    if (path / text_file).is_file():
        text_lines = _check_table(path / text_file, problems)
        for ln in text_lines:
            if not ln.value.strip():
                problems.append(f"{text_file}:{ln.lineno}: empty transcript for '{ln.key}'")
        tkeys = {ln.key for ln in text_lines}
        _missing(problems, utts, tkeys, "utterances of utt2spk", text_file)
        _missing(problems, tkeys, utts, f"utterances of {text_file}", "utt2spk")
    if (path / "utt2dur").is_file():
        dur_lines = _check_table(path / "utt2dur", problems, nfields=2)
        for ln in dur_lines:
            try:
                if float(ln.value) <= 0:
                    problems.append(f"utt2dur:{ln.lineno}: non-positive duration for '{ln.key}': {ln.value}")
            except ValueError:
                problems.append(f"utt2dur:{ln.lineno}: not a number for '{ln.key}': '{ln.value}'")
        dkeys = {ln.key for ln in dur_lines}
        _missing(problems, utts, dkeys, "utterances of utt2spk", "utt2dur")
        _missing(problems, dkeys, utts, "utterances of utt2dur", "utt2spk")
    for name in EXTRA_UTT_FILES:
        if name != text_file and (path / name).is_file():
            keys = {ln.key for ln in _check_table(path / name, problems)}
            _missing(problems, keys, utts, f"utterances of {name}", "utt2spk")
            if name == "phones":
                _missing(problems, utts, keys, "utterances of utt2spk", name)
    if (path / "spk2gender").is_file():
        g_lines = _check_table(path / "spk2gender", problems, nfields=2)
        for ln in g_lines:
            if ln.value not in ("m", "f"):
                problems.append(f"spk2gender:{ln.lineno}: gender of '{ln.key}' must be m or f, got '{ln.value}'")
        _missing(problems, set(utt2spk.values()), {ln.key for ln in g_lines}, "speakers", "spk2gender")

    if check_audio:
        problems.extend(_check_audio(path, wav_scp, segs, audio_of))
    return problems


def _check_audio(path: Path, wav_scp: dict[str, str], segs: dict[str, Segment], audio_of: dict[str, str]) -> list[str]:
    from tqdm import tqdm

    problems = []
    durations: dict[str, float] = {}
    for reco in tqdm(c_sorted(set(audio_of.values()) & set(wav_scp)), desc="check audio", leave=False, disable=None):
        try:
            durations[reco] = entry_duration(wav_scp[reco], path)
            if durations[reco] <= 0:
                problems.append(f"wav.scp: audio of '{reco}' has no samples")
        except (AudioError, DataDirError) as e:
            problems.append(f"wav.scp: '{reco}': {e}")
    for utt, s in segs.items():
        dur = durations.get(s.recording)
        if dur is not None and s.start >= dur - 1e-3:
            problems.append(f"segments: '{utt}' starts at {s.start:g} s, past the end of '{s.recording}' ({dur:.2f} s)")
        elif dur is not None and s.end > dur + 0.05:
            problems.append(f"segments: '{utt}' ends at {s.end:g} s, past the end of '{s.recording}' ({dur:.2f} s)")
    return problems


# ---------------------------------------------------------------------------------------------
# Fixing


@dataclass
class FixReport:
    """What :func:`fix` kept and dropped (reason → utterance ids)."""

    kept: int
    dropped: dict[str, list[str]] = field(default_factory=dict)
    deduplicated: dict[str, int] = field(default_factory=dict)

    @property
    def num_dropped(self) -> int:
        return len({u for us in self.dropped.values() for u in us})

    def summary(self) -> str:
        lines = [f"kept {self.kept} utterances, dropped {self.num_dropped}"]
        for reason, utts in self.dropped.items():
            ex = ", ".join(c_sorted(utts)[:3])
            lines.append(f"  {len(utts)} {reason} (e.g. {ex})")
        for name, n in self.deduplicated.items():
            lines.append(f"  {name}: removed {n} duplicate line(s) (kept the first)")
        return "\n".join(lines)


def _first_wins(path: Path, report: FixReport) -> dict[str, str]:
    out: dict[str, str] = {}
    dups = 0
    for ln in read_table(path):
        if ln.key in out:
            dups += 1
        else:
            out[ln.key] = ln.value
    if dups:
        report.deduplicated[path.name] = dups
    return out


def fix(path: str | os.PathLike, text_file: str = "text", backup: bool = True) -> FixReport:
    """Make a data dir consistent, in place, like Kaldi's ``utils/fix_data_dir.sh``.

    Keeps only utterances present in every utterance table (utt2spk, text, utt2dur, segments or
    wav.scp, the extra tables) with a non-empty transcript and a valid segment; drops duplicate
    lines (the first wins), unused recordings and speakers; sorts every table; regenerates
    spk2utt. Originals of changed files go to ``.backup/``; every file is written atomically.
    """
    path = Path(path)
    for name in ("wav.scp", "utt2spk"):
        if not (path / name).is_file():
            raise DataDirError(f"{path}: missing {name}; cannot fix")
    report = FixReport(kept=0)
    tables: dict[str, dict[str, str]] = {}
    for name in ("wav.scp", "utt2spk", text_file, "utt2dur", "segments", "spk2gender", "reco2dur", *EXTRA_UTT_FILES):
        if (path / name).is_file() and name not in tables:
            tables[name] = _first_wins(path / name, report)

    utt2spk = {u: s for u, s in tables["utt2spk"].items() if len(s.split()) == 1}
    keep = set(utt2spk)

    def drop(reason: str, utts: Iterable[str]) -> None:
        gone = keep & set(utts)
        if gone:
            report.dropped.setdefault(reason, []).extend(c_sorted(gone))
            keep.difference_update(gone)

    drop("with a malformed utt2spk line", set(tables["utt2spk"]) - set(utt2spk))
    wav_scp = {k: v for k, v in tables["wav.scp"].items() if v}
    if "segments" in tables:
        segs: dict[str, Segment] = {}
        for u, v in tables["segments"].items():
            try:
                segs[u] = _parse_segment(path / "segments", u, v, 0)
            except DataDirError:
                pass
        drop("not in segments", keep - set(segs))
        drop("whose recording is not in wav.scp", [u for u, s in segs.items() if s.recording not in wav_scp])
        drop("with end <= start in segments", [u for u, s in segs.items() if s.start < 0 or (0 <= s.end <= s.start)])
    else:
        segs = {}
        drop("not in wav.scp", keep - set(wav_scp))
    if text_file in tables:
        drop(f"not in {text_file}", keep - set(tables[text_file]))
        drop("with an empty transcript", [u for u, t in tables[text_file].items() if not t.strip()])
    if "utt2dur" in tables:
        drop("not in utt2dur", keep - set(tables["utt2dur"]))
    for name in EXTRA_UTT_FILES:
        if name in tables and name != text_file:
            drop(f"not in {name}", keep - set(tables[name]))

    utt2spk = {u: s for u, s in utt2spk.items() if u in keep}
    spks = set(utt2spk.values())
    new: dict[str, dict] = {"utt2spk": utt2spk, "spk2utt": spk2utt_from_utt2spk(utt2spk)}
    if segs:
        new["segments"] = {u: segs[u].line() for u in keep}
        recos = {segs[u].recording for u in keep}
        new["wav.scp"] = {k: v for k, v in wav_scp.items() if k in recos}
        if "reco2dur" in tables:
            new["reco2dur"] = {k: v for k, v in tables["reco2dur"].items() if k in recos}
    else:
        new["wav.scp"] = {k: v for k, v in wav_scp.items() if k in keep}
    for name in (text_file, "utt2dur", *EXTRA_UTT_FILES):
        if name in tables and name not in new:
            new[name] = {u: v for u, v in tables[name].items() if u in keep}
    if "spk2gender" in tables:
        new["spk2gender"] = {s: g for s, g in tables["spk2gender"].items() if s in spks}

    for name, table in new.items():  # write only what changed (a valid dir may be read-only)
        target = path / name
        old = target.read_bytes() if target.is_file() else None
        if old == render_table(table):
            continue
        if backup and old is not None:
            (path / ".backup").mkdir(exist_ok=True)
            shutil.copyfile(target, path / ".backup" / name)
        write_table(target, table)
    report.kept = len(keep)
    return report


# ---------------------------------------------------------------------------------------------
# Filtering and splitting


def duration_filter(
    src: str | os.PathLike, out: str | os.PathLike, min_seconds: float = 0.0, max_seconds: float = float("inf")
) -> tuple[int, int]:
    """Copy the utterances of ``src`` lasting ``min_seconds`` to ``max_seconds`` into a new dir ``out``.

    Durations come from utt2dur (computed from the audio when missing). Returns (kept, total).
    """
    if min_seconds > max_seconds:
        raise DataDirError(f"duration filter: --min {min_seconds:g} is above --max {max_seconds:g}")
    d = DataDir.load(src)
    durs = d.utt2dur
    keep = [u for u in d.utt_ids if min_seconds <= durs[u] <= max_seconds]
    if not keep:
        raise DataDirError(f"{src}: no utterance lasts {min_seconds:g}-{max_seconds:g} s")
    d.subset(keep).save(out)
    return len(keep), len(d)


def split_data(path: str | os.PathLike, num_parts: int, per_utt: bool = False) -> list[Path]:
    """Split a data dir into ``path/split<N>/<1..N>`` like Kaldi's ``utils/split_data.sh``.

    By default a speaker's utterances stay in one part (contiguous speakers, balanced by
    utterance count); ``per_utt`` splits by utterance (``split<N>utt``). Existing up-to-date
    splits are reused.
    """
    path = Path(path)
    if num_parts < 1:
        raise DataDirError(f"split_data: number of parts must be >= 1, got {num_parts}")
    d = DataDir.load(path)
    root = path / (f"split{num_parts}utt" if per_utt else f"split{num_parts}")
    parts = [root / str(i + 1) for i in range(num_parts)]
    stamp = max((path / f).stat().st_mtime for f in CORE_FILES + EXTRA_UTT_FILES if (path / f).is_file())
    if all((p / "utt2spk").is_file() and (p / "utt2spk").stat().st_mtime >= stamp for p in parts):
        return parts
    if per_utt:
        groups = [[u] for u in d.utt_ids]
    else:
        groups = [c_sorted(u for u in d.utt_ids if d.utt2spk[u] == s) for s in d.speakers]
    if len(groups) < num_parts:
        what, hint = ("utterances", "") if per_utt else ("speakers", " (split per utterance instead)")
        raise DataDirError(f"{path}: cannot split {len(groups)} {what} into {num_parts} parts{hint}")
    total = sum(len(g) for g in groups)
    assignment: list[list[str]] = [[] for _ in range(num_parts)]
    part, done = 0, 0
    for i, g in enumerate(groups):
        # move on when this part reached its share, keeping enough groups for the parts left
        left_groups = len(groups) - i
        if assignment[part] and part < num_parts - 1 and (
            done >= total * (part + 1) / num_parts or left_groups <= num_parts - 1 - part
        ):
            part += 1
        assignment[part].extend(g)
        done += len(g)
    for p, utts in zip(parts, assignment):
        d.subset(utts).save(p)
    return parts


def iter_tables(path: str | os.PathLike) -> Iterator[str]:
    """Names of the known tables present in a data dir."""
    path = Path(path)
    for name in CORE_FILES + EXTRA_UTT_FILES:
        if (path / name).is_file():
            yield name
