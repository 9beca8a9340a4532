#!/usr/bin/env python3
"""Does an inference-time setting of a LatentLM help? Real voices reading held-out sentences, one setting at a time.

    python bench/lm_knobs.py --field advance_threshold --values 0.5 0.6 0.7 --out /tmp/knobs
    python bench/lm_knobs.py --field max_prompt_seconds --values 3 6 12 --split check --out /tmp/knobs

For every value of ``--field`` (a field of the model's ``LatentLMConfig`` read at generation time:
``advance_threshold``, ``max_prompt_seconds``, ``stop_threshold``, ...) the same utterances are
synthesized through the public API (``TTS.speak_to_file``, same seed), then scored like the recipe
(``latentspeech eval``: Whisper tiny.en WER, Resemblyzer SIM to the prompt) and by
``bench/sim_margin.py`` (own-prompt SIM minus the mean SIM to the other speakers' prompts).

Utterances: ``--num`` real voices of ``../shared/data/librispeech_voices`` (none of them in any LM's
training data) each reading one sentence of ``../shared/data/text/dev.txt`` (8-20 words), drawn with a
fixed seed. ``--split sel`` and ``--split check`` draw disjoint voices and sentences: choose on one,
confirm on the other, so that a setting is not tuned to 40 utterances' noise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LATENTSPEECH_SHARED", REPO.parent / "shared")) / "data"


def draw(split: str, num: int, seed: int = 123) -> list[tuple[str, str, str]]:
    """(speaker, prompt path, sentence) triples; the two splits share no voice and no sentence."""
    voices = SHARED / "librispeech_voices"
    wav_scp = dict(line.split(None, 1) for line in open(voices / "wav.scp", encoding="utf-8") if line.strip())
    speakers = sorted(wav_scp)
    sentences = [s.strip() for s in open(SHARED / "text" / "dev.txt", encoding="utf-8") if 8 <= len(s.split()) <= 20]
    rng = random.Random(seed)
    rng.shuffle(speakers)
    rng.shuffle(sentences)
    lo = 0 if split == "sel" else num
    if lo + num > min(len(speakers), len(sentences)):
        sys.exit(f"lm_knobs.py: --num {num} is too large for two disjoint splits")
    return [(spk, str(voices / wav_scp[spk].strip()), sentences[lo + i])
            for i, spk in enumerate(speakers[lo: lo + num])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="latentlm-demo", help="LatentLM model dir or bundled name")
    ap.add_argument("--field", required=True, help="LatentLMConfig field to vary")
    ap.add_argument("--values", type=float, nargs="+", required=True)
    ap.add_argument("--split", choices=("sel", "check"), default="sel")
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--draw-seed", type=int, default=123, help="seed of the draw of voices and sentences")
    ap.add_argument("--seed", type=int, default=7, help="synthesis seed (the same for every value)")
    ap.add_argument("--out", required=True, help="folder for wavs, pairs lists and results")
    args = ap.parse_args()

    import torch

    from latentspeech import TTS
    from latentspeech.eval import PairRow, evaluate_pairs, get_speaker_encoder, write_pairs

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sim_margin import margin

    torch.set_num_threads(1)
    tts = TTS.from_pretrained(args.model)
    cfg = tts.backend.model.cfg
    if not hasattr(cfg, args.field):
        sys.exit(f"lm_knobs.py: the model's config has no field {args.field!r}")
    default = getattr(cfg, args.field)
    items = draw(args.split, args.num, args.draw_seed)
    encoder = get_speaker_encoder()
    for value in args.values:
        setattr(cfg, args.field, type(default)(value) if default is not None else value)
        out = Path(args.out) / f"{args.split}{args.draw_seed}_{args.field}_{value:g}"
        rows = []
        for i, (spk, prompt, text) in enumerate(items):
            wav = out / "wav" / f"{spk}-{i:03d}.wav"  # speaker id up to the first '-', as sim_margin expects
            wav.parent.mkdir(parents=True, exist_ok=True)
            tts.speak_to_file(wav, text, prompt=prompt, seed=args.seed)
            rows.append(PairRow(f"{spk}-{i:03d}", str(wav), prompt, text))
        pairs = write_pairs(out / "pairs.tsv", rows)
        res = evaluate_pairs(rows, system=f"{args.field}={value:g}")
        res.save(out / "result.json")
        agg = {k: round(float(res.aggregate[k]), 4) for k in ("wer", "cer", "sim", "duration_mean")}
        print(json.dumps({"field": args.field, "value": value, "default": default, "split": args.split, **agg,
                          "margin": margin(str(pairs), encoder)["margin"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
