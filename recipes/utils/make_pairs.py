#!/usr/bin/env python3
"""PAIRS.tsv for `latentspeech eval` from a decode list and the synthesized wavs (recipe stage 7).

    make_pairs.py DECODE_LIST WAV_DIR PAIRS.tsv          # utt_id wav prompt text ref_wav
    make_pairs.py DECODE_LIST WAV_DIR WAV_DIR2 ... PAIRS.tsv  # several synthesis draws, scored together
    make_pairs.py --ground-truth DECODE_LIST - PAIRS.tsv # the real recordings as the "system" (gt_wav, else ref_wav)

DECODE_LIST is what `latentspeech eval protocol` writes (tab-separated, header
``utt_id prompt text ref_wav``); the synthesized audio of each line is ``WAV_DIR/<utt_id>.wav``.
Paths are written absolute (relative ones resolve against the decode list's folder when the
file exists there, else against the current directory). A missing output is an error.
With several WAV_DIRs (stage 7's ``--synth-draws N``: the same list synthesized with N seeds) each
line appears once per folder, its id suffixed ``.draw<k>`` in folder order, so that one evaluation
pools the draws (WER over all of them; a single draw per utterance moves WER by ~0.05 on 120 utts).
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


def make_pairs(decode_list: str | Path, wav_dir: str | Path | list[str | Path] | None, out: str | Path,
               ground_truth: bool = False) -> int:
    """Write the pairs file; returns its number of rows (raises SystemExit naming a missing wav).

    ``wav_dir`` may be a list of folders (synthesis draws): each line once per folder, ids ``<utt>.draw<k>``."""
    decode_list = Path(decode_list)
    base = decode_list.parent
    lines = read_tsv(decode_list)
    wav_dirs = [wav_dir] if ground_truth or not isinstance(wav_dir, (list, tuple)) else list(wav_dir)
    rows = []
    for k, wdir in enumerate(wav_dirs):
        missing = []
        for r in lines:
            ref = _abs(r.get("ref_wav") or "", base)
            if ground_truth:
                # gt_wav: the recording of exactly the scored text (prefix-3s: the part after the prompt)
                wav = _abs(r.get("gt_wav") or "", base) or ref
                if not wav:
                    raise SystemExit(f"error: {decode_list}: '{r['utt_id']}' has no ref_wav for the ground-truth row")
            else:
                wav_path = Path(wdir) / f"{r['utt_id']}.wav"
                wav = str(wav_path.resolve())
                if not wav_path.is_file():
                    missing.append(r["utt_id"])
            utt = r["utt_id"] if len(wav_dirs) == 1 else f"{r['utt_id']}.draw{k}"
            rows.append([utt, wav, _abs(r["prompt"], base), " ".join(r["text"].split()), ref])
        if missing:
            raise SystemExit(f"error: {len(missing)} utterance(s) not synthesized in {wdir} (e.g. {missing[0]})")
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
    ap.add_argument("wav_dir", nargs="+", help="folder(s) of <utt_id>.wav, one per synthesis draw ('-' with --ground-truth)")
    ap.add_argument("out")
    args = ap.parse_args(argv)
    if args.ground_truth and args.wav_dir != ["-"]:
        ap.error("--ground-truth takes '-' in place of the wav folder")
    wav_dirs = args.wav_dir[0] if len(args.wav_dir) == 1 else args.wav_dir
    n = make_pairs(args.decode_list, None if args.ground_truth else wav_dirs, args.out, args.ground_truth)
    print(f"{args.out}: {n} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
