"""Building blocks of the codec trunk: STFT front end, ConvNeXt stages, iSTFT head (Vocos-style).

All sequence tensors are channels-first ``[B, C, L]``. Every block keeps the length exact:

- :class:`STFTFrontEnd`: ``T`` samples (a multiple of ``hop``) → ``T / hop`` log-magnitude frames
  (reflect "same" padding of ``(n_fft - hop) / 2`` on each side, no centre frame);
- :class:`ISTFTHead`: ``L`` frames → ``L · hop`` samples (overlap-add, the same padding trimmed);
  with a harmonic source it also adds the gain-shaped spectrum of a pulse train that follows a
  predicted F0 (:mod:`latentspeech.models.codec.source`);
- down-sampling is a patchify convolution (kernel = stride = f), up-sampling its transpose.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...audio.features import stft
from .source import harmonic_excitation

__all__ = ["ChannelNorm", "ConvNeXtBlock", "ConvNeXtStage", "STFTFrontEnd", "ISTFTHead", "Encoder", "Decoder",
           "PitchPrediction"]


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``[B, C, L]`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Depth-wise conv → LayerNorm → MLP (GELU) → layer scale, with a residual connection."""

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 3.0, layer_scale: float = 0.1):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, hidden)
        self.pw2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ConvNeXtStage(nn.Sequential):
    def __init__(self, dim: int, num_blocks: int, kernel_size: int, mlp_ratio: float, layer_scale: float):
        super().__init__(*[ConvNeXtBlock(dim, kernel_size, mlp_ratio, layer_scale) for _ in range(num_blocks)])


