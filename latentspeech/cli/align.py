"""CLI: ``latentspeech align --data DIR --latents DIR ... --out EXP_DIR``: per-token phone durations.

Fits the MAS aligner of :mod:`latentspeech.models.aligner` on every given (data dir, latent store)
pair, then writes ``<latent store>/durations`` for each: what a LatentLM with
``alignment: pointer`` trains on. The aligner itself is saved under ``EXP_DIR/model``.
``--model DIR`` instead aligns with an aligner trained before (no training), e.g. a set added to a
corpus whose model trained on the older sets' durations, which a new aligner would change.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("align", help="phone durations for LatentLM's pointer mode (MAS aligner)",
                       description="Pairs --data DIR --latents DIR (repeatable): a Kaldi data dir with 'phones' "
                                   "and its latent store. Writes <latents>/durations for every pair.")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="Kaldi data dir (repeatable)")
    p.add_argument("--latents", action="append", required=True, metavar="DIR", help="its latent store (repeatable)")
    p.add_argument("--out", metavar="EXP_DIR", help="where the aligner model dir goes (training)")
    p.add_argument("--model", metavar="DIR", help="align with this trained aligner (EXP_DIR/model of an earlier run) "
                                                  "instead of training one")
    p.add_argument("--steps", type=int, default=1000, metavar="N", help="training batches (default 1000)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines instead)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from ..data.lm_dataset import LMSource
    from ..errors import ConfigError
    from ..data.durations import DURATIONS
    from ..models.aligner import load_aligner, save_aligner
    from ..train.aligner import align_source, train_aligner
    from ..train.distributed import is_rank_zero
    from ..text import PhoneVocab
    from .common import data_pairs

    if (args.out is None) == (args.model is None):
        raise ConfigError("give --out EXP_DIR (train an aligner) or --model DIR (use a trained one), not both or neither")
    pairs = data_pairs(args.data, args.latents, "aligned sets")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    vocab = PhoneVocab()
    if args.model is not None:
        aligner = load_aligner(args.model, vocab)
    sources = [LMSource.from_dirs(d, z, vocab) for d, z in pairs]
    if args.model is None:
        aligner = train_aligner(sources, vocab, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                progress=not args.no_progress)
        if is_rank_zero():  # in a process group every rank holds rank 0's aligner; rank 0 writes
            out = save_aligner(aligner, Path(args.out) / "model", {"phone_vocab": vocab.to_dict(), "steps": args.steps})
            print(f"saved aligner {out}")
    for src, z in zip(sources, args.latents):
        counts = align_source(aligner, src, vocab, Path(z) / DURATIONS, progress=not args.no_progress)
        if is_rank_zero():
            print(f"wrote {Path(z) / DURATIONS}: {counts['aligned']} utterances aligned, {counts['skipped']} skipped "
                  f"(more sounding phones than frames)")
    return 0
