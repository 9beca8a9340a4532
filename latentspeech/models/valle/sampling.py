"""Drawing discrete codes from logits: temperature, top-k, top-p, and VALL-E 2's repetition-aware sampling.

Every draw takes an optional ``torch.Generator``, so a seeded generation is reproducible.
"""

from __future__ import annotations

import torch

__all__ = ["sample_logits", "repetition_aware_sample"]


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one id per row of ``logits [B, V]``; ``temperature <= 0`` means greedy (argmax).

    ``top_k > 0`` keeps the k most likely ids; ``top_p < 1`` keeps the smallest set of ids whose
    probability mass reaches ``top_p`` (nucleus sampling; the most likely id always stays).
    Rows may contain ``-inf`` (forbidden ids).
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely ids
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def repetition_aware_sample(logits: torch.Tensor, history: torch.Tensor, *, window: int = 0, threshold: float = 0.1,
                            temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                            exempt: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One id per row of ``logits [B, V]``, drawn as VALL-E 2's repetition-aware sampling does.

    The id is first drawn with :func:`sample_logits` (``temperature``, ``top_k``, ``top_p``). When
    it fills more than ``threshold`` of the last ``window`` ids of its row of ``history [B, t]``
    (the ids drawn so far), it is redrawn from the whole distribution (no top-k/top-p, never
    greedy), which breaks the loops that filtered sampling falls into. ``window <= 0`` or an
    empty history turns the redraw off; an id equal to ``exempt`` (the end token) is never redrawn.
    """
    tok = sample_logits(logits, temperature, top_k, top_p, generator)
    if window <= 0 or history.shape[1] == 0:
        return tok
    repeats = (history[:, -window:] == tok[:, None]).sum(dim=1).float() / window
    redo = repeats > threshold
    if exempt is not None:
        redo &= tok != exempt
    if bool(redo.any()):
        tok[redo] = sample_logits(logits[redo], max(temperature, 1e-5), generator=generator)
    return tok
