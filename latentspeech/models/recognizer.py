"""A phone recognizer on speech latents (CTC), used to pick the most intelligible of several candidates.

Sampling is what makes next-token diffusion speak, and what makes it mispronounce: the same sentence
drawn three times can be read well once and garbled once. With
``candidates: N`` the LatentLM draws N latent sequences for a sentence in one batch and keeps the
one this recognizer finds closest to the sentence's phones, before the codec decodes anything:

* :class:`PhoneRecognizer` maps normalised latents [B, T, D] (each utterance's mean removed, so the
  voice matters less) to per-frame log-probabilities over the phone inventory, the padding id
  standing for CTC's blank (convolutions → a small bidirectional Transformer → a linear layer).
* :func:`phone_scores` is the CTC log-likelihood of each candidate's phones per phone (higher: read
  more clearly); only *sounding* tokens (:func:`~latentspeech.text.vocab.silent_token_ids`) are targets.
* :func:`best_candidates` keeps, per sentence, the candidate with the best score.

Training and measuring it: :mod:`latentspeech.train.recognizer`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.collate import pad_latents
from .transformer import Transformer, TransformerConfig

__all__ = ["RECOGNIZER", "load_attached_recognizer", "RecognizerConfig", "PhoneRecognizer", "phone_targets", "ctc_loss",
           "phone_scores", "best_candidates", "save_recognizer", "load_recognizer"]


#: The sub-dir of a LatentLM model dir that holds its recognizer (optional).
RECOGNIZER = "recognizer"


@dataclass
class RecognizerConfig:
    vocab_size: int = 128
    pad_id: int = 0  # also CTC's blank
    latent_dim: int = 32
    dim: int = 192
    conv_layers: int = 3
    kernel_size: int = 5
    transformer_layers: int = 3
    n_heads: int = 4
    input_noise: float = 0.3  # training: the input gets N(0, σ²), σ ~ U(0, input_noise) per utterance
    silent_ids: list[int] = dataclasses.field(default_factory=list)  # tokens that are never targets
    candidates: int = 2  # how many candidates a LatentLM holding this recognizer draws per sentence by default


class PhoneRecognizer(nn.Module):
    """Normalised latents → per-frame CTC log-probabilities over the phone inventory."""

    def __init__(self, cfg: RecognizerConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(cfg.latent_dim, cfg.dim)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
                                   for _ in range(cfg.conv_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.conv_layers))
        self.encoder = Transformer(TransformerConfig(dim=cfg.dim, n_layers=cfg.transformer_layers,
                                                     n_heads=cfg.n_heads, causal=False, max_seq_len=4096))
        self.out = nn.Linear(cfg.dim, cfg.vocab_size)

    def forward(self, z: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """z [B, T, D], lens [B] → log-probabilities [B, T, vocab_size]."""
        valid = (torch.arange(z.shape[1], device=z.device)[None] < lens[:, None])[..., None]
        mean = (z * valid).sum(1, keepdim=True) / lens.clamp(min=1)[:, None, None]
        x = self.inp((z - mean) * valid) * valid
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x.transpose(1, 2)).transpose(1, 2))) * valid
        return self.out(self.encoder(x, padding_mask=valid[..., 0])).log_softmax(-1)


def phone_targets(phones: Sequence[int], silent: set[int]) -> list[int]:
    """The CTC targets of a token sequence: its sounding tokens."""
    return [int(t) for t in phones if int(t) not in silent]


def ctc_loss(rec: PhoneRecognizer, z: torch.Tensor, lens: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """Per-utterance CTC negative log-likelihood [B] (inf where a target cannot fit its frames)."""
    logp = rec(z, lens)
    tl = torch.tensor([len(t) for t in targets], device=z.device)
    flat = torch.tensor([x for t in targets for x in t], dtype=torch.long, device=z.device)
    return F.ctc_loss(logp.transpose(0, 1), flat, lens, tl, blank=rec.cfg.pad_id, reduction="none",
                      zero_infinity=False)


@torch.no_grad()
def phone_scores(rec: PhoneRecognizer, latents: Sequence[torch.Tensor], phones: Sequence[Sequence[int]]) -> torch.Tensor:
    """CTC log-likelihood per target phone of each (normalised latents [T, D], phone ids) pair [N];
    −inf for an empty candidate or one too short for its phones."""
    dev = next(rec.parameters()).device
    silent = set(rec.cfg.silent_ids)
    targets = [phone_targets(p, silent) or [rec.cfg.pad_id] for p in phones]
    keep = [i for i, z in enumerate(latents) if z.shape[0] > 0]
    scores = torch.full((len(latents),), -math.inf)
    if keep:
        z, lens = pad_latents([latents[i] for i in keep])
        nll = ctc_loss(rec, z.to(dev), lens.to(dev), [targets[i] for i in keep]).float().cpu()
        for j, i in enumerate(keep):
            scores[i] = -nll[j] / len(targets[i])
    return scores


def best_candidates(rec: PhoneRecognizer, latents: Sequence[torch.Tensor], phones: Sequence[Sequence[int]],
                    n: int) -> list[torch.Tensor]:
    """``latents`` holds ``n`` candidates per sentence of ``phones``, sentence by sentence (what
    ``LatentLM.generate`` returns for each sentence repeated ``n`` times): the best-scored one of each."""
    if n == 1:
        return list(latents)
    scores = phone_scores(rec, latents, [p for p in phones for _ in range(n)])
    best = scores.view(len(phones), n).argmax(1).tolist()
    return [latents[i * n + c] for i, c in enumerate(best)]



def save_recognizer(rec: PhoneRecognizer, out: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the recognizer as a model dir (safetensors + config; kind ``recognizer``)."""
    from ..checkpoint import save_config_model

    return save_config_model(rec, out, "recognizer", meta)


def load_recognizer(path: str | os.PathLike, vocab=None) -> PhoneRecognizer:
    """A saved recognizer (:func:`save_recognizer`), in eval mode. With ``vocab`` its phone inventory
    must be the one it was trained with (a one-line :class:`CheckpointError` otherwise)."""
    from ..checkpoint import load_config_model

    return load_config_model(path, "recognizer", PhoneRecognizer, RecognizerConfig, vocab)


def load_attached_recognizer(model_dir: str | os.PathLike, vocab=None) -> PhoneRecognizer | None:
    """The recognizer attached to a LatentLM model dir (``MODEL_DIR/recognizer``), or None without one."""
    path = Path(model_dir) / RECOGNIZER
    return load_recognizer(path, vocab) if (path / "config.yaml").is_file() else None
