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
over the sounding phones (:class:`latentspeech.models.pointer.PointerWalk`, which VALL-E's pointer
mode walks too).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layout import Prefixes
from ..pointer import PointerWalk

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


class PointerMode(PointerWalk):
    """The pointer walk of :mod:`latentspeech.models.pointer` over the model's phone encoding, fed
    back through the model's speech embedding (the CFG rows get the elapsed count but no phone
    vectors, as in training)."""

    def __init__(self, model: nn.Module, pre: Prefixes, use_stop: bool):
        B = pre.n
        super().__init__(model.pointer, model.encode_phones(pre.phones[:B], pre.phone_lens[:B]), pre.phones[:B],
                         pre.phone_lens[:B], use_stop)
        self.model, self.guided, self.rows = model, pre.guided, pre.rows

    def start(self) -> torch.Tensor:
        return super().start(self.rows)

    def ends_before(self, j: int, h: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return self.before_token(j, h, active)

    def feed_back(self, z: torch.Tensor) -> torch.Tensor:
        return self.feed(self.model.speech_embedding(z), self.guided)
