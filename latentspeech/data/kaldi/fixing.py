"""Fixing a data dir in place, like Kaldi's ``utils/fix_data_dir.sh``: :func:`fix` and its :class:`FixReport`."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ...errors import DataDirError
from .datadir import Segment, parse_segment, spk2utt_from_utt2spk
from .tables import EXTRA_UTT_FILES, c_sorted, read_table, render_table, write_table

__all__ = ["FixReport", "fix"]


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
    tables = _read_tables(path, text_file, report)
    utt2spk = {u: s for u, s in tables["utt2spk"].items() if len(s.split()) == 1}
    wav_scp = {k: v for k, v in tables["wav.scp"].items() if v}
    segs = _valid_segments(path, tables["segments"]) if "segments" in tables else {}
    keep = _utterances_to_keep(tables, utt2spk, wav_scp, segs, text_file, report)
    new = _pruned_tables(tables, {u: s for u, s in utt2spk.items() if u in keep}, wav_scp, segs, keep, text_file)
    _write_changed(path, new, backup)
    report.kept = len(keep)
    return report


def _first_wins(path: Path, report: FixReport) -> dict[str, str]:
    """A table as id → value, the first of duplicate lines kept; the count of the others goes to ``report``."""
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


def _read_tables(path: Path, text_file: str, report: FixReport) -> dict[str, dict[str, str]]:
    """Every table of the dir that fix keeps in step, by file name (see :func:`_first_wins`)."""
    tables: dict[str, dict[str, str]] = {}
    for name in ("wav.scp", "utt2spk", text_file, "utt2dur", "segments", "spk2gender", "reco2dur", *EXTRA_UTT_FILES):
        if (path / name).is_file() and name not in tables:
            tables[name] = _first_wins(path / name, report)
    return tables


def _valid_segments(path: Path, table: dict[str, str]) -> dict[str, Segment]:
    """The well-formed lines of ``segments``; malformed ones are left out."""
    segs: dict[str, Segment] = {}
    for u, v in table.items():
        try:
            segs[u] = parse_segment(path / "segments", u, v, 0)
        except DataDirError:
            pass
    return segs


def _utterances_to_keep(
    tables: dict[str, dict[str, str]],
    utt2spk: dict[str, str],
    wav_scp: dict[str, str],
    segs: dict[str, Segment],
    text_file: str,
    report: FixReport,
) -> set[str]:
    """The utterances every table agrees on; each one dropped is recorded in ``report`` under its first reason."""
    keep = set(utt2spk)

    def drop(reason: str, utts: Iterable[str]) -> None:
        gone = keep & set(utts)
        if gone:
            report.dropped.setdefault(reason, []).extend(c_sorted(gone))
            keep.difference_update(gone)

    drop("with a malformed utt2spk line", set(tables["utt2spk"]) - set(utt2spk))
    if "segments" in tables:
        drop("not in segments", keep - set(segs))
        drop("whose recording is not in wav.scp", [u for u, s in segs.items() if s.recording not in wav_scp])
        drop("with end <= start in segments", [u for u, s in segs.items() if s.start < 0 or (0 <= s.end <= s.start)])
    else:
        drop("not in wav.scp", keep - set(wav_scp))
    if text_file in tables:
        drop(f"not in {text_file}", keep - set(tables[text_file]))
        drop("with an empty transcript", [u for u, t in tables[text_file].items() if not t.strip()])
    if "utt2dur" in tables:
        drop("not in utt2dur", keep - set(tables["utt2dur"]))
    for name in EXTRA_UTT_FILES:
        if name in tables and name != text_file:
            drop(f"not in {name}", keep - set(tables[name]))
    return keep


def _pruned_tables(
    tables: dict[str, dict[str, str]],
    utt2spk: dict[str, str],
    wav_scp: dict[str, str],
    segs: dict[str, Segment],
    keep: set[str],
    text_file: str,
) -> dict[str, dict]:
    """The new content of every table: the kept utterances, their recordings and their speakers."""
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
    return new


def _write_changed(path: Path, new: dict[str, dict], backup: bool) -> None:
    """Write the tables whose bytes change (a valid dir may be read-only), backing up the originals."""
    for name, table in new.items():
        target = path / name
        old = target.read_bytes() if target.is_file() else None
        if old == render_table(table):
            continue
        if backup and old is not None:
            (path / ".backup").mkdir(exist_ok=True)
            shutil.copyfile(target, path / ".backup" / name)
        write_table(target, table)
