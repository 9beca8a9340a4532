"""Next-token diffusion: the noise schedule, the adaLN MLP diffusion head, its loss and samplers.

At every speech position the Transformer's hidden state ``h`` conditions a small network that
denoises the *next* latent frame (LatentLM, arXiv 2412.08635; MAR, arXiv 2406.11838):

    head = DiffusionHead(DiffusionHeadConfig(latent_dim=32, cond_dim=256, width=256))
    loss = diffusion_loss(head, x0, h, batch_mul=4)                    # training, per position
    x = sample(head_fn, (N, 32), steps=10, method="dpm++")             # inference, any model_fn
    x = head.sample(h, steps=10, temperature=0.7)                      # inference of the head (traced loop)

Schedule
    Discrete DDPM with ``num_steps`` = 1000 and the cosine ᾱ of Nichol & Dhariwal (s = 0.008,
    β ≤ 0.999). ``x_t = α_t x0 + σ_t ε`` with α_t = sqrt(ᾱ_t), σ_t = sqrt(1 − ᾱ_t).

Parameterisations
    ``eps`` (the net predicts ε) or ``v`` (v = α_t ε − σ_t x0; preferred: paper.md's feasibility
    run sampled well with v and failed with ε and a narrow head). Both convert to an x0 / ε pair.

Samplers (all take ``model_fn(x_t, t) -> prediction``; ``t`` is a LongTensor [N] of steps)
    * ``dpm++``: DPM-Solver++(2M), multistep, data-prediction form (Lu et al. 2022), 1-20 steps;
      first order on the first and the last step; the last step goes to σ = 0 (returns x0).
    * ``ddim``: deterministic DDIM (η = 0), the reference ODE sampler.
    * ``ddpm``: ancestral DDPM sampling (stochastic), the reference for the marginal.
    ``steps`` evaluations step from t = T−1 to t = 0 (σ ≈ 0.006), at times evenly spaced in
    log-SNR (``spacing="logsnr"``, the default: far better than ``"linspace"`` in t at 1-5
    steps, see tests/test_lm_diffusion.py) or in t.

Temperature
    τ scales the initial noise x_T (and the fresh noise of ``ddpm`` steps): τ < 1 trades
    diversity for stability, as MAR's temperature (0.95-1.0 worked there).

Classifier-free guidance
    :func:`guided` wraps the head so that one batched call evaluates the conditional and the
    unconditional condition and returns ``out_u + s·(out_c − out_u)``; s = 1 is exactly the
    conditional prediction. Guidance is applied to the raw output (ε or v); both are affine in
    (x_t, ε) so this equals guiding ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .transformer import RMSNorm

__all__ = [
    "DiffusionHeadConfig",
    "DiffusionHead",
    "NoiseSchedule",
    "diffusion_loss",
    "sample",
    "guided",
    "timestep_embedding",
    "x0_eps",
]

Prediction = Literal["eps", "v"]
SAMPLERS = ("dpm++", "ddim", "ddpm")
LOGSNR_MIN = -4.0  # start of the log-SNR grid (t = T-1 itself is at λ ≈ -9.9)


@dataclass
class DiffusionHeadConfig:
    """The per-frame denoiser. ``width`` must be ≥ ``latent_dim`` (a narrower head failed, paper.md)."""

    latent_dim: int = 32
    cond_dim: int = 256
    width: int = 256
    n_blocks: int = 3
    mlp_ratio: float = 2.0
    prediction: Prediction = "v"
    num_steps: int = 1000
    batch_mul: int = 4
    norm_eps: float = 1e-6
    # How the adaLN modulations see the condition c = LM state + timestep. "joint": Linear(SiLU(c_h +
    # c_t)), DiT's form. "separable": Linear(SiLU(c_h)) + Linear(SiLU(c_t)): the same shape, but at
    # inference the LM-state part is computed once per frame and the timestep part once per sampler
    # step for all frames, so a sampler step runs no modulation matrix at all.
    modulation: Literal["joint", "separable"] = "joint"

    def validate(self) -> None:
        if self.width < self.latent_dim:
            raise ConfigError(f"diffusion head: width {self.width} must be >= latent_dim {self.latent_dim}")
        if self.n_blocks < 1 or self.batch_mul < 1 or self.num_steps < 2:
            raise ConfigError("diffusion head: n_blocks, batch_mul must be >= 1 and num_steps >= 2")
        if self.modulation not in ("joint", "separable"):
            raise ConfigError(f"diffusion head: modulation must be 'joint' or 'separable', got {self.modulation!r}")
        if self.prediction not in ("eps", "v"):
            raise ConfigError(f"diffusion head: prediction must be 'eps' or 'v', got {self.prediction!r}")


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


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N, dim] of (integer or float) timesteps [N]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def _modulate(x, shift, scale):
    return x * (1 + scale) + shift


class _Modulated(nn.Module):
    """The adaLN modulation (``n_mods`` width-sized pieces of the condition) that the blocks and the
    final layer share, applied after their RMSNorm ``norm``. ``modulation(c_h, c_t)`` is
    Linear(SiLU(c_h + c_t)), or with ``separable`` Linear(SiLU(c_h)) + Linear(SiLU(c_t)) (the
    timestep's linear without bias: ``ada`` has one)."""

    n_mods = 3

    def _add_modulation(self, width: int, separable: bool) -> None:
        # called after the subclass's own layers: the registration order fixes the seeded initialisation
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, self.n_mods * width))
        if separable:
            self.ada_t = nn.Sequential(nn.SiLU(), nn.Linear(width, self.n_mods * width, bias=False))

    def modulation(self, c_h: torch.Tensor, c_t: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "ada_t"):
            return self.ada(c_h) + self.ada_t(c_t)
        return self.ada(c_h + c_t)


