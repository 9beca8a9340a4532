"""Bottlenecks between the codec's encoder and decoder: σ-VAE, Gaussian VAE and residual VQ.

Each takes the encoder output ``h [B, C, F]`` and returns a :class:`BottleneckOutput`:

- :class:`SigmaBottleneck` (LatentLM's σ-VAE): μ = h; training z = μ + σ·ε with one σ per example,
  σ = |N(0, 1)| · C_σ / 0.8; loss ``mean(μ²)``; inference z = μ.
- :class:`GaussianBottleneck`: h = [μ, log σ²]; training z = μ + σ·ε; loss = KL(q || N(0, I))
  per latent element; inference z = μ. Its σ is free to collapse (the ablation).
- :class:`ResidualVQ`: ``num_quantizers`` EMA codebooks applied to successive residuals,
  k-means initialised on the first training batch, dead codes restarted from the batch;
  straight-through gradients; loss = commitment ``mean((h - sg[q])²)``.

``loss`` is unweighted: the caller multiplies by ``BottleneckConfig.beta``. ``stats`` holds
detached scalars for logging, among them ``mu_std_mean`` / ``mu_std_min`` (per-dimension std of
μ over batch and time: variance collapse shows as it shrinks relative to ``noise_std``),
``active_dims`` (dimensions whose μ std exceeds 0.1), ``noise_std`` (the typical σ used in training:
the mean sampled σ, or the median posterior σ of the Gaussian VAE) and ``noise_to_signal`` (median
over dimensions of σ_d / std(μ_d)): the slack the decoder learns to tolerate. It stays put for the
σ-VAE and falls towards 0 when a Gaussian VAE's variance collapses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import BottleneckConfig

__all__ = [
    "BottleneckOutput",
    "SigmaBottleneck",
    "GaussianBottleneck",
    "EMACodebook",
    "ResidualVQ",
    "build_bottleneck",
    "latent_stats",
]


@dataclass
class BottleneckOutput:
    z: torch.Tensor  # what the decoder sees [B, D, F]
    mu: torch.Tensor  # the deterministic latent (inference output) [B, D, F]
    loss: torch.Tensor  # unweighted regulariser (scalar)
    stats: dict = field(default_factory=dict)
    codes: torch.Tensor | None = None  # [B, Q, F] for RVQ


def latent_stats(mu: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-dimension std of ``mu [B, D, F]`` over batch and time, summarised as detached scalars.

    ``noise``: the training noise scale per dimension ``[D]`` (or a scalar), for ``noise_to_signal``.
    """
    x = mu.detach().float().transpose(1, 2).reshape(-1, mu.shape[1])
    if x.shape[0] < 2:
        return {}
    std = x.std(dim=0)
    out = {
        "mu_std_mean": std.mean(),
        "mu_std_min": std.min(),
        "mu_abs_mean": x.abs().mean(),
        "active_dims": (std > 0.1).float().sum(),
    }
    if noise is not None:
        noise = noise.detach().float()
        out["noise_std"] = noise.median() if noise.dim() else noise
        out["noise_to_signal"] = (noise / std.clamp(min=1e-8)).median()
    return out


