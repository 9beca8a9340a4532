"""ASR floor: WER of an ASR model on real speech with human transcripts (a Kaldi data dir), i.e.
the WER that ground-truth audio gets, to put beside every WER of generated speech.

    .venv/bin/python bench/eval_asr_floor.py [--data-dir ../shared/data/librivox_testdata] [--asr whisper-tiny.en]

Writes the pairs file (wav = prompt = the recording) and the result JSON into --work, prints the
summary table and every utterance with errors. Equivalent CLI: `latentspeech eval --pairs
<work>/pairs.tsv --out <work>/result.json --sim none`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from latentspeech.data.kaldi import DataDir
    from latentspeech.eval.protocol import PAIR_COLUMNS, PairRow, evaluate_pairs, write_pairs
    from latentspeech.eval.report import format_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data/librivox_testdata"))
    ap.add_argument("--asr", default="whisper-tiny.en")
    ap.add_argument("--work", default="/tmp/latentspeech_asr_floor")
    args = ap.parse_args()

    d = DataDir.load(args.data_dir)
    rows = []
    for u in d.utterances():
        entry, _, _ = d.recording_entry(u.utt_id)
        path = str((Path(args.data_dir) / entry).resolve())
        rows.append(PairRow(u.utt_id, path, path, u.text))
    pairs = write_pairs(Path(args.work) / "pairs.tsv", rows, PAIR_COLUMNS)
    t0 = time.time()
    result = evaluate_pairs(pairs, asr=args.asr, sim=None, system=f"ground truth ({Path(args.data_dir).name})")
    result.save(Path(args.work) / "result.json")
    print(format_table([result]))
    a = result.aggregate
    print(f"asr {result.asr}: S/D/I {a['substitutions']}/{a['deletions']}/{a['insertions']} of {a['ref_words']} words; "
          f"{a['duration_total']:.1f} s of audio in {time.time() - t0:.1f} s")
    for u in result.utterances:
        if u["wer"] > 0:
            print(f"  {u['utt_id']}: ref '{u['ref_norm']}' | hyp '{u['hyp_norm']}'")


if __name__ == "__main__":
    main()
