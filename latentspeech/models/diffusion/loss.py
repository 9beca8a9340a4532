"""The diffusion head's training loss."""

from __future__ import annotations

import torch

from .head import DiffusionHead

__all__ = ["diffusion_loss"]


def diffusion_loss(head: DiffusionHead, x0: torch.Tensor, h: torch.Tensor, batch_mul: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE of the head's prediction, per position: x0 [N, D] targets, h [N, C] conditions → [N].

    Each position is trained with ``batch_mul`` independent (t, ε) draws (t uniform in
    [0, num_steps)); the losses of the draws are averaged.
    """
    k = batch_mul or head.cfg.batch_mul
    sched = head.schedule
    n = x0.shape[0]
    x0r, hr = x0.repeat(k, 1), h.repeat(k, 1)
    t = torch.randint(0, sched.num_steps, (n * k,), device=x0.device, generator=generator)
    eps = torch.randn(x0r.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = sched.add_noise(x0r, eps, t)
    out = head(x_t, t, hr)
    target = sched.target(x0r, eps, t, head.cfg.prediction)
    per = (out.float() - target.float()).pow(2).mean(dim=-1)
    return per.view(k, n).mean(dim=0)
