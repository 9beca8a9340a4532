"""The input row both VALL-E stages read, and the padding helpers that build it.

Sequence layout (both stages; the same convention as LatentLM's)::

    [ prompt (P frames) | phones (L) | speech (AR: BOS c⁰_0 .. c⁰_{T-1};  NAR: T frames) ]
      pos 0..P-1          0..L-1       0..T (AR) / 0..T-1 (NAR)

* The prompt is another utterance of the target speaker, without its transcript (LatentLM's
  "ref-utt" setting). AR prompt = its first-level codes, embedded with the same table as the
  target codes; NAR prompt = the sum of the embeddings of all Q levels.
* Every segment numbers its RoPE positions from 0, and a learned segment embedding (prompt,
  phones, speech) tells the segments apart; so the prompt length never shifts the alignment
  between phones and speech.
* In a batch each segment is padded on the right to the longest of its kind ("segment-wise
  padding"); pads are masked out of attention (``padding_mask``). Every sequence therefore has
  its BOS in the same slot, which is what batched KV-cache decoding needs: all sequences then
  write each new frame into the same cache slot.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..alignment import scaled_phone_positions

__all__ = ["PROMPT", "PHONES", "SPEECH", "IGNORE", "pad_sequences", "lengths_mask", "layout"]

PROMPT, PHONES, SPEECH = 0, 1, 2  # segment ids (rows of each stage's segment embedding)
IGNORE = -100  # targets ignored by the cross-entropy


def pad_sequences(seqs: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad: int = 0,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D integer sequences into ``[B, Lmax]``; returns (padded, lengths)."""
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in seqs]
    lens = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    out = torch.full((len(tensors), int(lens.max()) if len(tensors) else 0), pad, dtype=torch.long)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out.to(device), lens.to(device)


def lengths_mask(lens: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, size]``: True at the first ``lens[b]`` slots of row b."""
    return torch.arange(size, device=lens.device)[None, :] < lens[:, None]


def layout(segments: list[tuple[torch.Tensor, torch.Tensor]],
           phone_position_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate right-padded segments ``(emb [B, S, D], lens [B])`` into one sequence.

    Returns (x [B, ΣS, D], positions [B, ΣS] numbered from 0 inside each segment, padding mask).
    The second segment is the phones: its positions are spread by ``phone_position_scale``
    (as LatentLM's, :func:`~latentspeech.models.alignment.scaled_phone_positions`).
    """
    xs, pos, mask = [], [], []
    for i, (emb, lens) in enumerate(segments):
        B, S, _ = emb.shape
        xs.append(emb)
        index = torch.arange(S, device=emb.device).expand(B, S)
        pos.append(scaled_phone_positions(index, phone_position_scale) if i == PHONES else index)
        mask.append(lengths_mask(lens, S))
    return torch.cat(xs, 1), torch.cat(pos, 1), torch.cat(mask, 1)