class STFTFrontEnd(nn.Module):
    """Log-magnitude STFT with "same" padding: ``[B, T]`` → ``[B, n_fft // 2 + 1, T // hop]``."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop, self.pad = n_fft, hop, (n_fft - hop) // 2
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if wav.shape[-1] > self.pad else "constant"
        x = F.pad(wav.unsqueeze(1), (self.pad, self.pad), mode=mode).squeeze(1)
        spec = stft(x.float(), self.n_fft, self.hop, self.window, center=False)
        mag = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-10)
        return torch.log(torch.clamp(mag, min=1e-5))


class ISTFTHead(nn.Module):
    """Frames → waveform: linear layer to log-magnitude and phase, then "same"-padded iSTFT.

    ``[B, dim, L]`` → ``[B, L · hop]``. The magnitude is ``exp`` of the prediction, clipped to 100.
    With ``harmonic=True`` a second linear layer predicts a per-bin log-gain for a source spectrum
    given to :meth:`forward` (the STFT of an excitation signal, :meth:`stft`), which is added to the
    predicted spectrum: ``mag · e^{i phase} + gain · source``.
    """

    def __init__(self, dim: int, n_fft: int, hop: int, harmonic: bool = False):
        super().__init__()
        self.n_fft, self.hop, self.pad = n_fft, hop, (n_fft - hop) // 2
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, n_fft + 2)
        self.harmonic_gain = nn.Linear(dim, n_fft // 2 + 1) if harmonic else None
        if self.harmonic_gain is not None:  # starts quiet: gain e^-3 on every bin
            nn.init.zeros_(self.harmonic_gain.weight)
            nn.init.constant_(self.harmonic_gain.bias, -3.0)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x.transpose(1, 2))
        log_mag, phase = self.out(h).transpose(1, 2).float().chunk(2, dim=1)  # [B, n_fft // 2 + 1, L] each
        mag = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        if self.harmonic_gain is not None and source is not None:
            gain = torch.exp(self.harmonic_gain(h).transpose(1, 2).float()).clamp(max=1e2)
            spec = spec + gain * source
        return self.istft(spec)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """The analysis matching :meth:`istft`: ``[B, L · hop]`` → complex ``[B, n_fft // 2 + 1, L]``."""
        return stft(F.pad(wav.float(), (self.pad, self.pad)), self.n_fft, self.hop, self.window, center=False)

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT, "same" padding: ``[B, n_fft // 2 + 1, L]`` complex → ``[B, L · hop]``."""
        n_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[None, :, None]
        length = (n_frames - 1) * self.hop + self.n_fft
        y = F.fold(frames, (1, length), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0, :]
        win_sq = self.window.square()[None, :, None].expand(1, -1, n_frames)
        env = F.fold(win_sq, (1, length), (1, self.n_fft), stride=(1, self.hop))[0, 0, 0, :]
        end = self.pad + n_frames * self.hop
        return y[:, self.pad:end] / env[self.pad:end].clamp(min=1e-11)


class Encoder(nn.Module):
    """STFT front end → ConvNeXt stages with patchify down-sampling → 1×1 projection.

    ``[B, T]`` (T a multiple of ``frame_hop · prod(downsample)``) → ``[B, out_channels, T / hop_length]``.
    """

    def __init__(self, n_fft: int, frame_hop: int, downsample: list[int], dim: int, blocks: list[int],
                 kernel_size: int, mlp_ratio: float, out_channels: int):
        super().__init__()
        self.frontend = STFTFrontEnd(n_fft, frame_hop)
        self.embed = nn.Conv1d(n_fft // 2 + 1, dim, 7, padding=3)
        self.embed_norm = ChannelNorm(dim, eps=1e-6)
        scale = 1.0 / max(1, sum(blocks))
        self.stages = nn.ModuleList(ConvNeXtStage(dim, n, kernel_size, mlp_ratio, scale) for n in blocks)
        self.downs = nn.ModuleList(
            nn.Sequential(ChannelNorm(dim, eps=1e-6), nn.Conv1d(dim, dim, f, stride=f)) for f in downsample
        )
        self.out_norm = ChannelNorm(dim, eps=1e-6)
        self.proj = nn.Conv1d(dim, out_channels, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.embed(self.frontend(wav)))
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.downs):
                x = self.downs[i](x)
        return self.proj(self.out_norm(x))


class PitchPrediction(NamedTuple):
    """The harmonic decoder's pitch read-out per iSTFT frame: log F0 (Hz) and the voicing logit."""

    log_f0: torch.Tensor  # [B, L]
    voiced_logit: torch.Tensor  # [B, L]


class Decoder(nn.Module):
    """Latents → ConvNeXt stages with transposed-conv up-sampling → iSTFT head.

    ``[B, latent_dim, F]`` → ``([B, F · hop_length], PitchPrediction | None)``.

    With ``f0_range=(fmin, fmax)`` the decoder is source-filter: a linear read-out of the last
    stage predicts F0 (in the range, log-scaled) and voicing per frame; a pulse train following
    that F0 (or the ``f0``/``voiced`` given, e.g. measured on the target in training) is the head's
    harmonic source.
    """

    def __init__(self, latent_dim: int, n_fft: int, frame_hop: int, upsample: list[int], dim: int,
                 blocks: list[int], kernel_size: int, mlp_ratio: float, sample_rate: int = 16000,
                 f0_range: tuple[float, float] | None = None):
        super().__init__()
        self.embed = nn.Conv1d(latent_dim, dim, 7, padding=3)
        self.embed_norm = ChannelNorm(dim, eps=1e-6)
        scale = 1.0 / max(1, sum(blocks))
        self.stages = nn.ModuleList(ConvNeXtStage(dim, n, kernel_size, mlp_ratio, scale) for n in blocks)
        self.ups = nn.ModuleList(
            nn.Sequential(ChannelNorm(dim, eps=1e-6), nn.ConvTranspose1d(dim, dim, f, stride=f)) for f in upsample
        )
        self.sample_rate, self.frame_hop = sample_rate, frame_hop
        self.f0_range = tuple(f0_range) if f0_range is not None else None
        self.pitch = nn.Sequential(ChannelNorm(dim, eps=1e-6), nn.Conv1d(dim, 2, 1)) if f0_range else None
        self.head = ISTFTHead(dim, n_fft, frame_hop, harmonic=f0_range is not None)

    def read_pitch(self, x: torch.Tensor) -> PitchPrediction:
        lo, hi = (math.log(f) for f in self.f0_range)
        a, b = self.pitch(x).float().unbind(1)
        return PitchPrediction(lo + (hi - lo) * torch.sigmoid(a), b)

    def forward(self, z: torch.Tensor, f0: torch.Tensor | None = None,
                voiced: torch.Tensor | None = None) -> tuple[torch.Tensor, PitchPrediction | None]:
        """``f0``/``voiced [B, F · prod(upsample)]``: the source's F0 (Hz) and voicing weight (default 1),
        in place of the predicted ones (harmonic decoders only)."""
        return self.render(self.features(z), f0, voiced)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """The ConvNeXt trunk: latents ``[B, latent_dim, F]`` → ``[B, dim, F · prod(upsample)]``."""
        x = self.embed_norm(self.embed(z))
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.ups):
                x = self.ups[i](x)
        return x

    def render(self, x: torch.Tensor, f0: torch.Tensor | None = None, voiced: torch.Tensor | None = None,
               phase_offset: torch.Tensor | float | None = None) -> tuple[torch.Tensor, PitchPrediction | None]:
        """Trunk features → waveform (the pitch read-out and harmonic source, then the iSTFT head);
        ``phase_offset``: the source's phase before the first sample (:func:`.source.harmonic_excitation`)."""
        if self.pitch is None:
            return self.head(x), None
        pred = self.read_pitch(x)
        if f0 is None:
            f0, voiced = torch.exp(pred.log_f0.detach()), torch.sigmoid(pred.voiced_logit.detach())
        elif voiced is None:
            voiced = torch.ones_like(f0)
        excitation = harmonic_excitation(f0, voiced, self.frame_hop, self.sample_rate, phase_offset)
        return self.head(x, self.head.stft(excitation)), pred
