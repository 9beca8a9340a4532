"""A speaker summary of the prompt for the diffusion head (``LatentLMConfig.speaker_condition``)
and, optionally, for the Transformer's input (``LatentLMConfig.speaker_input``).

The Transformer reads the prompt as a prefix and may learn to copy its voice, or may not: on a
small model the voice of the output drifts towards the voices it was trained on. This path gives
the head a fixed-size summary of the prompt at every speech token, next to the Transformer's
state: the masked mean and standard deviation of the prompt's tokens (per latent dimension: the
codec latents' level and spread carry much of a voice's timbre) through a two-layer MLP.

With ``to_input``, a linear map of the same summary is also added to the Transformer's input at BOS
and at every speech token, so the state that conditions the head (and, in pointer mode, decides when
to move on) is computed knowing the voice too, not only the head.

The MLP's output layer and the input map start at zero, so a trained LatentLM fine-tuned with the
path added starts out exactly as it was. A row without a prompt (the CFG rows of training, the
unconditional rows of guided generation) gets a zero vector.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SpeakerSummary"]


class SpeakerSummary(nn.Module):
    def __init__(self, token_dim: int, dim: int, to_input: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * token_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.input = nn.Linear(dim, dim, bias=False) if to_input else None  # no bias: zero stays zero
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)
        if self.input is not None:
            nn.init.zeros_(self.input.weight)

    def forward(self, prompt: torch.Tensor, prompt_lens: torch.Tensor) -> torch.Tensor:
        """prompt [B, P, token_dim] (right-padded), prompt_lens [B] -> [B, dim] (zero where P = 0)."""
        B, P, _ = prompt.shape
        mask = (torch.arange(P, device=prompt.device)[None, :] < prompt_lens[:, None]).to(prompt.dtype)[..., None]
        n = mask.sum(1).clamp(min=1.0)
        mean = (prompt * mask).sum(1) / n
        var = (((prompt - mean[:, None]) * mask) ** 2).sum(1) / n
        stats = torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)
        return self.net(stats) * (prompt_lens > 0).to(prompt.dtype)[:, None]

    def input_vector(self, summary: torch.Tensor) -> torch.Tensor | None:
        """What the Transformer's BOS and speech slots get added [B, dim] (None without ``to_input``):
        a linear map of :meth:`forward`'s summary, zero where the summary is (rows without a prompt)."""
        return None if self.input is None else self.input(summary)
