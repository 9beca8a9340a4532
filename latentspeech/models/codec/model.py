"""The audio codec: waveform ↔ continuous latents at a low frame rate (σ-VAE, Gaussian VAE or RVQ).

    codec = load_codec("codec-demo")              # or a model directory
    z = codec.encode(wav)                         # [B, T] float in [-1, 1] → μ [B, D, F]
    y = codec.decode(z)                           # → [B, F · hop_length]
    zn = codec.normalize(z)                       # per-dimension (z - mean) / std, for the LM
    save_codec(codec, "exp/codec/model")

Frame arithmetic: ``F = ceil(T / hop_length)`` (the input is zero-padded on the right to
``F · hop_length`` samples) and ``decode`` returns exactly ``F · hop_length`` samples, so
``decode(encode(wav))[..., :T]`` lines up with ``wav``. See :meth:`AudioCodec.num_frames`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint import load_model_dir, no_weight_init, save_model_dir
from ...config import to_dict
from ...errors import AudioError, CheckpointError
from .bottleneck import BottleneckOutput, build_bottleneck
from .config import CodecConfig
from .layers import Decoder, Encoder, PitchPrediction

__all__ = ["AudioCodec", "CodecOutput", "save_codec", "load_codec", "DEFAULT_CODEC"]

DEFAULT_CODEC = "codec-demo"
KIND = "codec"


@dataclass
class CodecOutput:
    """What :meth:`AudioCodec.forward` returns in training."""

    wav: torch.Tensor  # reconstruction [B, F · hop]
    target: torch.Tensor  # the padded input [B, F · hop]
    bottleneck: BottleneckOutput
    stats: dict = field(default_factory=dict)
    pitch: PitchPrediction | None = None  # harmonic decoders: predicted log F0 and voicing per iSTFT frame


class AudioCodec(nn.Module):
    """Encoder + bottleneck + decoder, with per-dimension latent statistics as buffers."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.bottleneck = build_bottleneck(cfg.bottleneck, cfg.latent_dim)
        e, d = cfg.encoder, cfg.decoder
        self.encoder = Encoder(cfg.n_fft, cfg.frame_hop, list(cfg.downsample), e.dim, list(e.blocks),
                               e.kernel_size, e.mlp_ratio, self.bottleneck.in_channels)
        self.decoder = Decoder(cfg.latent_dim, cfg.n_fft, cfg.frame_hop, list(reversed(cfg.downsample)), d.dim,
                               list(d.blocks), d.kernel_size, d.mlp_ratio, cfg.sample_rate,
                               f0_range=tuple(d.f0_range) if d.source == "harmonic" else None)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("latent_std", torch.ones(cfg.latent_dim))

    # -- the contract ---------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def is_rvq(self) -> bool:
        return self.cfg.bottleneck.kind == "rvq"

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for a ``num_samples``-long input: ``ceil(num_samples / hop_length)``."""
        return max(1, math.ceil(num_samples / self.hop_length))

    def num_samples(self, num_frames: int) -> int:
        """Samples that :meth:`decode` returns for ``num_frames`` latent frames."""
        return num_frames * self.hop_length

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``wav [B, T]`` on the right to ``num_frames(T) · hop_length`` samples."""
        if wav.dim() != 2:
            raise AudioError(f"codec input must be [batch, samples], got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0:
            raise AudioError("codec input has no samples")
        target = self.num_samples(self.num_frames(wav.shape[-1]))
        return F.pad(wav, (0, target - wav.shape[-1]))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` → deterministic latents ``[B, latent_dim, ceil(T / hop_length)]``.

        σ-VAE and Gaussian VAE: μ; RVQ: the quantised latent (sum of the chosen code vectors).
        """
        h = self.encoder(self.pad(wav.to(self.latent_mean.device, torch.float32)))
        return self.bottleneck.infer(h).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, latent_dim, F]`` → waveform ``[B, F · hop_length]``."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise AudioError(f"codec.decode expects latents [batch, {self.latent_dim}, frames], got {tuple(z.shape)}")
        return self.decoder(z.to(self.latent_mean.device, torch.float32))[0]

    @torch.no_grad()
    def encode_codes(self, wav: torch.Tensor) -> torch.Tensor:
        """RVQ codecs only: ``wav [B, T]`` → codes ``[B, num_quantizers, ceil(T / hop_length)]``."""
        self._need_rvq("encode_codes")
        h = self.encoder(self.pad(wav.to(self.latent_mean.device, torch.float32)))
        return self.bottleneck.encode_codes(h)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """RVQ codecs only: codes ``[B, Q, F]`` → waveform ``[B, F · hop_length]``."""
        self._need_rvq("decode_codes")
        return self.decoder(self.bottleneck.decode_codes(codes.to(self.latent_mean.device)))[0]

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Per-dimension ``(z - mean) / std`` of ``z [B, D, F]`` (the LM's input scale)."""
        return (z - self.latent_mean[:, None].to(z)) / self.latent_std[:, None].to(z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std[:, None].to(z) + self.latent_mean[:, None].to(z)

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.latent_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.latent_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-4))

    @property
    def num_quantizers(self) -> int:
        self._need_rvq("num_quantizers")
        return self.bottleneck.num_quantizers

    @property
    def codebook_size(self) -> int:
        self._need_rvq("codebook_size")
        return self.bottleneck.codebook_size

    # -- training -------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, f0: torch.Tensor | None = None,
                voiced: torch.Tensor | None = None) -> CodecOutput:
        """Training pass: pad, encode, bottleneck (noise / quantisation), decode.

        ``f0``/``voiced``: a harmonic decoder's source pitch per iSTFT frame (teacher forcing);
        by default it follows its own prediction.
        """
        target = self.pad(wav)
        out = self.bottleneck(self.encoder(target))
        rec, pitch = self.decoder(out.z, f0, voiced)
        return CodecOutput(wav=rec, target=target, bottleneck=out, stats=out.stats, pitch=pitch)

    def _need_rvq(self, what: str) -> None:
        if not self.is_rvq:
            raise CheckpointError(f"{what} needs an RVQ codec; this one has a '{self.cfg.bottleneck.kind}' bottleneck")


def save_codec(codec: AudioCodec, path: str | os.PathLike, meta: dict | None = None,
               dtype: torch.dtype = torch.float32, card: str | None = None) -> Path:
    """Write ``codec`` as a model directory (kind ``codec``); ``dtype=torch.float16`` halves the size.

    The latent statistics travel both as buffers in the weights and, readable, in ``meta``.
    """
    info = dict(meta or {})
    info.update(
        sample_rate=codec.sample_rate,
        hop_length=codec.hop_length,
        frame_rate=codec.frame_rate,
        latent_dim=codec.latent_dim,
        latent_mean=[round(float(v), 6) for v in codec.latent_mean],
        latent_std=[round(float(v), 6) for v in codec.latent_std],
        parameters=sum(p.numel() for p in codec.parameters()),
    )
    return save_model_dir(path, codec.state_dict(), KIND, to_dict(codec.cfg), info, card=card, dtype=dtype)


def load_codec(name_or_dir: str | os.PathLike | None = None, device: str | torch.device | None = None) -> AudioCodec:
    """Load a codec model directory (or bundled name, default ``codec-demo``) in eval mode, float32."""
    md = load_model_dir(name_or_dir if name_or_dir is not None else DEFAULT_CODEC, kind=KIND)
    with no_weight_init():  # load_into overwrites every weight
        codec = AudioCodec(md.typed_config(CodecConfig))
    md.load_into(codec)
    return codec.eval().to(device or "cpu")
