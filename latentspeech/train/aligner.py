"""Fitting the MAS phone aligner (:mod:`latentspeech.models.aligner`) and writing the durations it finds.

    aligner = train_aligner([source], vocab, steps=1000)    # sources: LMSource (latents + phone ids)
    align_source(aligner, source, vocab, "dump/latents/train/durations")

Training alternates the two halves of MAS: the best monotonic path under the current aligner, then a
gradient step that fits the aligner's per-token means to the latents along that path.

In a ``torch.distributed`` process group (a script or job that runs these on several ranks) rank 0
fits the aligner and the other ranks wait for its weights, so every rank holds the same aligner and
the durations do not depend on the number of processes; rank 0 alone aligns and writes the files.
"""

from __future__ import annotations

import dataclasses
import math
import os

import torch

from ..data.durations import write_durations
from ..models.aligner import AlignerConfig, PhoneAligner, align_batch
from ..text.vocab import silent_token_ids
from .common import fit_steps, utterance_sampler
from .distributed import broadcast_from_rank_zero, is_rank_zero, share_from_rank_zero

__all__ = ["train_aligner", "align_source"]


def train_aligner(sources, vocab, steps: int = 3000, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                  progress: bool = True, log_every: int = 100, log=print,
                  config: AlignerConfig | None = None) -> PhoneAligner:
    """Fit a :class:`PhoneAligner` by MAS on :class:`~latentspeech.data.lm_dataset.LMSource` s
    (normalised latents + phone ids); Adam with a cosine decay, ``steps`` batches of ``batch_size``."""
    draw, latent_dim = utterance_sampler(sources, "train_aligner", seed)
    cfg = dataclasses.replace(config or AlignerConfig(), vocab_size=vocab.size, pad_id=vocab.pad_id,
                              latent_dim=latent_dim)
    aligner = PhoneAligner(cfg)
    opt = torch.optim.Adam(aligner.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    silent = set(silent_token_ids(vocab))

    def batch_loss(step: int) -> torch.Tensor:
        batch = draw(batch_size)
        return align_batch(aligner, [sources[si].phones[u] for si, u in batch],
                           [sources[si].load(u) for si, u in batch], silent)[0]

    if is_rank_zero():  # a small model: rank 0 fits it, the other ranks wait for its weights
        fit_steps(aligner, batch_loss, opt, sched, steps, "aligner", progress, log_every, log)
    return share_from_rank_zero(aligner).eval()


@torch.no_grad()
def align_source(aligner: PhoneAligner, source, vocab, path: str | os.PathLike, batch_size: int = 32,
                 progress: bool = True) -> dict[str, int]:
    """Align every utterance of ``source`` and write its ``durations`` file to ``path`` (atomically).
    Returns counts: ``aligned`` and ``skipped`` (more sounding tokens than frames). In a process
    group rank 0 aligns and writes; the other ranks wait and return its counts."""
    from tqdm.auto import tqdm

    if not is_rank_zero():
        return broadcast_from_rank_zero(None)

    silent = set(silent_token_ids(vocab))
    utts = [u for u in sorted(source.phones) if u in source.latents]
    durations, skipped = {}, 0
    for i in tqdm(range(0, len(utts), batch_size), desc="align", disable=not progress):
        chunk = utts[i : i + batch_size]
        _, durs = align_batch(aligner, [source.phones[u] for u in chunk], [source.load(u) for u in chunk], silent)
        for u, d in zip(chunk, durs):
            if d is None:
                skipped += 1
            else:
                durations[u] = d.tolist()
    write_durations(path, durations)
    return broadcast_from_rank_zero({"aligned": len(durations), "skipped": skipped})
