#!/usr/bin/env python3
"""PAIRS.tsv for `latentspeech eval` from a decode list and the synthesized wavs (recipe stage 7).

    make_pairs.py DECODE_LIST WAV_DIR PAIRS.tsv          # utt_id wav prompt text ref_wav
    make_pairs.py --ground-truth DECODE_LIST - PAIRS.tsv # the real recordings as the "system"

DECODE_LIST is what `latentspeech eval protocol` writes (tab-separated, header
``utt_id prompt text ref_wav``); the synthesized audio of each line is ``WAV_DIR/<utt_id>.wav``.
Paths are written absolute (relative ones resolve against the decode list's folder when the
file exists there, else against the current directory). A missing output is an error.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

PAIR_COLUMNS = ["utt_id", "wav", "prompt", "text", "ref_wav"]


def _abs(value: str, base: Path) -> str:
    if not value:
        return ""
    p = Path(value)
    if not p.is_absolute() and (base / p).exists():
        p = base / p
    return str(p.resolve())


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def make_pairs(decode_list: str | Path, wav_dir: str | Path | None, out: str | Path, ground_truth: bool = False) -> int:
    """Write the pairs file; returns its number of rows (raises SystemExit naming a missing wav)."""
    decode_list = Path(decode_list)
    base = decode_list.parent
    rows, missing = [], []
    for r in read_tsv(decode_list):
        ref = _abs(r.get("ref_wav") or "", base)
        if ground_truth:
            wav = ref
            if not wav:
                raise SystemExit(f"error: {decode_list}: '{r['utt_id']}' has no ref_wav for the ground-truth row")
        else:
            wav_path = Path(wav_dir) / f"{r['utt_id']}.wav"
            wav = str(wav_path.resolve())
            if not wav_path.is_file():
                missing.append(r["utt_id"])
        rows.append([r["utt_id"], wav, _abs(r["prompt"], base), " ".join(r["text"].split()), ref])
    if missing:
        raise SystemExit(f"error: {len(missing)} utterance(s) not synthesized in {wav_dir} (e.g. {missing[0]})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(PAIR_COLUMNS) + "\n")
        for row in rows:
            f.write("\t".join(c.replace("\t", " ") for c in row) + "\n")
    tmp.replace(out)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ground-truth", action="store_true", help="use each line's ref_wav as the output")
    ap.add_argument("decode_list")
    ap.add_argument("wav_dir", help="folder of <utt_id>.wav ('-' with --ground-truth)")
    ap.add_argument("out")
    args = ap.parse_args(argv)
    n = make_pairs(args.decode_list, None if args.ground_truth else args.wav_dir, args.out, args.ground_truth)
    print(f"{args.out}: {n} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
