"""Samplers: draw x0 from pure noise with a few evaluations of any ``model_fn(x_t, t) -> prediction``
(``t``: a LongTensor [N] of steps, the prediction ε or v).

* ``dpm++``: DPM-Solver++(2M) (Lu et al. 2022), multistep, data-prediction form, 1-20 steps;
  first order on the first step; the last step goes to t = 0 (σ ≈ 0.006), whose x is the sample.
* ``ddim``: deterministic DDIM (η = 0), the reference ODE sampler.
* ``ddpm``: ancestral DDPM sampling (stochastic), the reference for the marginal.

The ``steps`` evaluations run from t = T−1 to t = 0 on the times of
:func:`~.schedule.timestep_grid`. The temperature τ scales the initial noise x_T (and the fresh
noise of ``ddpm`` steps): τ < 1 trades diversity for stability, as MAR's temperature does.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .schedule import NoiseSchedule, sampler_plan, x0_eps

__all__ = ["SAMPLERS", "sample", "ddim_step", "ddpm_step", "dpm_solver_step"]

SAMPLERS = ("dpm++", "ddim", "ddpm")


@torch.no_grad()
def sample(model_fn: Callable, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str,
           steps: int = 10, method: str = "dpm++", temperature: float = 1.0,
           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
           x_T: torch.Tensor | None = None, spacing: str = "logsnr") -> torch.Tensor:
    """Draw x0 of ``shape`` by integrating from pure noise (``x_T``, or drawn at ``temperature``)
    with ``steps`` network evaluations of the sampler ``method`` (one of :data:`SAMPLERS`)."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r} (known: {', '.join(SAMPLERS)})")
    if steps < 1 or steps >= schedule.num_steps:
        raise ValueError(f"steps must be in [1, {schedule.num_steps - 1}], got {steps}")
    device = device or schedule.alpha.device
    x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device, dtype=dtype) * temperature
    n = shape[0]
    history = None  # DPM-Solver++'s previous (x0, h)
    for i, (t, a_t, s_t, a_s, s_s) in enumerate(sampler_plan(schedule, steps, spacing)):
        out = model_fn(x, torch.full((n,), t, dtype=torch.long, device=device))
        x0, eps = x0_eps(out, x, a_t, s_t, prediction)
        if method == "ddim":
            x = ddim_step(x0, eps, a_s, s_s)
        elif method == "ddpm":
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=dtype) * temperature
            x = ddpm_step(x, x0, a_t, a_s, noise if i < steps - 1 else None)
        else:
            x, history = dpm_solver_step(x, x0, history, a_t, s_t, a_s, s_s)
        x = x.to(dtype)
    return x.to(dtype)


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, a_s: float, s_s: float) -> torch.Tensor:
    """Deterministic DDIM (η = 0): x_s = α_s x0 + σ_s ε."""
    return a_s * x0 + s_s * eps


def ddpm_step(x: torch.Tensor, x0: torch.Tensor, a_t: float, a_s: float, noise: torch.Tensor | None) -> torch.Tensor:
    """Ancestral step: a draw of the posterior q(x_s | x_t, x0) of the (strided) chain, its mean
    where ``noise`` is None (the last step)."""
    ab_t, ab_s = a_t**2, a_s**2
    beta = 1 - ab_t / ab_s
    mean = (a_s * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)) * x
    if noise is None:
        return mean
    var = beta * (1 - ab_s) / (1 - ab_t)
    return mean + math.sqrt(var) * noise


def dpm_solver_step(x: torch.Tensor, x0: torch.Tensor, history: tuple[torch.Tensor, float] | None,
                    a_t: float, s_t: float, a_s: float, s_s: float) -> tuple[torch.Tensor, tuple[torch.Tensor, float]]:
    """One DPM-Solver++(2M) step from t to s: first order without ``history`` (the previous step's
    (x0, h)), second order with it. Returns x_s and this step's (x0, h)."""
    h = math.log(a_s / s_s) - math.log(a_t / s_t)
    if history is None:
        d = x0
    else:
        prev_x0, prev_h = history
        d = x0 + (x0 - prev_x0) * (h / (2 * prev_h))
    return (s_s / s_t) * x - (a_s * math.expm1(-h)) * d, (x0, h)
