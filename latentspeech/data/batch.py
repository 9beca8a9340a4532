"""The batch types the LM training loops consume (built by :mod:`.collate`).

* :class:`LMBatch` — LatentLM: prompt latents, phone ids, target latents (+ per-phone durations).
* :class:`VALLEBatch` — the VALL-E baseline: phone ids, prompt codes, target codes (+ per-phone durations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["LMBatch", "VALLEBatch"]


@dataclass
class LMBatch:
    """Padded training batch (right-padded per segment; lengths give the real sizes)."""

    prompt: torch.Tensor  # [B, P, D] normalised latents
    prompt_lens: torch.Tensor  # [B]
    phones: torch.Tensor  # [B, L] phone ids
    phone_lens: torch.Tensor  # [B]
    target: torch.Tensor  # [B, F, D] normalised latents
    target_lens: torch.Tensor  # [B]
    utt_ids: list[str] = field(default_factory=list)
    durations: torch.Tensor | None = None  # [B, L] frames per phone token (pointer mode), 0-padded

    def to(self, device) -> "LMBatch":
        t = {k: getattr(self, k).to(device) for k in
             ("prompt", "prompt_lens", "phones", "phone_lens", "target", "target_lens")}
        d = self.durations.to(device) if self.durations is not None else None
        return LMBatch(**t, utt_ids=self.utt_ids, durations=d)

    def __len__(self) -> int:
        return int(self.prompt_lens.shape[0])


@dataclass
class VALLEBatch:
    """A training batch. Every segment is right-padded; ``*_lens`` give the true lengths.

    ``phones [B, L]`` (pad = ``phone_pad_id``), ``prompt [B, Q, P]`` codes of another utterance
    of the speaker, ``codes [B, Q, T]`` the target codes (pads: any valid code, e.g. 0);
    ``durations [B, L]`` frames per phone token (pointer mode), 0-padded.
    """

    phones: torch.Tensor
    phone_lens: torch.Tensor
    prompt: torch.Tensor
    prompt_lens: torch.Tensor
    codes: torch.Tensor
    code_lens: torch.Tensor
    durations: torch.Tensor | None = None

    def to(self, device) -> "VALLEBatch":
        return VALLEBatch(*(None if getattr(self, f) is None else getattr(self, f).to(device)
                            for f in self.__dataclass_fields__))

    @property
    def size(self) -> int:
        return self.phones.shape[0]
