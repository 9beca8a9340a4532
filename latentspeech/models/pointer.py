"""Pointer alignment, shared by LatentLM and the VALL-E AR stage: every speech token is told which phone it says.

An autoregressive TTS model that aligns by attention alone has to find its place in the text from
what it has said so far, which a small model trained on a few hours of speech learns slowly. In
pointer mode a :class:`PhonePointer` tells it instead:

* a small bidirectional phone encoder gives each phone a vector;
* every speech token's input gets the vectors of the phones its frames say plus an embedding of
  how many frames the phone of its last frame has lasted;
* the next token's prediction (LatentLM: the diffusion head's condition; VALL-E: the code logits)
  hears the vectors of *that* token's frames' phones;
* an advance head decides, for every frame of the next token, whether it says the next sounding
  phone (tokens in ``silent_token_ids`` take no frames). Advancing past the last one ends the
  utterance: it replaces the stop head (LatentLM) or the end-of-speech code (VALL-E).

In training the phone of each frame comes from per-phone durations (``latentspeech align``,
:mod:`latentspeech.models.aligner`): :meth:`PhonePointer.teacher_forced`. At inference a
:class:`PointerWalk` moves each row's pointer over the tables of :func:`pointer_tables`.

With patches of p frames per token (LatentLM's ``patch_size``; VALL-E has p = 1) a token carries
the vectors of its p frames' phones (concatenated, one projection) and the elapsed count of its
last frame; the advance head gives one decision per frame of the next token (the first frame after
BOS has none), and a row whose pointer passes the last phone inside a token keeps only the frames
before.

The owner's config supplies the settings (:class:`PointerSettings`: both ``LatentLMConfig`` and
``VALLEConfig`` have them); the owner embeds the phones (its own phone table) before
:meth:`PhonePointer.encode`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError
from .transformer import Transformer, TransformerConfig

__all__ = ["PointerSettings", "validate_alignment", "PhonePointer", "PointerInputs", "PointerTables", "PointerWalk", "pointer_tables",
           "hold_limits"]


class PointerSettings(Protocol):
    """The config fields pointer mode reads (see ``LatentLMConfig`` for their meaning)."""

    patch_size: int
    phone_encoder_layers: int
    max_phone_frames: int
    advance_threshold: float
    silent_token_ids: Sequence[int]
    max_hold_frames: int
    pause_token_ids: Sequence[int]


def validate_alignment(cfg, name: str) -> None:
    """The alignment switch and pointer fields of a model config (``name``: its prefix in errors)."""
    if cfg.alignment not in ("attention", "pointer"):
        raise ConfigError(f"{name}: alignment must be 'attention' or 'pointer', got {cfg.alignment!r}")
    if cfg.alignment == "pointer" and (cfg.max_phone_frames < 1 or cfg.phone_encoder_layers < 1):
        raise ConfigError(f"{name}: alignment 'pointer' needs max_phone_frames >= 1 and phone_encoder_layers >= 1")
    if cfg.max_hold_frames < 0:
        raise ConfigError(f"{name}: max_hold_frames must be >= 0 (0: max_phone_frames), got {cfg.max_hold_frames}")


class PointerInputs(NamedTuple):
    """Teacher-forced pointer inputs of a batch of N tokens per row (see :meth:`PhonePointer.teacher_forced`)."""

    speech_extra: torch.Tensor  # [B, 1+N, dim] added to the slots BOS, z_1 … z_N
    cond: torch.Tensor  # [B, N, dim] added to the prediction of each token z_1 … z_N
    advance_labels: torch.Tensor  # [B, N+1, p] at the slots BOS, z_1 … z_N: per frame of the next token
    advance_mask: torch.Tensor  # [B, N+1, p] the labels that count


class PointerTables(NamedTuple):
    """What the pointer walks over at inference (see :func:`pointer_tables`)."""

    vectors: torch.Tensor  # [B, L+1, dim] phone vectors, with a zero "end" row at index L
    next_sounding: torch.Tensor  # [B, L+1] the next sounding phone after each index (L: none left)
    first: torch.Tensor  # [B] the first sounding phone


class PhonePointer(nn.Module):
    """The layers of pointer mode: phone encoder, the projections of phone vectors into the speech
    tokens and the predictions, the elapsed-frames embedding and the advance head. ``tc`` is the
    owner's Transformer config (the encoder shares its width and heads)."""

    def __init__(self, cfg: PointerSettings, tc: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        dim, p = tc.dim, cfg.patch_size
        self.encoder = Transformer(TransformerConfig(
            dim=dim, n_layers=cfg.phone_encoder_layers, n_heads=tc.n_heads, n_kv_heads=tc.n_kv_heads,
            ffn_dim=tc.ffn_dim, max_seq_len=tc.max_seq_len, dropout=tc.dropout, causal=False))
        self.aligned_in = nn.Linear(p * dim, dim)  # the token's frames' phone vectors, into the speech token
        self.aligned_cond = nn.Linear(p * dim, dim)  # the next token's frames' phone vectors, into its prediction
        self.elapsed_emb = nn.Embedding(cfg.max_phone_frames + 1, dim)  # 0 at BOS
        nn.init.normal_(self.elapsed_emb.weight, std=0.02)
        # per frame of the next token: "this frame says a later phone than the frame before (or nothing)"
        self.advance_head = nn.Linear(dim, p)
        nn.init.zeros_(self.advance_head.weight)
        nn.init.constant_(self.advance_head.bias, -1.0)

    @property
    def dim(self) -> int:
        return self.elapsed_emb.embedding_dim

    def encode(self, x: torch.Tensor, phone_lens: torch.Tensor) -> torch.Tensor:
        """Contextual phone vectors [B, L, dim] of embedded phones ``x`` [B, L, dim] (zero on padding)."""
        valid = torch.arange(x.shape[1], device=x.device)[None] < phone_lens.clamp(min=1)[:, None]
        return self.encoder(x * valid[..., None], padding_mask=valid) * valid[..., None]

    def teacher_forced(self, c: torch.Tensor, durations: torch.Tensor, frame_lens: torch.Tensor, n_frames: int,
                       keep: torch.Tensor, utt_ids: Sequence[str] = ()) -> PointerInputs:
        """Teacher-forced inputs from phone vectors ``c`` [B, L, dim] and per-phone ``durations``
        [B, L] (frames; they must sum to ``frame_lens``) of rows padded to ``n_frames`` frames, per
        token of p frames (N = ceil(n_frames / p) tokens):

        * the speech-slot inputs: the vectors of each token's frames' phones and how long the phone
          of its last frame has lasted (BOS: elapsed 0 only);
        * the prediction term of each token (its frames' phones);
        * advance labels and their mask, indexed like the slots BOS, z_1 … z_N: for each frame of
          the next token, does it say a later phone than the frame before, or is speech over? (The
          first frame after BOS has no label.)

        Frames past the end of an utterance (a last token's padding) repeat its last frame. Rows with
        ``keep`` False (CFG-dropped) get no phone vectors."""
        p, dim = self.cfg.patch_size, self.dim
        B, L = durations.shape
        dur = durations.long()
        cum = dur.cumsum(1)
        if bool((cum[:, -1] != frame_lens).any()):
            ids = list(utt_ids) or ["?"] * B
            bad = [u for u, a, b in zip(ids, cum[:, -1].tolist(), frame_lens.tolist()) if a != b]
            raise ValueError(f"durations do not sum to the frame count for {bad[:3]} (stale durations file?)")
        N = -(-n_frames // p)
        f = torch.arange(N * p + p, device=dur.device)[None].expand(B, -1)  # one token beyond the last
        fc = torch.minimum(f, (frame_lens[:, None] - 1).clamp(min=0)).contiguous()  # past the end: the last frame
        tok = torch.searchsorted(cum.contiguous(), fc, right=True).clamp(max=L - 1)  # phone of each frame
        start = torch.gather(cum - dur, 1, tok)
        elapsed = (fc - start + 1).clamp(1, self.cfg.max_phone_frames)
        k = keep.to(c.dtype)[:, None, None]
        c_f = torch.gather(c, 1, tok[:, : N * p, None].expand(B, N * p, dim)).reshape(B, N, p * dim)
        last = elapsed[:, p - 1 : N * p : p]  # [B, N]: at each token's last frame
        extra = torch.cat([self.elapsed_emb.weight[0].expand(B, 1, dim),
                           self.aligned_in(c_f) * k + self.elapsed_emb(last)], 1)
        prev = torch.cat([tok[:, :1], tok[:, :-1]], 1)
        adv = ((tok != prev) | (f >= frame_lens[:, None]))[:, : N * p + p].reshape(B, N + 1, p)
        mask = torch.ones_like(adv)
        mask[:, 0, 0] = False
        return PointerInputs(extra, self.aligned_cond(c_f) * k, adv, mask)


def pointer_tables(c: torch.Tensor, phones: torch.Tensor, phone_lens: torch.Tensor,
                   silent_token_ids: Sequence[int]) -> PointerTables:
    """The inference tables of phones [B, L] (right-padded) with phone vectors ``c`` [B, L, dim].
    A sentence with no sounding token at all lets every token sound."""
    B, L = phones.shape
    dev = phones.device
    idx = torch.arange(L, device=dev)[None].expand(B, L)
    real = idx < phone_lens[:, None]
    silent = torch.as_tensor(list(silent_token_ids), dtype=torch.long, device=dev)
    sounding = real & ~torch.isin(phones, silent)
    sounding |= real & ~sounding.any(1, keepdim=True)
    vals = torch.where(sounding, idx, torch.full_like(idx, L))
    suffix_min = vals.flip(1).cummin(1).values.flip(1)  # first sounding index >= k
    end = torch.full((B, 1), L, dtype=torch.long, device=dev)
    next_sounding = torch.cat([suffix_min[:, 1:], end, end], 1)  # [B, L+1]: after k (k = L: stays L)
    c_pad = torch.cat([c, c.new_zeros(B, 1, c.shape[-1])], 1)
    return PointerTables(c_pad, next_sounding, suffix_min[:, 0] if L else end[:, 0])


def hold_limits(cfg: PointerSettings, phones: torch.Tensor) -> torch.Tensor:
    """[B, L+1]: the most frames each phone may sound before the pointer is forced on:
    ``max_phone_frames``, or ``max_hold_frames`` for every token but pause punctuation."""
    B, L = phones.shape
    hold = torch.full((B, L + 1), cfg.max_phone_frames, dtype=torch.long, device=phones.device)
    if 0 < cfg.max_hold_frames < cfg.max_phone_frames:
        pauses = torch.tensor(list(cfg.pause_token_ids), dtype=torch.long, device=phones.device)
        hold[:, :-1] = torch.where(torch.isin(phones, pauses), hold[:, :-1], cfg.max_hold_frames)
    return hold


class PointerWalk:
    """Inference: each of B rows' pointer says which phone its current frame says.

    Before every token (:meth:`before_token`) it moves frame by frame: on where the advance head
    says so, or where the phone has sounded its hold limit (:func:`hold_limits`); moving past the
    last sounding phone ends the row at that frame (``use_stop=False``: never). ``frames_kept``
    [B] says how many frames of the token each row keeps, ``stopped`` [B] which rows ended so.
    :meth:`condition` and :meth:`feed` add the phones of the token's frames to its prediction and
    to the Transformer's next input; with ``guided`` the input gets a second half of CFG rows with
    the elapsed count but no phone vectors, as in training."""

    def __init__(self, net: PhonePointer, c: torch.Tensor, phones: torch.Tensor, phone_lens: torch.Tensor,
                 use_stop: bool = True):
        B, dev = phones.shape[0], phones.device
        self.net, self.cfg, self.use_stop = net, net.cfg, use_stop
        self.table = pointer_tables(c, phones, phone_lens, net.cfg.silent_token_ids)
        self.end = self.table.vectors.shape[1] - 1  # index L: past the last phone
        self.hold = hold_limits(net.cfg, phones)
        self.ptr = self.table.first  # [B] the phone of the current frame
        self.elapsed = torch.zeros(B, dtype=torch.long, device=dev)  # frames that phone has sounded
        self.stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        self.frames_kept = torch.full((B,), net.cfg.patch_size, dtype=torch.long, device=dev)
        self.phones_now: torch.Tensor | None = None  # [B, p·dim] the vectors of the token's frames' phones

    def start(self, rows: int) -> torch.Tensor:
        """[rows, 1, dim]: what every row's BOS slot gets (elapsed 0)."""
        return self.net.elapsed_emb.weight[0].expand(rows, 1, self.net.dim)

    def before_token(self, j: int, h: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Move the pointers over the frames of token j (``h``: the rows' last hidden states);
        returns the rows that ended on the token's first frame (nothing to sample)."""
        p = self.cfg.patch_size
        p_adv = torch.sigmoid(self.net.advance_head(h))  # [B, p]: per frame of the token
        take = torch.full_like(self.frames_kept, p)
        going, ptrs = active.clone(), []
        for k in range(p):
            if j > 0 or k > 0:  # the first frame says the first sounding phone
                ends = self.advance(going, p_adv[:, k])
                take = torch.where(ends, torch.full_like(take, k), take)
                going &= ~ends
            self.elapsed = torch.where(going, (self.elapsed + 1).clamp(max=self.cfg.max_phone_frames), self.elapsed)
            ptrs.append(self.ptr)
        self.frames_kept = take
        rows = torch.arange(len(take), device=take.device)
        self.phones_now = torch.cat([self.table.vectors[rows, q] for q in ptrs], -1)
        return take == 0

    def advance(self, going: torch.Tensor, p_adv: torch.Tensor) -> torch.Tensor:
        """One frame: move the pointers of the ``going`` rows that advance; returns the rows whose
        pointer passed the last sounding phone (they end)."""
        held_out = self.elapsed >= torch.gather(self.hold, 1, self.ptr[:, None])[:, 0]
        adv = going & ((p_adv > self.cfg.advance_threshold) | held_out)
        nxt = torch.gather(self.table.next_sounding, 1, self.ptr[:, None])[:, 0]
        ends = adv & (nxt >= self.end) if self.use_stop else torch.zeros_like(adv)
        self.ptr = torch.where(adv & ~ends, nxt, self.ptr)
        self.elapsed = torch.where(adv & ~ends, torch.zeros_like(self.elapsed), self.elapsed)
        self.stopped |= ends
        return ends

    def condition(self, h: torch.Tensor) -> torch.Tensor:
        """The prediction of the token hears the phones of its frames."""
        return h + self.net.aligned_cond(self.phones_now)

    def ends_inside(self) -> torch.Tensor:
        return self.frames_kept < self.cfg.patch_size

    def feed(self, x: torch.Tensor, guided: bool = False) -> torch.Tensor:
        """The Transformer's next input: the embedded token ``x`` [B, dim] with its phones and elapsed count."""
        x = x + self.net.elapsed_emb(self.elapsed)
        x_c = x + self.net.aligned_in(self.phones_now)
        return torch.cat([x_c, x]) if guided else x_c
