"""Pointer mode (``alignment="pointer"``): every speech token is told which phone it says.

The layout stays that of attention mode; a small bidirectional phone encoder gives each phone a
vector, and

* every speech token's input gets the vectors of the phones its frames say plus an embedding of
  how many frames the phone of its last frame has lasted;
* the head's condition for the next token gets the vectors of *that* token's frames' phones;
* an advance head decides, for every frame of the next token, whether it says the next sounding
  phone (tokens in ``silent_token_ids`` take no frames). Advancing past the last one ends the
  utterance: it replaces the stop head.

The Transformer then no longer has to find its place in the text by attention, which a small model
trained on a few hours of speech learns slowly. In training the phone of each frame comes from
per-phone durations (``latentspeech align``, :mod:`latentspeech.models.aligner`):
:func:`pointer_inputs`. At inference the pointer walks over the tables of :func:`pointer_tables`
(:class:`~latentspeech.models.latentlm.modes.PointerMode`).

With patches (p > 1) a token carries the vectors of its p frames' phones (concatenated, one
projection) and the elapsed count of its last frame; the advance head gives one decision per frame
of the next token (the first frame after BOS has none), and a row whose pointer passes the last
phone inside a token keeps only the frames before.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from ...data.batch import LMBatch
from .config import LatentLMConfig

__all__ = ["PointerInputs", "PointerTables", "pointer_inputs", "pointer_tables", "hold_limits"]


class PointerInputs(NamedTuple):
    """Teacher-forced pointer inputs of a batch of N tokens per row (see :func:`pointer_inputs`)."""

    speech_extra: torch.Tensor  # [B, 1+N, dim] added to the slots BOS, z_1 … z_N
    cond: torch.Tensor  # [B, N, dim] added to the head's condition of each predicted token
    advance_labels: torch.Tensor  # [B, N+1, p] at the slots BOS, z_1 … z_N: per frame of the next token
    advance_mask: torch.Tensor  # [B, N+1, p] the labels that count


class PointerTables(NamedTuple):
    """What the pointer walks over at inference (see :func:`pointer_tables`)."""

    vectors: torch.Tensor  # [B, L+1, dim] phone vectors, with a zero "end" row at index L
    next_sounding: torch.Tensor  # [B, L+1] the next sounding phone after each index (L: none left)
    first: torch.Tensor  # [B] the first sounding phone


def pointer_inputs(model: nn.Module, batch: LMBatch, keep: torch.Tensor) -> PointerInputs:
    """Teacher-forced pointer inputs of a LatentLM from the (frame-level, unpatched) batch's
    durations, per token of p = patch_size frames (N = ceil(F / p) tokens):

    * the speech-slot inputs: the vectors of each token's frames' phones and how long the phone of
      its last frame has lasted (BOS: elapsed 0 only);
    * the head-condition term of each predicted token (its frames' phones);
    * advance labels and their mask, indexed like the slots BOS, z_1 … z_N: for each frame of the
      next token, does it say a later phone than the frame before, or is speech over? (The first
      frame after BOS has no label.)

    Frames past the end of an utterance (a last token's padding) repeat its last frame. Rows with
    ``keep`` False (CFG-dropped) get no phone vectors."""
    cfg = model.cfg
    if batch.durations is None:
        raise ValueError("alignment 'pointer' trains on per-phone durations (LMBatch.durations): run "
                         "`latentspeech align` and train with the durations file")
    p = cfg.patch_size
    B, Fm = batch.target.shape[:2]
    L, dim = batch.phones.shape[1], cfg.transformer.dim
    dur = batch.durations.long()
    cum = dur.cumsum(1)
    flens = batch.target_lens
    if bool((cum[:, -1] != flens).any()):
        bad = [u for u, a, b in zip(batch.utt_ids or ["?"] * B, cum[:, -1].tolist(), flens.tolist()) if a != b]
        raise ValueError(f"durations do not sum to the frame count for {bad[:3]} (stale durations file?)")
    N = -(-Fm // p)
    f = torch.arange(N * p + p, device=dur.device)[None].expand(B, -1)  # one token beyond the last
    fc = torch.minimum(f, (flens[:, None] - 1).clamp(min=0)).contiguous()  # past the end: the last frame
    tok = torch.searchsorted(cum.contiguous(), fc, right=True).clamp(max=L - 1)  # phone of each frame
    start = torch.gather(cum - dur, 1, tok)
    elapsed = (fc - start + 1).clamp(1, cfg.max_phone_frames)
    k = keep.to(batch.target.dtype)[:, None, None]
    c = model.encode_phones(batch.phones, batch.phone_lens)
    c_f = torch.gather(c, 1, tok[:, : N * p, None].expand(B, N * p, dim)).reshape(B, N, p * dim)
    last = elapsed[:, p - 1 : N * p : p]  # [B, N]: at each token's last frame
    extra = torch.cat([model.elapsed_emb.weight[0].expand(B, 1, dim),
                       model.aligned_in(c_f) * k + model.elapsed_emb(last)], 1)
    prev = torch.cat([tok[:, :1], tok[:, :-1]], 1)
    adv = ((tok != prev) | (f >= flens[:, None]))[:, : N * p + p].reshape(B, N + 1, p)
    mask = torch.ones_like(adv)
    mask[:, 0, 0] = False
    return PointerInputs(extra, model.aligned_cond(c_f) * k, adv, mask)


def pointer_tables(model: nn.Module, phones: torch.Tensor, phone_lens: torch.Tensor) -> PointerTables:
    """The inference tables of a LatentLM for phones [B, L] (right-padded). A sentence with no
    sounding token at all lets every token sound."""
    B, L = phones.shape
    dev = phones.device
    idx = torch.arange(L, device=dev)[None].expand(B, L)
    real = idx < phone_lens[:, None]
    silent = torch.as_tensor(list(model.cfg.silent_token_ids), dtype=torch.long, device=dev)
    sounding = real & ~torch.isin(phones, silent)
    sounding |= real & ~sounding.any(1, keepdim=True)
    vals = torch.where(sounding, idx, torch.full_like(idx, L))
    suffix_min = vals.flip(1).cummin(1).values.flip(1)  # first sounding index >= k
    end = torch.full((B, 1), L, dtype=torch.long, device=dev)
    next_sounding = torch.cat([suffix_min[:, 1:], end, end], 1)  # [B, L+1]: after k (k = L: stays L)
    c = model.encode_phones(phones, phone_lens)
    c_pad = torch.cat([c, c.new_zeros(B, 1, c.shape[-1])], 1)
    return PointerTables(c_pad, next_sounding, suffix_min[:, 0] if L else end[:, 0])


def hold_limits(cfg: LatentLMConfig, phones: torch.Tensor) -> torch.Tensor:
    """[B, L+1]: the most frames each phone may sound before the pointer is forced on:
    ``max_phone_frames``, or ``max_hold_frames`` for every token but pause punctuation."""
    B, L = phones.shape
    hold = torch.full((B, L + 1), cfg.max_phone_frames, dtype=torch.long, device=phones.device)
    if 0 < cfg.max_hold_frames < cfg.max_phone_frames:
        pauses = torch.tensor(cfg.pause_token_ids, dtype=torch.long, device=phones.device)
        hold[:, :-1] = torch.where(torch.isin(phones, pauses), hold[:, :-1], cfg.max_hold_frames)
    return hold
