"""Phone durations from speech latents: a text-only prior + monotonic alignment search (MAS).

The LatentLM's pointer mode (``LatentLMConfig.alignment = "pointer"``) is told, for every speech
frame, which phone it is saying. In training those per-frame phones come from here:

* :class:`PhoneAligner` maps the phone tokens of an utterance to one mean latent per token
  (token embeddings → convolutions → a small bidirectional Transformer → ``latent_dim``).
* :func:`monotonic_alignment` finds the monotonic path (every *sounding* token takes ≥ 1 frame, in
  order) that maximises Σ_t −½‖z_t − μ_{a_t}‖² (Glow-TTS / Grad-TTS's MAS, here on the codec's
  normalised latents with each utterance's mean removed, so the voice matters less).
* Training alternates the two (the aligner is fitted to the latents along the current best path),
  the usual way MAS models learn alignments from scratch.

Tokens that make no sound of their own (the word boundary ``|``, stress/length/tie marks, quotes,
brackets, hyphens, specials: :func:`silent_token_ids`) get 0 frames; pause punctuation
(``, . ! ? ; :``) and phones get at least one. Durations are stored per token, in frames, in a
Kaldi-style text file ``durations`` next to the latent store (``<utt> <d_1> ... <d_L>``, Σ d = F).

    aligner = train_aligner([source], vocab, steps=1000)    # sources: LMSource (latents + phone ids)
    write_durations(aligner, source, vocab, "dump/latents/train/durations")
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DataDirError
from ..train.steps import examples
from .transformer import Transformer, TransformerConfig

__all__ = ["AlignerConfig", "PhoneAligner", "silent_token_ids", "pause_token_ids", "monotonic_alignment", "align_batch",
           "train_aligner", "save_aligner", "load_aligner", "write_durations", "frame_tokens", "read_durations",
           "DURATIONS"]

#: File name of the per-token durations next to a latent store.
DURATIONS = "durations"
#: Non-phone tokens that make no sound of their own (besides specials and the word boundary).
_SILENT_MARKS = set("ˈˌːˑ͡‿\"()-")


#: Pause punctuation: sounding tokens (≥ 1 frame of silence) that may last much longer than a phone.
PAUSE_MARKS = set(",.!?;:")


def pause_token_ids(vocab) -> list[int]:
    """Ids of the pause punctuation tokens (``, . ! ? ; :``)."""
    return [i for i, tok in enumerate(vocab.tokens) if tok in PAUSE_MARKS]


def silent_token_ids(vocab) -> list[int]:
    """Ids of the tokens that take no frames: specials, ``|``, stress/length/tie marks, ``" ( ) -``.

    ``<unk>`` is kept sounding (it stands for some unknown sound)."""
    silent = []
    for i, tok in enumerate(vocab.tokens):
        if tok == "<unk>":
            continue
        if (tok.startswith("<") and tok.endswith(">")) or tok == "|" or tok in _SILENT_MARKS:
            silent.append(i)
    return silent


def monotonic_alignment(score: np.ndarray) -> np.ndarray:
    """Best monotonic path through ``score`` [K, T] (K ≤ T): frame t → token a_t with a_0 = 0,
    a_{T-1} = K-1 and a_{t+1} - a_t ∈ {0, 1}; returns a [T] int array (each token ≥ 1 frame)."""
    K, T = score.shape
    if K > T:
        raise ValueError(f"monotonic_alignment: {K} tokens cannot each take a frame of {T}")
    value = np.full((K, T), -np.inf)
    value[0, 0] = score[0, 0]
    moved = np.zeros((K, T), dtype=bool)
    for t in range(1, T):
        stay = value[:, t - 1]
        move = np.concatenate([[-np.inf], value[:-1, t - 1]])
        moved[:, t] = move > stay
        value[:, t] = score[:, t] + np.maximum(stay, move)
    path = np.empty(T, dtype=np.int64)
    k = K - 1
    for t in range(T - 1, -1, -1):
        path[t] = k
        if t > 0 and k > 0 and (moved[k, t] or k == t):
            k -= 1
    return path


@dataclass
class AlignerConfig:
    vocab_size: int = 128
    pad_id: int = 0
    latent_dim: int = 32
    dim: int = 128
    conv_layers: int = 3
    kernel_size: int = 5
    transformer_layers: int = 2
    n_heads: int = 2


class PhoneAligner(nn.Module):
    """Phone tokens → one mean latent per token (the MAS prior)."""

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=cfg.pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.dim, cfg.dim, cfg.kernel_size, padding=cfg.kernel_size // 2)
                                   for _ in range(cfg.conv_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(cfg.conv_layers))
        self.encoder = Transformer(TransformerConfig(dim=cfg.dim, n_layers=cfg.transformer_layers,
                                                     n_heads=cfg.n_heads, causal=False, max_seq_len=1024))
        self.out = nn.Linear(cfg.dim, cfg.latent_dim)

    def forward(self, phones: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """phones [B, L] → μ [B, L, latent_dim]."""
        valid = torch.arange(phones.shape[1], device=phones.device)[None] < lens[:, None]
        x = self.emb(phones) * valid[..., None]
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x.transpose(1, 2)).transpose(1, 2))) * valid[..., None]
        return self.out(self.encoder(x, padding_mask=valid))


def _sounding(ids: Sequence[int], silent: set[int]) -> np.ndarray:
    return np.array([i for i, t in enumerate(ids) if t not in silent], dtype=np.int64)


def align_batch(aligner: PhoneAligner, phones: list[list[int]], latents: list[np.ndarray],
                silent: set[int]) -> tuple[torch.Tensor, list[np.ndarray | None]]:
    """MAS for a batch: (the aligner's loss along the best paths, per-token durations or None where an
    utterance has more sounding tokens than frames or none at all)."""
    dev = next(aligner.parameters()).device
    B = len(phones)
    L = max(len(p) for p in phones)
    ph = torch.full((B, L), aligner.cfg.pad_id, dtype=torch.long, device=dev)
    for b, p in enumerate(phones):
        ph[b, : len(p)] = torch.as_tensor(p, dtype=torch.long)
    mu = aligner(ph, torch.tensor([len(p) for p in phones], device=dev))
    losses, durations = [], []
    for b in range(B):
        z = torch.as_tensor(latents[b], dtype=torch.float32, device=dev)
        z = z - z.mean(0, keepdim=True)
        idx = _sounding(phones[b], silent)
        if len(idx) == 0 or len(idx) > z.shape[0]:
            durations.append(None)
            continue
        m = mu[b, torch.as_tensor(idx, device=dev)]  # [K, D]
        err = 0.5 * ((z[None, :, :] - m[:, None, :]) ** 2).sum(-1)  # [K, T]
        path = monotonic_alignment(-err.detach().cpu().numpy())
        losses.append(err[torch.as_tensor(path, device=dev), torch.arange(z.shape[0], device=dev)].mean() / z.shape[1])
        d = np.zeros(len(phones[b]), dtype=np.int64)
        np.add.at(d, idx[path], 1)
        durations.append(d)
    loss = torch.stack(losses).mean() if losses else mu.sum() * 0.0
    return loss, durations


def train_aligner(sources, vocab, steps: int = 3000, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                  progress: bool = True, log_every: int = 100, log=print,
                  config: AlignerConfig | None = None) -> PhoneAligner:
    """Fit a :class:`PhoneAligner` by MAS on :class:`~latentspeech.data.lm_dataset.LMSource` s
    (normalised latents + phone ids); Adam with a cosine decay, ``steps`` batches of ``batch_size``."""
    from ..train.steps import fit_steps

    items = examples(sources)
    if not items:
        raise DataDirError("train_aligner: no utterance has both phones and latents")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    first = sources[items[0][0]].load(items[0][1])
    cfg = dataclasses.replace(config or AlignerConfig(), vocab_size=vocab.size, pad_id=vocab.pad_id,
                              latent_dim=first.shape[-1])
    aligner = PhoneAligner(cfg)
    opt = torch.optim.Adam(aligner.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    silent = set(silent_token_ids(vocab))

    def batch_loss(step: int) -> torch.Tensor:
        batch = [items[rng.randrange(len(items))] for _ in range(batch_size)]
        return align_batch(aligner, [sources[si].phones[u] for si, u in batch],
                           [sources[si].load(u) for si, u in batch], silent)[0]

    return fit_steps(aligner, batch_loss, opt, sched, steps, "aligner", progress, log_every, log)


@torch.no_grad()
def write_durations(aligner: PhoneAligner, source, vocab, path: str | os.PathLike, batch_size: int = 32,
                    progress: bool = True) -> dict[str, int]:
    """Align every utterance of ``source`` and write ``path`` (``<utt> <d_1> ... <d_L>``, atomically).
    Returns counts: ``aligned`` and ``skipped`` (more sounding tokens than frames)."""
    from tqdm.auto import tqdm

    silent = set(silent_token_ids(vocab))
    utts = [u for u in sorted(source.phones) if u in source.latents]
    lines, skipped = [], 0
    for i in tqdm(range(0, len(utts), batch_size), desc="align", disable=not progress):
        chunk = utts[i : i + batch_size]
        _, durs = align_batch(aligner, [source.phones[u] for u in chunk], [source.load(u) for u in chunk], silent)
        for u, d in zip(chunk, durs):
            if d is None:
                skipped += 1
            else:
                lines.append(u + " " + " ".join(map(str, d.tolist())))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, path)
    return {"aligned": len(lines), "skipped": skipped}


def save_aligner(aligner: PhoneAligner, out: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the aligner as a model dir (safetensors + config; kind ``aligner``)."""
    from ..checkpoint import save_config_model

    return save_config_model(aligner, out, "aligner", meta)


def load_aligner(path: str | os.PathLike, vocab=None) -> PhoneAligner:
    """A saved aligner (:func:`save_aligner`), in eval mode. With ``vocab`` its phone inventory must
    be the one the aligner was trained with (a one-line :class:`CheckpointError` otherwise)."""
    from ..checkpoint import load_config_model

    return load_config_model(path, "aligner", PhoneAligner, AlignerConfig, vocab)


def read_durations(path: str | os.PathLike) -> dict[str, list[int]]:
    """A ``durations`` file → {utt: per-token frame counts}."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: no such file (per-token durations: run `latentspeech align`)")
    out: dict[str, list[int]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            out[parts[0]] = [int(x) for x in parts[1:]]
        except ValueError:
            raise DataDirError(f"{path}:{n}: expected '<utt> <int> <int> ...', got {line[:80]!r}") from None
    return out


def frame_tokens(durations: Iterable[int]) -> np.ndarray:
    """Per-token durations → the token index of every frame."""
    d = np.asarray(list(durations), dtype=np.int64)
    return np.repeat(np.arange(len(d)), d)
