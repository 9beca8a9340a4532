"""The AR stage: a causal Transformer over ``[prompt c⁰ | phones | BOS c⁰ ...]`` that predicts the next
first-level code ``c⁰`` or the end-of-speech token ``EOS``, one frame at a time (KV cache).

Targets: the hidden state at ``BOS`` predicts ``c⁰_0``, at ``c⁰_t`` it predicts ``c⁰_{t+1}``, and at
the last frame it predicts ``EOS``. The output head over ``K+1`` classes (codes and EOS) is tied to
the input code embedding. Every input the stage reads is built by :meth:`ARStage.inputs` (the whole
row) and :meth:`ARStage.embed_speech` (speech frames, also one at a time while decoding).

Pointer mode (``alignment: pointer``): a :class:`~latentspeech.models.pointer.PhonePointer` adds
each frame's phone vectors and elapsed count to its input and the next frame's phones to the state
the logits are read from, trained on per-phone durations; an advance head, not EOS, ends the
utterance (:class:`~latentspeech.models.pointer.PointerWalk`, LatentLM's walk with one frame per token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...data.batch import VALLEBatch
from ..alignment import guided_attention_loss
from ..pointer import PhonePointer, PointerInputs, PointerWalk
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
        self.pointer = PhonePointer(cfg, cfg.ar) if cfg.alignment == "pointer" else None

    # -- inputs and outputs
    def embed_speech(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, S, D]`` of the speech segment for ids ``tokens [B, S]`` (BOS or codes)."""
        return self.code_emb(tokens) + self.segment_emb.weight[SPEECH]

    def inputs(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor, prompt_lens: torch.Tensor,
               speech: torch.Tensor, speech_lens: torch.Tensor, speech_extra: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The input row ``[prompt c⁰ | phones | speech]``: (x, positions, padding mask), see :func:`layout`.

        ``speech [B, S]`` holds BOS and the codes fed after it (``speech_lens`` of them are real);
        ``speech_extra [B, S, D]`` is added to them (pointer mode)."""
        seg = self.segment_emb.weight
        x_speech = self.embed_speech(speech)
        if speech_extra is not None:
            x_speech = x_speech + speech_extra
        return layout([
            (self.code_emb(prompt0) + seg[PROMPT], prompt_lens),
            (self.phone_emb(phones) + seg[PHONES], phone_lens),
            (x_speech, speech_lens),
        ], self.cfg.phone_position_scale)

    def encode_phones(self, phones: torch.Tensor, phone_lens: torch.Tensor) -> torch.Tensor:
        """Pointer mode: contextual phone vectors [B, L, D] (the pointer's bidirectional encoder)."""
        return self.pointer.encode(self.phone_emb(phones), phone_lens)

    def pointer_inputs(self, batch: VALLEBatch) -> PointerInputs:
        """Pointer mode: teacher-forced pointer inputs of the batch's T frames (slots BOS, c_0 … c_{T-1})."""
        if batch.durations is None:
            raise ValueError("valle alignment 'pointer' trains on per-phone durations (VALLEBatch.durations): run "
                             "`latentspeech align` and put its durations file in the code store")
        c = self.encode_phones(batch.phones, batch.phone_lens)
        keep = torch.ones_like(batch.code_lens, dtype=torch.bool)
        return self.pointer.teacher_forced(c, batch.durations, batch.code_lens, batch.codes.shape[-1], keep)

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
        """Teacher-forced logits ``[B, T+1, K+1]`` at the speech positions and their targets ``[B, T+1]``,
        the hidden states there ``[B, T+1, D]`` and the pointer inputs (None in attention mode), plus
        that layer's attention probabilities with ``attention_layer``."""
        speech_in, targets = self.teacher_forcing(batch.codes[:, 0], batch.code_lens)
        n = speech_in.shape[1]
        ptr = self.pointer_inputs(batch) if self.pointer is not None else None
        x, pos, mask = self.inputs(batch.phones, batch.phone_lens, batch.prompt[:, 0], batch.prompt_lens,
                                   speech_in, batch.code_lens + 1, None if ptr is None else ptr.speech_extra)
        att = None
        if attention_layer is not None:
            h, att = self.transformer(x, positions=pos, padding_mask=mask, attention_layer=attention_layer)
        else:
            h = self.transformer(x, positions=pos, padding_mask=mask)
        h = h[:, -n:]
        if ptr is None:
            return self.logits(h), targets, h, None, att
        # pointer: the frame to predict hears its phones; the end is the advance head's, not EOS
        cond = torch.cat([ptr.cond, ptr.cond.new_zeros(ptr.cond.shape[0], 1, ptr.cond.shape[-1])], 1)
        targets = targets.masked_fill(targets == self.cfg.eos_id, IGNORE)
        return self.logits(h + cond), targets, h, ptr, att

    def loss(self, batch: VALLEBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of the next code / EOS (``ar_ce``), plus guided attention in training when
        enabled (``ar_guide``); pointer mode: the next code and the advance head's BCE (``ar_advance``)."""
        cfg = self.cfg
        guide = cfg.guided_attention_weight > 0 and self.training
        logits, targets, h, ptr, att = self(batch, attention_layer=cfg.guided_attention_layer if guide else None)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        keep = targets != IGNORE
        acc = (logits.argmax(-1) == targets)[keep].float().mean()
        stats = {"ar_acc": acc.detach(), "ar_ce": loss.detach()}
        if ptr is not None:
            # slot s (BOS = 0) decides whether frame s says a later phone than frame s-1, or speech is over
            slots = lengths_mask(batch.code_lens + 1, h.shape[1]) & ptr.advance_mask[..., 0]
            adv_logits = self.pointer.advance_head(h)[..., 0][slots].float()
            labels = ptr.advance_labels[..., 0][slots].float()
            adv = F.binary_cross_entropy_with_logits(adv_logits, labels)
            loss = loss + adv
            stats["ar_advance"] = adv.detach()
            stats["ar_advance_acc"] = ((adv_logits > 0).float() == labels).float().mean().detach()
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
              max_new: int, speech_extra: torch.Tensor | None = None):
        """Prefill a KV cache with [prompt | phones | BOS] (+ ``speech_extra [B, 1, D]`` at BOS); returns
        (the hidden state at BOS [B, D], cache). The cache has room for ``max_new`` more frames (see :meth:`step`)."""
        B, dev = phones.shape[0], phones.device
        bos = torch.full((B, 1), self.cfg.bos_id, dtype=torch.long, device=dev)
        ones = torch.ones(B, dtype=torch.long, device=dev)
        x, pos, mask = self.inputs(phones, phone_lens, prompt0, prompt_lens, bos, ones, speech_extra)
        cache = self.transformer.new_cache(B, x.shape[1] + max_new)
        h = self.transformer(x, positions=pos, padding_mask=mask, cache=cache)
        return h[:, -1], cache

    def step(self, x: torch.Tensor, cache) -> torch.Tensor:
        """Feed one frame's input ``x [B, D]`` (its position continues from the cache); the hidden state [B, D]."""
        return self.transformer(x[:, None], cache=cache)[:, -1]

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

        ``max_frames`` caps the length guard; ``min_frames`` overrides ``cfg.min_frames`` (attention
        mode: EOS is masked before it; ``min_frames >= max_frames`` generates exactly ``max_frames``
        frames). In pointer mode a row ends where its pointer passes the last phone (``stopped``) or
        at the guard.
        ``ras_window > 0`` turns on VALL-E 2's repetition-aware sampling with ``ras_threshold``
        (see :func:`~latentspeech.models.valle.sampling.repetition_aware_sample`)."""
        eos = self.cfg.eos_id
        limit, floor = self.frame_limits(phone_lens, max_frames, min_frames)
        book = FrameBook.new(limit)
        walk = None
        if self.pointer is not None:
            walk = PointerWalk(self.pointer, self.encode_phones(phones, phone_lens), phones, phone_lens)
        h, cache = self.start(phones, phone_lens, prompt0, prompt_lens, book.horizon,
                              None if walk is None else walk.start(phones.shape[0]))
        for t in range(book.horizon + 1):
            if walk is None:
                logits = self.logits(h).float()
                if t < floor:
                    logits[:, eos] = float("-inf")
            else:  # the pointer ends a row where it passes the last phone; EOS is never drawn
                ended = walk.before_token(t, h, ~book.done)
                logits = self.logits(walk.condition(h)).float()
                logits[:, eos] = float("-inf")
            tok = repetition_aware_sample(logits, book.codes[:, :t], window=ras_window, threshold=ras_threshold,
                                          temperature=temperature, top_k=top_k, top_p=top_p, exempt=eos,
                                          generator=generator)
            if walk is not None:
                tok = torch.where(ended, torch.full_like(tok, eos), tok)
            frame = book.record(t, tok, eos)
            if frame is None:
                break
            x = self.embed_speech(frame)
            h = self.step(x if walk is None else walk.feed(x), cache)
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
