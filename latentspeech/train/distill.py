"""Guidance distillation: fold classifier-free guidance into the diffusion head.

With CFG every generated token costs two rows, in the Transformer (the unconditional row keeps its
own KV cache) and in every sampler step of the head. Distillation (Meng et al., 2023, "On
distillation of guided diffusion models", here for the head only) trains a copy of the head to
output, from the *conditional* LM state alone, what the guided pair gives:

    target = v_u + s · (v_c − v_u),   v_c = head(x_t, t, h_c),  v_u = head(x_t, t, h_u)

on teacher-forced training data (x_t = α_t x0 + σ_t ε at random t, as in training). The Transformer,
the phone encoder and the advance/stop heads are unchanged (the student's h_c is the teacher's), so
this is a short head-only fine-tune; the distilled model then samples with ``cfg`` 1: one row per
sentence, no unconditional pass (``LatentLMConfig.guidance_distilled`` records the scale).

    model = distill_guidance(model, batches, DistillConfig(scale=3.0, steps=1500))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable

import torch

from ..errors import ConfigError
from ..data.batch import LMBatch
from ..models.latentlm import LatentLM
from .common import lr_lambda
from .distributed import average_gradients, rank_and_world

__all__ = ["DistillConfig", "distill_guidance"]


@dataclass
class DistillConfig:
    """``steps`` 0: no distillation (``latentspeech train latentlm`` runs it after training otherwise)."""

    scale: float = 3.0  # the CFG scale folded into the head
    steps: int = 0
    lr: float = 2.0e-4
    warmup_steps: int = 50
    batch_mul: int = 4  # (t, ε) draws per token, as diffusion training

    def validate(self) -> None:
        if self.steps < 0 or self.scale < 1.0 or self.lr <= 0 or self.batch_mul < 1:
            raise ConfigError(f"distill: need steps >= 0, scale >= 1, lr > 0, batch_mul >= 1 (got {self})")


def _guided_targets(teacher, x0: torch.Tensor, h_c: torch.Tensor, h_u: torch.Tensor, cfg: DistillConfig,
                    generator: torch.Generator | None = None):
    """(x_t, t, h_c, guided teacher output) for ``batch_mul`` noise draws per token."""
    sched = teacher.schedule
    k, n = cfg.batch_mul, x0.shape[0]
    x0r, hcr, hur = x0.repeat(k, 1), h_c.repeat(k, 1), h_u.repeat(k, 1)
    t = torch.randint(0, sched.num_steps, (n * k,), device=x0.device, generator=generator)
    eps = torch.randn(x0r.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = sched.add_noise(x0r, eps, t)
    with torch.no_grad():
        out = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([hcr, hur]))
        v_c, v_u = out.chunk(2)
    return x_t, t, hcr, v_u + cfg.scale * (v_c - v_u)


def _forever(batches: Iterable[LMBatch]):
    """Cycle an iterable (a DataLoader: a new pass, new shuffles) without caching its items."""
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("distill_guidance: no training batches")


def distill_guidance(model: LatentLM, batches: Iterable[LMBatch], cfg: DistillConfig, progress: bool = True,
                     log: list | None = None, seed: int = 0) -> LatentLM:
    """Fine-tune ``model.head`` in place to predict the guided output at ``cfg.scale`` from the
    conditional state alone; ``batches`` is cycled for ``cfg.steps`` steps (AdamW, warm-up + cosine).
    Appends ``(step, loss)`` to ``log`` every 25 steps. Returns the model (eval mode,
    ``cfg.guidance_distilled`` set).

    In a ``torch.distributed`` process group (after a DDP run) every rank calls it with its own shard
    of batches: the head's gradients are averaged over the ranks at each step (data parallel, as
    the LM's training), so every rank ends with the same head."""
    from tqdm.auto import tqdm


    cfg.validate()
    if model.cfg.guidance_distilled:
        raise ValueError(f"the model's head is already guidance-distilled (scale {model.cfg.guidance_distilled})")
    dev = next(model.parameters()).device
    teacher = copy.deepcopy(model.head).eval().requires_grad_(False)
    model.eval().requires_grad_(False)
    head = model.head.train().requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, cfg.warmup_steps, cfg.steps, 0.05))
    gen = torch.Generator(device=dev).manual_seed(seed + rank_and_world()[0])  # other (t, ε) per rank
    it = _forever(batches)
    bar = tqdm(range(cfg.steps), desc="distill guidance", disable=not progress)
    for step in bar:
        batch = next(it).to(dev)
        with torch.no_grad():
            h_c, x0 = model.head_conditions(batch, conditional=True)
            h_u, _ = model.head_conditions(batch, conditional=False)
        x_t, t, hcr, target = _guided_targets(teacher, x0, h_c, h_u, cfg, gen)
        loss = (head(x_t, t, hcr) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(head.parameters())
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if log is not None:
                log.append((step, loss.item()))
    model.requires_grad_(True).eval()
    model.cfg.guidance_distilled = float(cfg.scale)
    return model
