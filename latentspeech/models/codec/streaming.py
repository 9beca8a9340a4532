"""Incremental decoding: latents that arrive a few frames at a time → one gapless waveform.

    dec = StreamingDecoder(codec)
    for z in latent_chunks:                 # [latent_dim, n] each, codec scale (not normalised)
        play(dec.push(z))                   # float32 samples, possibly none yet
    play(dec.flush())                       # the rest, once the sequence has ended

The decoder is not causal: each output frame depends on the latent frames within its trunk's receptive
field (:func:`receptive_frames`: 13 on each side for the demo codec, 0.52 s). So
:meth:`StreamingDecoder.push` holds back the last ``lookahead`` frames, decodes a window from
``context`` frames before the new ones to ``lookahead`` frames after, and keeps only the new frames'
samples; :meth:`~StreamingDecoder.flush` decodes up to the true end, which the whole-sequence decode
sees in the same way. A harmonic decoder's pulse train continues the phase of the samples already
played (:func:`.source.harmonic_excitation`), so chunks join without a step.

With ``lookahead`` and ``context`` at least the receptive field (the default) the stream equals
:meth:`AudioCodec.decode <.model.AudioCodec.decode>` of the whole sequence up to float rounding
(``tests/test_streaming.py``); smaller values trade accuracy for latency (the pulse train's phase then
drifts a little). The first chunk waits for ``first_chunk + lookahead`` frames, later ones for ``chunk``
new frames: bigger chunks decode less overlap per second of audio.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import AudioError
from .source import phase_increments

__all__ = ["StreamingDecoder", "receptive_frames"]


def receptive_frames(cfg) -> int:
    """Latent frames on each side that one output frame of a codec of config ``cfg`` depends on (+1 for
    the iSTFT's and the pitch interpolation's overlap): the embedding convolution (kernel 7), then every
    ConvNeXt block's depth-wise kernel at its stage's rate (up-sampling convolutions do not overlap)."""
    d, rate, radius = cfg.decoder, 1, 3.0
    ups = list(reversed(cfg.downsample))
    for i, n in enumerate(d.blocks):
        radius += n * (d.kernel_size // 2) / rate
        if i < len(ups):
            rate *= ups[i]
    return math.ceil(radius) + 1


class StreamingDecoder:
    """Decodes one latent sequence incrementally (see the module docstring); one instance per sequence."""

    def __init__(self, codec, lookahead: int | None = None, context: int | None = None, first_chunk: int = 4,
                 chunk: int = 12):
        field = receptive_frames(codec.cfg)
        lookahead = field if lookahead is None else lookahead
        context = field if context is None else context
        if min(lookahead, context) < 0 or min(first_chunk, chunk) < 1:
            raise AudioError(f"streaming decoder: lookahead/context must be >= 0 and chunks >= 1, got "
                             f"{lookahead}/{context}/{first_chunk}/{chunk}")
        self.codec, self.lookahead, self.context = codec, lookahead, context
        self.first_chunk, self.chunk = first_chunk, chunk
        self.frames: list[torch.Tensor] = []  # what has arrived, [D, n] pieces
        self.total = 0  # frames arrived
        self.done = 0  # frames whose samples have been returned
        self.phase = 0.0  # the harmonic source's phase before sample done · hop (radians)

    def push(self, z: torch.Tensor) -> np.ndarray:
        """Add latent frames ``z [latent_dim, n]``; returns the samples that are now final (maybe none)."""
        if z.dim() != 2 or z.shape[0] != self.codec.latent_dim:
            raise AudioError(f"StreamingDecoder.push expects latents [{self.codec.latent_dim}, frames], got "
                             f"{tuple(z.shape)}")
        if z.shape[1]:
            self.frames.append(z.float())
            self.total += z.shape[1]
        ready = self.total - self.lookahead
        need = self.first_chunk if self.done == 0 else self.chunk
        if ready - self.done < need:
            return np.zeros(0, np.float32)
        return self._emit(ready, final=False)

    def flush(self) -> np.ndarray:
        """The samples of every frame not yet returned (call once the sequence is complete)."""
        if self.done >= self.total:
            return np.zeros(0, np.float32)
        return self._emit(self.total, final=True)

    @torch.no_grad()
    def _emit(self, end: int, final: bool) -> np.ndarray:
        """Samples of frames ``[done, end)``, decoded from a window with context on both sides."""
        a, hop = self.done, self.codec.hop_length
        z = torch.cat(self.frames, 1) if len(self.frames) > 1 else self.frames[0]
        self.frames = [z]
        w = max(0, a - self.context)
        e = self.total if final else min(self.total, end + self.lookahead)
        dec = self.codec.decoder
        x = dec.features(z[None, :, w:e].to(self.codec.latent_mean.device))
        offset = None
        if dec.pitch is not None:
            pred = dec.read_pitch(x)
            f0, voiced = torch.exp(pred.log_f0), torch.sigmoid(pred.voiced_logit)
            inc = phase_increments(f0, dec.frame_hop, dec.sample_rate)[0]
            lo, hi = (a - w) * hop, (end - w) * hop
            offset = self.phase - float(inc[:lo].sum())  # the phase before the window's first sample
            self.phase = math.remainder(self.phase + float(inc[lo:hi].sum()), 2 * math.pi)
            wav, _ = dec.render(x, f0, voiced, phase_offset=offset)
        else:
            wav, _ = dec.render(x)
        self.done = end
        return wav[0, (a - w) * hop : (end - w) * hop].float().cpu().numpy()
