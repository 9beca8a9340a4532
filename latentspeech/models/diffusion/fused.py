"""Inference-only rearrangement of a :class:`~.head.DiffusionHead`'s weights: the same function in
fewer and cheaper ops.

* every adaLN modulation in one matrix (the timestep's in a second one when separable), with the
  ``1 +`` of each scale in its bias and the following RMSNorm's gain × sqrt(width) folded into the
  scale, so that each norm becomes one ``F.normalize`` (x / ‖x‖);
* each block's two SwiGLU input projections in one matrix;
* plain tensors for ``F.linear`` (no module calls per sampler step).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["fuse_weights", "fused_modulations", "denoise_fused"]


def fuse_weights(head: nn.Module) -> dict:
    """The fused tensors of ``head`` (a DiffusionHead), detached from autograd."""
    w = head.cfg.width
    separable = head.cfg.modulation == "separable"
    weights, t_weights, biases, sizes = fused_modulations(head)
    fused = {
        "ada_w": torch.cat(weights).detach(), "ada_b": torch.cat(biases).detach(), "sizes": sizes,
        "in": (head.in_proj.weight.detach(), head.in_proj.bias.detach()),
        "blocks": [(torch.cat([b.w1.weight, b.w3.weight]).detach(), torch.cat([b.w1.bias, b.w3.bias]).detach(),
                    b.w2.weight.detach(), b.w2.bias.detach()) for b in head.blocks],
        "out": (head.final.linear.weight.detach(), head.final.linear.bias.detach()),
        # x / max(‖x‖, ε) with ε matching RMSNorm's mean-square ε (equal for ‖x‖ ≫ ε)
        "norm_eps": math.sqrt(w * head.cfg.norm_eps),
    }
    if separable:
        fused["ada_t_w"] = torch.cat(t_weights).detach()
    return fused


def fused_modulations(head: nn.Module) -> tuple[list, list, list, list[int]]:
    """Per modulated layer (the blocks, then the final layer) the width-sized row blocks of its adaLN
    weight (``t_weights``: of its timestep weight, when separable) and bias, laid out
    shift | (1 + scale)·g·sqrt(width) [| gate], and their sizes."""
    w = head.cfg.width
    root = math.sqrt(w)
    separable = head.cfg.modulation == "separable"
    weights, t_weights, biases, sizes = [], [], [], []
    for blk in head.modulated_layers:
        g = blk.norm.weight * root
        wt, bt = list(blk.ada[-1].weight.split(w)), list(blk.ada[-1].bias.split(w))
        wt[1], bt[1] = wt[1] * g[:, None], (1 + bt[1]) * g
        weights += wt
        biases += bt
        if separable:
            tt = list(blk.ada_t[-1].weight.split(w))
            tt[1] = tt[1] * g[:, None]
            t_weights += tt
        sizes += [w] * blk.n_mods
    return weights, t_weights, biases, sizes


def denoise_fused(x_t: torch.Tensor, mods: torch.Tensor, fused: dict) -> torch.Tensor:
    """The head's denoiser from all modulations at once (``mods``: the layout of :func:`fuse_weights`'s
    ``ada_w``)."""
    m = mods.split(fused["sizes"], dim=-1)
    eps = fused["norm_eps"]
    x = F.linear(x_t, *fused["in"])
    for i, (w13, b13, w2, b2) in enumerate(fused["blocks"]):
        y = torch.addcmul(m[3 * i], F.normalize(x, dim=-1, eps=eps), m[3 * i + 1])
        a, b = F.linear(y, w13, b13).chunk(2, dim=-1)
        x = torch.addcmul(x, m[3 * i + 2], F.linear(F.silu(a) * b, w2, b2))
    return F.linear(torch.addcmul(m[-2], F.normalize(x, dim=-1, eps=eps), m[-1]), *fused["out"])
