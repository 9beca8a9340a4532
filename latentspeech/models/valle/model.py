"""The VALL-E model: the AR and NAR stages together, their training loss and batched generation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ...data.batch import VALLEBatch
from .ar import ARStage
from .config import VALLEConfig
from .layout import pad_sequences
from .nar import NARStage

__all__ = ["VALLE", "VALLEOutput"]


@dataclass
class VALLEOutput:
    """What :meth:`VALLE.generate` returns.

    ``codes [B, Q, T]`` (right-padded with 0), ``lengths [B]`` frames per sequence,
    ``stopped [B]`` True where the AR stage emitted EOS (False: the length guard cut it),
    ``ar_steps`` AR Transformer calls (prefill included), ``nar_passes`` NAR Transformer calls.
    """

    codes: torch.Tensor
    lengths: torch.Tensor
    stopped: torch.Tensor
    ar_steps: int
    nar_passes: int


class VALLE(nn.Module):
    """The two stages together: training losses and batched generation."""

    def __init__(self, cfg: VALLEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.ar = ARStage(cfg)
        self.nar = NARStage(cfg)

    def num_parameters(self) -> dict[str, int]:
        ar = sum(p.numel() for p in self.ar.parameters())
        nar = sum(p.numel() for p in self.nar.parameters())
        return {"ar": ar, "nar": nar, "total": ar + nar}

    def loss(self, batch: VALLEBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``loss`` = AR cross-entropy (+ guided attention, logged as ``ar_guide``) + NAR cross-entropy
        (one random level per example); ``ar_loss``/``nar_loss`` are the two cross-entropies."""
        ar, ar_stats = self.ar.loss(batch)  # ar: cross-entropy + the weighted guided-attention term, if any
        nar, nar_stats = self.nar.loss(batch, generator)
        return {"loss": ar + nar, "ar_loss": ar_stats.pop("ar_ce"), "nar_loss": nar.detach(), **ar_stats, **nar_stats}

    def batch_inputs(self, phones: torch.Tensor | Sequence[Sequence[int]],
                     prompt_codes: torch.Tensor | Sequence[torch.Tensor],
                     phone_lens: torch.Tensor | None = None, prompt_lens: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`generate`'s inputs as padded tensors on the model's device:
        (phones [B, L], phone_lens [B], prompt_codes [B, Q, P], prompt_lens [B])."""
        Q = self.cfg.num_quantizers
        if not torch.is_tensor(phones):
            phones, phone_lens = pad_sequences(phones, self.cfg.phone_pad_id)
        if not torch.is_tensor(prompt_codes):
            prompts = list(prompt_codes)
            prompt_lens = torch.tensor([p.shape[-1] for p in prompts], dtype=torch.long)
            padded = torch.zeros(len(prompts), Q, int(prompt_lens.max()), dtype=torch.long)
            for i, p in enumerate(prompts):
                padded[i, :, : p.shape[-1]] = torch.as_tensor(p)[:Q]
            prompt_codes = padded
        B = phones.shape[0]
        if phone_lens is None:
            phone_lens = torch.full((B,), phones.shape[1], dtype=torch.long)
        if prompt_lens is None:
            prompt_lens = torch.full((B,), prompt_codes.shape[-1], dtype=torch.long)
        if prompt_codes.shape[0] != B:
            raise ValueError(f"{B} phone sequences but {prompt_codes.shape[0]} prompts")
        if prompt_codes.shape[1] != Q:
            raise ValueError(f"prompt has {prompt_codes.shape[1]} code levels, the model {Q}")
        dev = self.ar.code_emb.weight.device
        return phones.to(dev), phone_lens.to(dev), prompt_codes.to(dev), prompt_lens.to(dev)

    @torch.no_grad()
    def generate(self, phones: torch.Tensor | Sequence[Sequence[int]],
                 prompt_codes: torch.Tensor | Sequence[torch.Tensor],
                 phone_lens: torch.Tensor | None = None, prompt_lens: torch.Tensor | None = None, *,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, ras_window: int = 0,
                 ras_threshold: float = 0.1, nar_temperature: float = 0.0, max_frames: int | None = None,
                 min_frames: int | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None) -> VALLEOutput:
        """Generate codes for a batch of sentences.

        ``phones``: padded ``[B, L]`` ids (+ ``phone_lens``) or a list of id lists;
        ``prompt_codes``: padded ``[B, Q, P]`` (+ ``prompt_lens``) or a list of ``[Q, P_i]`` tensors
        (all Q levels; the AR stage uses level 0). Sampling options, ``max_frames``/``min_frames``:
        see :meth:`ARStage.generate`; the NAR is greedy unless ``nar_temperature > 0``. ``seed``
        makes the output reproducible.
        """
        phones, phone_lens, prompt_codes, prompt_lens = self.batch_inputs(phones, prompt_codes, phone_lens,
                                                                          prompt_lens)
        if generator is None and seed is not None:
            generator = torch.Generator(device=self.ar.code_emb.weight.device).manual_seed(seed)
        codes0, lengths, stopped, ar_steps = self.ar.generate(
            phones, phone_lens, prompt_codes[:, 0], prompt_lens, temperature=temperature, top_k=top_k, top_p=top_p,
            ras_window=ras_window, ras_threshold=ras_threshold, max_frames=max_frames, min_frames=min_frames,
            generator=generator)
        codes, nar_passes = self.nar.generate(phones, phone_lens, prompt_codes, prompt_lens, codes0, lengths,
                                              nar_temperature, generator)
        return VALLEOutput(codes=codes, lengths=lengths, stopped=stopped, ar_steps=ar_steps, nar_passes=nar_passes)
