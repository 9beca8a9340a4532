"""The harmonic source of a source-filter decoder: F0 frames → a band-limited pulse train.

The decoder's iSTFT head adds the short-time spectrum of this excitation, shaped by a predicted
per-bin gain, to its own magnitude/phase prediction (see :class:`latentspeech.models.codec.layers.ISTFTHead`).
The excitation is a real signal, so its harmonics keep coherent phases from frame to frame, which a
per-frame phase prediction learns only slowly (mel-trained iSTFT decoders sound noise-excited).

    e = harmonic_excitation(f0, voiced, hop=160, sample_rate=16000)    # [B, L] → [B, L · hop]

``f0`` (Hz) and the voicing weight ``voiced`` (in [0, 1]) are given per frame, frame ``i`` centred on
sample ``i · hop + hop / 2``; both are interpolated linearly to samples. The pulse train holds every
harmonic below Nyquist at equal amplitude, ``Σ_{k=1..K} cos(k φ) / √K`` (RMS ≈ 0.7), in closed form
(Dirichlet kernel), so its cost does not grow with the number of harmonics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["harmonic_excitation", "phase_increments"]


def _to_samples(x: torch.Tensor, hop: int) -> torch.Tensor:
    """``[B, L]`` frame values → ``[B, L · hop]``, linear between frame centres."""
    return F.interpolate(x[:, None].float(), scale_factor=hop, mode="linear", align_corners=False)[:, 0]


def phase_increments(f0: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """The pulse train's phase step at every sample (radians, float64) for ``f0 [B, L]`` (Hz): ``[B, L · hop]``."""
    return _to_samples(f0.clamp(min=1.0), hop).double() * (2 * math.pi / sample_rate)


def harmonic_excitation(f0: torch.Tensor, voiced: torch.Tensor, hop: int, sample_rate: int,
                        phase_offset: torch.Tensor | float | None = None) -> torch.Tensor:
    """Band-limited pulse train following ``f0 [B, L]`` (Hz), scaled by ``voiced [B, L]``.

    The phase starts at ``phase_offset`` (radians, float or ``[B]``; default 0) before the first sample:
    a streaming decoder continues the phase of the samples it has already played."""
    f0_s = _to_samples(f0.clamp(min=1.0), hop)
    gate = _to_samples(voiced, hop).clamp(0.0, 1.0)
    # phase accumulates in float64: float32 drifts audibly over tens of seconds of samples
    phase = torch.cumsum(phase_increments(f0, hop, sample_rate), dim=-1)
    if phase_offset is not None:
        phase = phase + torch.as_tensor(phase_offset, dtype=torch.float64, device=phase.device).reshape(-1, 1)
    phase = torch.remainder(phase, 2 * math.pi).float()
    k = (torch.ceil(0.5 * sample_rate / f0_s) - 1).clamp(min=1.0)  # harmonics strictly below Nyquist
    half = torch.sin(0.5 * phase)
    near_zero = half.abs() < 1e-4
    dirichlet = torch.sin((k + 0.5) * phase) / torch.where(near_zero, torch.ones_like(half), 2 * half) - 0.5
    pulses = torch.where(near_zero, k, dirichlet)  # Σ_{k=1..K} cos(k φ); its limit K at φ = 0
    return gate * pulses / torch.sqrt(k)