class AdaLNBlock(_Modulated):
    """norm → adaLN shift/scale → SwiGLU MLP → gated residual (DiT's adaLN-Zero).

    ``forward`` takes the block's modulation [N, 3·width] (shift | scale | gate) from
    :meth:`modulation`, so that the head can compute all modulations in one place."""

    def __init__(self, width: int, hidden: int, eps: float, separable: bool = False):
        super().__init__()
        self.norm = RMSNorm(width, eps)
        self.w1 = nn.Linear(width, hidden)
        self.w3 = nn.Linear(width, hidden)
        self.w2 = nn.Linear(hidden, width)
        self._add_modulation(width, separable)

    def forward(self, x, mod):
        shift, scale, gate = mod.chunk(3, dim=-1)
        y = _modulate(self.norm(x), shift, scale)
        return x + gate * self.w2(F.silu(self.w1(y)) * self.w3(y))


class FinalLayer(_Modulated):
    """DiT's final layer: norm → adaLN shift/scale → linear (modulation [N, 2·width])."""

    n_mods = 2

    def __init__(self, width: int, out_dim: int, eps: float, separable: bool = False):
        super().__init__()
        self.norm = RMSNorm(width, eps)
        self._add_modulation(width, separable)
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x, mod):
        shift, scale = mod.chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))


