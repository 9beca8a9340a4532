"""LatentLM for speech: a causal Transformer over [prompt latents | phones | speech latents] whose
hidden state at each speech position conditions a diffusion head that denoises the next latent.

Sequence layout (one row of a batch)::

    slot:      p_1 … p_P   | ph_1 … ph_L | BOS  z_1  z_2 … z_F
    segment:   0 (prompt)  | 1 (phones)  | 2 (speech) ──────────
    position:  0 … P-1     | 0 … L-1     | 0    1    2  … F        ("segment" numbering)
    predicts:                              z_1  z_2  z_3 … stop

* The speaker prompt comes first, as codec latents of *another* utterance of the speaker (no
  prompt transcript: any clip of the voice works at inference, and the model cannot learn to
  read the prompt's words). Then the phones of the text to speak, then a learned BOS and the
  target latents. Each token gets ``segment_embedding[segment]`` added, so segments are
  distinguishable even though their positions overlap.
* Positions restart at 0 in every segment (``position_mode="segment"``, default). The relative
  RoPE offset between speech frame j and phone k is then j − k whatever the prompt length and
  phone count, which makes the monotonic text-to-speech alignment the same pattern for every
  utterance; paper.md's feasibility run learnt alignment and stopping early this way.
  ``"global"`` numbers the whole row 0..T-1 instead (for ablations). ``phone_position_scale``
  (≈ frames per phone of the data) spreads phone positions to the speech frame rate, so that the
  frame saying phone k and phone k sit at about the same position: the alignment becomes a
  near-diagonal in RoPE offsets (RESULTS.md "alignment aids" measures what it buys).
* Training-only alignment aids (off by default, on in the demo config): guided attention pulls one
  layer's speech-to-phone attention towards the diagonal; corrupted teacher forcing (noise +
  dropout on the fed-back latents) stops the model from merely continuing the previous frame.
* The hidden state at BOS and at every z_j conditions the diffusion head for z_{j+1} and the
  stop head ("does speech end here?": 1 only at z_F).
* Classifier-free guidance: in training the prompt *and* phones of a row are dropped with
  probability ``cfg_drop_prob`` (the row becomes ``BOS z_1 … z_F``); at inference the
  unconditional rows are exactly that and run in the same batch as the conditional ones. A model
  whose head was guidance-distilled (``guidance_distilled``, :mod:`latentspeech.train.distill`)
  gives the guided output from the conditional rows alone and samples with ``cfg_scale`` 1.
* Latents are the codec's *normalised* latents (``codec.normalize``: per-dim zero mean, unit std).
  With ``patch_size`` p > 1 every z above is a token of p consecutive frames (:func:`patchify`):
  the sequence, the Transformer passes and the head calls per second of audio all shrink by p.

Pointer mode (``alignment="pointer"``) keeps this layout and adds explicit alignment: a small
bidirectional phone encoder gives each phone a vector; every speech token's input gets the vector
of the phone its frame says plus an embedding of how many frames that phone has lasted, and the
head's condition for the next frame gets the vector of *that* frame's phone. In training the phone
of each frame comes from per-phone durations (``latentspeech align``, :mod:`.aligner`); at inference
an advance head decides after every frame whether the next one says the next sounding phone, and
advancing past the last one ends the utterance (it replaces the stop head). The Transformer no
longer has to find its place in the text by attention, which a small model trained on a few hours
learns slowly (RESULTS.md "Session 4"). With patches (p > 1) a token carries the vectors of its p
frames' phones (concatenated, one projection) and the elapsed count of its last frame; the advance
head gives one decision per frame of the next token (the first frame after BOS has none), and a row
whose pointer passes the last phone inside a token keeps only the frames before (RESULTS.md
"Session 5").

Batched generation left-pads the prefixes (``prompt | phones | BOS``) so that every row's BOS is
the last slot and all rows advance through the KV cache in lockstep; a row stops when its stop
probability passes ``stop_threshold`` (consulted only after ``min_frames_per_phone · L`` frames) or
when it reaches its length guard ``ceil(frames_per_phone · L) + guard_min_frames``.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import load_model_dir, save_model_dir
from ..config import to_dict
from ..data.batch import LMBatch
from ..errors import ConfigError
from .alignment import default_frames_per_phone, guided_attention_loss, scaled_phone_positions, validate_alignment_aids
from .diffusion import DiffusionHead, DiffusionHeadConfig, diffusion_loss
from .transformer import Transformer, TransformerConfig

__all__ = ["LatentLMConfig", "LatentLM", "GenerationOutput", "KIND", "save_latentlm", "load_latentlm"]

KIND = "latentlm"
PROMPT, PHONES, SPEECH = 0, 1, 2



def _binary_loss(logits: torch.Tensor, labels: torch.Tensor,
                 pos_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE of a one-logit head ([N, 1] logits, [N] 0/1 labels) and its accuracy at threshold 0.5."""
    logits = logits.squeeze(-1).float()
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pw)
    with torch.no_grad():
        acc = ((logits > 0).float() == labels).float().mean()
    return loss, acc



