"""Language models over speech latents: the shared Transformer, next-token diffusion and the LatentLM.

    from latentspeech.lm import LatentLM, LatentLMConfig, Transformer, TransformerConfig
"""

from .diffusion import DiffusionHead, DiffusionHeadConfig, NoiseSchedule, diffusion_loss, guided, sample
from .latentlm import GenerationOutput, LatentLM, LatentLMConfig, LMBatch, default_frames_per_phone
from .transformer import KVCache, Transformer, TransformerConfig

__all__ = [
    "Transformer", "TransformerConfig", "KVCache",
    "DiffusionHead", "DiffusionHeadConfig", "NoiseSchedule", "diffusion_loss", "guided", "sample",
    "LatentLM", "LatentLMConfig", "LMBatch", "GenerationOutput", "default_frames_per_phone",
]
