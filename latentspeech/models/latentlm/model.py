"""The LatentLM module: embeddings, heads, teacher-forced losses (the layout is :mod:`.layout`'s).

* The hidden state at BOS and at every z_j conditions the diffusion head for z_{j+1} and the stop
  head ("does speech end here?": 1 only at z_F; pointer mode has an advance head instead, see
  :mod:`latentspeech.models.pointer`).
* Classifier-free guidance: in training the prompt *and* phones of a row are dropped with
  probability ``cfg_drop_prob`` (the row becomes ``BOS z_1 … z_F``), which is what the
  unconditional rows of generation look like.
* Training-only alignment aids (off by default): guided attention pulls one layer's
  speech-to-phone attention towards the diagonal; corrupted teacher forcing (noise + dropout on
  the fed-back latents) stops the model from merely continuing the previous frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data.batch import LMBatch
from ..alignment import guided_attention_loss
from ..diffusion import DiffusionHead, diffusion_loss
from ..pointer import PhonePointer, PointerInputs
from ..transformer import Transformer
from .config import LatentLMConfig
from .diagnostics import attention_alignment
from .generation import GenerationOutput, generate
from .layout import SPEECH, Packed, gather_slots, layout, patchify
from .speaker import SpeakerSummary

__all__ = ["LatentLM", "TeacherForced"]


def binary_loss(logits: torch.Tensor, labels: torch.Tensor,
                pos_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE of a one-logit head ([N, 1] logits, [N] 0/1 labels) and its accuracy at threshold 0.5."""
    logits = logits.squeeze(-1).float()
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pw)
    with torch.no_grad():
        acc = ((logits > 0).float() == labels).float().mean()
    return loss, acc


@dataclass
class TeacherForced:
    """One teacher-forced pass over a batch (:meth:`LatentLM.teacher_forced`)."""

    batch: LMBatch  # patched
    pk: Packed
    h: torch.Tensor  # [B, T, dim]
    att: torch.Tensor | None  # [B, H, T, T] of the requested layer
    plens: torch.Tensor  # prompt lengths (0 on CFG-dropped rows)
    llens: torch.Tensor  # phone counts (0 on CFG-dropped rows)
    dmask: torch.Tensor  # [B, T]: slots that predict a token
    targets: torch.Tensor  # [N, token_dim] the predicted tokens (dmask order)
    cond: torch.Tensor  # [N, dim] their head conditions
    pointer: PointerInputs | None

    @property
    def rel(self) -> torch.Tensor:
        """[B, T]: 0 at BOS, j at z_j."""
        return self.pk.speech_index


