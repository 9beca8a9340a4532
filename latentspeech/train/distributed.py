"""Data parallelism outside DDP's reducer: the rank, gradient averaging, sharing rank 0's weights.

DDP's reducer expects one backward pass per forward, through every parameter it wraps. The codec's
adversarial step runs two (discriminator, then generator) over different networks, and its
discriminator sits idle before ``adversarial.start_step``; it averages each network's gradients with
:func:`average_gradients` right before that network's optimizer steps. Guidance distillation, a plain
loop after the LM's Lightning run, averages the head's gradients the same way. The small auxiliary
models (aligner, recognizer) are fitted on rank 0 alone and given to the other ranks with
:func:`share_from_rank_zero`, so that their result does not depend on the number of processes; what
rank 0 computes alone after that (the aligner's durations) reaches the others by
:func:`broadcast_from_rank_zero`. The waiting ranks are bounded by the process group's timeout.

Every function is a no-op outside an initialised ``torch.distributed`` process group (or in a group
of one), so that single-process training runs exactly the same code.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["rank_and_world", "is_rank_zero", "average_gradients", "share_from_rank_zero", "broadcast_from_rank_zero"]

#: Elements per all-reduce of flattened gradients: bounds the extra memory of the flat copy.
BUCKET_ELEMENTS = 1 << 24


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_rank_zero() -> bool:
    return rank_and_world()[0] == 0


def _buckets(tensors: list[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    """Consecutive runs of ``tensors`` of one device and dtype, up to :data:`BUCKET_ELEMENTS` each."""
    run: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if run and (t.device != run[0].device or t.dtype != run[0].dtype or size + t.numel() > BUCKET_ELEMENTS):
            yield run
            run, size = [], 0
        run.append(t)
        size += t.numel()
    if run:
        yield run


@torch.no_grad()
def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each gradient of ``params`` by its mean over the ranks, in place (what DDP does).

    Every rank must pass the same parameters in the same order. A parameter with a gradient on some
    ranks only counts zeros on the others; one without a gradient on every rank keeps ``None``.
    """
    _, world = rank_and_world()
    if world == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=params[0].device)
    dist.all_reduce(has_grad, op=dist.ReduceOp.MAX)
    grads = []
    for p, used in zip(params, has_grad.tolist()):
        if used and p.grad is None:
            p.grad = torch.zeros_like(p)
        if used:
            grads.append(p.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        dist.all_reduce(flat)
        flat.div_(world)
        for g, chunk in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(chunk.view_as(g))


@torch.no_grad()
def share_from_rank_zero(module: nn.Module) -> nn.Module:
    """Copy rank 0's parameters and buffers into ``module`` on every rank (the other ranks wait here
    while rank 0 works, within the process group's timeout). Returns ``module``."""
    _, world = rank_and_world()
    if world > 1:
        for t in module.state_dict(keep_vars=True).values():
            t = t.data
            buf = t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous()  # gloo has no bool
            dist.broadcast(buf, 0)
            if buf is not t:
                t.copy_(buf)
    return module


def broadcast_from_rank_zero(obj):
    """Rank 0's ``obj`` (any picklable value) on every rank; ``obj`` itself without a process group."""
    _, world = rank_and_world()
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]
