#!/usr/bin/env python3
"""Speed-perturbed copies of a Kaldi data dir: each factor a new set of voices (Kaldi's ``sp`` prefix).

    perturb_speed.py SRC_DIR OUT_DIR [--factors 0.9 1.1] [--wav-dir OUT_DIR/wav]

A speed factor ``f`` plays every clip ``f`` times faster, raising pitch and formants together
(sox ``speed``, as Kaldi's ``perturb_data_dir_speed.sh``): a shorter vocal tract, so for a speaker
model each factor is a new voice. Every copy becomes utterance ``sp<f>-<utt>`` of speaker
``sp<f>-<spk>``; ``text``, ``phones`` and ``spk2gender`` are carried over, ``utt2dur`` is divided by
``f``. The unperturbed clips are not copied (list SRC_DIR next to OUT_DIR for those).

Used by the demo recipe to give the LM more real voices than ``real_train``'s 200 (see
``egs/demo/tts1/conf/latentlm_speaker_sp.yaml``). Writes atomically per file; a rerun skips clips already
written.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from latentspeech.data.kaldi import write_table
from latentspeech.data.kaldi.datadir import spk2utt_from_utt2spk
from latentspeech.data.kaldi.tables import read_dict

CARRIED = ("text", "phones")


def perturb_clip(src: Path, dst: Path, factor: float) -> None:
    """Write ``src`` sped up by ``factor`` (sox ``speed``; same rate, 16-bit mono) to ``dst``."""
    if dst.is_file():
        return
    tmp = dst.with_name(f".{dst.name}.tmp.wav")
    cmd = ["sox", "-q", "-D", str(src), "-c", "1", "-b", "16", str(tmp), "speed", f"{factor:g}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"perturb_speed: sox failed on {src}: {last}")
    tmp.replace(dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.1])
    ap.add_argument("--wav-dir", type=Path, default=None, help="where the clips go (default OUT/wav)")
    args = ap.parse_args(argv)
    if any(f <= 0 or f == 1.0 for f in args.factors):
        ap.error("--factors must be positive and not 1")
    wav_dir = (args.wav_dir or args.out / "wav").resolve()
    wav_dir.mkdir(parents=True, exist_ok=True)
    wavs, utt2spk = read_dict(args.src / "wav.scp"), read_dict(args.src / "utt2spk")
    durs = read_dict(args.src / "utt2dur") if (args.src / "utt2dur").is_file() else {}
    carried = {n: read_dict(args.src / n) for n in CARRIED if (args.src / n).is_file()}
    gender = read_dict(args.src / "spk2gender") if (args.src / "spk2gender").is_file() else {}
    out: dict[str, dict[str, object]] = {n: {} for n in ("wav.scp", "utt2spk", "utt2dur", *carried, "spk2gender")}
    for utt, entry in sorted(wavs.items()):
        src = Path(entry) if Path(entry).is_absolute() else args.src / entry
        if not src.is_file():
            raise SystemExit(f"perturb_speed: {utt}: {entry!r} is not an audio file (only wav.scp entries that "
                             "are file paths are supported, not pipes or ark offsets)")
        for f in args.factors:
            tag = f"sp{f:g}"
            dst = wav_dir / f"{tag}-{utt}.wav"
            perturb_clip(src, dst, f)
            key, spk = f"{tag}-{utt}", f"{tag}-{utt2spk[utt]}"
            out["wav.scp"][key], out["utt2spk"][key] = str(dst), spk
            if utt in durs:
                out["utt2dur"][key] = round(float(durs[utt]) / f, 4)
            for n, table in carried.items():
                out[n][key] = table[utt]
            if utt2spk[utt] in gender:
                out["spk2gender"][spk] = gender[utt2spk[utt]]
    spk2utt = spk2utt_from_utt2spk(out["utt2spk"])
    out["spk2utt"] = spk2utt
    for name, rows in out.items():
        if rows:
            write_table(args.out / name, rows)
    print(f"perturb_speed: {len(out['wav.scp'])} utterances, {len(spk2utt)} speakers in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
