"""Validation of a data dir: the checks of Kaldi's ``utils/validate_data_dir.sh``, one problem a line.

:func:`validate` runs the checks in a fixed order, each appending its findings to one list, so the
report reads file by file: utt2spk, wav.scp, speaker prefixes, spk2utt, segments, the transcripts,
utt2dur, the extra utterance tables, spk2gender, and (``check_audio``) the audio itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import AudioError, DataDirError
from .datadir import Segment, parse_segment, spk2utt_from_utt2spk
from .tables import EXTRA_UTT_FILES, TableLine, c_sort_key, c_sorted, format_float, read_table
from .wavscp import entry_duration

__all__ = ["validate"]


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
    if not path.is_dir():
        return [f"data dir not found: {path}"]
    problems = _missing_files(path, require_text, text_file)
    if problems:
        return problems

    utt2spk = _first_values(_check_table(path / "utt2spk", problems, nfields=2))
    utts = set(utt2spk)
    if not utts:
        problems.append("utt2spk is empty")
        return problems
    wav_scp = _check_wav_scp(path, problems)
    _check_speaker_prefixes(utt2spk, problems)
    _check_spk2utt(path, utt2spk, problems)
    segs, audio_of = _check_segments(path, utts, wav_scp, problems)
    _check_transcripts(path, text_file, utts, problems)
    _check_utt2dur(path, utts, problems)
    _check_extra_tables(path, text_file, utts, problems)
    _check_spk2gender(path, set(utt2spk.values()), problems)
    if check_audio:
        problems.extend(_check_audio(path, wav_scp, segs, audio_of))
    return problems


def _missing_files(path: Path, require_text: bool, text_file: str) -> list[str]:
    """The required tables that are absent (wav.scp, utt2spk, and the transcripts when required)."""
    problems = [f"missing {name}" for name in ("wav.scp", "utt2spk") if not (path / name).is_file()]
    if require_text and not (path / text_file).is_file():
        problems.append(f"missing {text_file}")
    return problems


def _first_values(lines: list[TableLine]) -> dict[str, str]:
    """id → value of a table's lines; of duplicate ids the first line wins (as in :func:`~.fixing.fix`)."""
    return {ln.key: ln.value for ln in reversed(lines)}


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
    """Report the ``ids`` absent from ``ref``: their count and up to three examples."""
    diff = ids - ref
    if diff:
        ex = ", ".join(f"'{u}'" for u in c_sorted(diff)[:3])
        if len(diff) == 1:  # "1 utterance of text", "1 speaker"
            what = what.replace("utterances", "utterance").replace("speakers", "speaker")
        problems.append(f"{len(diff)} {what} missing from {where} (e.g. {ex})")


def _check_both_ways(problems: list[str], utts: set[str], keys: set[str], name: str) -> None:
    """Report utterances of utt2spk missing from table ``name``, then those of ``name`` missing from utt2spk."""
    _missing(problems, utts, keys, "utterances of utt2spk", name)
    _missing(problems, keys, utts, f"utterances of {name}", "utt2spk")


def _check_wav_scp(path: Path, problems: list[str]) -> dict[str, str]:
    """wav.scp as a table, and its entries with no path or command; returns id → entry."""
    wav_lines = _check_table(path / "wav.scp", problems)
    for ln in wav_lines:
        if not ln.value:
            problems.append(f"wav.scp:{ln.lineno}: '{ln.key}' has no path or command")
    return _first_values(wav_lines)


def _check_speaker_prefixes(utt2spk: dict[str, str], problems: list[str]) -> None:
    """utt2spk sorted by speaker must be sorted by utterance too (speaker ids prefix utterance ids)."""
    by_utt = c_sorted(utt2spk)
    by_spk = sorted(utt2spk, key=lambda u: (c_sort_key(utt2spk[u]), c_sort_key(u)))
    if by_utt != by_spk:
        bad = next(u for u, v in zip(by_utt, by_spk) if u != v)
        problems.append(
            f"utt2spk: utterances do not sort like their speakers (e.g. '{bad}' of speaker '{utt2spk[bad]}'): "
            "make speaker ids prefixes of utterance ids"
        )


