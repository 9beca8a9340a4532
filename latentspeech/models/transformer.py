"""A LLaMA-style Transformer decoder shared by every language model of the toolkit.

    cfg = TransformerConfig(dim=256, n_layers=4, n_heads=4)
    net = Transformer(cfg)
    y = net(x)                                      # x: [B, T, dim] embeddings → [B, T, dim]

Pieces: RMSNorm (pre-norm), rotary position embeddings (RoPE) applied at *explicit* integer
positions, SwiGLU feed-forward, optional grouped-query attention (``n_kv_heads < n_heads``),
PyTorch's ``scaled_dot_product_attention``, and a key/value cache for incremental decoding.
The network reads embeddings and returns hidden states after a final RMSNorm: token
embeddings and output heads belong to the model that uses it (LatentLM, VALL-E).

Positions
    ``positions[b, t]`` is the RoPE position of token ``t`` of sequence ``b``. It defaults to
    ``0..T-1`` (continuing from the cache when one is given). Because positions are explicit,
    a model can number each segment of its sequence from 0 (prompt, text, speech) and padding
    never shifts the numbering.

Padding and batched decoding
    ``padding_mask[b, t]`` is True for real tokens. Padded keys are never attended to (a padded
    query attends to itself only, so no row of the attention is empty and no NaN appears; its
    output is meaningless and must be ignored by the caller). Where nothing is padded (no
    ``padding_mask``, or one on the CPU with no False; a cache that never held padding) SDPA gets
    no mask, only ``is_causal``, so that it may pick its fused (flash) kernels.

    * Training / full forward: pad on the right or the left, either works.
    * Incremental decoding of sequences of different lengths: **pad the prompts on the left**,
      so that every sequence's last prompt token sits in the same cache slot and each decoding
      step writes all sequences into the same next slot. Pass the true positions (padding does
      not count) and the padding mask for the prefill call; later calls with one new token per
      sequence need neither (positions then continue per sequence from the last one seen).

KV cache
    ``cache = net.new_cache(batch, max_len)``; each call ``net(x, cache=cache)`` appends ``T``
    tokens to the cache (slots ``cache.length .. cache.length+T-1``) and attends to everything
    written so far (causally inside the new block). Decoding with the cache gives the same
    outputs as one full forward pass over the whole sequence (tested to < 1e-4).

``causal=False`` gives a bidirectional encoder (the VALL-E non-autoregressive stage); it takes no
cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

__all__ = ["TransformerConfig", "Transformer", "KVCache", "RMSNorm", "rope_tables", "apply_rope"]


@dataclass
class TransformerConfig:
    """Shape of a :class:`Transformer`.

    ``ffn_dim`` is the hidden width of the SwiGLU feed-forward (None: ≈ 8/3·dim rounded up to a
    multiple of 64, LLaMA's choice, which keeps the parameter count of a 4·dim GELU MLP).
    ``n_kv_heads`` < ``n_heads`` enables grouped-query attention (None: = ``n_heads``).
    ``activation_checkpointing``: in training, keep only each block's input and recompute the block
    in the backward pass (``torch.utils.checkpoint``): less activation memory for ~1/3 more compute,
    same gradients. No effect in eval mode, under ``no_grad`` or with a KV cache.
    """

    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    ffn_dim: int | None = None
    max_seq_len: int = 4096
    rope_theta: float = 10000.0
    dropout: float = 0.0
    norm_eps: float = 1e-5
    causal: bool = True
    activation_checkpointing: bool = False

    def validate(self) -> None:
        if self.dim <= 0 or self.n_layers <= 0 or self.n_heads <= 0:
            raise ConfigError(f"transformer: dim, n_layers and n_heads must be positive (got {self.dim}, "
                              f"{self.n_layers}, {self.n_heads})")
        if self.dim % self.n_heads:
            raise ConfigError(f"transformer: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ConfigError(f"transformer: head size {self.dim // self.n_heads} must be even for RoPE")
        kv = self.kv_heads
        if kv <= 0 or self.n_heads % kv:
            raise ConfigError(f"transformer: n_heads {self.n_heads} is not a multiple of n_kv_heads {kv}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"transformer: dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def hidden_dim(self) -> int:
        if self.ffn_dim is not None:
            return self.ffn_dim
        return 64 * math.ceil(8 * self.dim / 3 / 64)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain (no bias, no mean subtraction)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x · rsqrt(mean(x²) + eps) · weight in float32, as one fused op (the small models here are
        # bound by the number of ops per token, not by their size)
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).type_as(x)


def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [max_len, head_dim/2] for rotary embeddings."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension. x: [B, H, T, hd];
    cos, sin: [B, 1, T, hd/2] (already gathered at each token's position)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.type_as(x)


class KVCache:
    """Keys and values of every layer for incremental decoding.

    ``k``/``v``: [n_layers, B, n_kv_heads, max_len, head_dim]; ``valid``: [B, max_len] (which slots
    hold real tokens); ``next_pos``: [B] (the RoPE position the next token gets by default);
    ``length``: how many slots are filled (the same for every sequence: see left-padding above);
    ``padded``: whether a padded slot may have been written (False: attention needs only causality).
    """

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = (n_layers, batch, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.next_pos = torch.zeros(batch, dtype=torch.long, device=device)
        self.length = 0
        self.padded = False

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch(self) -> int:
        return self.k.shape[1]


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.wq = nn.Linear(cfg.dim, self.n_heads * self.hd, bias=False)
        self.wk = nn.Linear(cfg.dim, self.n_kv * self.hd, bias=False)
        self.wv = nn.Linear(cfg.dim, self.n_kv * self.hd, bias=False)
        self.wo = nn.Linear(self.n_heads * self.hd, cfg.dim, bias=False)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int, keep_probs: bool = False):
        """``mask``: a boolean [B, 1, T, S] mask, or None: causal (``is_causal`` when T > 1) or full.
        ``keep_probs``: compute the softmax explicitly and also return the probabilities
        [B, H, T, S] (differentiable; for attention losses in training)."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            start = cache.length
            cache.k[layer, :, :, start : start + T] = k
            cache.v[layer, :, :, start : start + T] = v
            k, v = cache.k[layer, :, :, : start + T], cache.v[layer, :, :, : start + T]
        if self.n_kv != self.n_heads:  # grouped-query attention: share each K/V head across a group
            rep = self.n_heads // self.n_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        drop = self.dropout if self.training else 0.0
        if keep_probs:
            scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.hd)
            if mask is None:
                S = k.shape[2]
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device)
                mask = torch.tril(mask, diagonal=S - T) if self.causal else mask
            probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            y = F.dropout(probs, drop, self.training).type_as(v) @ v
            return self.wo(y.transpose(1, 2).reshape(B, T, -1)), probs
        if mask is None:  # nothing padded: SDPA's own causal mask (T queries over T keys) or none (1 query)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and k.shape[2] == T, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask, cache, layer, keep_probs: bool = False):
        a = self.attn(self.attn_norm(x), cos, sin, mask, cache, layer, keep_probs)
        a, probs = a if keep_probs else (a, None)
        x = x + self.drop(a)
        x = x + self.drop(self.ffn(self.ffn_norm(x)))
        return (x, probs) if keep_probs else x


