"""How an LM is told where it is in the text: the alignment aids LatentLM and the VALL-E AR stage share.

* :func:`scaled_phone_positions` — RoPE positions of phone tokens spread to the speech frame rate.
* :func:`guided_attention_loss` — a training penalty pulling one layer's speech-to-phone attention
  towards the diagonal.
* :func:`validate_alignment_aids` — the config checks of those fields.
* :func:`default_frames_per_phone` — the length guard of generation (frames per phone token).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["scaled_phone_positions", "guided_attention_loss", "validate_alignment_aids", "default_frames_per_phone",
           "GUARD_FRAMES_PER_PHONE_12_5HZ"]

#: The length guard at 12.5 Hz: 1.5 frames (120 ms) per phone token, generous for read speech (the demo
#: config spreads phone positions by 0.9 frames per token at that rate), so the guard cuts runaway
#: generations rather than slow speech.
GUARD_FRAMES_PER_PHONE_12_5HZ = 1.5


def scaled_phone_positions(index: torch.Tensor, scale: float) -> torch.Tensor:
    """RoPE positions of phone tokens: phone ``k`` at ``round(k * scale)``.

    With ``scale`` ≈ the data's mean frames per phone, speech frame ``j`` and the phone it is
    saying have nearly equal positions, so the monotonic alignment starts out as "attend near
    relative offset 0", a pattern one RoPE head expresses from the first steps (integer
    positions keep the RoPE tables exact).
    """
    if scale == 1.0:
        return index
    return torch.round(index.clamp(min=0).double() * scale).long()


def guided_attention_loss(att: torch.Tensor, slot: torch.Tensor, prompt_lens: torch.Tensor,
                          phone_lens: torch.Tensor, rel: torch.Tensor, target_lens: torch.Tensor,
                          sigma: float = 0.2) -> torch.Tensor:
    """Guided attention penalty of right-padded rows (see :class:`LatentLMConfig`).

    att: [B, H, T, T] attention probabilities; slot: [B, T] slot indices; rel: [B, T] speech index
    (0 at BOS). Speech query j of F (BOS … z_{F-1}) and phone k of L: the penalty is the share of
    attention *outside* the diagonal band, 1 - Σ_k a_jk · exp(-((k+½)/L - (j+½)/F)² / 2σ²), so
    attention on non-phone keys (prompt, speech) counts as off the diagonal: the guided layer cannot
    satisfy it by looking away from the phones (a renormalised version could, and a trained model
    did). Rows without phones (CFG-dropped) are skipped. Mean over heads and queries (0 = on the
    diagonal, 1 = nowhere near it).
    """
    pl, ll, fl = prompt_lens[:, None], phone_lens[:, None], target_lens[:, None]
    k_idx = slot - pl  # phone index of each key slot
    is_phone = (k_idx >= 0) & (k_idx < ll)  # [B, T]
    is_query = (rel >= 0) & (rel < fl) & (ll > 0)  # [B, T]
    if not bool(is_query.any()):
        return att.sum() * 0.0
    k_frac = (k_idx.float() + 0.5) / ll.clamp(min=1).float()
    q_frac = (rel.float() + 0.5) / fl.clamp(min=1).float()
    band = torch.exp(-(k_frac[:, None, :] - q_frac[:, :, None]) ** 2 / (2 * sigma ** 2))  # [B, Tq, Tk]
    band = band * is_phone[:, None, :]
    per_query = 1.0 - (att * band[:, None]).sum(-1)  # [B, H, Tq]
    mask = is_query[:, None, :].expand_as(per_query)
    return per_query[mask].mean()


def validate_alignment_aids(cfg, where: str, stack: str, n_layers: int) -> None:
    """Check the alignment-aid fields LatentLM and the VALL-E AR stage share
    (``phone_position_scale``, ``guided_attention_{weight,layer,sigma}``); ``stack`` names the
    Transformer whose ``n_layers`` layers guided attention may pick from."""
    if cfg.guided_attention_weight < 0 or cfg.guided_attention_sigma <= 0:
        raise ConfigError(f"{where}: guided_attention_weight must be >= 0 and guided_attention_sigma > 0")
    if cfg.guided_attention_weight > 0 and not 0 <= cfg.guided_attention_layer < n_layers:
        raise ConfigError(f"{where}: guided_attention_layer {cfg.guided_attention_layer} is not a layer of the "
                          f"{stack} ({n_layers} layers)")
    if cfg.phone_position_scale <= 0:
        raise ConfigError(f"{where}: phone_position_scale must be positive, got {cfg.phone_position_scale}")


def default_frames_per_phone(frame_rate: float) -> float:
    """The length guard's frames per phone token at ``frame_rate`` (1.5 at 12.5 Hz, scaled)."""
    return GUARD_FRAMES_PER_PHONE_12_5HZ * frame_rate / 12.5
