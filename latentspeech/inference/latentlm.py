"""The LatentLM backend: phones → LatentLM → latents → the model dir's own ``codec/`` → waveform.

With a ``recognizer/`` in the model dir it draws several candidates of each sentence in one batch and
keeps the one the recognizer reads best (:func:`latentspeech.models.recognizer.best_candidates`).

With ``inference.prompt_stats`` > 0 in the model dir's config (strength, 1 = full), each sentence's latents
are moved towards the prompt's per-dimension mean and spread before decoding (:func:`match_prompt_stats`):
the codec's latents carry much of a voice in those long-term statistics, and the LM reproduces them only
in part.

:meth:`LatentLMBackend.stream` yields the audio of one sentence while it is generated: every token goes
to a :class:`~latentspeech.models.codec.streaming.StreamingDecoder` as soon as it is sampled (one
candidate: picking among several needs whole sentences), without the statistics match (it needs the whole
sentence's latents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import CheckpointError, ConfigError, TextError
from .backends import DEFAULT_CFG, DEFAULT_STEPS, DEFAULT_TEMPERATURE, SpeechBackend

__all__ = ["LatentLMBackend", "match_prompt_stats"]


def match_prompt_stats(z, prompt, strength: float = 1.0):
    """Move latents ``z [F, D]`` towards the per-dimension mean and standard deviation of ``prompt [P, D]``.

    ``strength`` 1 gives ``z`` exactly the prompt's statistics over time, 0 leaves it unchanged; values in
    between scale both the mean shift and the change of spread. Both tensors are in the LM's normalised units.
    """
    if strength == 0 or z.shape[0] < 2 or prompt.shape[0] < 2:
        return z
    mz, sz = z.mean(0), z.std(0).clamp(min=1e-3)
    mp, sp = prompt.mean(0).to(z), prompt.std(0).to(z)
    scale = 1 + strength * (sp / sz - 1)
    return mz + strength * (mp - mz) + (z - mz) * scale


class LatentLMBackend(SpeechBackend):
    """Runs a LatentLM model dir: phones → LatentLM → latents → its own ``codec/`` → waveform."""

    kind = "latentlm"

    def __init__(self, model, codec, frontend, meta: dict, path: Path | None = None, recognizer=None,
                 candidates: int = 1):
        super().__init__(model, codec, frontend, meta, path)
        self.recognizer = recognizer  # picks the clearest of several candidates (lm/recognizer.py), optional
        self.default_candidates = candidates if recognizer is not None else 1
        if codec.latent_dim != model.cfg.latent_dim:
            raise CheckpointError(f"{path}: codec latent_dim {codec.latent_dim} != model latent_dim {model.cfg.latent_dim}")
        infer = meta.get("inference") or {}
        self.default_steps = int(infer.get("steps", DEFAULT_STEPS))
        self.default_cfg = float(infer.get("cfg", DEFAULT_CFG))
        self.default_temperature = float(infer.get("temperature", DEFAULT_TEMPERATURE))
        self.prompt_stats = float(infer.get("prompt_stats", 0.0))  # match_prompt_stats' strength; 0: off

    @classmethod
    def load(cls, path: Path, device=None) -> "LatentLMBackend":
        from ..models.codec import load_codec
        from ..models.latentlm import load_latentlm
        from ..models.recognizer import load_attached_recognizer
        from ..text import PhoneVocab, TextFrontend

        model, md = load_latentlm(path, device)
        codec_dir = md.path / "codec"
        if not (codec_dir / "config.yaml").is_file():
            raise CheckpointError(f"{md.path} has no codec/ subfolder (a LatentLM model dir holds its codec)")
        codec = load_codec(codec_dir, device=device)
        try:
            vocab = PhoneVocab.from_dict(md.meta.get("phone_vocab"))
        except Exception as e:  # ConfigError: incompatible or missing vocabulary
            raise CheckpointError(f"{md.path}: {e}") from None
        recognizer = load_attached_recognizer(md.path, vocab)  # optional: picks among candidates
        if recognizer is not None:
            recognizer.to(device or "cpu")
        return cls(model, codec, TextFrontend(vocab), md.meta, md.path, recognizer,
                   recognizer.cfg.candidates if recognizer is not None else 1)

    @property
    def device(self):
        return self.model.bos.device

    def encode_prompt(self, wav: np.ndarray):
        """Prepared prompt audio → normalised latents [P, D]."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None].to(self.device)
        z = self.codec.normalize(self.codec.encode(x))  # [1, D, P]
        return z[0].transpose(0, 1).contiguous()

    def phone_ids(self, sentences: Sequence[str], prompt) -> list[list[int]]:
        """The sentences' phone ids, checked against the room the encoded ``prompt`` leaves."""
        ids = self.frontend.encode_batch(list(sentences))
        room = self.room(prompt)
        for s, p in zip(sentences, ids):
            if len(p) >= room:
                raise TextError(f"sentence too long for this model ({len(p)} phones, max {room}): {s[:40]!r}...")
        return ids

    def check(self, sentences: Sequence[str], prompt) -> None:
        self.phone_ids(sentences, prompt)

    def room(self, prompt) -> int:
        """Sequence slots left for phones and speech after the encoded ``prompt`` [P, D] (and BOS/EOS)."""
        prompt_tokens = -(-prompt.shape[0] // self.model.cfg.patch_size)  # frames grouped into tokens
        return self.model.cfg.transformer.max_seq_len - prompt_tokens - 2

    def options(self, steps, cfg, temperature) -> dict:
        """The sampler options of a call, the model's recommendations where ``None``."""
        return dict(steps=steps or self.default_steps, cfg_scale=self.default_cfg if cfg is None else float(cfg),
                    temperature=self.default_temperature if temperature is None else float(temperature))

    def synthesize(self, sentences: Sequence[str], prompt, *, steps: int | None = None,
                   cfg: float | None = None, temperature: float | None = None, generator=None, batch_size: int = 8,
                   progress: bool | None = None, candidates: int | None = None) -> list[np.ndarray]:
        """One waveform per sentence; ``prompt``: latents from :meth:`encode_prompt`."""
        import torch
        from tqdm.auto import tqdm

        from ..models.recognizer import RECOGNIZER, best_candidates

        n_cand = self.default_candidates if candidates is None else int(candidates)
        if n_cand < 1:
            raise ConfigError(f"candidates must be >= 1, got {n_cand}")
        if n_cand > 1 and self.recognizer is None:
            raise ConfigError(f"{self.path}: this model has no {RECOGNIZER}/ to choose among candidates: use candidates=1")
        opts = self.options(steps, cfg, temperature)
        ids = self.phone_ids(sentences, prompt)
        room = self.room(prompt)
        per_batch = max(1, batch_size // n_cand)  # sentences per batch: each takes n_cand rows
        # similar lengths share a batch; one at a time, the text's order
        order = sorted(range(len(ids)), key=lambda i: len(ids[i])) if per_batch > 1 else list(range(len(ids)))
        out: list[np.ndarray | None] = [None] * len(ids)
        # progress=None: a bar for several sentences on a terminal (tqdm's disable=None: off when not a TTY)
        bar = tqdm(total=len(ids), unit="sent", disable=(True if len(ids) <= 1 else None) if progress is None
                   else not progress, desc="synthesizing")
        with torch.inference_mode():
            for k in range(0, len(order), per_batch):
                rows = order[k : k + per_batch]
                batch = [ids[i] for i in rows]
                cap = room - max(len(b) for b in batch)
                gen = self.model.generate([b for b in batch for _ in range(n_cand)], prompt, generator=generator,
                                          max_frames=cap, **opts)
                chosen = best_candidates(self.recognizer, gen.latents, batch, n_cand)  # the clearest per sentence
                for i, z in zip(rows, chosen):
                    if z.shape[0] == 0:
                        out[i] = np.zeros(0, np.float32)
                        continue
                    z = match_prompt_stats(z, prompt, self.prompt_stats)
                    lat = self.codec.denormalize(z.transpose(0, 1)[None])
                    out[i] = self.codec.decode(lat)[0].float().cpu().numpy()
                bar.update(len(rows))
        bar.close()
        return out  # type: ignore[return-value]

    def stream(self, sentences: Sequence[str], prompt, *, steps: int | None = None, cfg: float | None = None,
               temperature: float | None = None, generator=None, candidates: int | None = None) -> Iterator[np.ndarray]:
        """Audio chunks of the sentences, in order, while they are generated (one candidate each: the
        same draws as :meth:`synthesize` with ``batch_size=1, candidates=1``)."""
        import torch

        from ..models.codec.streaming import StreamingDecoder
        from ..models.latentlm.generation import TokenSteps
        from ..models.latentlm.layout import unpatchify

        if candidates not in (None, 1):
            raise ConfigError(f"streaming draws one candidate per sentence, got candidates={candidates}")
        opts = self.options(steps, cfg, temperature)
        ids = self.phone_ids(sentences, prompt)
        room, p = self.room(prompt), self.model.cfg.patch_size
        for phones in ids:
            steps_iter = iter(TokenSteps(self.model, [phones], prompt, generator=generator,
                                         max_frames=room - len(phones), **opts))
            decoder = StreamingDecoder(self.codec)
            while True:
                with torch.inference_mode():  # not across the yield: the caller's code runs outside it
                    step = next(steps_iter, None)
                    if step is None:
                        chunk = decoder.flush()
                    else:
                        frames = unpatchify(step.tokens[:1], p)[: int(step.frames[0])]  # [n, D] normalised
                        chunk = decoder.push(self.codec.denormalize(frames.transpose(0, 1)[None])[0])
                if chunk.size:
                    yield chunk
                if step is None:
                    break
