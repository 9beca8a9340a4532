"""The NAR stage: a bidirectional Transformer that predicts codebook ``j`` (1..Q-1) for all frames at once.

Its speech input is the sum of the embeddings of levels ``0..j-1`` (VALL-E's "sum of level
embeddings"); a learned level embedding added to every input position tells it which level to
predict. Each level has its own code embedding table, which is also (tied) that level's output
projection. Its prompt is the sum of the embeddings of all Q levels of the prompt codes. Decoding
is greedy by default, Q-1 passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...data.batch import VALLEBatch
from ..transformer import Transformer
from .config import VALLEConfig
from .layout import IGNORE, PHONES, PROMPT, SPEECH, layout, lengths_mask
from .sampling import sample_logits

__all__ = ["NARStage"]


class NARStage(nn.Module):
    """Bidirectional Transformer: codes of levels 0..j-1 (summed) → codes of level j, j = 1..Q-1."""

    def __init__(self, cfg: VALLEConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.nar.dim
        self.phone_emb = nn.Embedding(cfg.phone_vocab_size, d)
        self.level_code_emb = nn.ModuleList(nn.Embedding(cfg.codebook_size, d) for _ in range(cfg.num_quantizers))
        self.stage_emb = nn.Embedding(cfg.num_quantizers - 1, d)  # which level is predicted (1..Q-1)
        self.segment_emb = nn.Embedding(3, d)
        self.transformer = Transformer(cfg.nar)
        for emb in (self.phone_emb, self.stage_emb, self.segment_emb, *self.level_code_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def embed_levels(self, codes: torch.Tensor, upto: torch.Tensor | int) -> torch.Tensor:
        """Sum of the embeddings of levels ``q < upto`` of ``codes [B, Q', T]`` (``upto``: int or [B])."""
        B = codes.shape[0]
        upto = torch.as_tensor(upto, device=codes.device).expand(B)
        total = 0
        for q in range(min(codes.shape[1], int(upto.max()))):
            use = (q < upto).to(self.stage_emb.weight.dtype)[:, None, None]
            total = total + self.level_code_emb[q](codes[:, q]) * use
        return total

    def hidden(self, phones, phone_lens, prompt, prompt_lens, speech_emb, code_lens, levels) -> torch.Tensor:
        """Run the Transformer; returns hidden states at the speech positions ``[B, T, D]``.

        ``speech_emb [B, T, D]``: the summed embeddings of the known levels; ``levels [B]``: the level predicted."""
        seg = self.segment_emb.weight
        stage = self.stage_emb(levels - 1)[:, None, :]
        x, pos, mask = layout([
            (self.embed_levels(prompt, self.cfg.num_quantizers) + seg[PROMPT], prompt_lens),
            (self.phone_emb(phones) + seg[PHONES], phone_lens),
            (speech_emb + seg[SPEECH], code_lens),
        ], self.cfg.phone_position_scale)
        h = self.transformer(x + stage, positions=pos, padding_mask=mask)
        return h[:, -speech_emb.shape[1]:]

    def logits(self, h: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T, K]`` for level ``levels[b]`` (output tied to that level's code embedding)."""
        weight = torch.stack([e.weight for e in self.level_code_emb])[levels]  # [B, K, D]
        return torch.bmm(h, weight.transpose(1, 2))

    def forward(self, batch: VALLEBatch, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits ``[B, T, K]`` of level ``levels[b]`` and their targets ``[B, T]``."""
        codes = batch.codes
        B, _, T = codes.shape
        speech = self.embed_levels(codes, levels)
        h = self.hidden(batch.phones, batch.phone_lens, batch.prompt, batch.prompt_lens, speech, batch.code_lens,
                        levels)
        targets = codes[torch.arange(B, device=codes.device), levels]
        targets = targets.masked_fill(~lengths_mask(batch.code_lens, T), IGNORE)
        return self.logits(h, levels), targets

    def loss(self, batch: VALLEBatch, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy of one random level (uniform in 1..Q-1) per example."""
        Q = self.cfg.num_quantizers
        levels = torch.randint(1, Q, (batch.size,), generator=generator).to(batch.codes.device)
        logits, targets = self(batch, levels)
        loss = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE)
        keep = targets != IGNORE
        acc = (logits.argmax(-1) == targets)[keep].float().mean()
        return loss, {"nar_acc": acc.detach()}

    @torch.no_grad()
    def generate(self, phones, phone_lens, prompt, prompt_lens, codes0: torch.Tensor, code_lens: torch.Tensor,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Fill in levels 1..Q-1 given ``codes0 [B, T]``; greedy unless ``temperature > 0``.

        Returns (codes [B, Q, T], transformer calls = Q-1)."""
        Q = self.cfg.num_quantizers
        B, T = codes0.shape
        codes = torch.zeros(B, Q, T, dtype=torch.long, device=codes0.device)
        codes[:, 0] = codes0
        if T == 0:
            return codes, 0
        valid = lengths_mask(code_lens, T)
        speech = self.level_code_emb[0](codes0)
        for j in range(1, Q):
            levels = torch.full((B,), j, dtype=torch.long, device=codes0.device)
            h = self.hidden(phones, phone_lens, prompt, prompt_lens, speech, code_lens, levels)
            logits = self.logits(h, levels)
            tok = sample_logits(logits.reshape(B * T, -1), temperature, generator=generator).view(B, T)
            codes[:, j] = tok * valid
            speech = speech + self.level_code_emb[j](codes[:, j])
        return codes, Q - 1