@dataclass
class LatentLMConfig:
    """The TTS model. ``latent_dim``/``frame_rate`` come from the codec, ``vocab_size``/``pad_id``
    from the :class:`~latentspeech.text.PhoneVocab`."""

    latent_dim: int = 32
    vocab_size: int = 128
    pad_id: int = 0
    frame_rate: float = 25.0
    # ``patch_size`` consecutive codec frames make one token (LatentLM's patching): the Transformer
    # runs at frame_rate / patch_size and the head denoises patch_size·latent_dim values at once, so
    # Transformer passes and head calls per second of audio both fall by patch_size.
    patch_size: int = 1
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head_width: int | None = None  # None: the Transformer's width
    head_blocks: int = 3
    head_mlp_ratio: float = 2.0
    head_modulation: Literal["joint", "separable"] = "joint"  # see DiffusionHeadConfig.modulation
    prediction: Literal["eps", "v"] = "v"
    diffusion_steps: int = 1000
    batch_mul: int = 4
    position_mode: Literal["segment", "global"] = "segment"
    phone_position_scale: float = 1.0  # "segment" mode: phone k sits at RoPE position round(k * scale)
    cfg_drop_prob: float = 0.1
    stop_weight: float = 1.0
    # Guided attention (Tachibana et al., 2018), a training-only alignment aid: layer
    # ``guided_attention_layer``'s attention from speech tokens pays for every share that is not on
    # the phones near the diagonal (band exp(-(k/L - j/F)² / 2σ²)). 0 disables it.
    guided_attention_weight: float = 0.0
    guided_attention_layer: int = 1
    guided_attention_sigma: float = 0.2
    # Corrupted teacher forcing (training only): the fed-back target latents get Gaussian noise of
    # std ``input_noise`` (normalised units) and their input embeddings dropout ``input_dropout``
    # (as Tacotron's pre-net), so the model cannot just continue the previous frame and must read
    # the phones; it also sees inputs as imperfect as its own samples.
    input_noise: float = 0.0
    input_dropout: float = 0.0
    stop_pos_weight: float = 5.0
    stop_threshold: float = 0.5
    frames_per_phone: float | None = None  # length guard; None: default_frames_per_phone(frame_rate)
    min_frames_per_phone: float | None = None  # the stop head is ignored before this many frames per phone
    guard_min_frames: int = 10
    max_prompt_seconds: float = 6.0
    # How a speech token finds the phone it says. "attention": by attending to the phone prefix (the
    # paper's model). "pointer": each speech token is also told its phone: a bidirectional phone
    # encoder's vector of that phone is added to its input and to the head's condition, with an
    # embedding of how many frames the phone has lasted; the phone of each frame comes from
    # per-token durations in training (``latentspeech align``), and at inference an advance head
    # moves a pointer over the sounding phones (tokens outside ``silent_token_ids``); moving past
    # the last one ends the utterance (no stop head). With patch_size p each token carries the
    # vectors of its p frames' phones and the advance head makes p decisions per token.
    alignment: Literal["attention", "pointer"] = "attention"
    phone_encoder_layers: int = 2
    max_phone_frames: int = 32  # pointer: longest elapsed count embedded; a phone held this long is left
    advance_threshold: float = 0.5
    silent_token_ids: list[int] = field(default_factory=list)  # pointer: tokens that take no frames
    # pointer, inference only: > 0 forces the pointer on after a phone has sounded this many frames
    # (a held "sh" otherwise lasts until max_phone_frames); tokens in pause_token_ids (pause
    # punctuation, whose silences run longer) keep max_phone_frames.
    max_hold_frames: int = 0
    pause_token_ids: list[int] = field(default_factory=list)
    # > 0: the head was fine-tuned to give the CFG-guided output at this scale from the conditional
    # state alone (latentspeech.train.distill); such a model samples with cfg_scale 1 (one row).
    guidance_distilled: float = 0.0

    def validate(self) -> None:
        if self.patch_size < 1:
            raise ConfigError(f"latentlm: patch_size must be >= 1, got {self.patch_size}")
        if self.latent_dim <= 0 or self.vocab_size <= 0:
            raise ConfigError(f"latentlm: latent_dim and vocab_size must be positive ({self.latent_dim}, {self.vocab_size})")
        if not 0.0 <= self.cfg_drop_prob < 1.0:
            raise ConfigError(f"latentlm: cfg_drop_prob must be in [0, 1), got {self.cfg_drop_prob}")
        if self.frame_rate <= 0:
            raise ConfigError(f"latentlm: frame_rate must be positive, got {self.frame_rate}")
        if self.input_noise < 0 or not 0 <= self.input_dropout < 1:
            raise ConfigError(f"latentlm: need input_noise >= 0 and 0 <= input_dropout < 1 "
                              f"(got {self.input_noise}, {self.input_dropout})")
        validate_alignment_aids(self, "latentlm", "Transformer", self.transformer.n_layers)
        if self.alignment not in ("attention", "pointer"):
            raise ConfigError(f"latentlm: alignment must be 'attention' or 'pointer', got {self.alignment!r}")
        if self.alignment == "pointer" and (self.max_phone_frames < 1 or self.phone_encoder_layers < 1):
            raise ConfigError("latentlm: alignment 'pointer' needs max_phone_frames >= 1 and phone_encoder_layers >= 1")
        if self.max_hold_frames < 0:
            raise ConfigError(f"latentlm: max_hold_frames must be >= 0 (0: max_phone_frames), got {self.max_hold_frames}")
        if not self.transformer.causal:
            raise ConfigError("latentlm: the Transformer must be causal")
        self.head_config().validate()
        self.transformer.validate()

    def head_config(self) -> DiffusionHeadConfig:
        return DiffusionHeadConfig(
            latent_dim=self.token_dim, cond_dim=self.transformer.dim, width=self.head_width or self.transformer.dim,
            n_blocks=self.head_blocks, mlp_ratio=self.head_mlp_ratio, modulation=self.head_modulation,
            prediction=self.prediction,
            num_steps=self.diffusion_steps, batch_mul=self.batch_mul,
        )

    @property
    def token_dim(self) -> int:
        """Values per Transformer token: ``patch_size`` frames of ``latent_dim``."""
        return self.latent_dim * self.patch_size

    @property
    def token_rate(self) -> float:
        """Transformer tokens (= decoding steps) per second of audio."""
        return self.frame_rate / self.patch_size

    @property
    def guard_frames_per_phone(self) -> float:
        """Length guard in codec frames per phone token (see :meth:`LatentLM.length_guard`)."""
        return self.frames_per_phone or default_frames_per_phone(self.frame_rate)


