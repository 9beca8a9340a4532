"""The VALL-E baseline's backend: phones → AR + NAR code LMs → RVQ codes → the model dir's ``codec/`` → waveform."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, TextError
from ..models.valle import VALLE, VALLEOutput, load_valle
from .backends import SpeechBackend

__all__ = ["VALLEBackend"]

#: Sampling defaults of :class:`VALLEBackend` (a model dir's ``meta.inference`` overrides them).
DEFAULT_TOP_K = 50
DEFAULT_TOP_P = 1.0
DEFAULT_RAS_WINDOW = 10  # VALL-E 2's repetition-aware sampling: window K = 10, threshold t_r = 0.1
DEFAULT_RAS_THRESHOLD = 0.1


class VALLEBackend(SpeechBackend):
    """Runs a VALL-E model dir for :class:`latentspeech.inference.tts.TTS` (kind ``valle``).

    phones → AR (sampled: temperature, top-k, top-p, repetition-aware) + NAR (greedy) → codes → the dir's own
    ``codec/`` → waveform. The prompt is encoded once into RVQ codes. ``steps`` and ``cfg`` are
    LatentLM's options and are ignored here, so one decoding command line serves both systems.
    :meth:`stream` yields each sentence whole: the NAR stage reads a sentence's whole first-level codes
    before any audio exists.
    """

    kind = "valle"

    def __init__(self, model: VALLE, codec, frontend, meta: dict, path: Path | None = None):
        super().__init__(model, codec, frontend, meta, path)
        infer = meta.get("inference") or {}
        self.top_k = int(infer.get("top_k", DEFAULT_TOP_K))
        self.top_p = float(infer.get("top_p", DEFAULT_TOP_P))
        self.ras_window = int(infer.get("ras_window", DEFAULT_RAS_WINDOW))
        self.ras_threshold = float(infer.get("ras_threshold", DEFAULT_RAS_THRESHOLD))
        self.last_output: VALLEOutput | None = None  # the last batch's output (step counts for benchmarks)

    @classmethod
    def load(cls, path, device=None) -> "VALLEBackend":
        from ..text import TextFrontend

        model, codec, vocab, meta = load_valle(path, device)
        if vocab is None:
            raise CheckpointError(f"{path}: no phone vocabulary in config.yaml meta (phone_vocab)")
        return cls(model, codec, TextFrontend(vocab), meta, Path(path))

    @property
    def device(self):
        return self.model.ar.code_emb.weight.device

    def encode_prompt(self, wav) -> torch.Tensor:
        """Prepared prompt audio (float32 mono at :attr:`sample_rate`) → codes ``[Q, P]``."""
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
        return self.codec.encode_codes(x)[0, : self.model.cfg.num_quantizers]

    def room(self) -> int:
        return min(self.model.cfg.ar.max_seq_len, self.model.cfg.nar.max_seq_len)

    def check(self, sentences: Sequence[str], prompt=None) -> list[list[int]]:
        """The sentences' phone ids, each checked: not empty, shorter than the models' context."""
        ids = self.frontend.encode_batch(list(sentences))
        room = self.room()
        for s, p in zip(sentences, ids):
            if not p:
                raise TextError(f"no phones for the sentence {s[:40]!r}")
            if len(p) >= room:
                raise TextError(f"sentence too long for this model ({len(p)} phones, max {room - 1}): {s[:40]!r}...")
        return ids

    def synthesize(self, sentences: Sequence[str], prompt, *, steps: int | None = None, cfg: float | None = None,
                   temperature: float | None = None, generator: torch.Generator | None = None, batch_size: int = 8,
                   progress: bool | None = None, candidates: int | None = None) -> list:
        """One waveform (float32 numpy) per sentence; ``prompt``: codes from :meth:`encode_prompt`;
        sentences of similar length share a batch."""
        from tqdm.auto import tqdm

        if candidates not in (None, 1):
            raise ConfigError(f"the VALL-E baseline draws one candidate per sentence, got candidates={candidates}")

        temperature = 1.0 if temperature is None else float(temperature)  # AR code sampling
        ids = self.check(sentences)
        room = self.room()
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if batch_size > 1 else list(range(len(ids)))
        out: list = [None] * len(ids)
        bar = tqdm(total=len(ids), unit="sent", disable=(len(ids) <= 1) if progress is None else not progress,
                   desc="synthesizing")
        with torch.inference_mode():
            for k in range(0, len(order), batch_size):
                rows = order[k : k + batch_size]
                gen = self.model.generate([ids[i] for i in rows], [prompt] * len(rows), temperature=temperature,
                                          top_k=self.top_k, top_p=self.top_p, ras_window=self.ras_window,
                                          ras_threshold=self.ras_threshold, max_frames=room - 2, generator=generator)
                self.last_output = gen
                for b, i in enumerate(rows):
                    n = int(gen.lengths[b])
                    out[i] = self.codec.decode_codes(gen.codes[b : b + 1, :, :n])[0].float().cpu().numpy()
                bar.update(len(rows))
        bar.close()
        return out
