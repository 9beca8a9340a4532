"""The VALL-E baseline's configuration: model shape, code vocabulary and the length guard.

Length guard (LatentLM's rule): without EOS, generation stops after
``ceil(frames_per_phone · phones) + guard_min_frames`` frames (at most ``max_frames``); EOS is
not allowed before ``min_frames`` frames (no empty output). Training sets ``frames_per_phone``
from the data (a margin over the largest ratio seen).

AR vocabulary: codes ``0..K-1``, ``EOS = K``, ``BOS = K+1`` (``K = codebook_size``).

``alignment`` picks how the AR stage finds the phone it says, as LatentLM's: ``"attention"``
(VALL-E's model: it attends to the phones and ends with EOS) or ``"pointer"`` (every frame is told
its phone by :mod:`latentspeech.models.pointer`, the same layers, training inputs and walk as
LatentLM's; passing the last phone ends the utterance, EOS is not used). The NAR stage is the same
in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ...errors import ConfigError
from ..alignment import default_frames_per_phone, validate_alignment_aids
from ..pointer import validate_alignment
from ..transformer import TransformerConfig

__all__ = ["VALLEConfig"]


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
    # the AR stage's alignment (see the module's doc; the pointer fields mean what LatentLMConfig's do)
    alignment: Literal["attention", "pointer"] = "attention"
    phone_encoder_layers: int = 2
    max_phone_frames: int = 32
    advance_threshold: float = 0.5
    silent_token_ids: list[int] = field(default_factory=list)
    max_hold_frames: int = 0
    pause_token_ids: list[int] = field(default_factory=list)

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
        validate_alignment(self, "valle")
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
    def patch_size(self) -> int:
        """Frames per AR token (pointer mode reads it): one code frame."""
        return 1

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
        """End of speech: the AR stage's output class after the K codes."""
        return self.codebook_size

    @property
    def bos_id(self) -> int:
        """Beginning of speech: an AR input id only (never predicted)."""
        return self.codebook_size + 1
