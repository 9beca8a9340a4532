"""CPU tracing of :meth:`~.head.DiffusionHead.sample`'s sampler loop.

At inference with a deterministic sampler the loop runs as one ``torch.jit.trace`` graph: the same
operations on the same numbers, without the Python and dispatch overhead of a few hundred tiny ops
per frame, about half the sampling time of a head this small (the demo head: 192 wide, 3 blocks,
10 steps, one frame). Set ``TRACE_SAMPLER`` of this
module to False to always run the eager loop (e.g. to profile it)::

    import latentspeech.models.diffusion.trace as trace
    trace.TRACE_SAMPLER = False
"""

from __future__ import annotations

import warnings
from typing import Callable, Hashable, Iterable

import torch

__all__ = ["TRACE_SAMPLER", "trace_with_constants", "run_traced"]

#: trace DiffusionHead.sample's loop at inference (False: always the eager loop, e.g. to profile it)
TRACE_SAMPLER = True


def trace_with_constants(fn: Callable, args: tuple, params: Iterable[torch.nn.Parameter]) -> Callable | None:
    """``torch.jit.trace(fn, args)`` with ``params`` (the weights ``fn`` reads) taken in as constants of
    the graph, or None where tracing is unavailable or fails. Its warnings are expected here: the Python
    floats and timestep branches of the sampler become constants too."""
    params = [p for p in params if p.requires_grad]
    try:
        for p in params:  # a tensor that requires grad cannot be a graph constant
            p.requires_grad_(False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(fn, args, check_trace=False)
    except Exception:  # noqa: BLE001 (an optimisation only: the eager loop is always right)
        return None
    finally:
        for p in params:
            p.requires_grad_(True)


def run_traced(loop: Callable, args: tuple, memo: dict, key: Hashable,
               params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """``loop(*args)`` through the graph kept in ``memo[key]``.

    The first call runs eagerly (which also fills the memo entries the trace then reads as
    constants) and traces ``loop``; a failed trace is remembered as False and keeps the eager loop."""
    graph = memo.get(key)
    if graph is None:
        out = loop(*args)
        memo[key] = trace_with_constants(loop, args, params) or False
        return out
    if not graph:
        return loop(*args)
    with torch.jit.optimized_execution(False):  # the graph as traced: the executor's profiling runs and
        return graph(*args)                      # passes cost more than they save on graphs this small
