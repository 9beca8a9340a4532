"""Collation for the LatentLM: a list of examples → one right-padded :class:`~latentspeech.models.latentlm.LMBatch`.

An example is a dict with ``utt_id`` (str), ``prompt`` ([P, D] normalised latents of the speaker
prompt), ``phones`` (phone ids), ``target`` ([F, D] normalised latents to predict) and, for the
pointer mode, ``durations`` (frames per phone token, 0-padded in the batch). Each
segment is padded on its own (zeros for latents, ``pad_id`` for phones) and its true lengths kept;
the model lays the segments out into one sequence (see :mod:`latentspeech.models.latentlm`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .batch import LMBatch, VALLEBatch

__all__ = ["collate_lm", "collate_valle", "pad_latents", "pad_ids"]


def _as_tensor(x, dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def pad_latents(seqs: Sequence, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """[F_i, D] arrays → ([B, max F, D] zero-padded float32, lengths [B])."""
    ts = [_as_tensor(s, torch.float32) for s in seqs]
    d = dim if dim is not None else next((t.shape[-1] for t in ts if t.dim() == 2), 0)
    lens = torch.tensor([t.shape[0] for t in ts], dtype=torch.long)
    out = torch.zeros(len(ts), max(1, int(lens.max()) if len(ts) else 1), d)
    for i, t in enumerate(ts):
        if t.shape[0]:
            out[i, : t.shape[0]] = t
    return out, lens


def pad_ids(seqs: Sequence, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Id sequences → ([B, max L] padded with ``pad_id``, lengths [B])."""
    ts = [_as_tensor(s, torch.long).reshape(-1) for s in seqs]
    lens = torch.tensor([len(t) for t in ts], dtype=torch.long)
    out = torch.full((len(ts), max(1, int(lens.max()) if len(ts) else 1)), pad_id, dtype=torch.long)
    for i, t in enumerate(ts):
        out[i, : len(t)] = t
    return out, lens


def collate_lm(examples: Sequence[dict], pad_id: int = 0):
    """Examples (see the module docstring) → :class:`LMBatch`."""
    dim = next(np.shape(e["target"])[-1] for e in examples)
    prompt, plens = pad_latents([e["prompt"] for e in examples], dim)
    target, flens = pad_latents([e["target"] for e in examples], dim)
    phones, llens = pad_ids([e["phones"] for e in examples], pad_id)
    durations = pad_ids([e["durations"] for e in examples], 0)[0] if all("durations" in e for e in examples) else None
    return LMBatch(prompt=prompt, prompt_lens=plens, phones=phones, phone_lens=llens, target=target,
                   target_lens=flens, utt_ids=[e["utt_id"] for e in examples], durations=durations)


def collate_valle(examples: Sequence[dict], pad_id: int = 0, num_quantizers: int | None = None) -> VALLEBatch:
    """Examples of :class:`~latentspeech.data.lm_dataset.LMDataset` over codes (``prompt [P, Q]``,
    ``target [F, Q]``, ``phones``) → a right-padded :class:`VALLEBatch` (codes as ``[B, Q, T]``)."""
    def codes(key):
        arrs = [np.asarray(e[key]) for e in examples]
        q = num_quantizers or arrs[0].shape[-1]
        lens = torch.tensor([a.shape[0] for a in arrs], dtype=torch.long)
        out = torch.zeros(len(arrs), q, max(1, int(lens.max())), dtype=torch.long)
        for i, a in enumerate(arrs):
            out[i, :, : a.shape[0]] = torch.as_tensor(a[:, :q].T.astype(np.int64))
        return out, lens

    prompt, plens = codes("prompt")
    target, tlens = codes("target")
    phones, llens = pad_ids([e["phones"] for e in examples], pad_id)
    durations = pad_ids([e["durations"] for e in examples], 0)[0] if all("durations" in e for e in examples) else None
    return VALLEBatch(phones=phones, phone_lens=llens, prompt=prompt, prompt_lens=plens, codes=target, code_lens=tlens,
                      durations=durations)
