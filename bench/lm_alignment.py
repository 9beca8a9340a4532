#!/usr/bin/env python3
"""Text-to-speech attention diagnostics of a LatentLM model dir on a data dir (teacher-forced).

    python bench/lm_alignment.py MODEL_DIR --data egs/demo/tts1/dump/raw/dev --latents egs/demo/tts1/dump/latents/dev

Prints, per layer (heads averaged), the share of the speech frames' attention that goes to phones
(``phone_mass``), how peaked it is over the phones (``focus``; 1/L when uniform), the share of
monotonic steps of the argmax phone and the phone coverage (see ``LatentLM.alignment``), plus the
teacher-forced diffusion loss. A learnt alignment shows high focus + monotonic + coverage in a layer.
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True, help="Kaldi data dir with phones")
    ap.add_argument("--latents", required=True, help="its latent store")
    ap.add_argument("--num", type=int, default=16, help="utterances (every 10th of the set)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from latentspeech.data.collate import collate_lm
    from latentspeech.data.lm_dataset import LMDataset, LMSource
    from latentspeech.text import PhoneVocab
    from latentspeech.models.latentlm import load_latentlm

    model, md = load_latentlm(args.model)
    src = LMSource.from_dirs(args.data, args.latents, PhoneVocab())
    ds = LMDataset([src], model.cfg.frame_rate, (2.0, 4.0), max_frames=int(10 * model.cfg.frame_rate), seed=0)
    batch = collate_lm([ds[i] for i in range(0, min(len(ds), 10 * args.num), 10)])
    with torch.no_grad():
        stats = model.alignment(batch)
        loss = model.loss(batch, cfg_drop=False, generator=torch.Generator().manual_seed(0))
    out = {k: [round(x, 3) for x in v] for k, v in stats.items() if k != "paths"}
    out["diff"] = round(float(loss["diff"]), 4)
    out["train_steps"] = (md.meta or {}).get("train_steps")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