class SigmaBottleneck(nn.Module):
    """σ-VAE: the encoder predicts μ; noise of a fixed, per-example random scale is added in training."""

    def __init__(self, cfg: BottleneckConfig, latent_dim: int):
        super().__init__()
        self.sigma_scale = cfg.sigma_scale
        self.in_channels = latent_dim

    def sample_sigma(self, batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """σ per example: |N(0, 1)| · C_σ / 0.8 (so that E|σ| ≈ 0.8 · C_σ / 0.8 = C_σ)."""
        n = torch.randn(batch, generator=generator, device=device)
        return n.abs() * (self.sigma_scale / 0.8)

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        mu = h
        loss = mu.float().square().mean()
        if self.training and self.sigma_scale > 0:
            sigma = self.sample_sigma(h.shape[0], h.device).to(h.dtype)
            z = mu + sigma[:, None, None] * torch.randn_like(mu)
            stats = latent_stats(mu, sigma.float().mean())
        else:
            z, stats = mu, latent_stats(mu)
        return BottleneckOutput(z=z, mu=mu, loss=loss, stats=stats)

    def infer(self, h: torch.Tensor) -> torch.Tensor:
        return h


class GaussianBottleneck(nn.Module):
    """Ordinary VAE posterior N(μ, σ²) with learned log-variance; KL to N(0, I)."""

    def __init__(self, cfg: BottleneckConfig, latent_dim: int):
        super().__init__()
        self.in_channels = 2 * latent_dim

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        mu, logvar = h.float().chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean()
        std = torch.exp(0.5 * logvar)
        # typical posterior σ per dimension: the median over batch and time (robust to unused dims)
        stats = latent_stats(mu, std.detach().transpose(1, 2).reshape(-1, std.shape[1]).median(dim=0).values)
        z = mu + std * torch.randn_like(mu) if self.training else mu
        return BottleneckOutput(z=z.to(h.dtype), mu=mu.to(h.dtype), loss=kl, stats=stats)

    def infer(self, h: torch.Tensor) -> torch.Tensor:
        return h.chunk(2, dim=1)[0]


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain Lloyd k-means of ``x [N, D]`` into ``k`` centroids (sampled with replacement if N < k)."""
    n = x.shape[0]
    idx = torch.randint(n, (k,), generator=generator, device=x.device) if n < k else \
        torch.randperm(n, generator=generator, device=x.device)[:k]
    centroids = x[idx].clone()
    if n < k:  # duplicates: jitter them apart a little
        centroids += 1e-3 * x.std() * torch.randn(centroids.shape, generator=generator, device=x.device)
    for _ in range(iters):
        codes = torch.cdist(x, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        counts = torch.bincount(codes, minlength=k).to(x.dtype)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class EMACodebook(nn.Module):
    """One vector-quantisation codebook updated by exponential moving averages (no gradients)."""

    def __init__(self, dim: int, size: int, decay: float = 0.99, kmeans_iters: int = 10,
                 dead_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.size, self.decay, self.kmeans_iters, self.dead_threshold, self.eps = (
            size, decay, kmeans_iters, dead_threshold, eps)
        self.register_buffer("embed", torch.randn(size, dim) * 0.02)
        self.register_buffer("embed_avg", self.embed.clone())
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("initialized", torch.tensor(False))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code index of each row of ``x [N, D]``."""
        e = self.embed
        dist2 = x.square().sum(1, keepdim=True) - 2 * x @ e.T + e.square().sum(1)[None]
        return dist2.argmin(dim=1)

    @torch.no_grad()
    def kmeans_init(self, x: torch.Tensor) -> None:
        """Set the codes to k-means centroids of ``x [N, D]`` (rank 0's, broadcast under DDP)."""
        centroids = kmeans(x, self.size, self.kmeans_iters)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(centroids, 0)
        self.embed.copy_(centroids)
        self.embed_avg.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        onehot_sum = _all_reduce(torch.bincount(codes, minlength=self.size).to(x.dtype))
        embed_sum = _all_reduce(torch.zeros_like(self.embed).index_add_(0, codes, x))
        self.cluster_size.mul_(self.decay).add_(onehot_sum, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            samples = x[torch.randint(x.shape[0], (n_dead,), device=x.device)]
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(samples, 0)  # every rank restarts with rank 0's vectors
            self.embed[dead] = samples
            self.embed_avg[dead] = samples * self.dead_threshold
            self.cluster_size[dead] = self.dead_threshold

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [N, D]`` → (quantised rows [N, D], codes [N]); updates the codebook in training."""
        x = x.float()
        if self.training and not bool(self.initialized):
            self.kmeans_init(x)
        codes = self.quantize(x)
        if self.training:
            self._update(x, codes)
        return self.embed[codes], codes


class ResidualVQ(nn.Module):
    """Residual vector quantisation over ``num_quantizers`` EMA codebooks of dimension ``latent_dim``."""

    def __init__(self, cfg: BottleneckConfig, latent_dim: int):
        super().__init__()
        self.in_channels = latent_dim
        self.codebooks = nn.ModuleList(
            EMACodebook(latent_dim, cfg.codebook_size, cfg.ema_decay, cfg.kmeans_iters, cfg.dead_threshold)
            for _ in range(cfg.num_quantizers)
        )

    @property
    def num_quantizers(self) -> int:
        return len(self.codebooks)

    @property
    def codebook_size(self) -> int:
        return self.codebooks[0].size

    def forward(self, h: torch.Tensor) -> BottleneckOutput:
        b, d, f = h.shape
        x = h.float().transpose(1, 2).reshape(-1, d)
        residual, total, codes = x, torch.zeros_like(x), []
        for cb in self.codebooks:
            q, c = cb(residual.detach())
            residual = residual - q
            total = total + q
            codes.append(c)
        loss = F.mse_loss(x, total.detach())
        quantized = x + (total - x).detach()  # straight-through
        z = quantized.reshape(b, f, d).transpose(1, 2).to(h.dtype)
        codes_t = torch.stack(codes, dim=1).reshape(b, f, -1).transpose(1, 2)
        stats = latent_stats(h)
        stats["commitment"] = loss.detach()
        usage = torch.bincount(codes[0], minlength=self.codebook_size)
        stats["codes_used_q0"] = (usage > 0).float().sum()
        return BottleneckOutput(z=z, mu=z, loss=loss, stats=stats, codes=codes_t)

    def infer(self, h: torch.Tensor) -> torch.Tensor:
        return self.decode_codes(self.encode_codes(h))

    def encode_codes(self, h: torch.Tensor) -> torch.Tensor:
        """``h [B, D, F]`` → codes ``[B, Q, F]`` (int64), no codebook update."""
        b, d, f = h.shape
        residual, codes = h.float().transpose(1, 2).reshape(-1, d), []
        for cb in self.codebooks:
            c = cb.quantize(residual)
            residual = residual - cb.embed[c]
            codes.append(c)
        return torch.stack(codes, dim=1).reshape(b, f, -1).transpose(1, 2)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, Q', F]`` (Q' ≤ Q: the first Q' quantisers) → latents ``[B, D, F]``."""
        if codes.shape[1] > self.num_quantizers:
            raise ValueError(f"got {codes.shape[1]} code streams, the codec has {self.num_quantizers}")
        out = sum(self.codebooks[i].embed[codes[:, i]] for i in range(codes.shape[1]))  # [B, F, D]
        return out.transpose(1, 2)


def build_bottleneck(cfg: BottleneckConfig, latent_dim: int) -> nn.Module:
    return {"sigma": SigmaBottleneck, "gaussian": GaussianBottleneck, "rvq": ResidualVQ}[cfg.kind](cfg, latent_dim)
