#!/usr/bin/env python3
"""Does an inference-time setting of a LatentLM help? Real voices reading held-out sentences, one setting at a time.

    python bench/lm_knobs.py --field advance_threshold --values 0.5 0.6 0.7 --out /tmp/knobs
    python bench/lm_knobs.py --field max_prompt_seconds --values 3 6 12 --split check --out /tmp/knobs
    python bench/lm_knobs.py --field temperature --values 0.5 0.7 0.9 --out /tmp/knobs \
        --protocol egs/demo/tts1/exp/decode/real_test_voices_dev_text/cross/protocol.tsv
    python bench/lm_knobs.py --field prompt_stats --values 0 1 --voices egs/demo/tts1/data/real_test --num 50 --out /tmp/knobs

For every value of ``--field`` (a field of the model's ``LatentLMConfig`` read at generation time:
``advance_threshold``, ``max_prompt_seconds``, ``stop_threshold``, ...; or a sampler argument of
``TTS.speak``: ``temperature``, ``cfg``, ``steps``, ``candidates``; or a setting of the model dir's
``inference`` section that the backend holds: ``prompt_stats``) the same utterances are synthesized
through the public API (``TTS.speak_to_file``, same seed), then scored like the recipe (``latentspeech
eval``: Whisper tiny.en WER, Resemblyzer SIM to the prompt) and by ``bench/sim_margin.py`` (own-prompt
SIM minus the mean SIM to the other speakers' prompts).

Utterances: ``--num`` real voices of ``../shared/data/librispeech_voices`` each reading one sentence of
``../shared/data/text/dev.txt`` (8-20 words), drawn with a fixed seed. ``--split sel`` and ``--split
check`` draw disjoint voices and sentences: choose on one, confirm on the other, so that a setting is not
tuned to 40 utterances' noise. The draw takes any of the 251 voices, so for an LM trained on the demo
recipe's ``real_train`` (the bundled one is) pass ``--protocol`` instead: the rows (``utt_id``, ``prompt``,
``text``) of a recipe protocol, e.g. stage 7's ``real_test`` voices reading dev sentences, or ``--voices``: a
Kaldi data dir whose first ``--num`` speakers' first utterances are the prompts (the demo recipe's
``data/real_test``), reading sentences drawn as above.
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


def dev_sentences() -> list[str]:
    """The sentences of ``../shared/data/text/dev.txt`` with 8-20 words, in file order."""
    return [s.strip() for s in open(SHARED / "text" / "dev.txt", encoding="utf-8") if 8 <= len(s.split()) <= 20]


def draw(split: str, num: int, seed: int = 123) -> list[tuple[str, str, str]]:
    """(speaker, prompt path, sentence) triples; the two splits share no voice and no sentence."""
    voices = SHARED / "librispeech_voices"
    wav_scp = dict(line.split(None, 1) for line in open(voices / "wav.scp", encoding="utf-8") if line.strip())
    speakers = sorted(wav_scp)
    sentences = dev_sentences()
    rng = random.Random(seed)
    rng.shuffle(speakers)
    rng.shuffle(sentences)
    lo = 0 if split == "sel" else num
    if lo + num > min(len(speakers), len(sentences)):
        sys.exit(f"lm_knobs.py: --num {num} is too large for two disjoint splits")
    return [(spk, str(voices / wav_scp[spk].strip()), sentences[lo + i])
            for i, spk in enumerate(speakers[lo: lo + num])]


SAMPLER_ARGS = ("temperature", "cfg", "steps", "candidates")
BACKEND_FIELDS = ("prompt_stats",)


def read_voices(data_dir: Path, num: int, seed: int) -> list[tuple[str, str, str]]:
    """The first utterance of each of the first ``num`` speakers of a Kaldi data dir as prompts, reading
    dev sentences (:func:`dev_sentences`, shuffled with ``seed``)."""
    from latentspeech.data.kaldi import DataDir

    d = DataDir.load(data_dir)
    sentences = dev_sentences()
    random.Random(seed).shuffle(sentences)
    return [(spk, d.wav_scp[min(d.spk2utt[spk])], sentences[i]) for i, spk in enumerate(sorted(d.spk2utt)[:num])]


def read_protocol(path: Path) -> list[tuple[str, str, str]]:
    """(speaker, prompt path, text) of a recipe protocol's rows; the speaker is the utt id up to its first '-'."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"utt_id", "prompt", "text"} <= set(rows[0]):
        sys.exit(f"lm_knobs.py: {path} is not a protocol table (utt_id, prompt, text)")
    return [(r["utt_id"].split("-", 1)[0], r["prompt"], r["text"]) for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="latentlm-demo", help="LatentLM model dir or bundled name")
    ap.add_argument("--field", required=True, help="LatentLMConfig field to vary")
    ap.add_argument("--values", type=float, nargs="+", required=True)
    ap.add_argument("--split", choices=("sel", "check"), default="sel")
    ap.add_argument("--num", type=int, default=40)
    ap.add_argument("--draw-seed", type=int, default=123, help="seed of the draw of voices and sentences")
    ap.add_argument("--seed", type=int, default=7, help="synthesis seed (the same for every value)")
    ap.add_argument("--protocol", type=Path, default=None,
                    help="a recipe's protocol.tsv whose rows replace the draw (--split, --num, --draw-seed unused)")
    ap.add_argument("--voices", type=Path, default=None,
                    help="a Kaldi data dir: one prompt per speaker (--num of them) instead of the draw")
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
    sampler = args.field in SAMPLER_ARGS
    target = tts.backend if args.field in BACKEND_FIELDS else cfg
    if not sampler and not hasattr(target, args.field):
        sys.exit(f"lm_knobs.py: the model's config has no field {args.field!r} "
                 f"(sampler arguments: {SAMPLER_ARGS}; backend settings: {BACKEND_FIELDS})")
    default = None if sampler else getattr(target, args.field)
    if args.protocol:
        items, tag = read_protocol(args.protocol), args.protocol.parent.name
    elif args.voices:
        items, tag = read_voices(args.voices, args.num, args.draw_seed), args.voices.name
    else:
        items, tag = draw(args.split, args.num, args.draw_seed), f"{args.split}{args.draw_seed}"
    encoder = get_speaker_encoder()
    for value in args.values:
        kwargs = {}
        if sampler:
            kwargs[args.field] = int(value) if args.field in ("steps", "candidates") else value
        else:
            setattr(target, args.field, type(default)(value) if default is not None else value)
        out = Path(args.out) / f"{tag}_{args.field}_{value:g}"
        rows = []
        for i, (spk, prompt, text) in enumerate(items):
            wav = out / "wav" / f"{spk}-{i:03d}.wav"  # speaker id up to the first '-', as sim_margin expects
            wav.parent.mkdir(parents=True, exist_ok=True)
            tts.speak_to_file(wav, text, prompt=prompt, seed=args.seed, **kwargs)
            rows.append(PairRow(f"{spk}-{i:03d}", str(wav), prompt, text))
        pairs = write_pairs(out / "pairs.tsv", rows)
        res = evaluate_pairs(rows, system=f"{args.field}={value:g}")
        res.save(out / "result.json")
        agg = {k: round(float(res.aggregate[k]), 4) for k in ("wer", "cer", "sim", "duration_mean")}
        print(json.dumps({"field": args.field, "value": value, "default": default, "utterances": tag, **agg,
                          "margin": margin(str(pairs), encoder)["margin"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
