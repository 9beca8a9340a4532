"""Spectral features in torch (differentiable): STFT magnitudes and log-mel spectrograms.

Used by the codec's reconstruction losses, its STFT front end and its evaluation:

    mel = LogMel(sample_rate=16000, n_fft=1024, hop_length=256, n_mels=80)
    m = mel(wav)                      # wav [B, T] -> [B, n_mels, frames], natural log, floored

    mag = stft_magnitude(wav, n_fft=512, hop_length=128)   # [B, n_fft // 2 + 1, frames]

    d = mel_distance(ref, hyp, sample_rate=16000)          # multi-resolution log-mel L1, one float

Everything works on float32 tensors on any device; the windows and filterbanks are buffers,
so they follow ``.to(device)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["stft", "stft_magnitude", "LogMel", "mel_distance", "DEFAULT_MEL_RESOLUTIONS"]

#: (n_fft, hop_length, n_mels) of the multi-resolution mel distance at 16 kHz; scaled with the rate.
DEFAULT_MEL_RESOLUTIONS = ((256, 64, 40), (512, 128, 80), (1024, 256, 100), (2048, 512, 128))


def stft(wav: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor | None = None,
         center: bool = True) -> torch.Tensor:
    """Complex STFT of ``wav`` [B, T] (or [T]) with a Hann window: [B, n_fft // 2 + 1, frames]."""
    if window is None:
        window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    squeeze = wav.dim() == 1
    spec = torch.stft(wav.reshape(-1, wav.shape[-1]), n_fft, hop_length, n_fft, window=window,
                      center=center, pad_mode="reflect" if center else "constant", return_complex=True)
    return spec[0] if squeeze else spec


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor | None = None,
                   eps: float = 1e-7) -> torch.Tensor:
    """|STFT| with a small floor inside the square root (finite gradients at zero)."""
    spec = stft(wav, n_fft, hop_length, window)
    return torch.sqrt(spec.real.square() + spec.imag.square() + eps)


class LogMel(nn.Module):
    """Natural-log mel spectrogram (Slaney mel scale, area-normalised filters) of ``wav`` [B, T]."""

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_mels: int,
                 f_min: float = 0.0, f_max: float | None = None, floor: float = 1e-5, power: float = 1.0):
        super().__init__()
        import torchaudio.functional as AF

        self.n_fft, self.hop_length, self.floor, self.power = n_fft, hop_length, floor, power
        fb = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max or sample_rate / 2, n_mels, sample_rate,
                                norm="slaney", mel_scale="slaney")  # [freq, mels]
        self.register_buffer("fbank", fb.T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mag = stft_magnitude(wav.float(), self.n_fft, self.hop_length, self.window)
        if self.power != 1.0:
            mag = mag.pow(self.power)
        return torch.log(torch.clamp(self.fbank @ mag, min=self.floor))


def _scaled_resolutions(sample_rate: int) -> list[tuple[int, int, int]]:
    scale = sample_rate / 16000
    out = []
    for n_fft, hop, n_mels in DEFAULT_MEL_RESOLUTIONS:
        n = int(2 ** round(torch.log2(torch.tensor(n_fft * scale)).item()))
        out.append((n, max(1, n // 4), n_mels))
    return out


@torch.no_grad()
def mel_distance(ref: torch.Tensor, hyp: torch.Tensor, sample_rate: int) -> float:
    """Multi-resolution log-mel L1 distance between two signals (mean over resolutions).

    Lengths may differ by a few samples: both are cut to the shorter one. Lower is better;
    0 means identical spectra. Used by ``bench/codec.py`` to score reconstructions.
    """
    ref = torch.as_tensor(ref, dtype=torch.float32).reshape(1, -1)
    hyp = torch.as_tensor(hyp, dtype=torch.float32).reshape(1, -1)
    n = min(ref.shape[-1], hyp.shape[-1])
    ref, hyp = ref[..., :n], hyp[..., :n]
    total = 0.0
    res = _scaled_resolutions(sample_rate)
    for n_fft, hop, n_mels in res:
        mel = LogMel(sample_rate, n_fft, hop, n_mels)
        total += F.l1_loss(mel(hyp), mel(ref)).item()
    return total / len(res)