class LatentLM(nn.Module):
    """A causal Transformer over [prompt latents | phones | speech latents] whose hidden state at each
    speech position conditions a diffusion head that denoises the next latent token.
    :meth:`loss` trains, :meth:`generate` samples."""

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
        pointer = cfg.alignment == "pointer"
        if not pointer:
            self.stop_head = nn.Linear(dim, 1)
        for emb in (self.phone_emb.weight, self.segment_emb.weight, self.bos):
            nn.init.normal_(emb, std=0.02)
        nn.init.normal_(self.latent_in.weight, std=0.02)
        nn.init.zeros_(self.latent_in.bias)
        # pointer mode: the phone encoder, the phone and elapsed-frames inputs and the advance head
        self.pointer = PhonePointer(cfg, cfg.transformer) if pointer else None
        self.speaker = SpeakerSummary(cfg.token_dim, dim, cfg.speaker_input) if cfg.speaker_condition else None
        if not pointer:
            nn.init.zeros_(self.stop_head.weight)
            nn.init.constant_(self.stop_head.bias, -4.0)  # "keep talking" until taught otherwise

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- sequence construction ------------------------------------------------------------------
    def speech_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """Input embedding of speech tokens z [..., patch_size·D] (what each generated token is fed back as)."""
        return self.latent_in(z) + self.segment_emb.weight[SPEECH]

    def pack(self, prompt: torch.Tensor, prompt_lens: torch.Tensor, phones: torch.Tensor, phone_lens: torch.Tensor,
             target: torch.Tensor, target_lens: torch.Tensor, left_pad: bool,
             speech_extra: torch.Tensor | None = None, speaker_in: torch.Tensor | None = None) -> Packed:
        """Embed rows [prompt | phones | BOS | target] (tokens, right-padded tensors) into the slots of
        :func:`.layout.layout`; ``speech_extra`` [B, 1 + F, dim] (pointer mode) and ``speaker_in``
        [B, dim] (:meth:`speaker_vectors`) are added to the BOS and target slots. In training the
        target latents are corrupted (``input_noise``, ``input_dropout``)."""
        cfg = self.cfg
        lay = layout(prompt_lens, phone_lens, target_lens, left_pad, cfg.position_mode, cfg.phone_position_scale)
        B, T = lay.slot.shape
        dim = cfg.transformer.dim
        x = torch.zeros(B, T, dim, device=prompt_lens.device, dtype=self.bos.dtype)
        if prompt.shape[1] > 0:
            x = torch.where(lay.is_prompt[..., None], self.latent_in(gather_slots(prompt, lay.slot)), x)
        if phones.shape[1] > 0:
            ids = torch.gather(phones, 1, lay.phone_index.clamp(0, phones.shape[1] - 1))
            x = torch.where(lay.is_phone[..., None], self.phone_emb(ids), x)
        x = torch.where(lay.is_bos[..., None], self.bos.expand(B, T, dim), x)
        if target.shape[1] > 0:
            lat = gather_slots(target, lay.speech_index - 1)
            if self.training and cfg.input_noise > 0:
                lat = lat + cfg.input_noise * torch.randn_like(lat)
            emb = self.latent_in(lat)
            if self.training and cfg.input_dropout > 0:
                emb = F.dropout(emb, cfg.input_dropout, training=True)
            x = torch.where(lay.is_target[..., None], emb, x)
        speech = (lay.is_bos | lay.is_target)[..., None]
        if speech_extra is not None:
            x = x + gather_slots(speech_extra, lay.speech_index) * speech
        if speaker_in is not None:
            x = x + speaker_in[:, None] * speech
        x = x + self.segment_emb(lay.segments)  # for target slots: = speech_embedding(z)
        x = x * lay.valid[..., None]
        return Packed(x=x, positions=lay.positions, valid=lay.valid, slot=lay.slot, speech_start=lay.speech_start)

    def speaker_vectors(self, prompt: torch.Tensor,
                        prompt_lens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The speaker path (:mod:`.speaker`): (the prompt's summary [B, dim] added to the head's
        condition, the vector [B, dim] added to the Transformer's BOS and speech inputs); None where
        the model has no such path. ``prompt``: patched tokens [B, P, token_dim], right-padded."""
        if self.speaker is None:
            return None, None
        spk = self.speaker(prompt, prompt_lens)
        return spk, self.speaker.input_vector(spk)

    def patched(self, batch: LMBatch) -> LMBatch:
        """The batch with prompt and target grouped into tokens of ``patch_size`` frames."""
        p = self.cfg.patch_size
        if p == 1:
            return batch
        prompt, plens = patchify(batch.prompt, batch.prompt_lens, p)
        target, tlens = patchify(batch.target, batch.target_lens, p)
        return LMBatch(prompt, plens, batch.phones, batch.phone_lens, target, tlens, batch.utt_ids, batch.durations)

    def encode_phones(self, phones: torch.Tensor, phone_lens: torch.Tensor) -> torch.Tensor:
        """Pointer mode: contextual phone vectors [B, L, dim] (bidirectional encoder; zero on padding)."""
        return self.pointer.encode(self.phone_emb(phones), phone_lens)

    def pointer_inputs(self, batch: LMBatch, keep: torch.Tensor) -> PointerInputs:
        """Pointer mode: the teacher-forced pointer inputs of the (frame-level, unpatched) batch
        (:meth:`~latentspeech.models.pointer.PhonePointer.teacher_forced`)."""
        if batch.durations is None:
            raise ValueError("alignment 'pointer' trains on per-phone durations (LMBatch.durations): run "
                             "`latentspeech align` and train with the durations file")
        c = self.encode_phones(batch.phones, batch.phone_lens)
        return self.pointer.teacher_forced(c, batch.durations, batch.target_lens, batch.target.shape[1], keep,
                                           batch.utt_ids)

    # -- training -------------------------------------------------------------------------------
    def loss(self, batch: LMBatch, cfg_drop: bool | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced losses: ``loss`` (total), ``diff`` (diffusion MSE per frame), ``stop`` (BCE;
        pointer mode: ``advance``), with the head's accuracy.

        ``cfg_drop`` (default: ``self.training``) drops prompt + phones of rows with p = cfg_drop_prob.
        """
        cfg = self.cfg
        keep = None
        drop = self.training if cfg_drop is None else cfg_drop
        if drop and cfg.cfg_drop_prob > 0:
            u = torch.rand(batch.prompt_lens.shape, device=batch.prompt_lens.device, generator=generator)
            keep = u >= cfg.cfg_drop_prob
        guide = cfg.guided_attention_weight > 0 and self.training
        tf = self.teacher_forced(batch, keep, cfg.guided_attention_layer if guide else None)
        pk, h, rel = tf.pk, tf.h, tf.rel
        flens = tf.batch.target_lens[:, None]
        diff = diffusion_loss(self.head, tf.targets, tf.cond, cfg.batch_mul, generator=generator)
        diff_mean = diff.mean()
        if self.pointer is not None:
            # advance: at BOS, z_1 … z_F of rows with phones, one label per frame of the next token
            # (positive where that frame says a later phone than the frame before, or speech has
            # ended); the first frame after BOS has no decision to make
            amask = pk.valid & (rel >= 0) & (rel <= flens) & (tf.llens[:, None] > 0)
            labels = gather_slots(tf.pointer.advance_labels, rel)[amask]
            lmask = gather_slots(tf.pointer.advance_mask, rel)[amask]
            if bool(lmask.any()):
                adv, acc = binary_loss(self.pointer.advance_head(h[amask])[lmask][:, None], labels[lmask].float())
            else:  # every row CFG-dropped
                adv = h.sum() * 0.0
                acc = adv.detach()
            out = {"loss": diff_mean + cfg.stop_weight * adv, "diff": diff_mean, "advance": adv, "advance_acc": acc}
        else:
            # stop: at BOS, z_1 … z_F; positive only at z_F
            smask = pk.valid & (rel >= 0) & (rel <= flens)
            labels = (rel == flens).float()[smask]
            stop, stop_acc = binary_loss(self.stop_head(h[smask]), labels, cfg.stop_pos_weight)
            out = {"loss": diff_mean + cfg.stop_weight * stop, "diff": diff_mean, "stop": stop, "stop_acc": stop_acc}
        if guide:
            out["guide"] = guided_attention_loss(tf.att, pk.slot, tf.plens, tf.llens, rel, tf.batch.target_lens,
                                                 cfg.guided_attention_sigma)
            out["loss"] = out["loss"] + cfg.guided_attention_weight * out["guide"]
        return out

    def forward(self, batch: LMBatch) -> torch.Tensor:
        return self.loss(batch)["loss"]

    def teacher_forced(self, batch: LMBatch, keep: torch.Tensor | None = None,
                       attention_layer: int | None = None) -> TeacherForced:
        """One teacher-forced pass: rows with ``keep`` False lose prompt and phones (the CFG rows);
        ``attention_layer`` also returns that layer's attention probabilities."""
        frames = batch
        batch = self.patched(batch)
        plens, llens = batch.prompt_lens, batch.phone_lens
        if keep is not None:
            plens, llens = plens * keep.long(), llens * keep.long()
        ptr = self.pointer_inputs(frames, keep=llens > 0) if self.pointer is not None else None
        spk, spk_in = self.speaker_vectors(batch.prompt, plens)
        pk = self.pack(batch.prompt, plens, batch.phones, llens, batch.target, batch.target_lens, left_pad=False,
                       speech_extra=None if ptr is None else ptr.speech_extra, speaker_in=spk_in)
        att = None
        if attention_layer is not None:
            h, att = self.transformer(pk.x, pk.positions, pk.valid, attention_layer=attention_layer)
        else:
            h = self.transformer(pk.x, pk.positions, pk.valid)
        # diffusion: h at BOS, z_1 … z_{F-1} predicts z_1 … z_F
        rel = pk.speech_index
        dmask = pk.valid & (rel >= 0) & (rel < batch.target_lens[:, None])
        targets = gather_slots(batch.target, rel)
        cond = h if ptr is None else h + gather_slots(ptr.cond, rel)  # pointer: the head also hears the frame's phone
        if spk is not None:
            cond = cond + spk[:, None]
        return TeacherForced(batch, pk, h, att, plens, llens, dmask, targets[dmask], cond[dmask], ptr)

    def head_conditions(self, batch: LMBatch, conditional: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced (head condition [N, dim], target token [N, token_dim]) of every predicted
        token of the batch, row by row; ``conditional=False``: as the CFG rows see it (no prompt, no
        phones). Both orders match, so the pair gives the conditional and unconditional predictions
        of the same tokens (guidance distillation, :mod:`latentspeech.train.distill`)."""
        keep = torch.full(batch.prompt_lens.shape, conditional, dtype=torch.bool, device=batch.prompt_lens.device)
        tf = self.teacher_forced(batch, keep)
        return tf.cond, tf.targets

    def alignment(self, batch: LMBatch) -> dict:
        """Text-to-speech attention diagnostics (see :func:`.diagnostics.attention_alignment`)."""
        return attention_alignment(self, batch)

    # -- inference ------------------------------------------------------------------------------
    def length_guard(self, n_phones: int) -> int:
        """Most tokens generated for a sentence of ``n_phones`` phone tokens."""
        frames = self.cfg.guard_frames_per_phone * n_phones
        return int(math.ceil(frames / self.cfg.patch_size)) + self.cfg.guard_min_frames

    def min_length(self, n_phones: int) -> int:
        """Tokens before which the stop head is not consulted (guards against empty/truncated audio)."""
        frames = (self.cfg.min_frames_per_phone or 0.0) * n_phones
        return max(1, int(math.floor(frames / self.cfg.patch_size)))

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
        """Sample speech latents for several sentences at once (the loop: :func:`.generation.generate`).

        phones: one id sequence per sentence; prompt: normalised latents [P, D] shared by all rows,
        or one per row (None or P = 0: no prompt). ``cfg_scale`` 1 disables guidance (no extra
        rows). ``max_frames`` caps every row's guard (in tokens). ``use_stop=False`` runs every row
        to its guard. ``steps``, ``temperature`` and ``method`` go to the diffusion sampler.
        """
        return generate(self, phones, prompt, steps=steps, cfg_scale=cfg_scale, temperature=temperature,
                        method=method, max_frames=max_frames, generator=generator, use_stop=use_stop)
