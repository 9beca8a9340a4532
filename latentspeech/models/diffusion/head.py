"""The diffusion head: an adaLN MLP that denoises the next latent frame, conditioned on the LM state.

c_h = Linear(RMSNorm(h)), c_t = MLP(sinusoid(t)); every adaLN block and DiT's final layer are
modulated by c_h + c_t ("joint") or by c_h and c_t separately ("separable"); the noisy latent goes
through an input projection, ``n_blocks`` adaLN blocks (DiT's adaLN-Zero with a SwiGLU MLP) and the
final layer (LatentLM, arXiv 2412.08635; MAR, arXiv 2406.11838).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError
from ..transformer import RMSNorm
from . import trace
from .fused import denoise_fused, fuse_weights
from .guidance import guided
from .samplers import sample
from .schedule import NoiseSchedule, Prediction

__all__ = ["DiffusionHeadConfig", "DiffusionHead", "AdaLNBlock", "FinalLayer", "timestep_embedding"]


@dataclass
class DiffusionHeadConfig:
    """The per-frame denoiser. ``width`` must be ≥ ``latent_dim``: the head reproduces a full latent
    frame from its hidden state, which a narrower head squeezes through a bottleneck."""

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
    def modulated_layers(self) -> list[nn.Module]:
        """The adaLN-modulated layers in order: the blocks, then the final layer."""
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
        for blk in self.modulated_layers:
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
        autograd) it runs :func:`~.fused.denoise_fused`, the same function in fewer, larger ops; with
        separable modulation the LM state's modulations are computed here, once per frame, and each
        timestep's once per model."""
        ch = self.cond_proj(self.cond_norm(h))
        if self.training or torch.is_grad_enabled():
            return lambda x_t, t: self._denoise(x_t, ch, self.time_embedding(t))
        memo = self._inference_memo()
        if "fused" not in memo:
            memo["fused"] = fuse_weights(self)
        fused = memo["fused"]
        if self.cfg.modulation == "separable":
            mods_h = F.linear(F.silu(ch), fused["ada_w"], fused["ada_b"])
            return lambda x_t, t: denoise_fused(x_t, mods_h + self._timestep_modulations(t, memo), fused)
        return lambda x_t, t: denoise_fused(
            x_t, F.linear(F.silu(ch + self.time_embedding(t, memo)), fused["ada_w"], fused["ada_b"]), fused)

    def _timestep_modulations(self, t: torch.Tensor, memo: dict) -> torch.Tensor:
        """The timestep part of all separable modulations (fused layout), memoised for a sampler
        step (one timestep for all rows)."""
        fused = memo["fused"]
        if not (t.numel() and bool((t == t[0]).all())):
            return F.linear(F.silu(self.time_embedding(t)), fused["ada_t_w"])
        key = ("mods_t", int(t[0]))
        if key not in memo:
            memo[key] = F.linear(F.silu(self.time_embedding(t[:1], memo)), fused["ada_t_w"])
        return memo[key]

    @torch.no_grad()
    def sample(self, h_cond: torch.Tensor, h_uncond: torch.Tensor | None = None, scale: float = 1.0, *,
               steps: int = 10, method: str = "dpm++", temperature: float = 1.0,
               generator: torch.Generator | None = None, spacing: str = "logsnr") -> torch.Tensor:
        """One latent per row of ``h_cond`` [N, C]: :func:`~.samplers.sample` of
        :func:`~.guidance.guided` (CFG at ``scale`` against ``h_uncond``), drawn at ``temperature``.

        At inference (eval mode) with a deterministic sampler (``dpm++``, ``ddim``) the whole sampler
        loop runs as one traced graph (see :mod:`.trace`), made on the first call of each shape and
        setting and kept with the weights' other inference tensors (so a weight change drops it).
        ``trace.TRACE_SAMPLER = False`` or a failed trace keeps the eager loop."""
        n, d = h_cond.shape[0], self.cfg.latent_dim
        x_T = torch.randn((n, d), generator=generator, device=h_cond.device, dtype=h_cond.dtype) * temperature
        guided_rows = h_uncond is not None and scale != 1.0
        args = (x_T, h_cond, h_uncond) if guided_rows else (x_T, h_cond)

        def loop(x, h_c, h_u=None):
            return sample(guided(self, h_c, h_u, scale), (n, d), self.schedule, self.cfg.prediction, steps=steps,
                          method=method, x_T=x, spacing=spacing, generator=generator, temperature=temperature)

        if not trace.TRACE_SAMPLER or self.training or method == "ddpm":  # ddpm draws noise inside the loop
            return loop(*args)
        key = ("traced", n, guided_rows, float(scale), steps, method, spacing, h_cond.dtype, h_cond.device)
        return trace.run_traced(loop, args, self._inference_memo(), key, self.parameters())

    def _inference_memo(self) -> dict:
        """Tensors derived from the weights for inference (timestep embeddings, fused weights, traced
        sampler loops); a fresh dict whenever a weight changed in place (optimiser step,
        load_state_dict) or moved."""
        w = self.in_proj.weight
        params = self.__dict__.get("_param_list")
        if params is None:  # walking the module tree for every frame would cost as much as a head call
            params = self.__dict__["_param_list"] = list(self.parameters())
        key = (w.device, w.dtype, sum(p._version for p in params))
        if self.__dict__.get("_memo_key") != key:
            self._memo_key, self._memo = key, {}
        return self._memo