def patchify(z: torch.Tensor, lens: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group frames into tokens: z [B, F, D] right-padded, lens [B] -> ([B, ceil(F/p), p·D], ceil(lens/p)).

    A row whose length is not a multiple of ``p`` fills its last token by repeating its last frame
    (utterances end in silence, so the repeat is silence too); ``unpatchify`` undoes the grouping.
    """
    if patch_size == 1:
        return z, lens
    B, F_, D = z.shape
    n_tok = -(-F_ // patch_size)
    idx = torch.arange(n_tok * patch_size, device=z.device)[None, :]
    idx = torch.minimum(idx, (lens[:, None] - 1).clamp(min=0))  # repeat each row's last frame
    z = torch.gather(z, 1, idx[..., None].expand(B, idx.shape[1], D)) if F_ > 0 else z.new_zeros(B, 0, D)
    return z.reshape(B, n_tok, patch_size * D), -(-lens // patch_size)


def unpatchify(tokens: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Tokens [..., N, p·D] -> frames [..., N·p, D]."""
    if patch_size == 1:
        return tokens
    *lead, n, pd = tokens.shape
    return tokens.reshape(*lead, n * patch_size, pd // patch_size)



@dataclass
class GenerationOutput:
    latents: list[torch.Tensor]  # per row: [F_b, D] normalised latents
    stopped: list[bool]  # True: the stop head (pointer mode: passing the last phone) ended the row; False: the guard did
    guard: list[int]  # the length guard of each row (tokens: frames / patch_size)
    transformer_passes: int  # incremental Transformer calls (prefill included)
    head_evals: int  # diffusion-head calls (each on the whole batch; CFG doubles the rows)


@dataclass
class _Packed:
    x: torch.Tensor  # [B, T, dim]
    positions: torch.Tensor  # [B, T]
    valid: torch.Tensor  # [B, T]
    slot: torch.Tensor  # [B, T] index within the row's own sequence (negative on left padding)
    speech_start: torch.Tensor  # [B] slot of BOS in row coordinates (= P + L)


@dataclass
class _TeacherForced:
    batch: LMBatch  # patched
    pk: _Packed
    h: torch.Tensor  # [B, T, dim]
    att: torch.Tensor | None
    rel: torch.Tensor  # [B, T]: 0 at BOS, j at z_j
    plens: torch.Tensor
    llens: torch.Tensor
    dmask: torch.Tensor  # [B, T]: slots that predict a token
    targets: torch.Tensor  # [N, token_dim] the predicted tokens (dmask order)
    cond: torch.Tensor  # [N, dim] their head conditions
    adv_labels: torch.Tensor | None
    adv_mask: torch.Tensor | None


class LatentLM(nn.Module):
    """See the module docstring for the layout; :meth:`loss` trains, :meth:`generate` samples."""

    def __init__(self, cfg: LatentLMConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dim = cfg.transformer.dim
        self.latent_in = nn.Linear(cfg.token_dim, dim)
        self.phone_emb = nn.Embedding(cfg.vocab_size, dim)
        self.segment_emb = nn.Embedding(3, dim)
        self.bos = nn.Parameter(torch.zeros(dim))
        self.transformer = Transformer(cfg.transformer)
        self.head = DiffusionHead(cfg.head_config())
        self.pointer = cfg.alignment == "pointer"
        if not self.pointer:
            self.stop_head = nn.Linear(dim, 1)
        for emb in (self.phone_emb.weight, self.segment_emb.weight, self.bos):
            nn.init.normal_(emb, std=0.02)
        nn.init.normal_(self.latent_in.weight, std=0.02)
        nn.init.zeros_(self.latent_in.bias)
        if self.pointer:
            tc = cfg.transformer
            self.phone_encoder = Transformer(TransformerConfig(
                dim=dim, n_layers=cfg.phone_encoder_layers, n_heads=tc.n_heads, n_kv_heads=tc.n_kv_heads,
                ffn_dim=tc.ffn_dim, max_seq_len=tc.max_seq_len, dropout=tc.dropout, causal=False))
            p = cfg.patch_size
            self.aligned_in = nn.Linear(p * dim, dim)  # the token's frames' phone vectors, into the speech token
            self.aligned_cond = nn.Linear(p * dim, dim)  # the next token's frames' phone vectors, into the head's condition
            self.elapsed_emb = nn.Embedding(cfg.max_phone_frames + 1, dim)  # 0 at BOS
            nn.init.normal_(self.elapsed_emb.weight, std=0.02)
            # per frame of the next token: "this frame says a later phone than the frame before (or nothing)"
            self.advance_head = nn.Linear(dim, p)
            nn.init.zeros_(self.advance_head.weight)
            nn.init.constant_(self.advance_head.bias, -1.0)
        else:
            nn.init.zeros_(self.stop_head.weight)
            nn.init.constant_(self.stop_head.bias, -4.0)  # "keep talking" until taught otherwise

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- sequence construction ------------------------------------------------------------------
    def speech_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """Input embedding of speech tokens z [..., patch_size·D] (what each generated token is fed back as)."""
        return self.latent_in(z) + self.segment_emb.weight[SPEECH]

    def _pack(self, prompt, prompt_lens, phones, phone_lens, target, target_lens, left_pad: bool,
              speech_extra: torch.Tensor | None = None) -> _Packed:
        """Lay out [prompt | phones | BOS | target] per row (see the module docstring).

        ``speech_extra`` [B, 1 + F, dim] is added to the BOS and target slots (pointer mode)."""
        B = prompt_lens.shape[0]
        dev = prompt_lens.device
        P, L, Fm = prompt.shape[1], phones.shape[1], target.shape[1]
        row_len = prompt_lens + phone_lens + 1 + target_lens
        T = int(row_len.max())
        s = torch.arange(T, device=dev)[None, :].expand(B, T)
        if left_pad:
            s = s - (T - row_len)[:, None]
        pl, ll = prompt_lens[:, None], phone_lens[:, None]
        start = pl + ll  # BOS slot
        valid = (s >= 0) & (s < row_len[:, None])
        is_prompt = valid & (s < pl)
        is_phone = valid & (s >= pl) & (s < start)
        is_bos = valid & (s == start)
        is_target = valid & (s > start)

        dim = self.cfg.transformer.dim
        x = torch.zeros(B, T, dim, device=dev, dtype=self.bos.dtype)
        if P > 0:
            idx = s.clamp(0, P - 1)
            lat = torch.gather(prompt, 1, idx[..., None].expand(B, T, prompt.shape[-1]))
            x = torch.where(is_prompt[..., None], self.latent_in(lat), x)
        if L > 0:
            ids = torch.gather(phones, 1, (s - pl).clamp(0, L - 1))
            x = torch.where(is_phone[..., None], self.phone_emb(ids), x)
        x = torch.where(is_bos[..., None], self.bos.expand(B, T, dim), x)
        if Fm > 0:
            idx = (s - start - 1).clamp(0, Fm - 1)
            lat = torch.gather(target, 1, idx[..., None].expand(B, T, target.shape[-1]))
            if self.training and self.cfg.input_noise > 0:
                lat = lat + self.cfg.input_noise * torch.randn_like(lat)
            emb = self.latent_in(lat)
            if self.training and self.cfg.input_dropout > 0:
                emb = F.dropout(emb, self.cfg.input_dropout, training=True)
            x = torch.where(is_target[..., None], emb, x)
        if speech_extra is not None:
            idx = (s - start).clamp(0, speech_extra.shape[1] - 1)
            extra = torch.gather(speech_extra, 1, idx[..., None].expand(B, T, dim))
            x = x + extra * (is_bos | is_target)[..., None]
        seg = torch.where(is_prompt, PROMPT, torch.where(is_phone, PHONES, SPEECH))
        x = x + self.segment_emb(seg)  # for target slots: = speech_embedding(z)
        x = x * valid[..., None]
        if self.cfg.position_mode == "segment":
            phone_pos = scaled_phone_positions(s - pl, self.cfg.phone_position_scale)
            pos = torch.where(is_prompt, s, torch.where(is_phone, phone_pos, s - start))
        else:
            pos = s
        return _Packed(x=x, positions=pos.clamp(min=0), valid=valid, slot=s, speech_start=start[:, 0])

    # -- training -------------------------------------------------------------------------------
    def loss(self, batch: LMBatch, cfg_drop: bool | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced losses: ``loss`` (total), ``diff`` (diffusion MSE per frame), ``stop`` (BCE).

        ``cfg_drop`` (default: ``self.training``) drops prompt + phones of rows with p = cfg_drop_prob.
        """
        cfg = self.cfg
        keep = None
        drop = self.training if cfg_drop is None else cfg_drop
        if drop and cfg.cfg_drop_prob > 0:
            u = torch.rand(batch.prompt_lens.shape, device=batch.prompt_lens.device, generator=generator)
            keep = u >= cfg.cfg_drop_prob
        guide = cfg.guided_attention_weight > 0 and self.training
        tf = self._teacher_forced(batch, keep, cfg.guided_attention_layer if guide else None)
        batch, pk, h, rel, plens, llens = tf.batch, tf.pk, tf.h, tf.rel, tf.plens, tf.llens
        flens = batch.target_lens[:, None]
        diff = diffusion_loss(self.head, tf.targets, tf.cond, cfg.batch_mul, generator=generator)
        diff_mean = diff.mean()
        if self.pointer:
            # advance: at BOS, z_1 … z_F of rows with phones, one label per frame of the next token
            # (positive where that frame says a later phone than the frame before, or speech has
            # ended); the first frame after BOS has no decision to make
            amask = pk.valid & (rel >= 0) & (rel <= flens) & (llens[:, None] > 0)
            lab_idx = rel.clamp(0, tf.adv_labels.shape[1] - 1)
            gather = lambda t: torch.gather(t, 1, lab_idx[..., None].expand(*lab_idx.shape, t.shape[-1]))  # noqa: E731
            labels, lmask = gather(tf.adv_labels)[amask], gather(tf.adv_mask)[amask]
            if bool(lmask.any()):
                adv, acc = _binary_loss(self.advance_head(h[amask])[lmask][:, None], labels[lmask].float())
            else:  # every row CFG-dropped
                adv = h.sum() * 0.0
                acc = adv.detach()
            out = {"loss": diff_mean + cfg.stop_weight * adv, "diff": diff_mean, "advance": adv, "advance_acc": acc}
        else:
            # stop: at BOS, z_1 … z_F; positive only at z_F
            smask = pk.valid & (rel >= 0) & (rel <= flens)
            labels = (rel == flens).float()[smask]
            stop, stop_acc = _binary_loss(self.stop_head(h[smask]), labels, cfg.stop_pos_weight)
            out = {"loss": diff_mean + cfg.stop_weight * stop, "diff": diff_mean, "stop": stop, "stop_acc": stop_acc}
        if guide:
            out["guide"] = guided_attention_loss(tf.att, pk.slot, plens, llens, rel, batch.target_lens,
                                                 cfg.guided_attention_sigma)
            out["loss"] = out["loss"] + cfg.guided_attention_weight * out["guide"]
        return out

    def forward(self, batch: LMBatch) -> torch.Tensor:
        return self.loss(batch)["loss"]

    def _teacher_forced(self, batch: LMBatch, keep: torch.Tensor | None = None,
                        attention_layer: int | None = None) -> "_TeacherForced":
        """One teacher-forced pass: rows with ``keep`` False lose prompt and phones (the CFG rows)."""
        frames = batch
        batch = self.patched(batch)
        plens, llens = batch.prompt_lens, batch.phone_lens
        if keep is not None:
            plens, llens = plens * keep.long(), llens * keep.long()
        extra = cond_add = adv_labels = adv_mask = None
        if self.pointer:
            extra, cond_add, adv_labels, adv_mask = self._pointer_inputs(frames, keep=llens > 0)
        pk = self._pack(batch.prompt, plens, batch.phones, llens, batch.target, batch.target_lens, left_pad=False,
                        speech_extra=extra)
        att = None
        if attention_layer is not None:
            h, att = self.transformer(pk.x, pk.positions, pk.valid, attention_layer=attention_layer)
        else:
            h = self.transformer(pk.x, pk.positions, pk.valid)
        rel = pk.slot - pk.speech_start[:, None]  # 0 at BOS, j at z_j
        # diffusion: h at BOS, z_1 … z_{F-1} predicts z_1 … z_F
        dmask = pk.valid & (rel >= 0) & (rel < batch.target_lens[:, None])
        tgt_idx = rel.clamp(0, max(batch.target.shape[1] - 1, 0))
        targets = torch.gather(batch.target, 1, tgt_idx[..., None].expand(*tgt_idx.shape, batch.target.shape[-1]))
        cond = h
        if cond_add is not None:  # the head also hears which phone the predicted frame says
            cond = h + torch.gather(cond_add, 1, tgt_idx[..., None].expand(*tgt_idx.shape, h.shape[-1]))
        return _TeacherForced(batch, pk, h, att, rel, plens, llens, dmask, targets[dmask], cond[dmask],
                              adv_labels, adv_mask)

    def head_conditions(self, batch: LMBatch, conditional: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced (head condition [N, dim], target token [N, token_dim]) of every predicted
        token of the batch, row by row; ``conditional=False``: as the CFG rows see it (no prompt, no
        phones). Both orders match, so the pair gives the conditional and unconditional predictions
        of the same tokens (guidance distillation, :mod:`latentspeech.train.distill`)."""
        keep = torch.full(batch.prompt_lens.shape, conditional, dtype=torch.bool, device=batch.prompt_lens.device)
        tf = self._teacher_forced(batch, keep)
        return tf.cond, tf.targets

    # -- pointer mode ---------------------------------------------------------------------------
    def _pointer_tables(self, phones: torch.Tensor, phone_lens: torch.Tensor):
        """Inference tables: (phone vectors [B, L+1, dim] with a zero "end" row at index L, the next
        sounding phone after each index [B, L+1] (L = none left), the first sounding phone [B]).
        A sentence with no sounding token at all lets every token sound."""
        B, L = phones.shape
        dev = phones.device
        idx = torch.arange(L, device=dev)[None].expand(B, L)
        real = idx < phone_lens[:, None]
        silent = torch.as_tensor(list(self.cfg.silent_token_ids), dtype=torch.long, device=dev)
        sounding = real & ~torch.isin(phones, silent)
        sounding |= real & ~sounding.any(1, keepdim=True)
        vals = torch.where(sounding, idx, torch.full_like(idx, L))
        suffix_min = vals.flip(1).cummin(1).values.flip(1)  # first sounding index >= k
        end = torch.full((B, 1), L, dtype=torch.long, device=dev)
        next_sounding = torch.cat([suffix_min[:, 1:], end, end], 1)  # [B, L+1]: after k (k = L: stays L)
        c = self.encode_phones(phones, phone_lens)
        c_pad = torch.cat([c, c.new_zeros(B, 1, c.shape[-1])], 1)
        return c_pad, next_sounding, suffix_min[:, 0] if L else end[:, 0]

    def encode_phones(self, phones: torch.Tensor, phone_lens: torch.Tensor) -> torch.Tensor:
        """Pointer mode: contextual phone vectors [B, L, dim] (bidirectional encoder; zero on padding)."""
        valid = torch.arange(phones.shape[1], device=phones.device)[None] < phone_lens.clamp(min=1)[:, None]
        x = self.phone_emb(phones) * valid[..., None]
        return self.phone_encoder(x, padding_mask=valid) * valid[..., None]

    def _pointer_inputs(self, batch: LMBatch, keep: torch.Tensor):
        """Teacher-forced pointer inputs from the (frame-level, unpatched) batch's durations, per
        token of p = patch_size frames (N = ceil(F / p) tokens):

        * speech_extra [B, 1+N, dim] for ``_pack``: the vectors of each token's frames' phones and
          how long the phone of its last frame has lasted (BOS: elapsed 0 only);
        * the head-condition term of each predicted token [B, N, dim] (its frames' phones);
        * advance labels [B, N+1, p] and their mask, indexed like the slots BOS, z_1 … z_N: for each
          frame of the next token, does it say a later phone than the frame before, or is speech over?
          (The first frame after BOS has no label.)

        Frames past the end of an utterance (a last token's padding) repeat its last frame. Rows with
        ``keep`` False (CFG-dropped) get no phone vectors."""
        cfg = self.cfg
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
        c = self.encode_phones(batch.phones, batch.phone_lens)
        c_f = torch.gather(c, 1, tok[:, : N * p, None].expand(B, N * p, dim)).reshape(B, N, p * dim)
        last = elapsed[:, p - 1 : N * p : p]  # [B, N]: at each token's last frame
        extra = torch.cat([self.elapsed_emb.weight[0].expand(B, 1, dim),
                           self.aligned_in(c_f) * k + self.elapsed_emb(last)], 1)
        prev = torch.cat([tok[:, :1], tok[:, :-1]], 1)
        adv = ((tok != prev) | (f >= flens[:, None]))[:, : N * p + p].reshape(B, N + 1, p)
        mask = torch.ones_like(adv)
        mask[:, 0, 0] = False
        return extra, self.aligned_cond(c_f) * k, adv, mask

    def patched(self, batch: LMBatch) -> LMBatch:
        """The batch with prompt and target grouped into tokens of ``patch_size`` frames."""
        p = self.cfg.patch_size
        if p == 1:
            return batch
        prompt, plens = patchify(batch.prompt, batch.prompt_lens, p)
        target, tlens = patchify(batch.target, batch.target_lens, p)
        return LMBatch(prompt, plens, batch.phones, batch.phone_lens, target, tlens, batch.utt_ids, batch.durations)

    @torch.no_grad()
    def alignment(self, batch: LMBatch) -> dict:
        """Text-to-speech attention diagnostics, teacher-forced, per layer (heads averaged).

        For every speech query (BOS … z_{F-1}) the attention on the row's phone keys gives
        ``phone_mass`` (share of attention on phones), ``focus`` (largest phone weight after
        renormalising over phones), ``monotonic`` (share of frame-to-frame steps whose argmax phone
        does not move back) and ``coverage`` (share of phones that are some frame's argmax).
        A learnt alignment shows high focus, monotonic and coverage in some layer. Also returns
        ``paths``: per layer, per row, the argmax phone index of each frame (token).
        """
        batch = self.patched(batch)
        pk = self._pack(batch.prompt, batch.prompt_lens, batch.phones, batch.phone_lens, batch.target,
                        batch.target_lens, left_pad=False)
        maps = self.transformer.attention_maps(pk.x, pk.positions, pk.valid)
        rel = pk.slot - pk.speech_start[:, None]
        out = {"phone_mass": [], "focus": [], "monotonic": [], "coverage": [], "paths": []}
        for att in maps:
            a = att.mean(1)  # [B, T, T]
            stats = {k: [] for k in ("phone_mass", "focus", "monotonic", "coverage")}
            paths = []
            for b in range(a.shape[0]):
                P, L, Fb = int(batch.prompt_lens[b]), int(batch.phone_lens[b]), int(batch.target_lens[b])
                q = torch.nonzero(pk.valid[b] & (rel[b] >= 0) & (rel[b] < Fb)).squeeze(1)
                if L == 0 or len(q) == 0:
                    continue
                ph = a[b][q][:, P : P + L]  # right-padded rows: phones occupy slots P … P+L-1
                mass = ph.sum(-1)
                path = (ph / mass.clamp(min=1e-9)[:, None]).argmax(-1)
                stats["phone_mass"].append(float(mass.mean()))
                stats["focus"].append(float((ph / mass.clamp(min=1e-9)[:, None]).max(-1).values.mean()))
                stats["monotonic"].append(float((path[1:] >= path[:-1]).float().mean()) if len(path) > 1 else 1.0)
                stats["coverage"].append(len(set(path.tolist())) / L)
                paths.append(path.tolist())
            for k, v in stats.items():
                out[k].append(sum(v) / max(len(v), 1))
            out["paths"].append(paths)
        return out

    # -- inference ------------------------------------------------------------------------------
    def length_guard(self, n_phones: int) -> int:
        """Most tokens generated for a sentence of ``n_phones`` phone tokens."""
        frames = self.cfg.guard_frames_per_phone * n_phones
        return int(math.ceil(frames / self.cfg.patch_size)) + self.cfg.guard_min_frames

    def min_length(self, n_phones: int) -> int:
        """Tokens before which the stop head is not consulted (guards against empty/truncated audio)."""
        frames = (self.cfg.min_frames_per_phone or 0.0) * n_phones
        return max(1, int(math.floor(frames / self.cfg.patch_size)))

    @torch.no_grad()
    def generate(
        self,
        phones: Sequence[Sequence[int]] | Sequence[torch.Tensor],
        prompt: torch.Tensor | Sequence[torch.Tensor] | None,
        steps: int = 10,
        cfg_scale: float = 1.0,
        temperature: float = 1.0,
        method: str = "dpm++",
        max_frames: int | None = None,
        generator: torch.Generator | None = None,
        use_stop: bool = True,
    ) -> GenerationOutput:
        """Sample speech latents for several sentences at once.

        phones: one id sequence per sentence; prompt: normalised latents [P, D] shared by all rows,
        or one per row (None or P = 0: no prompt). ``cfg_scale`` 1 disables guidance (no extra
        rows). ``max_frames`` caps every row's guard. ``use_stop=False`` runs every row to its guard.
        """
        cfg = self.cfg
        dev = self.bos.device
        if cfg.guidance_distilled and cfg_scale != 1.0:
            raise ConfigError(f"this model has classifier-free guidance (scale {cfg.guidance_distilled:g}) built into "
                              f"its head (guidance distillation): use cfg 1, not {cfg_scale:g}")
        B = len(phones)
        if B == 0:
            return GenerationOutput([], [], [], 0, 0)
        phone_list = [torch.as_tensor(p, dtype=torch.long, device=dev).reshape(-1) for p in phones]
        if prompt is None or isinstance(prompt, torch.Tensor):
            prompts = [prompt] * B
        else:
            prompts = list(prompt)
        prompts = [torch.zeros(0, cfg.latent_dim, device=dev) if p is None else p.to(dev, self.bos.dtype) for p in prompts]
        prompts = [patchify(p[None], torch.tensor([p.shape[0]], device=dev), cfg.patch_size)[0][0] for p in prompts]
        D = cfg.token_dim
        llens = torch.tensor([len(p) for p in phone_list], device=dev)
        plens = torch.tensor([p.shape[0] for p in prompts], device=dev)
        ph = torch.full((B, max(1, int(llens.max()))), cfg.pad_id, dtype=torch.long, device=dev)
        for i, p in enumerate(phone_list):
            ph[i, : len(p)] = p
        pr = torch.zeros(B, max(1, int(plens.max())), D, device=dev)
        for i, p in enumerate(prompts):
            pr[i, : p.shape[0]] = p
        guided_rows = cfg_scale != 1.0
        if guided_rows:  # unconditional rows: no prompt, no phones (as trained with cfg_drop_prob)
            ph, pr = torch.cat([ph, ph]), torch.cat([pr, pr])
            zero = torch.zeros_like(llens)
            llens_all, plens_all = torch.cat([llens, zero]), torch.cat([plens, zero])
        else:
            llens_all, plens_all = llens, plens
        rows = ph.shape[0]
        empty = torch.zeros(rows, 0, D, device=dev)
        extra = None
        if self.pointer:
            c_pad, next_sounding, ptr = self._pointer_tables(ph[:B], llens)
            elapsed = torch.zeros(B, dtype=torch.long, device=dev)
            # the longest a token may sound before the pointer is forced on: max_phone_frames, or
            # max_hold_frames for every token but pause punctuation
            hold = torch.full((B, c_pad.shape[1]), cfg.max_phone_frames, dtype=torch.long, device=dev)  # [B, L+1]
            if 0 < cfg.max_hold_frames < cfg.max_phone_frames:
                pauses = torch.tensor(cfg.pause_token_ids, dtype=torch.long, device=dev)
                hold[:, :-1] = torch.where(torch.isin(ph[:B], pauses), hold[:, :-1], cfg.max_hold_frames)
            extra = self.elapsed_emb.weight[0].expand(rows, 1, self.cfg.transformer.dim)
        pk = self._pack(pr, plens_all, ph, llens_all, empty, torch.zeros_like(llens_all), left_pad=True,
                        speech_extra=extra)

        guard = [self.length_guard(int(n)) for n in llens.tolist()]
        if max_frames is not None:
            guard = [min(g, max_frames) for g in guard]
        limit = max(guard)
        cache = self.transformer.new_cache(rows, pk.x.shape[1] + limit + 1)
        h = self.transformer(pk.x, pk.positions, pk.valid, cache=cache)[:, -1]
        passes, evals = 1, 0
        P = cfg.patch_size
        out = torch.zeros(B, limit, D, device=dev)
        lengths = torch.zeros(B, dtype=torch.long, device=dev)  # tokens
        n_frames = torch.zeros(B, dtype=torch.long, device=dev)
        active = torch.ones(B, dtype=torch.bool, device=dev)
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        guard_t = torch.tensor(guard, device=dev)
        min_t = torch.tensor([self.min_length(int(n)) for n in llens.tolist()], device=dev)
        rows_b = torch.arange(B, device=dev)
        for j in range(limit):
            h_c, h_u = (h[:B], h[B:]) if guided_rows else (h, None)
            active &= lengths < guard_t
            take = torch.full((B,), P, dtype=torch.long, device=dev)  # frames of this token a row keeps
            if self.pointer:  # move the pointer frame by frame; moving past the last sounding phone ends the row
                p_adv = torch.sigmoid(self.advance_head(h_c))  # [B, P]
                ptrs, going = [], active.clone()
                for k in range(P):
                    if j > 0 or k > 0:  # the first frame says the first sounding phone
                        held_out = elapsed >= torch.gather(hold, 1, ptr[:, None])[:, 0]
                        adv = going & ((p_adv[:, k] > cfg.advance_threshold) | held_out)
                        nxt = torch.gather(next_sounding, 1, ptr[:, None])[:, 0]
                        ends = adv & (nxt >= c_pad.shape[1] - 1) if use_stop else torch.zeros_like(adv)
                        ptr = torch.where(adv & ~ends, nxt, ptr)
                        elapsed = torch.where(adv & ~ends, torch.zeros_like(elapsed), elapsed)
                        take = torch.where(ends, torch.full_like(take, k), take)
                        stopped |= ends
                        going &= ~ends
                    elapsed = torch.where(going, (elapsed + 1).clamp(max=cfg.max_phone_frames), elapsed)
                    ptrs.append(ptr)
                active &= take > 0  # a row that ends on a token's first frame samples no more
            elif use_stop and j > 0:
                p_stop = torch.sigmoid(self.stop_head(h_c).squeeze(-1))
                ends = active & (lengths >= min_t) & (p_stop > cfg.stop_threshold)
                stopped |= ends
                active &= ~ends
            if not bool(active.any()):
                break
            if self.pointer:  # the phones of the frames to sample
                c_now = torch.cat([c_pad[rows_b, q] for q in ptrs], -1)
                h_c = h_c + self.aligned_cond(c_now)
            z = self.head.sample(h_c, h_u, cfg_scale, steps=steps, method=method, temperature=temperature,
                                 generator=generator)
            evals += steps
            out[:, j] = torch.where(active[:, None], z, out[:, j])
            lengths += active.long()
            n_frames += active.long() * take
            if self.pointer:
                active &= take == P  # a row that ended inside this token is done
                if not bool(active.any()):
                    break
            x = self.speech_embedding(z)
            if self.pointer:
                x = x + self.elapsed_emb(elapsed)
                x_c = x + self.aligned_in(c_now)
                x = torch.cat([x_c, x]) if guided_rows else x_c
            elif guided_rows:
                x = torch.cat([x, x])
            h = self.transformer(x[:, None], cache=cache)[:, -1]
            passes += 1
        return GenerationOutput(
            latents=[unpatchify(out[i, : int(lengths[i])], P)[: int(n_frames[i])] for i in range(B)],
            stopped=[bool(s) for s in stopped.tolist()],
            guard=guard,
            transformer_passes=passes,
            head_evals=evals,
        )


def save_latentlm(model: LatentLM, out: str | os.PathLike, codec_dir: str | os.PathLike | None, meta: dict,
                  dtype: torch.dtype = torch.float32) -> Path:
    """Write a self-contained LatentLM model dir (weights, config, meta, a ``codec/`` copy of ``codec_dir``)."""
    out = save_model_dir(out, model.state_dict(), KIND, to_dict(model.cfg), meta, dtype=dtype)
    if codec_dir is not None:
        shutil.copytree(codec_dir, out / "codec", dirs_exist_ok=True)
    return out


def load_latentlm(name_or_dir=None, device=None):
    """(LatentLM in eval mode, ModelDir) from a model dir or bundled name (default ``latentlm-demo``)."""
    md = load_model_dir(name_or_dir, kind=KIND)
    model = LatentLM(md.typed_config(LatentLMConfig))
    md.load_into(model)
    return model.eval().to(device or "cpu"), md
