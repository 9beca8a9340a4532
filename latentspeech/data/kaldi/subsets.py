"""New data dirs made of some of a dir's utterances: :func:`duration_filter` and :func:`split_data`."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataDirError
from .datadir import DataDir
from .tables import CORE_FILES, EXTRA_UTT_FILES, c_sorted

__all__ = ["duration_filter", "split_data"]


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
