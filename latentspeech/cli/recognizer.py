"""CLI: ``latentspeech recognizer --data DIR --latents DIR ... --out EXP_DIR [--attach MODEL_DIR]``.

Trains the CTC phone recognizer of :mod:`latentspeech.models.recognizer` on (data dir, latent store)
pairs (the LatentLM's training sets), saves it under ``EXP_DIR/model`` and prints its phone error
rate on the ``--valid-*`` pairs. ``--attach MODEL_DIR`` copies it into a LatentLM model dir as
``recognizer/``: that model then draws ``--candidates`` candidates per sentence and keeps the one the
recognizer reads best (``--candidates`` of ``latentspeech synthesize`` overrides it per call).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("recognizer", help="train the phone recognizer that picks among LatentLM candidates",
                       description="Pairs --data DIR --latents DIR (repeatable): a Kaldi data dir with 'phones' "
                                   "and its latent store (the LatentLM's training sets).")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="Kaldi data dir (repeatable)")
    p.add_argument("--latents", action="append", required=True, metavar="DIR", help="its latent store (repeatable)")
    p.add_argument("--valid-data", action="append", default=[], metavar="DIR", help="held-out data dir (PER)")
    p.add_argument("--valid-latents", action="append", default=[], metavar="DIR", help="its latent store")
    p.add_argument("--out", required=True, metavar="EXP_DIR", help="the recognizer model dir goes to EXP_DIR/model")
    p.add_argument("--attach", metavar="MODEL_DIR", help="then copy it into this LatentLM model dir as recognizer/")
    p.add_argument("--candidates", type=int, default=2, metavar="N",
                   help="candidates per sentence a model holding it draws by default (default 2: on one CPU "
                        "thread a batch of two costs about what one row does)")
    p.add_argument("--steps", type=int, default=1500, metavar="N", help="training batches (default 1500)")
    p.add_argument("--batch-size", type=int, default=32, metavar="B")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=2, metavar="N", help="torch CPU threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
    p.set_defaults(func=run)


def attach_recognizer(recognizer_dir, model_dir):
    """Copy a recognizer model dir into a LatentLM model dir as ``recognizer/`` (replacing one there),
    after checking that both were trained with the same phone inventory."""
    import shutil
    import tempfile
    from pathlib import Path

    from ..checkpoint import load_model_dir
    from ..errors import CheckpointError
    from ..models.recognizer import RECOGNIZER, load_recognizer
    from ..text import PhoneVocab

    lm = load_model_dir(model_dir, kind="latentlm")
    try:
        vocab = PhoneVocab.from_dict(lm.meta.get("phone_vocab"))
    except Exception as e:  # ConfigError: incompatible or missing vocabulary
        raise CheckpointError(f"{lm.path}: {e}") from None
    load_recognizer(recognizer_dir, vocab)  # one-line CheckpointError on another inventory
    dest = Path(model_dir) / RECOGNIZER
    tmp = Path(tempfile.mkdtemp(prefix=f".{RECOGNIZER}.", dir=model_dir))
    shutil.rmtree(tmp)
    shutil.copytree(recognizer_dir, tmp, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from ..data.lm_dataset import LMSource
    from ..errors import ConfigError
    from ..models.recognizer import RecognizerConfig, save_recognizer
    from ..train.distributed import is_rank_zero
    from ..train.recognizer import phone_error_rate, train_recognizer
    from ..text import PhoneVocab
    from .common import data_pairs

    if not 1 <= args.candidates <= 16:
        raise ConfigError(f"--candidates must be between 1 and 16, got {args.candidates}")
    if args.steps < 1 or args.batch_size < 1:
        raise ConfigError("--steps and --batch-size must be at least 1")
    pairs = data_pairs(args.data, args.latents, "training sets")
    valid = data_pairs(args.valid_data, args.valid_latents, "validation sets") if args.valid_data else []
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    vocab = PhoneVocab()
    sources = [LMSource.from_dirs(d, z, vocab) for d, z in pairs]
    config = dataclasses.replace(RecognizerConfig(), candidates=args.candidates)
    rec = train_recognizer(sources, vocab, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                           progress=not args.no_progress, config=config)
    if not is_rank_zero():  # in a process group every rank holds rank 0's recognizer; rank 0 writes
        return 0
    meta = {"phone_vocab": vocab.to_dict(), "steps": args.steps, "train_sets": [d for d, _ in pairs]}
    if valid:
        per = phone_error_rate(rec, [LMSource.from_dirs(d, z, vocab) for d, z in valid], max_utts=500)
        meta["valid_per"] = round(per, 4)
        print(f"phone error rate on {', '.join(d for d, _ in valid)}: {per:.3f} (greedy CTC, up to 500 utterances)")
    out = save_recognizer(rec, Path(args.out) / "model", meta)
    print(f"saved recognizer {out}")
    if args.attach:
        print(f"attached as {attach_recognizer(out, args.attach)} (draws {args.candidates} candidates per sentence)")
    return 0