def _check_spk2utt(path: Path, utt2spk: dict[str, str], problems: list[str]) -> None:
    """spk2utt exists and lists the same utterances per speaker as utt2spk."""
    if not (path / "spk2utt").is_file():
        problems.append("missing spk2utt (run `latentspeech data fix` to generate it)")
        return
    spk_lines = _check_table(path / "spk2utt", problems)
    want = spk2utt_from_utt2spk(utt2spk)
    got = {ln.key: set(ln.value.split()) for ln in spk_lines}
    if {k: set(v) for k, v in want.items()} != got:
        diff = c_sorted(set(want) ^ set(got)) or c_sorted(k for k in want if set(want[k]) != got.get(k))
        problems.append(f"spk2utt does not agree with utt2spk (e.g. speaker '{diff[0]}'): run `latentspeech data fix`")


def _check_segments(
    path: Path, utts: set[str], wav_scp: dict[str, str], problems: list[str]
) -> tuple[dict[str, Segment], dict[str, str]]:
    """segments (when present) or wav.scp against utt2spk; returns (segments, utterance → recording id)."""
    if not (path / "segments").is_file():
        _check_both_ways(problems, utts, set(wav_scp), "wav.scp")
        return {}, {u: u for u in utts}
    segs: dict[str, Segment] = {}
    for ln in _check_table(path / "segments", problems):
        try:
            segs[ln.key] = parse_segment(path / "segments", ln.key, ln.value, ln.lineno)
        except DataDirError as e:
            problems.append(str(e).replace(str(path / "segments"), "segments"))
    for utt, s in segs.items():
        if s.recording not in wav_scp:
            problems.append(f"segments: '{utt}' points at recording '{s.recording}' that is not in wav.scp")
        if s.start < 0 or (s.end >= 0 and s.end <= s.start):
            problems.append(f"segments: '{utt}' has end <= start ({format_float(s.start)} .. {format_float(s.end)})")
    _check_both_ways(problems, utts, set(segs), "segments")
    return segs, {u: s.recording for u, s in segs.items()}


def _check_transcripts(path: Path, text_file: str, utts: set[str], problems: list[str]) -> None:
    """The transcript table (when present): no empty transcript, the same utterances as utt2spk."""
    if not (path / text_file).is_file():
        return
    text_lines = _check_table(path / text_file, problems)
    for ln in text_lines:
        if not ln.value.strip():
            problems.append(f"{text_file}:{ln.lineno}: empty transcript for '{ln.key}'")
    _check_both_ways(problems, utts, {ln.key for ln in text_lines}, text_file)


def _check_utt2dur(path: Path, utts: set[str], problems: list[str]) -> None:
    """utt2dur (when present): one positive number per utterance of utt2spk."""
    if not (path / "utt2dur").is_file():
        return
    dur_lines = _check_table(path / "utt2dur", problems, nfields=2)
    for ln in dur_lines:
        try:
            if float(ln.value) <= 0:
                problems.append(f"utt2dur:{ln.lineno}: non-positive duration for '{ln.key}': {ln.value}")
        except ValueError:
            problems.append(f"utt2dur:{ln.lineno}: not a number for '{ln.key}': '{ln.value}'")
    _check_both_ways(problems, utts, {ln.key for ln in dur_lines}, "utt2dur")


def _check_extra_tables(path: Path, text_file: str, utts: set[str], problems: list[str]) -> None:
    """The extra utterance tables hold no unknown utterance; ``phones`` covers every utterance."""
    for name in EXTRA_UTT_FILES:
        if name != text_file and (path / name).is_file():
            keys = {ln.key for ln in _check_table(path / name, problems)}
            _missing(problems, keys, utts, f"utterances of {name}", "utt2spk")
            if name == "phones":
                _missing(problems, utts, keys, "utterances of utt2spk", name)


def _check_spk2gender(path: Path, speakers: set[str], problems: list[str]) -> None:
    """spk2gender (when present): m or f for every speaker."""
    if not (path / "spk2gender").is_file():
        return
    g_lines = _check_table(path / "spk2gender", problems, nfields=2)
    for ln in g_lines:
        if ln.value not in ("m", "f"):
            problems.append(f"spk2gender:{ln.lineno}: gender of '{ln.key}' must be m or f, got '{ln.value}'")
    _missing(problems, speakers, {ln.key for ln in g_lines}, "speakers", "spk2gender")


def _check_audio(path: Path, wav_scp: dict[str, str], segs: dict[str, Segment], audio_of: dict[str, str]) -> list[str]:
    """Every used recording decodes and has samples; every segment lies within its recording."""
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
