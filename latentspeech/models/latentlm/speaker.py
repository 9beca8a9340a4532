"""A speaker summary of the prompt for the diffusion head (``LatentLMConfig.speaker_condition``).

The Transformer reads the prompt as a prefix and may learn to copy its voice, or may not: on a
small model the voice of the output drifts towards the voices it was trained on. This path gives
the head a fixed-size summary of the prompt at every speech token, next to the Transformer's
state: the masked mean and standard deviation of the prompt's tokens (per latent dimension: the
codec latents' level and spread carry much of a voice's timbre) through a two-layer MLP.

The MLP's output layer starts at zero, so a trained LatentLM fine-tuned with the path added starts
out exactly as it was. A row without a prompt (the CFG rows of training, the unconditional rows of
guided generation) gets a zero vector.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SpeakerSummary"]


class SpeakerSummary(nn.Module):
    def __init__(self, token_dim: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * token_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, prompt: torch.Tensor, prompt_lens: torch.Tensor) -> torch.Tensor:
        """prompt [B, P, token_dim] (right-padded), prompt_lens [B] -> [B, dim] (zero where P = 0)."""
        B, P, _ = prompt.shape
        mask = (torch.arange(P, device=prompt.device)[None, :] < prompt_lens[:, None]).to(prompt.dtype)[..., None]
        n = mask.sum(1).clamp(min=1.0)
        mean = (prompt * mask).sum(1) / n
        var = (((prompt - mean[:, None]) * mask) ** 2).sum(1) / n
        stats = torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)
        return self.net(stats) * (prompt_lens > 0).to(prompt.dtype)[:, None]
