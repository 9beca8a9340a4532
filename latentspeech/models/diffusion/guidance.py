"""Classifier-free guidance of a diffusion head, as a ``model_fn(x_t, t)`` for the samplers.

One batched head call evaluates the conditional and the unconditional condition and returns
``out_u + s·(out_c − out_u)``; s = 1 is exactly the conditional prediction. Guidance is applied to
the raw output (ε or v): both are affine in (x_t, ε), so this equals guiding ε.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["guided"]


def guided(head: Callable, h_cond: torch.Tensor, h_uncond: torch.Tensor | None, scale: float) -> Callable:
    """``model_fn(x_t, t)`` for the samplers with classifier-free guidance at ``scale``.

    One batched head call evaluates both conditions: out = out_u + scale·(out_c − out_u).
    With ``h_uncond`` None or ``scale == 1`` it is the plain conditional head.
    """
    def bind(h):  # a DiffusionHead projects h once per frame; any other callable is called as is
        return head.denoiser(h) if hasattr(head, "denoiser") else (lambda x, t: head(x, t, h))

    if h_uncond is None or scale == 1.0:
        return bind(h_cond)
    both = bind(torch.cat([h_cond, h_uncond]))

    def fn(x, t):
        out_c, out_u = both(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return out_u + scale * (out_c - out_u)

    return fn
