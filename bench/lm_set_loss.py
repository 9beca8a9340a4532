#!/usr/bin/env python3
"""Which data does a LatentLM generalise to? Its teacher-forced losses on several sets, as in validation.

    python bench/lm_set_loss.py --checkpoint egs/demo/tts1/exp/latentlm_continue3/checkpoints/last.ckpt \
        --config egs/demo/tts1/exp/latentlm_continue3.yaml \
        egs/demo/tts1/dump/raw/train:egs/demo/tts1/dump/latents/train \
        egs/demo/tts1/dump/raw/train_extra:egs/demo/tts1/dump/latents/train_extra ...

Each ``DATA:LATENTS`` pair (a Kaldi data dir with ``phones`` and its latent store with ``durations``)
is read like the validation set of ``latentspeech train latentlm`` (prompts from another utterance of
the speaker, no CFG drop, a fixed noise draw per batch) and every ``--every``-th batch is scored by the
model's training loss: the diffusion loss per value (``diff``) and the pointer's advance BCE
(``advance``, ``advance_acc``). Comparing a model's training set with the same voices reading
other sentences and with other voices says what it has memorised: sentences or voices.

The checkpoint is a Lightning training checkpoint (``OUT/checkpoints/*.ckpt``, trusted: written by
this machine's own training run), not an exported model dir, whose head may be guidance-distilled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="Lightning checkpoint of `latentspeech train latentlm`")
    ap.add_argument("--config", required=True, help="the training config it was trained with")
    ap.add_argument("sets", nargs="+", metavar="DATA:LATENTS")
    ap.add_argument("--every", type=int, default=3, help="score every N-th batch (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from latentspeech.config import from_dict, load_yaml
    from latentspeech.data.lm_dataset import LMDataset, LMSource
    from latentspeech.text import PhoneVocab
    from latentspeech.train.latentlm import LatentLMDataModule, LatentLMModule, LatentLMTrainConfig

    torch.set_num_threads(args.threads)
    cfg = from_dict(LatentLMTrainConfig, load_yaml(args.config))
    module = LatentLMModule.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    model = module.model
    vocab = PhoneVocab()
    for pair in args.sets:
        data, _, latents = pair.partition(":")
        if not latents:
            ap.error(f"expected DATA:LATENTS, got '{pair}'")
        src = LMSource.from_dirs(data, latents, vocab, model.cfg.alignment == "pointer")
        ds = LMDataset([src], model.cfg.frame_rate, cfg.data.prompt_seconds,
                       max_frames=round(cfg.data.max_target_seconds * model.cfg.frame_rate),
                       single_utt_prompt="self_crop", seed=cfg.trainer.seed + 1)
        loader = LatentLMDataModule(None, ds, cfg, vocab.pad_id).val_dataloader()
        sums: dict[str, float] = {}
        n, t0 = 0, time.time()
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i % args.every:
                    continue
                out = model.loss(batch, cfg_drop=False, generator=torch.Generator().manual_seed(i))
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(batch)
                n += len(batch)
        row = {"set": data, "utterances": n, **{k: round(v / max(n, 1), 4) for k, v in sums.items()},
               "seconds": round(time.time() - t0, 1)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
