"""Where every token of a LatentLM row sits: the sequence layout, its positions and patching.

One row of a batch::

    slot:      p_1 … p_P   | ph_1 … ph_L | BOS  z_1  z_2 … z_F
    segment:   0 (prompt)  | 1 (phones)  | 2 (speech) ──────────
    position:  0 … P-1     | 0 … L-1     | 0    1    2  … F        ("segment" numbering)
    predicts:                              z_1  z_2  z_3 … stop

* Positions restart at 0 in every segment (``position_mode="segment"``). The relative RoPE offset
  between speech frame j and phone k is then j − k whatever the prompt length and phone count, so
  the monotonic text-to-speech alignment is the same pattern in every utterance. ``"global"``
  numbers the whole row 0..T-1 instead (for ablations).
* ``phone_position_scale`` (≈ frames per phone of the data) spreads phone positions to the speech
  frame rate: the frame saying phone k and phone k then sit at about the same position, and the
  alignment becomes a near-diagonal in RoPE offsets.
* Training rows are right-padded. Generation left-pads the prefixes (``prompt | phones | BOS``) so
  that every row's BOS is the last slot and all rows advance through the KV cache in lockstep.
* With ``patch_size`` p > 1 every z is a token of p consecutive frames (:func:`patchify`).

:func:`layout` computes the slots, masks and positions; :meth:`LatentLM.pack
<latentspeech.models.latentlm.model.LatentLM.pack>` fills them with embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..alignment import scaled_phone_positions

__all__ = ["PROMPT", "PHONES", "SPEECH", "Layout", "Packed", "Prefixes", "layout", "gather_slots", "patchify",
           "unpatchify"]

#: Segment ids (rows of ``LatentLM.segment_emb``).
PROMPT, PHONES, SPEECH = 0, 1, 2


@dataclass
class Layout:
    """Every [B, T] slot of a batch: which part of its row it holds and at which position."""

    slot: torch.Tensor  # index within the row's own sequence (negative on left padding)
    valid: torch.Tensor  # not padding
    is_prompt: torch.Tensor
    is_phone: torch.Tensor
    is_bos: torch.Tensor
    is_target: torch.Tensor
    phone_index: torch.Tensor  # k at phone k (slot − P)
    speech_index: torch.Tensor  # 0 at BOS, j at z_j (slot − P − L)
    positions: torch.Tensor  # RoPE positions
    speech_start: torch.Tensor  # [B] slot of BOS in row coordinates (= P + L)

    @property
    def segments(self) -> torch.Tensor:
        return torch.where(self.is_prompt, PROMPT, torch.where(self.is_phone, PHONES, SPEECH))


@dataclass
class Packed:
    """A packed batch: the Transformer's input and what it needs to read the outputs back."""

    x: torch.Tensor  # [B, T, dim]
    positions: torch.Tensor  # [B, T]
    valid: torch.Tensor  # [B, T]
    slot: torch.Tensor  # [B, T] index within the row's own sequence (negative on left padding)
    speech_start: torch.Tensor  # [B] slot of BOS in row coordinates (= P + L)

    @property
    def speech_index(self) -> torch.Tensor:
        """[B, T]: 0 at BOS, j at z_j (negative before BOS)."""
        return self.slot - self.speech_start[:, None]


def layout(prompt_lens: torch.Tensor, phone_lens: torch.Tensor, target_lens: torch.Tensor, left_pad: bool,
           position_mode: str = "segment", phone_position_scale: float = 1.0) -> Layout:
    """The slots of rows ``[prompt | phones | BOS | target]`` of the given lengths, right-padded
    (training) or left-padded (``left_pad``: generation, every BOS in the last slot)."""
    B = prompt_lens.shape[0]
    row_len = prompt_lens + phone_lens + 1 + target_lens
    T = int(row_len.max())
    s = torch.arange(T, device=prompt_lens.device)[None, :].expand(B, T)
    if left_pad:
        s = s - (T - row_len)[:, None]
    pl, ll = prompt_lens[:, None], phone_lens[:, None]
    start = pl + ll  # BOS slot
    valid = (s >= 0) & (s < row_len[:, None])
    is_prompt = valid & (s < pl)
    is_phone = valid & (s >= pl) & (s < start)
    if position_mode == "segment":
        phone_pos = scaled_phone_positions(s - pl, phone_position_scale)
        pos = torch.where(is_prompt, s, torch.where(is_phone, phone_pos, s - start))
    else:
        pos = s
    return Layout(slot=s, valid=valid, is_prompt=is_prompt, is_phone=is_phone, is_bos=valid & (s == start),
                  is_target=valid & (s > start), phone_index=s - pl, speech_index=s - start,
                  positions=pos.clamp(min=0), speech_start=start[:, 0])


def gather_slots(seq: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``seq[b, index[b, t]]`` for a sequence [B, N, C] and indices [B, T] (clamped into 0 … N-1)."""
    idx = index.clamp(0, max(seq.shape[1] - 1, 0))
    return torch.gather(seq, 1, idx[..., None].expand(*idx.shape, seq.shape[-1]))


@dataclass
class Prefixes:
    """The ``prompt | phones`` prefixes of a generation batch, as right-padded tensors (``layout``
    with ``left_pad`` then aligns every row's BOS in the last slot)."""

    phones: torch.Tensor  # [rows, L] (pad_id after each row's phones)
    phone_lens: torch.Tensor  # [rows]
    prompt: torch.Tensor  # [rows, P, token_dim] prompt tokens (patched latents)
    prompt_lens: torch.Tensor  # [rows] in tokens
    n: int  # sentences: rows 0 … n-1; when ``guided``, rows n … 2n-1 are their unconditional CFG rows
    guided: bool

    @property
    def rows(self) -> int:
        return self.phones.shape[0]

    @classmethod
    def build(cls, phones: Sequence[Sequence[int]] | Sequence[torch.Tensor],
              prompt: torch.Tensor | Sequence[torch.Tensor | None] | None, pad_id: int, latent_dim: int,
              patch_size: int, guided: bool, device: torch.device, dtype: torch.dtype) -> "Prefixes":
        """phones: one id sequence per sentence; prompt: normalised latents [P, latent_dim] shared by
        all rows, or one per row (None or P = 0: no prompt). ``guided`` appends one unconditional row
        per sentence: no prompt, no phones (as trained with ``cfg_drop_prob``)."""
        B = len(phones)
        phone_list = [torch.as_tensor(p, dtype=torch.long, device=device).reshape(-1) for p in phones]
        prompts = [prompt] * B if prompt is None or isinstance(prompt, torch.Tensor) else list(prompt)
        prompts = [torch.zeros(0, latent_dim, device=device) if p is None else p.to(device, dtype) for p in prompts]
        prompts = [patchify(p[None], torch.tensor([p.shape[0]], device=device), patch_size)[0][0] for p in prompts]
        llens = torch.tensor([len(p) for p in phone_list], device=device)
        plens = torch.tensor([p.shape[0] for p in prompts], device=device)
        ph = torch.full((B, max(1, int(llens.max()))), pad_id, dtype=torch.long, device=device)
        for i, p in enumerate(phone_list):
            ph[i, : len(p)] = p
        pr = torch.zeros(B, max(1, int(plens.max())), latent_dim * patch_size, device=device)
        for i, p in enumerate(prompts):
            pr[i, : p.shape[0]] = p
        if guided:
            zero = torch.zeros_like(llens)
            ph, pr = torch.cat([ph, ph]), torch.cat([pr, pr])
            llens, plens = torch.cat([llens, zero]), torch.cat([plens, zero])
        return cls(ph, llens, pr, plens, B, guided)


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
