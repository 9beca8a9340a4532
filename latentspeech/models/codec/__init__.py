"""The audio codec: waveform ↔ continuous latents (σ-VAE), with Gaussian-VAE and RVQ bottlenecks.

    from latentspeech.models.codec import load_codec
    codec = load_codec()                      # the bundled "codec-demo", or a model directory
    z = codec.encode(wav)                     # [B, T] → [B, latent_dim, ceil(T / hop_length)]
    wav_hat = codec.decode(z)                 # → [B, frames · hop_length]

See :mod:`latentspeech.models.codec.model` for the frame arithmetic and :mod:`.config` for the options.
"""

from .config import BottleneckConfig, CodecConfig, DecoderConfig, EncoderConfig
from .model import DEFAULT_CODEC, AudioCodec, CodecOutput, load_codec, save_codec

__all__ = [
    "AudioCodec",
    "BottleneckConfig",
    "CodecConfig",
    "CodecOutput",
    "DecoderConfig",
    "EncoderConfig",
    "DEFAULT_CODEC",
    "load_codec",
    "save_codec",
]
