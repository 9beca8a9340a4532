#!/usr/bin/env python3
"""A decode list that pairs the voices of one data dir with the sentences of another (stage 7).

    cross_protocol.py PROMPT_DATA TEXT_DATA OUT_DIR [--num 100] [--seed 0] [--text-file text]

For voices with no second utterance to prompt from (e.g. the one-clip real voices of the demo's
``real_test``), or to hear unseen voices read unseen text: row i takes the i-th speaker of
PROMPT_DATA (cycling; its first utterance in C order is the prompt) and a sentence of TEXT_DATA
drawn with ``--seed``. Prompts are written as 16 kHz WAV under OUT_DIR/prompts (data dirs may hold
pipes and segments). Writes OUT_DIR/protocol.tsv with the columns of `latentspeech eval protocol`
(``utt_id prompt text ref_wav``; no ground truth, so ref_wav is empty). Utterance ids are
``<prompt-speaker>-<text-utt>``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path


def build(prompt_data: str, text_data: str, out_dir: str, num: int = 100, seed: int = 0,
          text_file: str = "text", sample_rate: int = 16000) -> int:
    from latentspeech.audio import save_audio
    from latentspeech.data.kaldi import DataDir, c_sorted
    from latentspeech.errors import DataDirError

    voices = DataDir.load(prompt_data)
    texts = DataDir.load(text_data, text_file=text_file)
    sentences = [u for u in texts.utt_ids if texts.text.get(u, "").strip()]
    if not sentences:
        raise DataDirError(f"{text_data}: no transcripts in {text_file}")
    speakers = voices.speakers
    rng = random.Random(seed)
    picks = rng.sample(sentences, min(num, len(sentences)))
    out = Path(out_dir)
    lines = ["utt_id\tprompt\ttext\tref_wav"]
    for i, text_utt in enumerate(picks):
        spk = speakers[i % len(speakers)]
        prompt_utt = c_sorted(voices.spk2utt.get(spk) or [u for u in voices.utt_ids if voices.utt2spk[u] == spk])[0]
        prompt = out / "prompts" / f"{prompt_utt}.wav"
        if not prompt.is_file():
            save_audio(prompt, voices.load_utterance(prompt_utt, sample_rate), sample_rate)
        text = " ".join(texts.text[text_utt].split())
        lines.append(f"{spk}-{text_utt}\t{prompt.resolve()}\t{text}\t")
    header, rows = lines[0], sorted(lines[1:])
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".protocol.tsv.tmp"
    tmp.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    tmp.replace(out / "protocol.tsv")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompt_data")
    ap.add_argument("text_data")
    ap.add_argument("out_dir")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-file", default="text")
    args = ap.parse_args(argv)
    from latentspeech.errors import LatentSpeechError

    try:
        n = build(args.prompt_data, args.text_data, args.out_dir, args.num, args.seed, args.text_file)
    except LatentSpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out_dir}/protocol.tsv: {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
