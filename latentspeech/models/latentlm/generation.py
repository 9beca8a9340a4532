"""Batched generation: the decoding loop of :meth:`LatentLM.generate <.model.LatentLM.generate>`.

All rows (one per sentence, plus one unconditional row per sentence with classifier-free guidance)
advance through the KV cache in lockstep, one token per step: the Transformer's last hidden state
conditions the diffusion head, which samples the next token, which is fed back. The alignment mode
(:mod:`.modes`) decides when a row ends; the length guard ``ceil(frames_per_phone · L / p) +
guard_min_frames`` caps every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from ...errors import ConfigError
from .layout import Prefixes, unpatchify
from .modes import AttentionMode, PointerMode

__all__ = ["GenerationOutput", "generate"]


@dataclass
class GenerationOutput:
    latents: list[torch.Tensor]  # per row: [F_b, D] normalised latents
    stopped: list[bool]  # True: the stop head (pointer mode: passing the last phone) ended the row; False: the guard did
    guard: list[int]  # the length guard of each row (tokens: frames / patch_size)
    transformer_passes: int  # incremental Transformer calls (prefill included)
    head_evals: int  # diffusion-head calls (each on the whole batch; CFG doubles the rows)


@torch.no_grad()
def generate(model: nn.Module, phones: Sequence[Sequence[int]] | Sequence[torch.Tensor],
             prompt: torch.Tensor | Sequence[torch.Tensor] | None, steps: int = 10, cfg_scale: float = 1.0,
             temperature: float = 1.0, method: str = "dpm++", max_frames: int | None = None,
             generator: torch.Generator | None = None, use_stop: bool = True) -> GenerationOutput:
    """Sample speech latents of a LatentLM for several sentences at once (the arguments are those of
    :meth:`.model.LatentLM.generate`)."""
    cfg = model.cfg
    if cfg.guidance_distilled and cfg_scale != 1.0:
        raise ConfigError(f"this model has classifier-free guidance (scale {cfg.guidance_distilled:g}) built into "
                          f"its head (guidance distillation): use cfg 1, not {cfg_scale:g}")
    if len(phones) == 0:
        return GenerationOutput([], [], [], 0, 0)
    dev = model.bos.device
    pre = Prefixes.build(phones, prompt, cfg.pad_id, cfg.latent_dim, cfg.patch_size, cfg_scale != 1.0, dev,
                         model.bos.dtype)
    mode = (PointerMode if model.pointer is not None else AttentionMode)(model, pre, use_stop)
    B = pre.n
    guard = [model.length_guard(int(n)) for n in pre.phone_lens[:B].tolist()]
    if max_frames is not None:
        guard = [min(g, max_frames) for g in guard]
    no_speech = torch.zeros(pre.rows, 0, cfg.token_dim, device=dev)
    pk = model.pack(pre.prompt, pre.prompt_lens, pre.phones, pre.phone_lens, no_speech,
                    torch.zeros_like(pre.phone_lens), left_pad=True, speech_extra=mode.start())
    cache = model.transformer.new_cache(pre.rows, pk.x.shape[1] + max(guard) + 1)
    h = model.transformer(pk.x, pk.positions, pk.valid, cache=cache)[:, -1]  # every row's state at BOS
    passes, evals = 1, 0
    out = torch.zeros(B, max(guard), cfg.token_dim, device=dev)
    lengths = torch.zeros(B, dtype=torch.long, device=dev)  # tokens
    n_frames = torch.zeros(B, dtype=torch.long, device=dev)  # frames (a row's last token may keep fewer than p)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    guard_t = torch.tensor(guard, device=dev)
    for j in range(max(guard)):
        h_c, h_u = (h[:B], h[B:]) if pre.guided else (h, None)  # conditional rows, CFG rows
        active &= lengths < guard_t
        active &= ~mode.ends_before(j, h_c, active)
        if not bool(active.any()):
            break
        z = model.head.sample(mode.condition(h_c), h_u, cfg_scale, steps=steps, method=method,
                              temperature=temperature, generator=generator)
        evals += steps
        out[:, j] = torch.where(active[:, None], z, out[:, j])
        lengths += active.long()
        n_frames += active.long() * mode.frames_kept
        active &= ~mode.ends_inside()
        if not bool(active.any()):
            break
        h = model.transformer(mode.feed_back(z)[:, None], cache=cache)[:, -1]
        passes += 1
    latents = [unpatchify(out[i, : int(lengths[i])], cfg.patch_size)[: int(n_frames[i])] for i in range(B)]
    return GenerationOutput(latents, [bool(s) for s in mode.stopped.tolist()], guard, passes, evals)
