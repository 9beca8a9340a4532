"""A Kaldi data dir in memory (:class:`DataDir`) and its rows (:class:`Utterance`, :class:`Segment`).

    d = DataDir.load("data/train")
    for u in d.utterances():                       # Utterance(utt_id, speaker, text, start, end)
        wav = d.load_utterance(u.utt_id, 16000)    # float32 mono; segments cut; pipes run
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from ...errors import AudioError, DataDirError
from .tables import EXTRA_UTT_FILES, c_sorted, format_float, read_dict, read_keyed, write_table
from .wavscp import entry_duration, is_pipe, read_wav_entry

__all__ = ["Segment", "Utterance", "DataDir", "parse_segment", "spk2utt_from_utt2spk", "ensure_utt2dur"]


@dataclass(frozen=True)
class Segment:
    """One line of ``segments``: a stretch of a recording (``end`` < 0 = to the end)."""

    recording: str
    start: float
    end: float
    channel: str | None = None

    def line(self) -> str:
        """The value of this segment's ``segments`` line (everything after the utterance id)."""
        s = f"{self.recording} {format_float(self.start)} {format_float(self.end)}"
        return f"{s} {self.channel}" if self.channel is not None else s


class Utterance(NamedTuple):
    """One utterance of a data dir (``start``/``end`` in seconds when it is a segment, else None)."""

    utt_id: str
    speaker: str
    text: str
    start: float | None = None
    end: float | None = None


def parse_segment(path: Path, key: str, value: str, lineno: int) -> Segment:
    """The :class:`Segment` of one ``segments`` line; a malformed line raises DataDirError naming ``path:lineno``."""
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
        d.wav_scp = read_dict(path / "wav.scp")
        d.utt2spk = read_dict(path / "utt2spk")
        for utt, spk in d.utt2spk.items():
            if len(spk.split()) != 1:
                raise DataDirError(f"{path / 'utt2spk'}: expected '<utt> <speaker>', got '{utt} {spk}'")
        d.has_text = (path / text_file).is_file()
        if d.has_text:
            d.text = read_dict(path / text_file, allow_empty_value=True)
        if (path / "spk2utt").is_file():
            d.spk2utt = {k: v.split() for k, v in read_dict(path / "spk2utt").items()}
        else:
            d.spk2utt = spk2utt_from_utt2spk(d.utt2spk)
        if (path / "segments").is_file():
            seg_lines = read_keyed(path / "segments").values()
            d.segments = {ln.key: parse_segment(path / "segments", *ln) for ln in seg_lines}
        if (path / "spk2gender").is_file():
            d.spk2gender = read_dict(path / "spk2gender")
        if (path / "utt2dur").is_file():
            dur_lines = read_keyed(path / "utt2dur").values()
            d._utt2dur = {ln.key: _parse_float(path / "utt2dur", *ln) for ln in dur_lines}
        for name in EXTRA_UTT_FILES:
            if name != text_file and (path / name).is_file():
                d.extra[name] = read_dict(path / name, allow_empty_value=True)
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
                if not is_pipe(v) and not Path(v).is_absolute() and (Path(self.path) / v).exists():
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
        if utt_id in self.segments and is_pipe(entry):
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
