#!/usr/bin/env python3
"""How intelligible are a LatentLM's per-frame predictions when alignment and history are right?

    python bench/lm_teacher_forced.py --model egs/demo/tts1/exp/latentlm/model \
        --data egs/demo/tts1/dump/raw/dev --latents egs/demo/tts1/dump/latents/dev \
        --out /tmp/tf --temperature 0.7 0 [--num 30] [--steps 10]

"Ground-truth aligned" synthesis: every utterance is run teacher-forced (its own encoded latents as
history, its aligner durations as the pointer's path, another utterance of the speaker as prompt, as
in training) and the diffusion head samples each token from the resulting state (``--steps`` sampler
steps, each ``--temperature``). The sampled latents and the encoded ones (the codec's resynthesis)
go through the model's nested codec and are scored by ``latentspeech eval`` (Whisper tiny.en WER
against the transcript; SIM of each output to the resynthesis). Free-running decoding adds its own
drift and its own durations on top of this, so: teacher-forced WER close to the resynthesis →
generation errors come from drift or durations; close to free-running WER → from the per-frame
prediction itself. Needs a latent store with a ``durations`` file (pointer-mode models).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="LatentLM model dir or bundled name (pointer mode)")
    ap.add_argument("--data", required=True, help="Kaldi data dir (text, phones, utt2spk)")
    ap.add_argument("--latents", required=True, help="the latent store of --data made with the model's codec, "
                    "with its durations file")
    ap.add_argument("--out", required=True, help="folder for the wavs, pairs lists and results")
    ap.add_argument("--num", type=int, default=30, help="utterances (a fixed random choice)")
    ap.add_argument("--min-seconds", type=float, default=4.0)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--temperature", type=float, nargs="+", default=[0.7])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import soundfile as sf
    import torch

    from latentspeech.models.codec.model import load_codec
    from latentspeech.data.collate import collate_lm
    from latentspeech.data.lm_dataset import LMDataset, LMSource
    from latentspeech.eval import PairRow, evaluate_pairs, write_pairs
    from latentspeech.models.diffusion import guided, sample
    from latentspeech.models.latentlm import unpatchify
    from latentspeech.text import PhoneVocab
    from latentspeech.models.latentlm import load_latentlm

    torch.set_num_threads(1)
    model, md = load_latentlm(args.model)
    if model.pointer is None:
        sys.exit("lm_teacher_forced.py: the model is not in pointer mode (no per-phone durations to force)")
    codec = load_codec(md.path / "codec")
    cfg = model.cfg
    vocab = PhoneVocab.from_dict(md.meta.get("phone_vocab"))  # the model's own phone inventory
    src = LMSource.from_dirs(args.data, args.latents, vocab, durations=True)
    ds = LMDataset([src], cfg.frame_rate, (2.0, 4.0), max_frames=10**9, single_utt_prompt="self_crop", seed=args.seed)
    text = dict(line.rstrip("\n").split(" ", 1) for line in open(Path(args.data) / "text", encoding="utf-8"))
    lo, hi = args.min_seconds * cfg.frame_rate, args.max_seconds * cfg.frame_rate
    chosen = [i for i, (_, utt) in enumerate(ds.items) if lo <= src.frames(utt) <= hi]
    random.Random(args.seed).shuffle(chosen)
    chosen = chosen[: args.num]
    out = Path(args.out)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    systems = {"resynthesis": []} | {f"teacher_forced_t{t:g}": [] for t in args.temperature}
    sr = codec.cfg.sample_rate
    for i in chosen:
        ex = ds[i]
        utt = ex["utt_id"]
        batch = collate_lm([ex], pad_id=vocab.pad_id)
        n = int(batch.target_lens[0])
        with torch.no_grad():
            cond, target = model.head_conditions(batch, conditional=True)
            latents = {"resynthesis": batch.target[0, :n]}
            for t in args.temperature:
                g = torch.Generator().manual_seed(args.seed)
                z = sample(guided(model.head, cond, None, 1.0), tuple(target.shape), model.head.schedule,
                           cfg.prediction, steps=args.steps, temperature=t, generator=g)
                latents[f"teacher_forced_t{t:g}"] = unpatchify(z, cfg.patch_size)[:n]
            for name, z in latents.items():
                wav = codec.decode(codec.denormalize(z.T[None]))[0].numpy()
                sf.write(wav_dir / f"{utt}.{name}.wav", wav, sr)
        for name in systems:  # SIM against the resynthesis: how much of the voice the prediction keeps
            systems[name].append(PairRow(utt, str(wav_dir / f"{utt}.{name}.wav"),
                                         str(wav_dir / f"{utt}.resynthesis.wav"), text[utt]))
    print(f"{len(chosen)} utterances of {args.data}; model {md.path}", file=sys.stderr)
    table = {}
    for name, rows in systems.items():
        write_pairs(out / f"{name}.tsv", rows)
        res = evaluate_pairs(rows, system=name)
        res.save(out / f"{name}.json")
        table[name] = {k: round(float(res.aggregate[k]), 4) for k in ("wer", "cer", "sim") if res.aggregate.get(k) is not None}
        print(json.dumps({"system": name, **table[name]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
