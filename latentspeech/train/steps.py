"""A plain training loop for the small auxiliary models fitted in one process (the MAS aligner, the
phone recognizer): no Lightning, a fixed number of batches, a progress bar or log lines.

    fit_steps(model, lambda step: batch_loss(...), opt, sched, steps, "aligner")
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

__all__ = ["examples", "fit_steps"]


def examples(sources) -> list[tuple[int, str]]:
    """(source index, utterance id) of every utterance that has both phones and latents, in a fixed order."""
    return [(si, u) for si, src in enumerate(sources) for u in sorted(src.phones) if u in src.latents]


def fit_steps(model: nn.Module, batch_loss: Callable[[int], torch.Tensor], opt: torch.optim.Optimizer, sched,
              steps: int, name: str, progress: bool = True, log_every: int = 100, log=print,
              clip: float = 1.0) -> nn.Module:
    """``steps`` optimizer steps on ``batch_loss(step)`` (gradient norm clipped to ``clip``); shows a
    running loss on the bar, or logs it every ``log_every`` steps without one. Returns the model in eval mode."""
    from tqdm.auto import tqdm

    model.train()
    bar = tqdm(range(steps), desc=name, disable=not progress)
    running = None
    for step in bar:
        loss = batch_loss(step)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.set_postfix(loss=f"{running:.3f}")
        if log and not progress and (step + 1) % log_every == 0:
            log(f"{name} step {step + 1}/{steps} loss {running:.4f}")
    return model.eval()
