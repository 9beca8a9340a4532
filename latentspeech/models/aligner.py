"""Phone durations from speech latents: a text-only prior + monotonic alignment search (MAS).

The LatentLM's pointer mode (``LatentLMConfig.alignment = "pointer"``) is told, for every speech
frame, which phone it is saying. In training those per-frame phones come from here:

* :class:`PhoneAligner` maps the phone tokens of an utterance to one mean latent per token
  (token embeddings → convolutions → a small bidirectional Transformer → ``latent_dim``).
* :func:`monotonic_alignment` finds the monotonic path (every *sounding* token takes ≥ 1 frame, in
  order) that maximises Σ_t −½‖z_t − μ_{a_t}‖² (Glow-TTS / Grad-TTS's MAS, here on the codec's
  normalised latents with each utterance's mean removed, so the voice matters less).
* Training (:mod:`latentspeech.train.aligner`) alternates the two (the aligner is fitted to the
  latents along the current best path), the usual way MAS models learn alignments from scratch.

Tokens that make no sound of their own (the word boundary ``|``, stress/length/tie marks, quotes,
brackets, hyphens, specials: :func:`~latentspeech.text.vocab.silent_token_ids`) get 0 frames; pause punctuation
(``, . ! ? ; :``) and phones get at least one. Durations are stored per token, in frames, in a
Kaldi-style text file ``durations`` next to the latent store (:mod:`latentspeech.data.durations`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import Transformer, TransformerConfig

__all__ = ["AlignerConfig", "PhoneAligner", "monotonic_alignment", "align_batch", "save_aligner", "load_aligner"]


def monotonic_alignment(score: np.ndarray) -> np.ndarray:
    """Best monotonic path through ``score`` [K, T] (K ≤ T): frame t → token a_t with a_0 = 0,
    a_{T-1} = K-1 and a_{t+1} - a_t ∈ {0, 1}; returns a [T] int array (each token ≥ 1 frame)."""
    K, T = score.shape
    if K > T:
        raise ValueError(f"monotonic_alignment: {K} tokens cannot each take a frame of {T}")
    value = np.full((K, T), -np.inf)
    value[0, 0] = score[0, 0]
    moved = np.zeros((K, T), dtype=bool)
    for t in range(1, T):
        stay = value[:, t - 1]
        move = np.concatenate([[-np.inf], value[:-1, t - 1]])
        moved[:, t] = move > stay
        value[:, t] = score[:, t] + np.maximum(stay, move)
    path = np.empty(T, dtype=np.int64)
    k = K - 1
    for t in range(T - 1, -1, -1):
        path[t] = k
        if t > 0 and k > 0 and (moved[k, t] or k == t):
            k -= 1
    return path


@dataclass
class AlignerConfig:
    vocab_size: int = 128
    pad_id: int = 0
    latent_dim: int = 32
    dim: int = 128
    conv_layers: int = 3
    kernel_size: int = 5
    transformer_layers: int = 2
    n_heads: int = 2


class PhoneAligner(nn.Module):
    """Phone tokens → one mean latent per token (the MAS prior)."""

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
                                   for _ in range(cfg.conv_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.conv_layers))
        self.encoder = Transformer(TransformerConfig(dim=cfg.dim, n_layers=cfg.transformer_layers,
                                                     n_heads=cfg.n_heads, causal=False, max_seq_len=1024))
        self.out = nn.Linear(cfg.dim, cfg.latent_dim)

    def forward(self, phones: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """phones [B, L] → μ [B, L, latent_dim]."""
        valid = torch.arange(phones.shape[1], device=phones.device)[None] < lens[:, None]
        x = self.emb(phones) * valid[..., None]
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x.transpose(1, 2)).transpose(1, 2))) * valid[..., None]
        return self.out(self.encoder(x, padding_mask=valid))


def _sounding(ids: Sequence[int], silent: set[int]) -> np.ndarray:
    return np.array([i for i, t in enumerate(ids) if t not in silent], dtype=np.int64)


def align_batch(aligner: PhoneAligner, phones: list[list[int]], latents: list[np.ndarray],
                silent: set[int]) -> tuple[torch.Tensor, list[np.ndarray | None]]:
    """MAS for a batch: (the aligner's loss along the best paths, per-token durations or None where an
    utterance has more sounding tokens than frames or none at all)."""
    dev = next(aligner.parameters()).device
    B = len(phones)
    L = max(len(p) for p in phones)
    ph = torch.full((B, L), aligner.cfg.pad_id, dtype=torch.long, device=dev)
    for b, p in enumerate(phones):
        ph[b, : len(p)] = torch.as_tensor(p, dtype=torch.long)
    mu = aligner(ph, torch.tensor([len(p) for p in phones], device=dev))
    losses, durations = [], []
    for b in range(B):
        z = torch.as_tensor(latents[b], dtype=torch.float32, device=dev)
        z = z - z.mean(0, keepdim=True)
        idx = _sounding(phones[b], silent)
        if len(idx) == 0 or len(idx) > z.shape[0]:
            durations.append(None)
            continue
        m = mu[b, torch.as_tensor(idx, device=dev)]  # [K, D]
        err = 0.5 * ((z[None, :, :] - m[:, None, :]) ** 2).sum(-1)  # [K, T]
        path = monotonic_alignment(-err.detach().cpu().numpy())
        losses.append(err[torch.as_tensor(path, device=dev), torch.arange(z.shape[0], device=dev)].mean() / z.shape[1])
        d = np.zeros(len(phones[b]), dtype=np.int64)
        np.add.at(d, idx[path], 1)
        durations.append(d)
    loss = torch.stack(losses).mean() if losses else mu.sum() * 0.0
    return loss, durations



def save_aligner(aligner: PhoneAligner, out: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the aligner as a model dir (safetensors + config; kind ``aligner``)."""
    from ..checkpoint import save_config_model

    return save_config_model(aligner, out, "aligner", meta)


def load_aligner(path: str | os.PathLike, vocab=None) -> PhoneAligner:
    """A saved aligner (:func:`save_aligner`), in eval mode. With ``vocab`` its phone inventory must
    be the one the aligner was trained with (a one-line :class:`CheckpointError` otherwise)."""
    from ..checkpoint import load_config_model

    return load_config_model(path, "aligner", PhoneAligner, AlignerConfig, vocab)