class DiffusionHead(nn.Module):
    """MLP denoiser conditioned on the LM state: ``forward(x_t [N,D], t [N], h [N,C]) -> [N,D]``.

    c_h = Linear(RMSNorm(h)), c_t = MLP(sinusoid(t)); every adaLN block and the DiT final layer are
    modulated by c_h + c_t (``modulation`` "joint") or by c_h and c_t separately ("separable", see
    :class:`DiffusionHeadConfig`); the noisy latent goes through an input projection, ``n_blocks``
    adaLN blocks and the final layer. Every adaLN modulation and the final linear layer start at
    zero, so the untrained head outputs 0 and each block starts as the identity.
    """

    def __init__(self, cfg: DiffusionHeadConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        w = cfg.width
        sep = cfg.modulation == "separable"
        self.schedule = NoiseSchedule(cfg.num_steps)
        self.in_proj = nn.Linear(cfg.latent_dim, w)
        self.cond_norm = RMSNorm(cfg.cond_dim, cfg.norm_eps)
        self.cond_proj = nn.Linear(cfg.cond_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        hidden = int(round(cfg.mlp_ratio * w))
        self.blocks = nn.ModuleList(AdaLNBlock(w, hidden, cfg.norm_eps, sep) for _ in range(cfg.n_blocks))
        self.final = FinalLayer(w, cfg.latent_dim, cfg.norm_eps, sep)
        self.reset_parameters()

    @property
    def _modulated(self) -> list[_Modulated]:
        return [*self.blocks, self.final]

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.time_mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self._modulated:
            for ada in (blk.ada, getattr(blk, "ada_t", None)):
                if ada is not None:
                    nn.init.zeros_(ada[-1].weight)
                    if ada[-1].bias is not None:
                        nn.init.zeros_(ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight), nn.init.zeros_(self.final.linear.bias)

    def time_embedding(self, t: torch.Tensor, memo: dict | None = None) -> torch.Tensor:
        """MLP(sinusoid(t)) [N, width]. With ``memo`` (inference, see :meth:`denoiser`) a batch of one
        shared timestep is computed once: a sampler visits the same few timesteps for every frame."""
        if memo is None or t.numel() == 0 or not bool((t == t[0]).all()):
            return self.time_mlp(timestep_embedding(t, self.cfg.width))
        key = ("t", int(t[0]))
        if key not in memo:
            memo[key] = self.time_mlp(timestep_embedding(t[:1], self.cfg.width))
        return memo[key].expand(t.shape[0], -1)

    def _denoise(self, x_t: torch.Tensor, c_h: torch.Tensor, c_t: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x_t)
        for blk in self.blocks:
            x = blk(x, blk.modulation(c_h, c_t))
        return self.final(x, self.final.modulation(c_h, c_t))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self._denoise(x_t, self.cond_proj(self.cond_norm(h)), self.time_embedding(t))

    def denoiser(self, h: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``lambda x_t, t: self(x_t, t, h)`` with the projection of ``h`` computed once (a sampler
        calls the head ``steps`` times with the same LM state). At inference (eval mode, no
        autograd) it runs :meth:`_denoise_fused`, the same function in fewer, larger ops; with
        separable modulation the LM state's modulations are computed here, once per frame, and each
        timestep's once per model."""
        ch = self.cond_proj(self.cond_norm(h))
        if self.training or torch.is_grad_enabled():
            return lambda x_t, t: self._denoise(x_t, ch, self.time_embedding(t))
        memo = self._inference_memo()
        fused = self._fused_weights(memo)
        if self.cfg.modulation == "separable":
            mods_h = F.linear(F.silu(ch), fused["ada_w"], fused["ada_b"])

            def fn(x_t, t):
                if t.numel() and bool((t == t[0]).all()):  # a sampler step: one timestep for all rows
                    key = ("mods_t", int(t[0]))
                    if key not in memo:
                        memo[key] = F.linear(F.silu(self.time_embedding(t[:1], memo)), fused["ada_t_w"])
                    mods_t = memo[key]
                else:
                    mods_t = F.linear(F.silu(self.time_embedding(t)), fused["ada_t_w"])
                return self._denoise_fused(x_t, mods_h + mods_t, fused)

            return fn
        return lambda x_t, t: self._denoise_fused(
            x_t, F.linear(F.silu(ch + self.time_embedding(t, memo)), fused["ada_w"], fused["ada_b"]), fused)

    @torch.no_grad()
    def sample(self, h_cond: torch.Tensor, h_uncond: torch.Tensor | None = None, scale: float = 1.0, *,
               steps: int = 10, method: str = "dpm++", temperature: float = 1.0,
               generator: torch.Generator | None = None, spacing: str = "logsnr") -> torch.Tensor:
        """One latent per row of ``h_cond`` [N, C]: :func:`sample` of :func:`guided` (CFG at ``scale``
        against ``h_uncond``), drawn at ``temperature``.

        At inference (eval mode) with a deterministic sampler (``dpm++``, ``ddim``) the whole sampler
        loop runs as one traced graph (``torch.jit.trace``), made on the first call of each shape and
        setting and kept with the weights' other inference tensors (so a weight change drops it): the
        same operations on the same numbers, without the Python and dispatch overhead of a few hundred
        tiny ops per frame (about half the sampling time of the demo head, RESULTS.md "Session 16").
        ``TRACE_SAMPLER = False`` (this module) or a failed trace keeps the eager loop."""
        n, d = h_cond.shape[0], self.cfg.latent_dim
        x_T = torch.randn((n, d), generator=generator, device=h_cond.device, dtype=h_cond.dtype) * temperature
        guided_rows = h_uncond is not None and scale != 1.0
        args = (x_T, h_cond, h_uncond) if guided_rows else (x_T, h_cond)

        def loop(x, h_c, h_u=None):
            return sample(guided(self, h_c, h_u, scale), (n, d), self.schedule, self.cfg.prediction, steps=steps,
                          method=method, x_T=x, spacing=spacing, generator=generator, temperature=temperature)

        if not TRACE_SAMPLER or self.training or method == "ddpm":  # ddpm draws noise inside the loop
            return loop(*args)
        memo = self._inference_memo()
        key = ("traced", n, guided_rows, float(scale), steps, method, spacing, h_cond.dtype, h_cond.device)
        graph = memo.get(key)
        if graph is None:  # this call runs eagerly, which also fills the memo the trace then reads as constants
            out = loop(*args)
            memo[key] = _trace(loop, args, self.parameters()) or False
            return out
        if not graph:
            return loop(*args)
        with torch.jit.optimized_execution(False):  # the graph as traced: the executor's profiling runs and
            return graph(*args)                      # passes cost more than they save on graphs this small

    def _inference_memo(self) -> dict:
        """Tensors derived from the weights for inference (timestep embeddings, fused weights); a
        fresh dict whenever a weight changed in place (optimiser step, load_state_dict) or moved."""
        w = self.in_proj.weight
        params = self.__dict__.get("_param_list")
        if params is None:  # walking the module tree for every frame would cost as much as a head call
            params = self.__dict__["_param_list"] = list(self.parameters())
        key = (w.device, w.dtype, sum(p._version for p in params))
        if self.__dict__.get("_memo_key") != key:
            self._memo_key, self._memo = key, {}
        return self._memo

    def _fused_weights(self, memo: dict) -> dict:
        """Inference-only rearrangement of the weights (same function, fewer and cheaper ops):

        * every adaLN modulation in one matrix (the timestep's in a second one when separable), with
          the ``1 +`` of each scale in its bias and the following RMSNorm's gain × sqrt(width) folded
          into the scale, so that each norm becomes one ``F.normalize`` (x / ‖x‖);
        * each block's two SwiGLU input projections in one matrix;
        * plain tensors for ``F.linear`` (no module calls per sampler step)."""
        if "fused" not in memo:
            w = self.cfg.width
            root = math.sqrt(w)
            separable = self.cfg.modulation == "separable"
            weights, t_weights, biases, sizes = [], [], [], []
            for blk in self._modulated:  # shift | (1 + scale)·g·sqrt(w) [| gate]
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
            memo["fused"] = {
                "ada_w": torch.cat(weights).detach(), "ada_b": torch.cat(biases).detach(), "sizes": sizes,
                "in": (self.in_proj.weight.detach(), self.in_proj.bias.detach()),
                "blocks": [(torch.cat([b.w1.weight, b.w3.weight]).detach(), torch.cat([b.w1.bias, b.w3.bias]).detach(),
                            b.w2.weight.detach(), b.w2.bias.detach()) for b in self.blocks],
                "out": (self.final.linear.weight.detach(), self.final.linear.bias.detach()),
                # x / max(‖x‖, ε) with ε matching RMSNorm's mean-square ε (equal for ‖x‖ ≫ ε)
                "norm_eps": math.sqrt(w * self.cfg.norm_eps),
            }
            if separable:
                memo["fused"]["ada_t_w"] = torch.cat(t_weights).detach()
        return memo["fused"]

    def _denoise_fused(self, x_t: torch.Tensor, mods: torch.Tensor, fused: dict) -> torch.Tensor:
        """:meth:`_denoise` from all modulations at once (``mods``: the layout of :meth:`_fused_weights`;
        inference only)."""
        m = mods.split(fused["sizes"], dim=-1)
        eps = fused["norm_eps"]
        x = F.linear(x_t, *fused["in"])
        for i, (w13, b13, w2, b2) in enumerate(fused["blocks"]):
            y = torch.addcmul(m[3 * i], F.normalize(x, dim=-1, eps=eps), m[3 * i + 1])
            a, b = F.linear(y, w13, b13).chunk(2, dim=-1)
            x = torch.addcmul(x, m[3 * i + 2], F.linear(F.silu(a) * b, w2, b2))
        return F.linear(torch.addcmul(m[-2], F.normalize(x, dim=-1, eps=eps), m[-1]), *fused["out"])


#: trace DiffusionHead.sample's loop at inference (False: always the eager loop, e.g. to profile it)
TRACE_SAMPLER = True


def _trace(fn: Callable, args: tuple, params) -> Callable | None:
    """``torch.jit.trace(fn, args)`` with ``params`` (the weights ``fn`` reads) taken in as constants of
    the graph, or None where tracing is unavailable or fails. Its warnings are expected here: the Python
    floats and timestep branches of the sampler become constants too."""
    import warnings

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


def _timesteps(schedule: "NoiseSchedule", steps: int, spacing: str = "logsnr") -> list[int]:
    """``steps + 1`` decreasing integer times from the last step to 0."""
    T = schedule.num_steps
    if spacing == "linspace" or steps > 100:  # log-SNR rounding would repeat steps near t = 0
        ts = torch.linspace(T - 1, 0, steps + 1).round().long()
    else:  # uniform in log-SNR λ = log(α/σ) between t = T-1 and t = 0, mapped to the nearest step
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


def _plan(schedule: "NoiseSchedule", steps: int, spacing: str) -> list[tuple[int, float, float, float, float]]:
    """Per step ``(t, α_t, σ_t, α_s, σ_s)`` as Python floats (s: the next, lower time), memoised on
    the schedule (its buffers never change)."""
    memo = schedule.__dict__.setdefault("_plans", {})
    key = (steps, spacing, schedule.alpha.device)
    if key not in memo:
        ts = _timesteps(schedule, steps, spacing)
        alpha, sigma = schedule.alpha.double().tolist(), schedule.sigma.double().tolist()
        memo[key] = [(t, alpha[t], sigma[t], alpha[s], sigma[s]) for t, s in zip(ts[:-1], ts[1:])]
    return memo[key]


@torch.no_grad()
def sample(model_fn: Callable, shape: tuple[int, ...], schedule: NoiseSchedule, prediction: str,
           steps: int = 10, method: str = "dpm++", temperature: float = 1.0,
           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
           x_T: torch.Tensor | None = None, spacing: str = "logsnr") -> torch.Tensor:
    """Draw x0 of ``shape`` by integrating from pure noise with ``steps`` network evaluations."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r} (known: {', '.join(SAMPLERS)})")
    if steps < 1 or steps >= schedule.num_steps:
        raise ValueError(f"steps must be in [1, {schedule.num_steps - 1}], got {steps}")
    device = device or schedule.alpha.device
    x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device, dtype=dtype) * temperature
    n = shape[0]
    prev_x0, prev_h = None, None
    # Python-float coefficients, computed once per (steps, spacing): a sampler runs for every frame,
    # so per-step tensor bookkeeping would cost more than the small head itself
    for i, (t, a_t, s_t, a_s, s_s) in enumerate(_plan(schedule, steps, spacing)):
        out = model_fn(x, torch.full((n,), t, dtype=torch.long, device=device))
        x0, eps = x0_eps(out, x, a_t, s_t, prediction)
        if method == "ddim":
            x = a_s * x0 + s_s * eps
        elif method == "ddpm":
            # ancestral step: the posterior q(x_s | x_t, x0) of the (strided) chain
            ab_t, ab_s = a_t**2, a_s**2
            beta = 1 - ab_t / ab_s
            mean = (a_s * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)) * x
            var = beta * (1 - ab_s) / (1 - ab_t)
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=dtype) * temperature
            x = mean + math.sqrt(var) * noise if i < steps - 1 else mean
        else:  # DPM-Solver++(2M): first order on the first step, second order afterwards
            h = math.log(a_s / s_s) - math.log(a_t / s_t)
            d = x0 if prev_x0 is None else x0 + (x0 - prev_x0) * (h / (2 * prev_h))
            x = (s_s / s_t) * x - (a_s * math.expm1(-h)) * d
            prev_x0, prev_h = x0, h
        x = x.to(dtype)
    # t = 0 has σ ≈ 0.006: x is the sample (its tiny leftover noise is below the codec's σ-VAE noise)
    return x.to(dtype)
