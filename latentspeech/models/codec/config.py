"""Typed configuration of the audio codec (model only; training options live in ``train/codec.py``).

Frame arithmetic (the contract every user of the codec relies on)::

    frame_hop   = STFT hop of the front end and of the iSTFT head (samples)
    hop_length  = frame_hop * prod(downsample)          samples per latent frame
    frames      = ceil(T / hop_length)                  for a T-sample input (T >= 1)
    decode(z)   -> frames * hop_length samples

The input is zero-padded on the right to ``frames * hop_length`` samples before encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ...errors import ConfigError

__all__ = ["BottleneckConfig", "EncoderConfig", "DecoderConfig", "CodecConfig"]


@dataclass
class BottleneckConfig:
    """Which bottleneck sits between encoder and decoder, and its loss weights.

    - ``sigma``: σ-VAE. The encoder gives μ; training uses z = μ + σ·ε with one σ per example,
      σ = |N(0, 1)| · sigma_scale / 0.8 (mean |σ| ≈ sigma_scale); loss ``beta · mean(μ²)``.
    - ``gaussian``: ordinary VAE, learned log-variance, loss ``beta · KL(q || N(0, I))``.
    - ``rvq``: residual VQ with ``num_quantizers`` EMA codebooks of ``codebook_size`` entries
      (k-means init on the first batch, dead-code restart); loss ``beta · commitment``.
    """

    kind: Literal["sigma", "gaussian", "rvq"] = "sigma"
    sigma_scale: float = 0.5
    beta: float = 0.01
    num_quantizers: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    kmeans_iters: int = 10
    dead_threshold: float = 1.0  # EMA usage count under which a code is restarted

    def validate(self) -> None:
        if self.sigma_scale < 0 or self.beta < 0:
            raise ConfigError(f"bottleneck: sigma_scale and beta must be >= 0, got {self.sigma_scale}, {self.beta}")
        if self.kind == "rvq" and (self.num_quantizers < 1 or self.codebook_size < 2):
            raise ConfigError(
                f"bottleneck: rvq needs num_quantizers >= 1 and codebook_size >= 2, "
                f"got {self.num_quantizers} x {self.codebook_size}"
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"bottleneck.ema_decay must be in (0, 1), got {self.ema_decay}")


@dataclass
class EncoderConfig:
    """STFT front end → ConvNeXt stages separated by strided (patchify) down-sampling."""

    dim: int = 192
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2])  # per stage; len = len(downsample) + 1
    kernel_size: int = 7
    mlp_ratio: float = 3.0


@dataclass
class DecoderConfig:
    """ConvNeXt stages separated by transposed-conv up-sampling → iSTFT head (Vocos-style).

    ``source: harmonic`` makes it source-filter: it predicts F0 (within ``f0_range`` Hz) and voicing
    from the latents and adds a pulse train following that F0, shaped per frequency bin, to the
    head's spectrum (:mod:`latentspeech.models.codec.source`); trained with a pitch loss against YIN.
    """

    source: Literal["none", "harmonic"] = "none"
    f0_range: list[float] = field(default_factory=lambda: [60.0, 500.0])
    dim: int = 256
    blocks: list[int] = field(default_factory=lambda: [2, 2, 4])  # per stage, coarse to fine
    kernel_size: int = 7
    mlp_ratio: float = 3.0


@dataclass
class CodecConfig:
    """The codec model: front end, encoder, bottleneck, decoder."""

    sample_rate: int = 16000
    n_fft: int = 640
    frame_hop: int = 160
    downsample: list[int] = field(default_factory=lambda: [2, 2])
    latent_dim: int = 32
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)

    @property
    def hop_length(self) -> int:
        return self.frame_hop * math.prod(self.downsample)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def validate(self) -> None:
        if self.sample_rate <= 0 or self.frame_hop <= 0 or self.latent_dim <= 0:
            raise ConfigError("codec: sample_rate, frame_hop and latent_dim must be positive")
        if self.n_fft < self.frame_hop or (self.n_fft - self.frame_hop) % 2:
            raise ConfigError(
                f"codec: n_fft - frame_hop must be even and >= 0 (same-padding STFT), got n_fft={self.n_fft}, "
                f"frame_hop={self.frame_hop}"
            )
        if any(f < 1 for f in self.downsample):
            raise ConfigError(f"codec.downsample factors must be >= 1, got {self.downsample}")
        stages = len(self.downsample) + 1
        for name, part in (("encoder", self.encoder), ("decoder", self.decoder)):
            if len(part.blocks) != stages:
                raise ConfigError(
                    f"codec.{name}.blocks needs {stages} entries (one per stage for downsample {self.downsample}), "
                    f"got {part.blocks}"
                )
            if part.kernel_size % 2 == 0:
                raise ConfigError(f"codec.{name}.kernel_size must be odd, got {part.kernel_size}")
        lo, hi = (list(self.decoder.f0_range) + [0, 0])[:2]
        if len(self.decoder.f0_range) != 2 or not 0 < lo < hi < self.sample_rate / 2:
            raise ConfigError(f"codec.decoder.f0_range must be [fmin, fmax] with 0 < fmin < fmax < "
                              f"{self.sample_rate / 2:g} Hz, got {self.decoder.f0_range}")
        self.bottleneck.validate()
