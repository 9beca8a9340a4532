"""Fitting the CTC phone recognizer (:mod:`latentspeech.models.recognizer`) and measuring it.

    rec = train_recognizer(sources, vocab, steps=1500)
    save_recognizer(rec, "exp/recognizer/model", {"phone_vocab": vocab.to_dict()})
    phone_error_rate(rec, valid_sources)

The recognizer learns on the LM's own training sources, with Gaussian noise on its input (generated
latents are not exact encodings); :func:`phone_error_rate` reads with greedy CTC. In a
``torch.distributed`` process group rank 0 fits it and the other ranks wait for its weights (as the
aligner, :mod:`.aligner`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from ..data.collate import pad_latents
from ..data.lm_dataset import examples
from ..models.recognizer import PhoneRecognizer, RecognizerConfig, ctc_loss, phone_targets
from ..text.vocab import silent_token_ids
from .common import fit_steps, utterance_sampler
from .distributed import is_rank_zero, share_from_rank_zero

__all__ = ["train_recognizer", "phone_error_rate"]


def _greedy(logp: torch.Tensor, n: int, blank: int) -> list[int]:
    best = logp[:n].argmax(-1).tolist()
    return [t for k, t in enumerate(best) if t != blank and (k == 0 or t != best[k - 1])]


def _edits(hyp: Sequence[int], ref: Sequence[int]) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp`` (jiwer, as the WER of eval/)."""
    import jiwer

    if not ref:
        return len(hyp)
    o = jiwer.process_words(" ".join(map(str, ref)), " ".join(map(str, hyp)))
    return o.substitutions + o.deletions + o.insertions


@torch.no_grad()
def phone_error_rate(rec: PhoneRecognizer, sources, max_utts: int = 200, batch_size: int = 32) -> float:
    """Greedy-CTC phone error rate over (up to ``max_utts`` of) the sources' utterances."""
    dev = next(rec.parameters()).device
    silent = set(rec.cfg.silent_ids)
    items = examples(sources)[:max_utts]
    errors = total = 0
    for k in range(0, len(items), batch_size):
        chunk = items[k : k + batch_size]
        z, lens = pad_latents([sources[si].load(u) for si, u in chunk])
        logp = rec(z.to(dev), lens.to(dev))
        for b, (si, u) in enumerate(chunk):
            ref = phone_targets(sources[si].phones[u], silent)
            errors += _edits(_greedy(logp[b], int(lens[b]), rec.cfg.pad_id), ref)
            total += len(ref)
    return errors / max(1, total)


def train_recognizer(sources, vocab, steps: int = 3000, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                     progress: bool = True, log_every: int = 100, log=print,
                     config: RecognizerConfig | None = None) -> PhoneRecognizer:
    """Fit a :class:`PhoneRecognizer` with CTC on :class:`~latentspeech.data.lm_dataset.LMSource` s
    (normalised latents + phone ids); AdamW with warm-up and a cosine decay, ``steps`` batches."""
    draw, latent_dim = utterance_sampler(sources, "train_recognizer", seed)
    cfg = dataclasses.replace(config or RecognizerConfig(), vocab_size=vocab.size, pad_id=vocab.pad_id,
                              latent_dim=latent_dim, silent_ids=silent_token_ids(vocab))
    rec = PhoneRecognizer(cfg)
    opt = torch.optim.AdamW(rec.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    silent = set(cfg.silent_ids)

    def batch_loss(step: int) -> torch.Tensor:
        batch = draw(batch_size)
        z, lens = pad_latents([sources[si].load(u) for si, u in batch])
        if cfg.input_noise > 0:
            z = z + torch.randn_like(z) * torch.rand(z.shape[0], 1, 1) * cfg.input_noise
        targets = [phone_targets(sources[si].phones[u], silent) or [cfg.pad_id] for si, u in batch]
        dev = next(rec.parameters()).device
        nll = ctc_loss(rec, z.to(dev), lens.to(dev), targets)
        loss = nll / torch.tensor([len(t) for t in targets], device=nll.device)
        return loss[torch.isfinite(loss)].mean()

    if is_rank_zero():  # a small model: rank 0 fits it, the other ranks wait for its weights
        fit_steps(rec, batch_loss, opt, sched, steps, "recognizer", progress, log_every, log)
    return share_from_rank_zero(rec).eval()
