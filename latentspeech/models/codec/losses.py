"""Reconstruction and adversarial losses of the codec.

- :class:`MultiResolutionMelLoss`: mean L1 between log-mel spectrograms at several resolutions.
- :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 (Parallel WaveGAN).
- :func:`generator_adv_loss`, :func:`discriminator_loss` (least squares, HiFi-GAN) and
  :func:`feature_matching_loss` over the outputs of :mod:`latentspeech.models.codec.discriminators`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...audio.features import LogMel, stft_magnitude

__all__ = [
    "LossConfig",
    "MultiResolutionMelLoss",
    "MultiResolutionSTFTLoss",
    "pitch_loss",
    "generator_adv_loss",
    "discriminator_loss",
    "feature_matching_loss",
]


@dataclass
class LossConfig:
    """Weights and resolutions of the codec's training losses (``[n_fft, hop, n_mels]`` per mel scale)."""

    mel_weight: float = 15.0
    mel_resolutions: list[list[int]] = field(
        default_factory=lambda: [[256, 64, 40], [512, 128, 80], [1024, 256, 100], [2048, 512, 128]])
    stft_weight: float = 1.0
    stft_resolutions: list[list[int]] = field(default_factory=lambda: [[256, 64], [512, 128], [1024, 256]])
    adv_weight: float = 1.0
    feat_weight: float = 2.0
    # harmonic decoders: weight of the pitch loss (L1 of log F0 on voiced frames + voicing BCE, against
    # YIN on the target) and the share of batches whose source follows the target's F0 (teacher forcing)
    pitch_weight: float = 2.0
    pitch_teacher_forcing: float = 0.5


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of L1(log-mel(hyp), log-mel(ref))."""

    def __init__(self, sample_rate: int, resolutions: list[list[int]]):
        super().__init__()
        self.mels = nn.ModuleList(LogMel(sample_rate, n, h, m) for n, h, m in resolutions)

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return sum(F.l1_loss(mel(hyp), mel(ref)) for mel in self.mels) / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes."""

    def __init__(self, resolutions: list[list[int]]):
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        for n, _ in self.resolutions:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, hyp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for n, h in self.resolutions:
            w = getattr(self, f"window_{n}")
            mh, mr = stft_magnitude(hyp.float(), n, h, w), stft_magnitude(ref.float(), n, h, w)
            sc = torch.linalg.norm(mr - mh) / torch.linalg.norm(mr).clamp(min=1e-7)
            total = total + sc + F.l1_loss(torch.log(mh), torch.log(mr))
        return total / len(self.resolutions)


def pitch_loss(pred, f0: torch.Tensor, voiced: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1 of log F0 on voiced frames, voicing BCE)`` of a :class:`~latentspeech.models.codec.layers.PitchPrediction`
    against target ``f0 [B, L]`` (Hz) and ``voiced [B, L]`` (bool)."""
    v = voiced.float()
    err = (pred.log_f0 - torch.log(f0.clamp(min=1.0))).abs()
    l1 = (err * v).sum() / v.sum().clamp(min=1.0)
    return l1, F.binary_cross_entropy_with_logits(pred.voiced_logit, v)


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the discriminators: (1 - D(x))² + D(G(z))²."""
    loss = 0.0
    for r, f in zip(real_logits, fake_logits):
        loss = loss + (1 - r).square().mean() + f.square().mean()
    return loss / max(1, len(real_logits))


def generator_adv_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the generator: (1 - D(G(z)))²."""
    return sum((1 - f).square().mean() for f in fake_logits) / max(1, len(fake_logits))


def feature_matching_loss(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between discriminator feature maps of real (detached) and generated audio."""
    total, n = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            total = total + F.l1_loss(f, r.detach()) / r.detach().abs().mean().clamp(min=1e-5)
            n += 1
    return total / max(1, n)
