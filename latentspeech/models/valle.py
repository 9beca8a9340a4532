"""The VALL-E-style baseline: discrete RVQ codes, an AR stage and a NAR stage.

    cfg = VALLEConfig(phone_vocab_size=vocab.size, num_quantizers=8, codebook_size=1024)
    model = VALLE(cfg)
    losses = model.loss(batch)                                  # training: {"loss", "ar_loss", ...}
    out = model.generate(phones, prompt_codes, seed=0)          # inference: out.codes [B, Q, T]

Two Transformers from :mod:`latentspeech.models.transformer` (the one LatentLM uses):

* **AR** (causal, KV cache) models the first codebook ``c⁰`` one frame at a time and ends the
  utterance with an end-of-speech token ``EOS``. Sampling: temperature, top-k, top-p.
* **NAR** (bidirectional) predicts codebook ``j`` (1..Q-1) for all frames at once from the sum
  of the embeddings of levels ``0..j-1`` (VALL-E's "sum of level embeddings"); the stage is told
  by a learned level embedding added to every input position. Each NAR level has its own code
  embedding table, which is also (tied) its output projection. Decoding is greedy, Q-1 passes.

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
* AR targets: the hidden state at ``BOS`` predicts ``c⁰_0``, at ``c⁰_t`` it predicts
  ``c⁰_{t+1}``, and at the last frame it predicts ``EOS``. AR vocabulary: codes ``0..K-1``,
  ``EOS = K``, ``BOS = K+1`` (output head over ``K+1`` classes, tied to the input embedding).

Length guard (LatentLM's rule): without EOS, generation stops after
``ceil(frames_per_phone · phones) + guard_min_frames`` frames (at most ``max_frames``); EOS is
not allowed before ``min_frames`` frames (no empty output). Training sets ``frames_per_phone``
from the data (a margin over the largest ratio seen).

Model directories (kind ``valle``, see :func:`save_valle` / :func:`load_valle`) are
self-contained: ``model.safetensors`` + ``config.yaml`` (the phone vocabulary in ``meta``) and
a ``codec/`` subfolder holding the RVQ codec the codes come from.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.batch import VALLEBatch
from ..errors import CheckpointError, ConfigError
from .alignment import default_frames_per_phone, guided_attention_loss, scaled_phone_positions, validate_alignment_aids
from .transformer import Transformer, TransformerConfig

__all__ = [
    "VALLEConfig",
    "VALLEOutput",
    "VALLE",
    "ARStage",
    "NARStage",
    "sample_logits",
    "pad_sequences",
    "save_valle",
    "load_valle",
    "KIND",
]

KIND = "valle"
IGNORE = -100  # targets ignored by the cross-entropy
PROMPT, PHONES, SPEECH = 0, 1, 2  # segment ids


def _ar_default() -> TransformerConfig:
    return TransformerConfig(dim=256, n_layers=5, n_heads=4, max_seq_len=4096, causal=True)


def _nar_default() -> TransformerConfig:
    return TransformerConfig(dim=256, n_layers=5, n_heads=4, max_seq_len=4096, causal=False)


@dataclass
class VALLEConfig:
    """Shape of the VALL-E baseline (the default is the demo size: ≈10.5 M parameters).

    ``phone_vocab_size`` comes from :class:`latentspeech.text.PhoneVocab` (``.size``);
    ``num_quantizers``/``codebook_size``/``frame_rate`` from the RVQ codec. ``ar`` must be causal,
    ``nar`` bidirectional (they are independent networks and may differ in size).
    """

    phone_vocab_size: int = 256
    phone_pad_id: int = 0
    num_quantizers: int = 8
    codebook_size: int = 1024
    frame_rate: float = 50.0
    ar: TransformerConfig = field(default_factory=_ar_default)
    nar: TransformerConfig = field(default_factory=_nar_default)
    frames_per_phone: float | None = None  # length guard; None: LatentLM's default at frame_rate
    guard_min_frames: int = 10  # added to the guard (short sentences)
    min_frames: int = 1  # EOS is not allowed before this many frames (no empty output)
    max_frames: int = 1500  # absolute cap of the guard (30 s at 50 Hz)
    max_prompt_seconds: float = 6.0  # longer prompts are cut (inference)
    phone_position_scale: float = 1.0  # phone k at RoPE position round(k * scale), as in LatentLM
    # guided attention in the AR stage's layer ``guided_attention_layer`` (as LatentLMConfig; 0 = off)
    guided_attention_weight: float = 0.0
    guided_attention_layer: int = 1
    guided_attention_sigma: float = 0.2

    def validate(self) -> None:
        if self.phone_vocab_size < 2 or not 0 <= self.phone_pad_id < self.phone_vocab_size:
            raise ConfigError(f"valle: bad phone vocabulary (size {self.phone_vocab_size}, pad {self.phone_pad_id})")
        if self.num_quantizers < 2:
            raise ConfigError(f"valle: num_quantizers must be >= 2 (AR level + NAR levels), got {self.num_quantizers}")
        if self.codebook_size < 2:
            raise ConfigError(f"valle: codebook_size must be >= 2, got {self.codebook_size}")
        if self.frame_rate <= 0:
            raise ConfigError(f"valle: frame_rate must be positive, got {self.frame_rate}")
        if not self.ar.causal:
            raise ConfigError("valle.ar.causal must be true (the AR stage decodes left to right)")
        if self.nar.causal:
            raise ConfigError("valle.nar.causal must be false (the NAR stage sees the whole utterance)")
        validate_alignment_aids(self, "valle", "AR Transformer", self.ar.n_layers)
        if self.frames_per_phone is not None and self.frames_per_phone <= 0:
            raise ConfigError(f"valle: frames_per_phone must be positive, got {self.frames_per_phone}")
        if not 1 <= self.min_frames <= self.max_frames or self.guard_min_frames < 0:
            raise ConfigError(
                f"valle: need 1 <= min_frames <= max_frames and guard_min_frames >= 0 (got {self.min_frames}, "
                f"{self.max_frames}, {self.guard_min_frames})"
            )
        self.ar.validate()
        self.nar.validate()

    @property
    def guard_frames_per_phone(self) -> float:
        if self.frames_per_phone is not None:
            return self.frames_per_phone

        return default_frames_per_phone(self.frame_rate)

    def length_guard(self, n_phones: torch.Tensor) -> torch.Tensor:
        """Most frames generated for sentences of ``n_phones [B]`` phones (LatentLM's rule)."""
        guard = (self.guard_frames_per_phone * n_phones.float()).ceil().long() + self.guard_min_frames
        return guard.clamp(1, self.max_frames)

    @property
    def eos_id(self) -> int:
        return self.codebook_size

    @property
    def bos_id(self) -> int:
        return self.codebook_size + 1



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


# ---------------------------------------------------------------------------------- helpers
def pad_sequences(seqs: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad: int = 0,
                  device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D integer sequences into ``[B, Lmax]``; returns (padded, lengths)."""
    tensors = [torch.as_tensor(s, dtype=torch.long) for s in seqs]
    lens = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    out = torch.full((len(tensors), int(lens.max()) if len(tensors) else 0), pad, dtype=torch.long)
    for i, t in enumerate(tensors):
        out[i, : len(t)] = t
    return out.to(device), lens.to(device)


def _lengths_mask(lens: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lens.device)[None, :] < lens[:, None]


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


def _layout(segments: list[tuple[torch.Tensor, torch.Tensor]],
            phone_position_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate right-padded segments ``(emb [B, S, D], lens [B])`` into one sequence.

    Returns (x [B, ΣS, D], positions [B, ΣS] numbered from 0 inside each segment, padding mask).
    The second segment is the phones: its positions are spread by ``phone_position_scale``
    (as LatentLM's, :func:`~latentspeech.models.latentlm.scaled_phone_positions`).
    """
    xs, pos, mask = [], [], []
    for i, (emb, lens) in enumerate(segments):
        B, S, _ = emb.shape
        xs.append(emb)
        index = torch.arange(S, device=emb.device).expand(B, S)
        pos.append(scaled_phone_positions(index, phone_position_scale) if i == 1 else index)
        mask.append(_lengths_mask(lens, S))
    return torch.cat(xs, 1), torch.cat(pos, 1), torch.cat(mask, 1)


# ------------------------------------------------------------------------------- AR stage
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

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states → logits over codes + EOS (output projection tied to the code embedding)."""
        return F.linear(h, self.code_emb.weight[: self.cfg.codebook_size + 1])

    def _context(self, phones, phone_lens, prompt0, prompt_lens):
        """Embedded prompt and phone segments."""
        seg = self.segment_emb.weight
        return [(self.code_emb(prompt0) + seg[PROMPT], prompt_lens), (self.phone_emb(phones) + seg[PHONES], phone_lens)]

    def forward(self, batch: VALLEBatch, attention_layer: int | None = None):
        """Teacher-forced logits ``[B, T+1, K+1]`` at the speech positions and their targets ``[B, T+1]``
        (plus that layer's attention probabilities with ``attention_layer``)."""
        cfg = self.cfg
        codes0 = batch.codes[:, 0]
        B, T = codes0.shape
        valid = _lengths_mask(batch.code_lens, T)
        bos = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=codes0.device)
        speech_in = torch.cat([bos, codes0.masked_fill(~valid, 0)], dim=1)
        targets = torch.full((B, T + 1), IGNORE, dtype=torch.long, device=codes0.device)
        targets[:, :T] = codes0.masked_fill(~valid, IGNORE)
        targets[torch.arange(B, device=codes0.device), batch.code_lens] = cfg.eos_id
        segments = self._context(batch.phones, batch.phone_lens, batch.prompt[:, 0], batch.prompt_lens)
        segments.append((self.code_emb(speech_in) + self.segment_emb.weight[SPEECH], batch.code_lens + 1))
        x, pos, mask = _layout(segments, self.cfg.phone_position_scale)
        if attention_layer is not None:
            h, att = self.transformer(x, positions=pos, padding_mask=mask, attention_layer=attention_layer)
            return self.logits(h[:, -(T + 1):]), targets, att
        h = self.transformer(x, positions=pos, padding_mask=mask)
        return self.logits(h[:, -(T + 1):]), targets

    def loss(self, batch: VALLEBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
        if guide:  # segments are right-padded one by one: prompt slots [0, P), phones [P, P + L), speech after
            P, L = batch.prompt.shape[-1], batch.phones.shape[1]
            B, T = batch.codes.shape[0], att.shape[-1]
            slot = torch.arange(T, device=att.device)[None].expand(B, T)
            g = guided_attention_loss(att, slot, torch.full_like(batch.phone_lens, P), batch.phone_lens,
                                      slot - (P + L), batch.code_lens + 1, cfg.guided_attention_sigma)
            loss = loss + cfg.guided_attention_weight * g
            stats["ar_guide"] = g.detach()
        return loss, stats

    def start(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor, prompt_lens: torch.Tensor,
              max_new: int):
        """Prefill a KV cache with [prompt | phones | BOS]; returns (logits of the first frame [B, K+1], cache).

        The cache has room for ``max_new`` more frames (see :meth:`step`)."""
        B, dev = phones.shape[0], phones.device
        segments = self._context(phones, phone_lens, prompt0, prompt_lens)
        bos = torch.full((B, 1), self.cfg.bos_id, dtype=torch.long, device=dev)
        ones = torch.ones(B, dtype=torch.long, device=dev)
        segments.append((self.code_emb(bos) + self.segment_emb.weight[SPEECH], ones))
        x, pos, mask = _layout(segments, self.cfg.phone_position_scale)
        cache = self.transformer.new_cache(B, x.shape[1] + max_new)
        h = self.transformer(x, positions=pos, padding_mask=mask, cache=cache)
        return self.logits(h[:, -1]).float(), cache

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        """Feed one frame ``tokens [B]`` (its position continues from the cache); logits of the next [B, K+1]."""
        h = self.transformer(self.code_emb(tokens[:, None]) + self.segment_emb.weight[SPEECH], cache=cache)
        return self.logits(h[:, -1]).float()

    @torch.no_grad()
    def generate(self, phones: torch.Tensor, phone_lens: torch.Tensor, prompt0: torch.Tensor,
                 prompt_lens: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 ras_window: int = 0, ras_threshold: float = 0.1, max_frames: int | None = None,
                 min_frames: int | None = None, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Sample first-level codes. Returns (codes0 [B, T], lengths [B], stopped [B], transformer calls).

        ``max_frames`` caps the length guard; ``min_frames`` overrides ``cfg.min_frames`` (EOS is
        masked before it; ``min_frames >= max_frames`` generates exactly ``max_frames`` frames).
        ``ras_window > 0`` turns on VALL-E 2's repetition-aware sampling: when the sampled code
        fills more than ``ras_threshold`` of the last ``ras_window`` frames, it is redrawn from the
        whole distribution (no top-k/top-p), which breaks the loops that filtered sampling falls into."""
        cfg = self.cfg
        B, dev = phones.shape[0], phones.device
        limit = cfg.length_guard(phone_lens)
        if max_frames is not None:
            limit = limit.clamp(max=max_frames)
        floor = max(1, min_frames if min_frames is not None else cfg.min_frames)
        horizon = int(limit.max())

        logits, cache = self.start(phones, phone_lens, prompt0, prompt_lens, horizon)
        calls = 1
        out = torch.zeros(B, horizon, dtype=torch.long, device=dev)
        lengths = limit.clone()
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        for t in range(horizon + 1):
            if t < floor:
                logits[:, cfg.eos_id] = float("-inf")
            tok = sample_logits(logits, temperature, top_k, top_p, generator)
            if ras_window > 0 and t > 0:
                recent = out[:, max(0, t - ras_window) : t]
                repeats = (recent == tok[:, None]).sum(dim=1).float() / ras_window
                redo = (repeats > ras_threshold) & (tok != cfg.eos_id)
                if bool(redo.any()):
                    tok[redo] = sample_logits(logits[redo], max(temperature, 1e-5), generator=generator)
            tok = torch.where(t >= limit, torch.full_like(tok, cfg.eos_id), tok)  # the length guard
            ended = (tok == cfg.eos_id) & ~done
            stopped |= ended & (t < limit)
            lengths = torch.where(ended, torch.full_like(lengths, t), lengths)
            done |= ended
            if bool(done.all()) or t == horizon:
                break
            out[:, t] = torch.where(done, torch.zeros_like(tok), tok)
            logits = self.step(out[:, t], cache)
            calls += 1
        T = int(lengths.max())
        out = out[:, :T] * _lengths_mask(lengths, T)
        return out, lengths, stopped, calls


# ------------------------------------------------------------------------------ NAR stage
class NARStage(nn.Module):
    """Bidirectional Transformer: codes of levels 0..j-1 (summed) → codes of level j, j = 1..Q-1."""

    def __init__(self, cfg: VALLEConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.nar.dim
        self.phone_emb = nn.Embedding(cfg.phone_vocab_size, d)
        self.level_code_emb = nn.ModuleList(nn.Embedding(cfg.codebook_size, d) for _ in range(cfg.num_quantizers))
        self.stage_emb = nn.Embedding(cfg.num_quantizers - 1, d)  # which level is predicted (1..Q-1)
        self.segment_emb = nn.Embedding(3, d)
        self.transformer = Transformer(cfg.nar)
        for emb in (self.phone_emb, self.stage_emb, self.segment_emb, *self.level_code_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def embed_levels(self, codes: torch.Tensor, upto: torch.Tensor | int) -> torch.Tensor:
        """Sum of the embeddings of levels ``q < upto`` of ``codes [B, Q', T]`` (``upto``: int or [B])."""
        B = codes.shape[0]
        upto = torch.as_tensor(upto, device=codes.device).expand(B)
        total = 0
        for q in range(min(codes.shape[1], int(upto.max()))):
            use = (q < upto).to(self.stage_emb.weight.dtype)[:, None, None]
            total = total + self.level_code_emb[q](codes[:, q]) * use
        return total

    def hidden(self, phones, phone_lens, prompt, prompt_lens, speech_emb, code_lens, levels) -> torch.Tensor:
        """Run the Transformer; returns hidden states at the speech positions ``[B, T, D]``."""
        seg = self.segment_emb.weight
        stage = self.stage_emb(levels - 1)[:, None, :]
        x, pos, mask = _layout([
            (self.embed_levels(prompt, self.cfg.num_quantizers) + seg[PROMPT], prompt_lens),
            (self.phone_emb(phones) + seg[PHONES], phone_lens),
            (speech_emb + seg[SPEECH], code_lens),
        ], self.cfg.phone_position_scale)
        h = self.transformer(x + stage, positions=pos, padding_mask=mask)
        return h[:, -speech_emb.shape[1]:]

    def logits(self, h: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, K]`` for level ``levels[b]`` (output tied to that level's code embedding)."""
        weight = torch.stack([e.weight for e in self.level_code_emb])[levels]  # [B, K, D]
        return torch.bmm(h, weight.transpose(1, 2))

    def forward(self, batch: VALLEBatch, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits ``[B, T, K]`` of level ``levels[b]`` and their targets ``[B, T]``."""
        codes = batch.codes
        B, _, T = codes.shape
        speech = self.embed_levels(codes, levels)
        h = self.hidden(batch.phones, batch.phone_lens, batch.prompt, batch.prompt_lens, speech, batch.code_lens,
                        levels)
        targets = codes[torch.arange(B, device=codes.device), levels]
        targets = targets.masked_fill(~_lengths_mask(batch.code_lens, T), IGNORE)
        return self.logits(h, levels), targets

    def loss(self, batch: VALLEBatch, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of one random level (uniform in 1..Q-1) per example."""
        Q = self.cfg.num_quantizers
        levels = torch.randint(1, Q, (batch.size,), generator=generator).to(batch.codes.device)
        logits, targets = self(batch, levels)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        keep = targets != IGNORE
        acc = (logits.argmax(-1) == targets)[keep].float().mean()
        return loss, {"nar_acc": acc.detach()}

    @torch.no_grad()
    def generate(self, phones, phone_lens, prompt, prompt_lens, codes0: torch.Tensor, code_lens: torch.Tensor,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Fill in levels 1..Q-1 given ``codes0 [B, T]``; greedy unless ``temperature > 0``.

        Returns (codes [B, Q, T], transformer calls = Q-1)."""
        Q = self.cfg.num_quantizers
        B, T = codes0.shape
        codes = torch.zeros(B, Q, T, dtype=torch.long, device=codes0.device)
        codes[:, 0] = codes0
        if T == 0:
            return codes, 0
        valid = _lengths_mask(code_lens, T)
        speech = self.level_code_emb[0](codes0)
        for j in range(1, Q):
            levels = torch.full((B,), j, dtype=torch.long, device=codes0.device)
            h = self.hidden(phones, phone_lens, prompt, prompt_lens, speech, code_lens, levels)
            logits = self.logits(h, levels)
            tok = sample_logits(logits.reshape(B * T, -1), temperature, generator=generator).view(B, T)
            codes[:, j] = tok * valid
            speech = speech + self.level_code_emb[j](codes[:, j])
        return codes, Q - 1


# --------------------------------------------------------------------------------- model
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
        dev = self.ar.code_emb.weight.device
        if not torch.is_tensor(phones):
            phones, phone_lens = pad_sequences(phones, self.cfg.phone_pad_id)
        if not torch.is_tensor(prompt_codes):
            prompts = list(prompt_codes)
            prompt_lens = torch.tensor([p.shape[-1] for p in prompts], dtype=torch.long)
            padded = torch.zeros(len(prompts), self.cfg.num_quantizers, int(prompt_lens.max()), dtype=torch.long)
            for i, p in enumerate(prompts):
                padded[i, :, : p.shape[-1]] = torch.as_tensor(p)[: self.cfg.num_quantizers]
            prompt_codes = padded
        B = phones.shape[0]
        if phone_lens is None:
            phone_lens = torch.full((B,), phones.shape[1], dtype=torch.long)
        if prompt_lens is None:
            prompt_lens = torch.full((B,), prompt_codes.shape[-1], dtype=torch.long)
        if prompt_codes.shape[0] != B:
            raise ValueError(f"{B} phone sequences but {prompt_codes.shape[0]} prompts")
        if prompt_codes.shape[1] != self.cfg.num_quantizers:
            raise ValueError(f"prompt has {prompt_codes.shape[1]} code levels, the model {self.cfg.num_quantizers}")
        phones, phone_lens = phones.to(dev), phone_lens.to(dev)
        prompt_codes, prompt_lens = prompt_codes.to(dev), prompt_lens.to(dev)
        if generator is None and seed is not None:
            generator = torch.Generator(device=dev).manual_seed(seed)
        codes0, lengths, stopped, ar_steps = self.ar.generate(
            phones, phone_lens, prompt_codes[:, 0], prompt_lens, temperature=temperature, top_k=top_k, top_p=top_p,
            ras_window=ras_window, ras_threshold=ras_threshold, max_frames=max_frames, min_frames=min_frames,
            generator=generator)
        codes, nar_passes = self.nar.generate(phones, phone_lens, prompt_codes, prompt_lens, codes0, lengths,
                                              nar_temperature, generator)
        return VALLEOutput(codes=codes, lengths=lengths, stopped=stopped, ar_steps=ar_steps, nar_passes=nar_passes)


# ---------------------------------------------------------------------------- model dirs
def save_valle(model: VALLE, path: str | os.PathLike, codec=None, vocab=None, meta: dict | None = None,
               dtype: torch.dtype = torch.float32, card: str | None = None) -> Path:
    """Write a self-contained model dir: weights + config (kind ``valle``) and ``codec/`` (the RVQ codec).

    ``vocab`` (a :class:`~latentspeech.text.PhoneVocab`) is stored in ``meta["phone_vocab"]`` (as LatentLM does).
    ``dtype=torch.float16`` halves the size (the bundle is stored that way).
    """
    from ..checkpoint import save_model_dir
    from ..config import to_dict

    info = dict(meta or {})
    info["parameters"] = model.num_parameters()
    if vocab is not None:
        info["phone_vocab"] = vocab.to_dict()
    path = save_model_dir(path, model.state_dict(), KIND, to_dict(model.cfg), info, card=card, dtype=dtype)
    if codec is not None:
        from .codec import save_codec

        save_codec(codec, Path(path) / "codec", dtype=dtype)
    return Path(path)


def load_valle(name_or_dir: str | os.PathLike | None = "valle-demo", device: str | torch.device | None = None,
               with_codec: bool = True):
    """Load a VALL-E model dir (or bundled name). Returns ``(model, codec or None, vocab or None, meta)``.

    The model comes back in eval mode, float32, on ``device``; ``codec`` from the ``codec/``
    subfolder (``CheckpointError`` if it is missing or not an RVQ codec matching the model).
    """
    from ..checkpoint import load_model_dir

    md = load_model_dir(name_or_dir if name_or_dir is not None else "valle-demo", kind=KIND)
    cfg = md.typed_config(VALLEConfig)
    model = VALLE(cfg)
    md.load_into(model)
    model = model.eval().to(device or "cpu")
    vocab = None
    if "phone_vocab" in md.meta:
        from ..text.vocab import PhoneVocab

        try:
            vocab = PhoneVocab.from_dict(md.meta["phone_vocab"])
        except ConfigError as e:
            raise CheckpointError(f"{md.path}: {e}") from None
        if vocab.size != cfg.phone_vocab_size:
            raise CheckpointError(
                f"{md.path}: phone vocabulary has {vocab.size} tokens, the model {cfg.phone_vocab_size}")
    codec = None
    if with_codec:
        codec = _load_matching_codec(md.path / "codec", cfg, device)
    return model, codec, vocab, md.meta


def _load_matching_codec(path: Path, cfg: VALLEConfig, device):
    from .codec import load_codec

    if not path.is_dir():
        raise CheckpointError(f"{path.parent} has no codec/ subfolder (a VALL-E model dir holds its RVQ codec)")
    codec = load_codec(path, device=device)
    if not codec.is_rvq:
        raise CheckpointError(f"{path} is not an RVQ codec (bottleneck '{codec.cfg.bottleneck.kind}')")
    if codec.num_quantizers < cfg.num_quantizers or codec.codebook_size != cfg.codebook_size:
        raise CheckpointError(
            f"{path}: codec has {codec.num_quantizers} x {codec.codebook_size} codes, the model needs "
            f"{cfg.num_quantizers} x {cfg.codebook_size}"
        )
    if not math.isclose(codec.frame_rate, cfg.frame_rate, rel_tol=1e-3):
        raise CheckpointError(f"{path}: codec frame rate {codec.frame_rate} Hz != model's {cfg.frame_rate} Hz")
    return codec
