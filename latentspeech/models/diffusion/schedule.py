"""The cosine noise schedule, the ε / v parameterisations and the samplers' timestep plans.

Discrete DDPM with ``num_steps`` (1000) steps and the cosine ᾱ of Nichol & Dhariwal (s = 0.008,
β ≤ 0.999): ``x_t = α_t x0 + σ_t ε`` with α_t = sqrt(ᾱ_t), σ_t = sqrt(1 − ᾱ_t).

The network predicts ``eps`` (ε) or ``v`` (v = α_t ε − σ_t x0, Salimans & Ho 2022); both convert
to an (x0, ε) pair (:func:`x0_eps`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn

__all__ = ["Prediction", "NoiseSchedule", "x0_eps", "LOGSNR_MIN", "timestep_grid", "sampler_plan"]

Prediction = Literal["eps", "v"]
LOGSNR_MIN = -4.0  # start of the log-SNR grid (t = T-1 itself is at λ ≈ -9.9)


class NoiseSchedule(nn.Module):
    """Cosine DDPM schedule: buffers ``alpha_bar``, ``alpha``, ``sigma`` of length ``num_steps``."""

    def __init__(self, num_steps: int = 1000, s: float = 0.008):
        super().__init__()
        self.num_steps = num_steps
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        self.register_buffer("alpha", alpha_bar.sqrt().float(), persistent=False)
        self.register_buffer("sigma", (1 - alpha_bar).sqrt().float(), persistent=False)
        self.register_buffer("betas", betas.float(), persistent=False)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.alpha[t, None] * x0 + self.sigma[t, None] * eps

    def to_x0_eps(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction: str):
        """Network output (ε or v) at x_t → (x0, ε)."""
        return x0_eps(out, x_t, self.alpha[t, None], self.sigma[t, None], prediction)

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
        if prediction == "eps":
            return eps
        return self.alpha[t, None] * eps - self.sigma[t, None] * x0


def x0_eps(out: torch.Tensor, x_t: torch.Tensor, a, s, prediction: str):
    """(x0, ε) from the network output at x_t = a·x0 + s·ε (a, s: tensors or floats)."""
    if prediction == "eps":
        return (x_t - s * out) / a, out
    # v = a·ε − s·x0  ⇒  x0 = a·x_t − s·v,  ε = s·x_t + a·v   (a² + s² = 1)
    return a * x_t - s * out, s * x_t + a * out


def timestep_grid(schedule: NoiseSchedule, steps: int, spacing: str = "logsnr") -> list[int]:
    """``steps + 1`` strictly decreasing integer times from the last step to 0.

    ``"logsnr"`` spaces them evenly in log-SNR λ = log(α/σ) from max(λ_{T−1}, ``LOGSNR_MIN``) to
    λ_0, each mapped to the nearest step (with t = T−1 and t = 0 at the ends); ``"linspace"``
    spaces them evenly in t, as does any plan of more than 100 steps (where rounding in λ would
    repeat steps near t = 0).
    """
    T = schedule.num_steps
    if spacing == "linspace" or steps > 100:
        ts = torch.linspace(T - 1, 0, steps + 1).round().long()
    else:
        lam = torch.log(schedule.alpha.double() / schedule.sigma.double())
        lo = max(float(lam[T - 1]), LOGSNR_MIN)  # the last discrete step alone spans λ -5 → -10
        targets = torch.linspace(lo, float(lam[0]), steps + 1, dtype=torch.float64)
        ts = (lam[None, :] - targets[:, None]).abs().argmin(dim=1)
        ts[0], ts[-1] = T - 1, 0
    out = [int(t) for t in ts]
    for i in range(len(out) - 2, -1, -1):  # strictly decreasing: no zero-length steps
        out[i] = max(out[i], out[i + 1] + 1)
    for i in range(1, len(out)):
        out[i] = min(out[i], out[i - 1] - 1)
    return out


def sampler_plan(schedule: NoiseSchedule, steps: int, spacing: str) -> list[tuple[int, float, float, float, float]]:
    """Per step ``(t, α_t, σ_t, α_s, σ_s)`` as Python floats (s: the next, lower time of
    :func:`timestep_grid`), memoised on the schedule (its buffers never change).

    A sampler runs for every frame, so the coefficients are computed once per (steps, spacing):
    per-step tensor bookkeeping would cost more than the small head itself."""
    memo = schedule.__dict__.setdefault("_plans", {})
    key = (steps, spacing, schedule.alpha.device)
    if key not in memo:
        ts = timestep_grid(schedule, steps, spacing)
        alpha, sigma = schedule.alpha.double().tolist(), schedule.sigma.double().tolist()
        memo[key] = [(t, alpha[t], sigma[t], alpha[s], sigma[s]) for t, s in zip(ts[:-1], ts[1:])]
    return memo[key]
