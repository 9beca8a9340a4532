"""Batched generation: the decoding loop of :meth:`LatentLM.generate <.model.LatentLM.generate>`.

All rows (one per sentence, plus one unconditional row per sentence with classifier-free guidance)
advance through the KV cache in lockstep, one token per step: the Transformer's last hidden state
conditions the diffusion head, which samples the next token, which is fed back. The alignment mode
(:mod:`.modes`) decides when a row ends; the length guard ``ceil(frames_per_phone · L / p) +
guard_min_frames`` caps every row.

:class:`TokenSteps` is the loop itself, one :class:`TokenStep` per sampled token, so a caller can
use each token as soon as it exists (streaming, :mod:`latentspeech.inference.latentlm`);
:func:`generate` collects the steps into whole sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from ...errors import ConfigError
from .layout import Prefixes, unpatchify
from .modes import AttentionMode, PointerMode

__all__ = ["GenerationOutput", "TokenStep", "TokenSteps", "generate"]


@dataclass
class GenerationOutput:
    latents: list[torch.Tensor]  # per row: [F_b, D] normalised latents
    stopped: list[bool]  # True: the stop head (pointer mode: passing the last phone) ended the row; False: the guard did
    guard: list[int]  # the length guard of each row (tokens: frames / patch_size)
    transformer_passes: int  # incremental Transformer calls (prefill included)
    head_evals: int  # diffusion-head calls (each on the whole batch; CFG doubles the rows)


@dataclass
class TokenStep:
    """Token ``index`` of every row: ``tokens`` [B, p·D] (normalised latents, ``p`` frames each), ``kept`` [B]
    the rows that keep it (the others have ended), ``frames`` [B] how many of its frames each keeps."""

    index: int
    tokens: torch.Tensor
    kept: torch.Tensor
    frames: torch.Tensor


class TokenSteps:
    """The decoding loop as an iterator of :class:`TokenStep` (arguments: :meth:`.model.LatentLM.generate`).

    The next token is computed only when it is asked for. After the iteration, ``stopped``, ``guard``,
    ``passes`` and ``evals`` hold what :class:`GenerationOutput` reports.
    """

    def __init__(self, model: nn.Module, phones: Sequence[Sequence[int]] | Sequence[torch.Tensor],
                 prompt: torch.Tensor | Sequence[torch.Tensor] | None, steps: int = 10, cfg_scale: float = 1.0,
                 temperature: float = 1.0, method: str = "dpm++", max_frames: int | None = None,
                 generator: torch.Generator | None = None, use_stop: bool = True):
        cfg = model.cfg
        if cfg.guidance_distilled and cfg_scale != 1.0:
            raise ConfigError(f"this model has classifier-free guidance (scale {cfg.guidance_distilled:g}) built into "
                              f"its head (guidance distillation): use cfg 1, not {cfg_scale:g}")
        self.model, self.phones, self.prompt, self.use_stop = model, phones, prompt, use_stop
        self.sampling = dict(scale=cfg_scale, steps=steps, method=method, temperature=temperature,
                             generator=generator)
        self.max_frames = max_frames
        self.n = len(phones)
        self.stopped: list[bool] = []
        self.guard: list[int] = []
        self.passes = self.evals = 0

    def __iter__(self) -> Iterator[TokenStep]:
        if self.n == 0:
            return
        model, cfg = self.model, self.model.cfg
        dev = model.bos.device
        pre = Prefixes.build(self.phones, self.prompt, cfg.pad_id, cfg.latent_dim, cfg.patch_size,
                             self.sampling["scale"] != 1.0, dev, model.bos.dtype)
        mode = (PointerMode if model.pointer is not None else AttentionMode)(model, pre, self.use_stop)
        B = pre.n
        guard = [model.length_guard(int(n)) for n in pre.phone_lens[:B].tolist()]
        if self.max_frames is not None:
            guard = [min(g, self.max_frames) for g in guard]
        self.guard = guard
        no_speech = torch.zeros(pre.rows, 0, cfg.token_dim, device=dev)
        spk, spk_in = model.speaker_vectors(pre.prompt[:B], pre.prompt_lens[:B])  # None: no such path
        if spk_in is not None and pre.guided:
            spk_in = torch.cat([spk_in, torch.zeros_like(spk_in)])  # the CFG rows have no prompt
        pk = model.pack(pre.prompt, pre.prompt_lens, pre.phones, pre.phone_lens, no_speech,
                        torch.zeros_like(pre.phone_lens), left_pad=True, speech_extra=mode.start(), speaker_in=spk_in)
        cache = model.transformer.new_cache(pre.rows, pk.x.shape[1] + max(guard) + 1)
        h = model.transformer(pk.x, pk.positions, pk.valid, cache=cache)[:, -1]  # every row's state at BOS
        self.passes = 1
        lengths = torch.zeros(B, dtype=torch.long, device=dev)  # tokens
        active = torch.ones(B, dtype=torch.bool, device=dev)
        guard_t = torch.tensor(guard, device=dev)
        try:
            for j in range(max(guard)):
                h_c, h_u = (h[:B], h[B:]) if pre.guided else (h, None)  # conditional rows, CFG rows
                active &= lengths < guard_t
                active &= ~mode.ends_before(j, h_c, active)
                if not bool(active.any()):
                    break
                cond = mode.condition(h_c)
                z = model.head.sample(cond if spk is None else cond + spk, h_u, **self.sampling)
                self.evals += self.sampling["steps"]
                lengths += active.long()
                yield TokenStep(j, z, active.clone(), active.long() * mode.frames_kept)
                active &= ~mode.ends_inside()
                if not bool(active.any()):
                    break
                x = mode.feed_back(z)
                if spk_in is not None:
                    x = x + spk_in
                h = model.transformer(x[:, None], cache=cache)[:, -1]
                self.passes += 1
        finally:
            self.stopped = [bool(s) for s in mode.stopped.tolist()]


@torch.no_grad()
def generate(model: nn.Module, phones: Sequence[Sequence[int]] | Sequence[torch.Tensor],
             prompt: torch.Tensor | Sequence[torch.Tensor] | None, steps: int = 10, cfg_scale: float = 1.0,
             temperature: float = 1.0, method: str = "dpm++", max_frames: int | None = None,
             generator: torch.Generator | None = None, use_stop: bool = True) -> GenerationOutput:
    """Sample speech latents of a LatentLM for several sentences at once (the arguments are those of
    :meth:`.model.LatentLM.generate`)."""
    run = TokenSteps(model, phones, prompt, steps=steps, cfg_scale=cfg_scale, temperature=temperature,
                     method=method, max_frames=max_frames, generator=generator, use_stop=use_stop)
    tokens: list[torch.Tensor] = []
    lengths = n_frames = None
    for step in run:
        tokens.append(torch.where(step.kept[:, None], step.tokens, torch.zeros_like(step.tokens)))
        lengths = step.kept.long() if lengths is None else lengths + step.kept.long()
        n_frames = step.frames if n_frames is None else n_frames + step.frames
    if not tokens:
        return GenerationOutput([torch.zeros(0, model.cfg.latent_dim, device=model.bos.device)] * run.n,
                                run.stopped, run.guard, run.passes, run.evals)
    out = torch.stack(tokens, 1)  # [B, N, p·D]
    latents = [unpatchify(out[i, : int(lengths[i])], model.cfg.patch_size)[: int(n_frames[i])] for i in range(run.n)]
    return GenerationOutput(latents, run.stopped, run.guard, run.passes, run.evals)
