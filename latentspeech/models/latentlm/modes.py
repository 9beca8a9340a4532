"""The two alignment modes of generation, as the strategies the loop of :func:`.generation.generate` calls.

Both keep per-row state for the B conditional rows and answer the same five questions, one token
at a time:

* ``start()`` — what is added to every row's BOS slot (``None``: nothing);
* ``ends_before(j, h, active)`` — which rows end before token j is sampled (``h``: the
  conditional rows' last hidden states); ``stopped`` records the rows that ended this way;
* ``condition(h)`` — the diffusion head's condition for token j;
* ``frames_kept`` and ``ends_inside()`` — how many frames of token j each row keeps and which rows
  ended inside it;
* ``feed_back(z)`` — the Transformer's next input (CFG rows included) for the sampled tokens z.

:class:`AttentionMode` is the LatentLM paper's model (arXiv 2412.08635): the Transformer finds its
place in the text by attention and a stop head ends the row. :class:`PointerMode` moves a pointer
over the sounding phones (see :mod:`.pointer`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layout import Prefixes
from .pointer import hold_limits, pointer_tables

__all__ = ["AttentionMode", "PointerMode"]


class AttentionMode:
    """A row ends when its stop probability passes ``stop_threshold``, consulted only once it has
    ``min_length`` tokens (``use_stop=False``: never; every row runs to its length guard)."""

    def __init__(self, model: nn.Module, pre: Prefixes, use_stop: bool):
        B, dev = pre.n, pre.phones.device
        self.model, self.guided, self.use_stop = model, pre.guided, use_stop
        self.min_len = torch.tensor([model.min_length(int(n)) for n in pre.phone_lens[:B].tolist()], device=dev)
        self.stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        self.frames_kept = torch.full((B,), model.cfg.patch_size, dtype=torch.long, device=dev)

    def start(self) -> None:
        return None

    def ends_before(self, j: int, h: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        if not self.use_stop or j == 0:
            return torch.zeros_like(active)
        p_stop = torch.sigmoid(self.model.stop_head(h).squeeze(-1))
        ends = active & (j >= self.min_len) & (p_stop > self.model.cfg.stop_threshold)  # active rows have j tokens
        self.stopped |= ends
        return ends

    def condition(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def ends_inside(self) -> torch.Tensor:
        return torch.zeros_like(self.stopped)

    def feed_back(self, z: torch.Tensor) -> torch.Tensor:
        x = self.model.speech_embedding(z)
        return torch.cat([x, x]) if self.guided else x


class PointerMode:
    """Each row's pointer says which phone its current frame says. Before every token it moves
    frame by frame: on where the advance head says so, or where the phone has sounded its hold limit
    (:func:`.pointer.hold_limits`); moving past the last sounding phone ends the row at that frame
    (``use_stop=False``: never). The CFG rows get the elapsed count but no phone vectors, as in
    training."""

    def __init__(self, model: nn.Module, pre: Prefixes, use_stop: bool):
        B, dev = pre.n, pre.phones.device
        self.model, self.guided, self.use_stop, self.rows = model, pre.guided, use_stop, pre.rows
        self.table = pointer_tables(model, pre.phones[:B], pre.phone_lens[:B])
        self.end = self.table.vectors.shape[1] - 1  # index L: past the last phone
        self.hold = hold_limits(model.cfg, pre.phones[:B])
        self.ptr = self.table.first  # [B] the phone of the current frame
        self.elapsed = torch.zeros(B, dtype=torch.long, device=dev)  # frames that phone has sounded
        self.stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        self.frames_kept = torch.full((B,), model.cfg.patch_size, dtype=torch.long, device=dev)
        self.phones_now: torch.Tensor | None = None  # [B, p·dim] the vectors of the token's frames' phones

    def start(self) -> torch.Tensor:
        return self.model.elapsed_emb.weight[0].expand(self.rows, 1, self.model.cfg.transformer.dim)

    def ends_before(self, j: int, h: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        cfg = self.model.cfg
        p_adv = torch.sigmoid(self.model.advance_head(h))  # [B, p]: per frame of the token
        take = torch.full_like(self.frames_kept, cfg.patch_size)
        going, ptrs = active.clone(), []
        for k in range(cfg.patch_size):
            if j > 0 or k > 0:  # the first frame says the first sounding phone
                ends = self.advance(going, p_adv[:, k])
                take = torch.where(ends, torch.full_like(take, k), take)
                going &= ~ends
            self.elapsed = torch.where(going, (self.elapsed + 1).clamp(max=cfg.max_phone_frames), self.elapsed)
            ptrs.append(self.ptr)
        self.frames_kept = take
        rows = torch.arange(len(take), device=take.device)
        self.phones_now = torch.cat([self.table.vectors[rows, q] for q in ptrs], -1)
        return take == 0  # ended on the token's first frame: nothing to sample

    def advance(self, going: torch.Tensor, p_adv: torch.Tensor) -> torch.Tensor:
        """One frame: move the pointers of the ``going`` rows that advance; returns the rows whose
        pointer passed the last sounding phone (they end)."""
        held_out = self.elapsed >= torch.gather(self.hold, 1, self.ptr[:, None])[:, 0]
        adv = going & ((p_adv > self.model.cfg.advance_threshold) | held_out)
        nxt = torch.gather(self.table.next_sounding, 1, self.ptr[:, None])[:, 0]
        ends = adv & (nxt >= self.end) if self.use_stop else torch.zeros_like(adv)
        self.ptr = torch.where(adv & ~ends, nxt, self.ptr)
        self.elapsed = torch.where(adv & ~ends, torch.zeros_like(self.elapsed), self.elapsed)
        self.stopped |= ends
        return ends

    def condition(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.model.aligned_cond(self.phones_now)  # the head hears the phones of the frames to sample

    def ends_inside(self) -> torch.Tensor:
        return self.frames_kept < self.model.cfg.patch_size

    def feed_back(self, z: torch.Tensor) -> torch.Tensor:
        x = self.model.speech_embedding(z) + self.model.elapsed_emb(self.elapsed)
        x_c = x + self.model.aligned_in(self.phones_now)
        return torch.cat([x_c, x]) if self.guided else x_c
