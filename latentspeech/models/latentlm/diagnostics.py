"""Text-to-speech attention diagnostics of a LatentLM (teacher-forced; see :func:`attention_alignment`)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ...data.batch import LMBatch

__all__ = ["attention_alignment"]


@torch.no_grad()
def attention_alignment(model: nn.Module, batch: LMBatch) -> dict:
    """Text-to-speech attention diagnostics of a LatentLM, teacher-forced, per layer (heads averaged).

    For every speech query (BOS … z_{F-1}) the attention on the row's phone keys gives
    ``phone_mass`` (share of attention on phones), ``focus`` (largest phone weight after
    renormalising over phones), ``monotonic`` (share of frame-to-frame steps whose argmax phone
    does not move back) and ``coverage`` (share of phones that are some frame's argmax).
    A learnt alignment shows high focus, monotonic and coverage in some layer. Also returns
    ``paths``: per layer, per row, the argmax phone index of each frame (token).
    """
    batch = model.patched(batch)
    pk = model.pack(batch.prompt, batch.prompt_lens, batch.phones, batch.phone_lens, batch.target,
                    batch.target_lens, left_pad=False)
    maps = model.transformer.attention_maps(pk.x, pk.positions, pk.valid)
    rel = pk.speech_index
    out = {"phone_mass": [], "focus": [], "monotonic": [], "coverage": [], "paths": []}
    for att in maps:
        a = att.mean(1)  # [B, T, T]
        stats = {k: [] for k in ("phone_mass", "focus", "monotonic", "coverage")}
        paths = []
        for b in range(a.shape[0]):
            P, L, Fb = int(batch.prompt_lens[b]), int(batch.phone_lens[b]), int(batch.target_lens[b])
            q = torch.nonzero(pk.valid[b] & (rel[b] >= 0) & (rel[b] < Fb)).squeeze(1)
            if L == 0 or len(q) == 0:
                continue
            ph = a[b][q][:, P : P + L]  # right-padded rows: phones occupy slots P … P+L-1
            mass = ph.sum(-1)
            path = (ph / mass.clamp(min=1e-9)[:, None]).argmax(-1)
            stats["phone_mass"].append(float(mass.mean()))
            stats["focus"].append(float((ph / mass.clamp(min=1e-9)[:, None]).max(-1).values.mean()))
            stats["monotonic"].append(float((path[1:] >= path[:-1]).float().mean()) if len(path) > 1 else 1.0)
            stats["coverage"].append(len(set(path.tolist())) / L)
            paths.append(path.tolist())
        for k, v in stats.items():
            out[k].append(sum(v) / max(len(v), 1))
        out["paths"].append(paths)
    return out
