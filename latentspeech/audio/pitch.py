"""Fundamental frequency (F0) and voicing with YIN (de Cheveigné & Kawahara, 2002), batched in torch.

    f0, voiced = yin(wav, sample_rate=16000, hop=160)       # wav [B, T] → [B, T // hop] each

Frame ``i`` is centred on sample ``i · hop + hop / 2`` (the codec's "same" framing, see
:mod:`latentspeech.models.codec.layers`), so F0 frames line up with the codec's STFT frames. ``f0`` is in Hz
(0 where unvoiced); ``voiced`` is boolean. Fast enough to run on every training batch (no gradient);
used as the codec's pitch target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["yin"]


@torch.no_grad()
def yin(wav: torch.Tensor, sample_rate: int, hop: int, fmin: float = 60.0, fmax: float = 500.0,
        threshold: float = 0.15, voicing_threshold: float = 0.3,
        silence_db: float = -45.0) -> tuple[torch.Tensor, torch.Tensor]:
    """YIN pitch of ``wav [B, T]`` (or ``[T]``): ``(f0 [B, T // hop] Hz, voiced [B, T // hop] bool)``.

    The period is the first lag in ``[sample_rate / fmax, sample_rate / fmin]`` where the cumulative-
    mean-normalised difference dips below ``threshold`` (the dip's minimum, refined by parabolic
    interpolation; the global minimum when there is no such dip). A frame is voiced when that
    minimum is under ``voicing_threshold`` and its level is within ``silence_db`` of the loudest
    frame of its utterance (and above -80 dBFS).
    """
    squeeze = wav.dim() == 1
    wav = wav[None] if squeeze else wav
    wav = wav.float()
    tau_min = max(2, int(sample_rate / fmax))
    tau_max = int(math.ceil(sample_rate / fmin))
    win = tau_max  # integration window: one period of the lowest pitch
    length = win + tau_max + 1
    n_frames = wav.shape[-1] // hop
    if n_frames == 0:
        empty = wav.new_zeros(wav.shape[0], 0)
        return (empty[0], empty[0].bool()) if squeeze else (empty, empty.bool())
    # Frame i starts `left` samples before its centre c = i * hop + hop / 2. A lag-τ estimate compares
    # x[s, s + win) with x[s + τ, s + win + τ): centred on c for τ = tau_ref (mid-range pitch).
    tau_ref = int(sample_rate / math.sqrt(fmin * fmax))
    left = (win + tau_ref) // 2 - hop // 2
    right = max(0, (n_frames - 1) * hop + length - left - wav.shape[-1])
    x = F.pad(wav, (left, right)).unfold(-1, length, hop)[:, :n_frames]  # [B, L, length]

    # d(τ) = Σ_{j<win} (x_j - x_{j+τ})² = e0 + e_τ - 2 r(τ), with r by FFT cross-correlation
    n_fft = 1 << (2 * length - 1).bit_length()
    spec = torch.fft.rfft(x, n_fft)
    head = torch.fft.rfft(x[..., :win], n_fft)
    r = torch.fft.irfft(spec * head.conj(), n_fft)[..., :tau_max + 1]
    energy = F.pad(x.square().cumsum(-1), (1, 0))  # energy[k] = Σ_{j<k} x_j²
    e_tau = energy[..., win:win + tau_max + 1] - energy[..., :tau_max + 1]
    d = (energy[..., win:win + 1] + e_tau - 2 * r).clamp(min=0)  # [B, L, tau_max + 1]

    taus = torch.arange(1, tau_max + 1, device=wav.device, dtype=d.dtype)
    cmndf = d[..., 1:] * taus / d[..., 1:].cumsum(-1).clamp(min=1e-12)  # index k ↔ lag k + 1
    cmndf = torch.cat([torch.ones_like(cmndf[..., :1]), cmndf], -1)  # index = lag
    cmndf[..., :tau_min] = 2.0  # lags outside the search range never win

    below = cmndf < threshold
    first = torch.where(below.any(-1), below.float().argmax(-1), cmndf.argmin(-1))  # [B, L]
    lags = torch.arange(tau_max + 1, device=wav.device)
    # the dip that starts at `first` ends where the curve rises above the threshold again
    after = (~below) & (lags > first[..., None])
    in_dip = (lags >= first[..., None]) & (after.cumsum(-1) == 0)
    tau = torch.where(in_dip, cmndf, torch.full_like(cmndf, 3.0)).argmin(-1).clamp(1, tau_max - 1)

    # parabolic interpolation around the chosen lag
    c0, c1, c2 = (cmndf.gather(-1, (tau + k)[..., None])[..., 0] for k in (-1, 0, 1))
    denom = c0 - 2 * c1 + c2
    shift = torch.where(denom.abs() > 1e-9, 0.5 * (c0 - c2) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    f0 = sample_rate / (tau.to(d.dtype) + shift)

    level = 10 * torch.log10(x[..., :win].square().mean(-1) + 1e-10)
    loud = (level > level.amax(-1, keepdim=True) + silence_db) & (level > -80.0)
    voiced = (c1 < voicing_threshold) & loud & (f0 >= fmin * 0.95) & (f0 <= fmax * 1.05)
    f0 = torch.where(voiced, f0, torch.zeros_like(f0))
    return (f0[0], voiced[0]) if squeeze else (f0, voiced)
