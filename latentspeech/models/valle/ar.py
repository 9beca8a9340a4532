"""The AR stage: a causal Transformer over ``[prompt c⁰ | phones | BOS c⁰ ...]`` that predicts the next
first-level code ``c⁰`` or the end-of-speech token ``EOS``, one frame at a time (KV cache).

Targets: the hidden state at ``BOS`` predicts ``c⁰_0``, at ``c⁰_t`` it predicts ``c⁰_{t+1}``, and at
the last frame it predicts ``EOS``. The output head over ``K+1`` classes (codes and EOS) is tied to
the input code embedding. Every input the stage reads is built by :meth:`ARStage.inputs` (the whole
row) and :meth:`ARStage.embed_speech` (speech frames, also one at a time while decoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...data.batch import VALLEBatch
from ..alignment import guided_attention_loss
from ..transformer import Transformer
from .config import VALLEConfig
from .layout import IGNORE, PHONES, PROMPT, SPEECH, layout, lengths_mask
from .sampling import repetition_aware_sample

__all__ = ["ARStage", "FrameBook"]


class ARStage(nn.Module):
    """Causal Transformer over [prompt c⁰ | phones | BOS c⁰ ...] predicting the next c⁰ or EOS."""

    def __init__(self, cfg: VALLEConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.ar.dim
        self.phone_emb = nn.Embedding(cfg.phone_vocab_size, d)
        self.code_emb = nn.Embedding(cfg.codebook_size + 2, d)  # codes, EOS, BOS
        self.segment_emb = nn.Embedding(3, d)
        self.transformer = Transformer(cfg.ar)
        for emb in (self.phone_emb, self.code_emb, self.segment_emb):
            nn.init.normal_(emb.weight, std=0.02)

    # -- inputs and outputs
    def embed_speech(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, S, D]`` of the speech segment for ids ``tokens [B, S]`` (BOS or codes)."""
        return self.code_emb(tokens) + self.segment_emb.weight[SPEECH]

    def inputs(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor, prompt_lens: torch.Tensor,
               speech: torch.Tensor, speech_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input row ``[prompt c⁰ | phones | speech]``: (x, positions, padding mask), see :func:`layout`.

        ``speech [B, S]`` holds BOS and the codes fed after it (``speech_lens`` of them are real)."""
        seg = self.segment_emb.weight
        return layout([
            (self.code_emb(prompt0) + seg[PROMPT], prompt_lens),
            (self.phone_emb(phones) + seg[PHONES], phone_lens),
            (self.embed_speech(speech), speech_lens),
        ], self.cfg.phone_position_scale)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states → logits over codes + EOS (output projection tied to the code embedding)."""
        return F.linear(h, self.code_emb.weight[: self.cfg.codebook_size + 1])

    # -- training
    def teacher_forcing(self, codes0: torch.Tensor, code_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech inputs ``[B, T+1]`` (BOS, then ``codes0`` with pads set to 0) and targets ``[B, T+1]``
        (``codes0``, then EOS after the last real frame; ``IGNORE`` elsewhere)."""
        cfg = self.cfg
        B, T = codes0.shape
        valid = lengths_mask(code_lens, T)
        bos = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=codes0.device)
        speech_in = torch.cat([bos, codes0.masked_fill(~valid, 0)], dim=1)
        targets = torch.full((B, T + 1), IGNORE, dtype=torch.long, device=codes0.device)
        targets[:, :T] = codes0.masked_fill(~valid, IGNORE)
        targets[torch.arange(B, device=codes0.device), code_lens] = cfg.eos_id
        return speech_in, targets

    def forward(self, batch: VALLEBatch, attention_layer: int | None = None):
        """Teacher-forced logits ``[B, T+1, K+1]`` at the speech positions and their targets ``[B, T+1]``
        (plus that layer's attention probabilities with ``attention_layer``)."""
        speech_in, targets = self.teacher_forcing(batch.codes[:, 0], batch.code_lens)
        n = speech_in.shape[1]
        x, pos, mask = self.inputs(batch.phones, batch.phone_lens, batch.prompt[:, 0], batch.prompt_lens,
                                   speech_in, batch.code_lens + 1)
        if attention_layer is not None:
            h, att = self.transformer(x, positions=pos, padding_mask=mask, attention_layer=attention_layer)
            return self.logits(h[:, -n:]), targets, att
        h = self.transformer(x, positions=pos, padding_mask=mask)
        return self.logits(h[:, -n:]), targets

    def loss(self, batch: VALLEBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the next code / EOS (``ar_ce``), plus guided attention in training when enabled."""
        cfg = self.cfg
        guide = cfg.guided_attention_weight > 0 and self.training
        if guide:
            logits, targets, att = self(batch, attention_layer=cfg.guided_attention_layer)
        else:
            logits, targets = self(batch)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        keep = targets != IGNORE
        acc = (logits.argmax(-1) == targets)[keep].float().mean()
        stats = {"ar_acc": acc.detach(), "ar_ce": loss.detach()}
        if guide:
            g = self.guide_loss(batch, att)
            loss = loss + cfg.guided_attention_weight * g
            stats["ar_guide"] = g.detach()
        return loss, stats

    def guide_loss(self, batch: VALLEBatch, att: torch.Tensor) -> torch.Tensor:
        """Guided attention of the speech rows over the phones, from attention probabilities ``att``.

        Segments are right-padded one by one: prompt slots ``[0, P)``, phones ``[P, P + L)``, speech after."""
        P, L = batch.prompt.shape[-1], batch.phones.shape[1]
        B, T = batch.codes.shape[0], att.shape[-1]
        slot = torch.arange(T, device=att.device)[None].expand(B, T)
        return guided_attention_loss(att, slot, torch.full_like(batch.phone_lens, P), batch.phone_lens,
                                     slot - (P + L), batch.code_lens + 1, self.cfg.guided_attention_sigma)

    # -- decoding
    def start(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor, prompt_lens: torch.Tensor,
              max_new: int):
        """Prefill a KV cache with [prompt | phones | BOS]; returns (logits of the first frame [B, K+1], cache).

        The cache has room for ``max_new`` more frames (see :meth:`step`)."""
        B, dev = phones.shape[0], phones.device
        bos = torch.full((B, 1), self.cfg.bos_id, dtype=torch.long, device=dev)
        ones = torch.ones(B, dtype=torch.long, device=dev)
        x, pos, mask = self.inputs(phones, phone_lens, prompt0, prompt_lens, bos, ones)
        cache = self.transformer.new_cache(B, x.shape[1] + max_new)
        h = self.transformer(x, positions=pos, padding_mask=mask, cache=cache)
        return self.logits(h[:, -1]).float(), cache

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """Feed one frame ``tokens [B]`` (its position continues from the cache); logits of the next [B, K+1]."""
        h = self.transformer(self.embed_speech(tokens[:, None]), cache=cache)
        return self.logits(h[:, -1]).float()

    def frame_limits(self, phone_lens: torch.Tensor, max_frames: int | None = None,
                     min_frames: int | None = None) -> tuple[torch.Tensor, int]:
        """(most frames per row ``[B]``: the length guard capped at ``max_frames``, fewest frames before EOS)."""
        limit = self.cfg.length_guard(phone_lens)
        if max_frames is not None:
            limit = limit.clamp(max=max_frames)
        floor = max(1, min_frames if min_frames is not None else self.cfg.min_frames)
        return limit, floor

    @torch.no_grad()
    def generate(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor,
                 prompt_lens: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 ras_window: int = 0, ras_threshold: float = 0.1, max_frames: int | None = None,
                 min_frames: int | None = None, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Sample first-level codes. Returns (codes0 [B, T], lengths [B], stopped [B], transformer calls).

        ``max_frames`` caps the length guard; ``min_frames`` overrides ``cfg.min_frames`` (EOS is
        masked before it; ``min_frames >= max_frames`` generates exactly ``max_frames`` frames).
        ``ras_window > 0`` turns on VALL-E 2's repetition-aware sampling with ``ras_threshold``
        (see :func:`~latentspeech.models.valle.sampling.repetition_aware_sample`)."""
        eos = self.cfg.eos_id
        limit, floor = self.frame_limits(phone_lens, max_frames, min_frames)
        book = FrameBook.new(limit)
        logits, cache = self.start(phones, phone_lens, prompt0, prompt_lens, book.horizon)
        for t in range(book.horizon + 1):
            if t < floor:
                logits[:, eos] = float("-inf")
            tok = repetition_aware_sample(logits, book.codes[:, :t], window=ras_window, threshold=ras_threshold,
                                          temperature=temperature, top_k=top_k, top_p=top_p, exempt=eos,
                                          generator=generator)
            frame = book.record(t, tok, eos)
            if frame is None:
                break
            logits = self.step(frame, cache)
            book.calls += 1
        return book.result()


@dataclass
class FrameBook:
    """Per-row bookkeeping of batched AR decoding: the frames fed so far and where each row ended.

    ``limit [B]``: most frames per row (the length guard); ``codes [B, horizon]``: frames fed (0 after
    the row ended); ``lengths [B]``: frames per row once ended; ``stopped [B]``: ended by EOS (not by
    the guard); ``done [B]``: ended; ``calls``: Transformer calls (the prefill included).
    """

    limit: torch.Tensor
    codes: torch.Tensor
    lengths: torch.Tensor
    stopped: torch.Tensor
    done: torch.Tensor
    calls: int = 1

    @classmethod
    def new(cls, limit: torch.Tensor) -> "FrameBook":
        B, dev = limit.shape[0], limit.device
        return cls(limit=limit, codes=torch.zeros(B, int(limit.max()), dtype=torch.long, device=dev),
                   lengths=limit.clone(), stopped=torch.zeros(B, dtype=torch.bool, device=dev),
                   done=torch.zeros(B, dtype=torch.bool, device=dev))

    @property
    def horizon(self) -> int:
        """The longest row's limit: no row goes past it."""
        return self.codes.shape[1]

    def record(self, t: int, tok: torch.Tensor, eos: int) -> torch.Tensor | None:
        """Take the ids drawn for frame ``t``; returns the frame to feed next ``[B]``, None once every row ended.

        A row ends when it draws ``eos`` or reaches its limit (the length guard puts ``eos`` there)."""
        tok = torch.where(t >= self.limit, torch.full_like(tok, eos), tok)
        ended = (tok == eos) & ~self.done
        self.stopped |= ended & (t < self.limit)
        self.lengths = torch.where(ended, torch.full_like(self.lengths, t), self.lengths)
        self.done |= ended
        if bool(self.done.all()) or t == self.horizon:
            return None
        self.codes[:, t] = torch.where(self.done, torch.zeros_like(tok), tok)
        return self.codes[:, t]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """(codes0 [B, T] zero after each row's end, lengths [B], stopped [B], calls); T = the longest row."""
        T = int(self.lengths.max())
        return self.codes[:, :T] * lengths_mask(self.lengths, T), self.lengths, self.stopped, self.calls