class Transformer(nn.Module):
    """Pre-norm decoder (or encoder with ``causal=False``) over input embeddings. See the module doc."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2·n_layers)."""
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def new_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``max_len`` tokens (default max_seq_len)."""
        if not self.cfg.causal:
            raise RuntimeError("a KV cache needs a causal Transformer")
        ref = self.norm.weight
        return KVCache(self.cfg.n_layers, batch, self.cfg.kv_heads, max_len or self.cfg.max_seq_len,
                       self.cfg.head_dim, dtype or ref.dtype, device or ref.device)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None, cache: KVCache | None = None,
                attention_layer: int | None = None):
        """x: [B, T, dim]; positions: LongTensor [B, T]; padding_mask: BoolTensor [B, T], True = real
        token; cache: appends these T tokens to it. Returns [B, T, dim] after the final RMSNorm;
        with ``attention_layer=i``, also layer i's attention probabilities [B, H, T, T]
        (differentiable: an explicit softmax in that layer, SDPA in the others)."""
        B, T, _ = x.shape
        start = cache.length if cache is not None else 0
        if cache is not None:
            if cache.batch != B:
                raise ValueError(f"cache holds {cache.batch} sequences, input has {B}")
            if start + T > cache.max_len:
                raise ValueError(f"cache overflow: {start} + {T} tokens > max_len {cache.max_len}")
        given = positions is not None or cache is not None  # values not known from the shapes alone
        if positions is None:
            if cache is None and T > self.cfg.max_seq_len:
                raise ValueError(f"{T} tokens > max_seq_len {self.cfg.max_seq_len}")
            base = cache.next_pos if cache is not None else torch.zeros(B, dtype=torch.long, device=x.device)
            positions = base[:, None] + torch.arange(T, device=x.device)[None, :]
        if given and positions.device.type == "cpu":
            # reading values is free on the CPU; on an accelerator it would wait for the device at every
            # call, so there an out-of-range position is left to the table lookup's own index error
            if int(positions.max()) >= self.cfg.max_seq_len or int(positions.min()) < 0:
                raise ValueError(f"positions must lie in [0, {self.cfg.max_seq_len}) (max_seq_len)")
        cos = self.rope_cos[positions].unsqueeze(1)  # [B, 1, T, hd/2]
        sin = self.rope_sin[positions].unsqueeze(1)
        mask = self._mask(B, T, start, padding_mask, cache, x.device)
        if cache is not None:
            cache.next_pos = positions[:, -1] + 1
        h = self.drop(x)
        probs = None
        recompute = self.cfg.activation_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            keep = i == attention_layer
            if recompute:  # keep only the block's input; the backward pass runs the block again
                out = checkpoint(layer, h, cos, sin, mask, None, i, keep, use_reentrant=False)
            else:
                out = layer(h, cos, sin, mask, cache, i, keep)
            h, probs = out if keep else (out, probs)
        if cache is not None:
            cache.length = start + T
        return (self.norm(h), probs) if attention_layer is not None else self.norm(h)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                       padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Attention probabilities of every layer, [B, n_heads, T, T] each (a diagnostic: the
        explicit softmax path, no cache, no dropout). Same arguments as :meth:`forward`."""
        B, T, _ = x.shape
        if positions is None:
            positions = torch.arange(T, device=x.device)[None].expand(B, T)
        cos, sin = self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)
        mask = self._mask(B, T, 0, padding_mask, None, x.device)
        maps, h = [], x
        for i, layer in enumerate(self.layers):
            h, probs = layer(h, cos, sin, mask, None, i, keep_probs=True)
            maps.append(probs)
        return maps

    def _mask(self, B, T, start, padding_mask, cache, device) -> torch.Tensor | None:
        """Boolean attention mask [B, 1, T, start+T] (True = may attend), or None when nothing is
        padded and SDPA's own causal mask (or none, for one query) suffices. Whether a mask on an
        accelerator holds padding is not read (that would wait for the device): it is applied."""
        if padding_mask is not None and padding_mask.device.type == "cpu" and bool(padding_mask.all()):
            padding_mask = None
        if cache is not None:
            valid = padding_mask if padding_mask is not None else torch.ones(B, T, dtype=torch.bool, device=device)
            cache.valid[:, start : start + T] = valid
            cache.padded = cache.padded or padding_mask is not None
            if not cache.padded and (start == 0 or T == 1):
                return None
            key_valid = cache.valid[:, : start + T]
        elif padding_mask is not None:
            key_valid = padding_mask
        else:
            return None
        q_slot = torch.arange(start, start + T, device=device)[:, None]
        k_slot = torch.arange(start + T, device=device)[None, :]
        mask = key_valid[:, None, None, :].expand(B, 1, T, start + T)
        if self.cfg.causal:
            mask = mask & (k_slot <= q_slot)
        return mask | (k_slot == q_slot)  # every query sees itself: no empty rows, no NaN
