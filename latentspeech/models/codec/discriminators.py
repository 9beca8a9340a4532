"""Discriminators for the codec's adversarial phase (paper config).

- :class:`MultiPeriodDiscriminator` (HiFi-GAN): the waveform folded into ``[T / p, p]`` images,
  2-D convolutions along time, one sub-discriminator per period.
- :class:`MultiResolutionSTFTDiscriminator` (EnCodec-style): 2-D convolutions over the complex
  STFT (real and imaginary parts as two channels), one sub-discriminator per resolution.

Both return ``(logits, features)``: a list with one logit map per sub-discriminator and a list of
feature-map lists (for feature matching). :class:`CodecDiscriminator` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = [
    "DiscriminatorConfig",
    "PeriodDiscriminator",
    "MultiPeriodDiscriminator",
    "STFTDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "CodecDiscriminator",
]


@dataclass
class DiscriminatorConfig:
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    stft_resolutions: list[int] = field(default_factory=lambda: [512, 1024, 2048])  # n_fft; hop = n_fft / 4
    stft_channels: int = 32


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: list[int]):
        super().__init__()
        self.period = period
        chans = [1] + list(channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0))) for a, b in zip(chans[:-1], chans[1:])
        )
        self.convs.append(weight_norm(nn.Conv2d(chans[-1], chans[-1], (5, 1), 1, padding=(2, 0))))
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        x = wav.reshape(b, 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        return self.out(x).flatten(1), feats


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: list[int], channels: list[int]):
        super().__init__()
        self.discs = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class STFTDiscriminator(nn.Module):
    """2-D conv stack over [real, imag] of one STFT resolution."""

    def __init__(self, n_fft: int, channels: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(2, c, (3, 9), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 9), (1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.out = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, self.n_fft, self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, freq]
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        return self.out(x).flatten(1), feats


class MultiResolutionSTFTDiscriminator(nn.Module):
    def __init__(self, resolutions: list[int], channels: int):
        super().__init__()
        self.discs = nn.ModuleList(STFTDiscriminator(n, channels) for n in resolutions)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outs = [d(wav) for d in self.discs]
        return [o[0] for o in outs], [o[1] for o in outs]


class CodecDiscriminator(nn.Module):
    """Multi-period + multi-resolution STFT discriminators; outputs concatenated."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(cfg.periods, cfg.period_channels) if cfg.periods else None
        self.mrd = MultiResolutionSTFTDiscriminator(cfg.stft_resolutions, cfg.stft_channels) \
            if cfg.stft_resolutions else None

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, feats = [], []
        for d in (self.mpd, self.mrd):
            if d is not None:
                lg, ft = d(wav)
                logits += lg
                feats += ft
        return logits, feats
