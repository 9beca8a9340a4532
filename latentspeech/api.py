"""The Python API: load a TTS model once, then speak any text in the voice of a prompt.

    from latentspeech import TTS
    tts = TTS.from_pretrained()                                   # bundled ``latentlm-demo``
    wav, sr = tts.speak("Hello there. How are you?", prompt="speaker.wav", seed=0)
    tts.speak_to_file("out.wav", open("book.txt").read(), prompt="speaker.wav")

What ``speak`` does: checks the text (empty → :class:`TextError`; more than ``MAX_TEXT_CHARS`` →
:class:`TextError`), splits it into sentences (:func:`latentspeech.text.split_sentences`),
phonemizes them in one espeak-ng call, encodes the prompt once (load, resample, trim, loudness,
checks: :func:`latentspeech.audio.prepare_prompt`), generates the sentences in batches of
``batch_size`` (progress bar when there is more than one sentence) and joins them with
``pause`` seconds of silence. ``seed`` fixes every random draw: on CPU the same call gives
bit-identical audio.

Model kinds
    A model directory's ``config.yaml`` names its ``kind``; :data:`BACKENDS` maps a kind to the
    class that runs it (``"module:Class"``, imported on first use). A backend implements
    ``load(path, device)`` (classmethod), ``sample_rate``, ``max_prompt_seconds`` and
    ``synthesize(sentences, prompt_wav, steps=, cfg=, temperature=, generator=, batch_size=,
    progress=) -> list[np.ndarray]``. ``latentlm`` is built in; ``valle`` is the VALL-E baseline's
    ``latentspeech.baseline.valle.VALLEBackend``; others plug in with :func:`register_backend`.

Loaded models are cached per (model dir, device): ``from_pretrained`` twice in a process returns
the same object.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CheckpointError, ConfigError, TextError

__all__ = ["TTS", "LatentLMBackend", "BACKENDS", "register_backend", "MAX_TEXT_CHARS"]

#: Longest text ``speak`` accepts in one call (characters, before normalisation).
MAX_TEXT_CHARS = 20000
DEFAULT_STEPS = 10
DEFAULT_CFG = 2.0
DEFAULT_TEMPERATURE = 1.0
DEFAULT_PAUSE = 0.3

#: kind → "module:Class" of its backend.
BACKENDS: dict[str, str] = {
    "latentlm": "latentspeech.api:LatentLMBackend",
    "valle": "latentspeech.baseline.valle:VALLEBackend",  # the VALL-E baseline
}


def register_backend(kind: str, target: str | type) -> None:
    """Make model dirs of ``kind`` loadable by :meth:`TTS.from_pretrained`."""
    BACKENDS[kind] = target


def _backend_class(kind: str, path: Path):
    target = BACKENDS.get(kind)
    if target is None:
        raise CheckpointError(f"{path} holds a '{kind}' model, which is not a TTS model "
                              f"(known: {', '.join(sorted(BACKENDS))})")
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    return target


class SpeechBackend:
    """What every TTS backend holds: its model, the codec of its model dir, the text front end
    built from the dir's phone vocabulary, the dir's meta and path."""

    def __init__(self, model, codec, frontend, meta: dict, path: Path | None = None):
        self.model, self.codec, self.frontend, self.meta, self.path = model, codec, frontend, meta, path

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def max_prompt_seconds(self) -> float:
        return float(self.model.cfg.max_prompt_seconds)


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

    @classmethod
    def load(cls, path: Path, device=None) -> "LatentLMBackend":
        from .codec import load_codec
        from .lm.recognizer import load_attached_recognizer
        from .text import PhoneVocab, TextFrontend
        from .train.latentlm import load_latentlm

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

    def synthesize(self, sentences: Sequence[str], prompt_wav: np.ndarray, *, steps: int | None = None,
                   cfg: float | None = None, temperature: float | None = None, generator=None, batch_size: int = 8,
                   progress: bool | None = None, candidates: int | None = None) -> list[np.ndarray]:
        import torch
        from tqdm.auto import tqdm

        from .lm.recognizer import RECOGNIZER, best_candidates

        n_cand = self.default_candidates if candidates is None else int(candidates)
        if n_cand < 1:
            raise ConfigError(f"candidates must be >= 1, got {n_cand}")
        if n_cand > 1 and self.recognizer is None:
            raise ConfigError(f"{self.path}: this model has no {RECOGNIZER}/ to choose among candidates: use candidates=1")
        steps = steps or self.default_steps
        cfg = self.default_cfg if cfg is None else float(cfg)
        temperature = self.default_temperature if temperature is None else float(temperature)
        ids = self.frontend.encode_batch(list(sentences))
        prompt = self.encode_prompt(prompt_wav)
        prompt_tokens = -(-prompt.shape[0] // self.model.cfg.patch_size)  # frames grouped into tokens
        room = self.model.cfg.transformer.max_seq_len - prompt_tokens - 2
        for s, p in zip(sentences, ids):
            if len(p) >= room:
                raise TextError(f"sentence too long for this model ({len(p)} phones, max {room}): {s[:40]!r}...")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
        out: list[np.ndarray | None] = [None] * len(ids)
        # progress=None: a bar for several sentences on a terminal (tqdm's disable=None: off when not a TTY)
        bar = tqdm(total=len(ids), unit="sent", disable=(True if len(ids) <= 1 else None) if progress is None
                   else not progress, desc="synthesizing")
        per_batch = max(1, batch_size // n_cand)  # sentences per batch: each takes n_cand rows
        with torch.inference_mode():
            for k in range(0, len(order), per_batch):
                rows = order[k : k + per_batch]
                batch = [ids[i] for i in rows]
                cap = room - max(len(b) for b in batch)
                gen = self.model.generate([b for b in batch for _ in range(n_cand)], prompt, steps=steps, cfg_scale=cfg,
                                          temperature=temperature, generator=generator, max_frames=cap)
                chosen = best_candidates(self.recognizer, gen.latents, batch, n_cand)  # the clearest per sentence
                for i, z in zip(rows, chosen):
                    if z.shape[0] == 0:
                        out[i] = np.zeros(0, np.float32)
                        continue
                    lat = self.codec.denormalize(z.transpose(0, 1)[None])
                    out[i] = self.codec.decode(lat)[0].float().cpu().numpy()
                bar.update(len(rows))
        bar.close()
        return out  # type: ignore[return-value]


class TTS:
    """A loaded TTS model (see the module docstring). Build it with :meth:`from_pretrained`."""

    _loaded: dict[tuple[str, str], "TTS"] = {}
    _lock = threading.Lock()

    def __init__(self, backend, path: Path | None = None, kind: str = "latentlm"):
        self.backend, self.path, self.kind = backend, path, kind

    def __repr__(self) -> str:
        return f"TTS(kind={self.kind!r}, path={str(self.path)!r}, sample_rate={self.sample_rate})"

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike | None = None, device=None) -> "TTS":
        """Load a model dir or bundled name (default ``latentlm-demo``); cached per process."""
        from .checkpoint import CONFIG, resolve_model
        from .config import load_yaml

        path = resolve_model(name_or_dir).resolve()
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"incomplete model directory {path}: {CONFIG} is missing")
        dev = str(device or "cpu")
        key = (str(path), dev)
        with cls._lock:
            if key not in cls._loaded:
                kind = load_yaml(path / CONFIG).get("kind")
                backend = _backend_class(kind, path).load(path, device=dev)
                cls._loaded[key] = cls(backend, path, kind)
            return cls._loaded[key]

    @property
    def sample_rate(self) -> int:
        return self.backend.sample_rate

    def split(self, text: str) -> list[str]:
        """The sentences ``speak`` would generate (after the text checks)."""
        from .text import split_sentences

        if not isinstance(text, str) or not text.strip():
            raise TextError("text is empty: nothing to synthesize")
        if len(text) > MAX_TEXT_CHARS:
            raise TextError(f"text is too long ({len(text)} characters, max {MAX_TEXT_CHARS} per call): split it up")
        sentences = [s for s in split_sentences(text) if s.strip()]
        if not sentences:
            raise TextError("text is empty: nothing to synthesize")
        return sentences

    def speak(self, text: str, prompt, sample_rate: int | None = None, steps: int | None = None,
              cfg: float | None = None, seed: int | None = None, temperature: float | None = None, batch_size: int = 8,
              pause: float = DEFAULT_PAUSE, progress: bool | None = None,
              candidates: int | None = None) -> tuple[np.ndarray, int]:
        """Synthesize ``text`` in the voice of ``prompt`` → (float32 mono waveform, sample rate).

        ``prompt``: an audio file path, or an array of samples at ``sample_rate`` (default: the
        model's rate, :attr:`sample_rate`); other rates are resampled.
        ``steps``: diffusion sampler steps per frame; ``cfg``: guidance scale (1 = off); both default
        to the model's recommendation, as does ``temperature`` (the sampling noise scale).
        ``seed``: reproducible output.
        ``candidates``: draw each sentence N times in one batch and keep the one the model's phone
        recognizer reads best (LatentLM models with a ``recognizer/``; default: the model's setting).
        """
        import torch

        from .audio import prepare_prompt

        sentences = self.split(text)
        wav = prepare_prompt(prompt, self.sample_rate, source_rate=sample_rate,
                             max_seconds=self.backend.max_prompt_seconds)
        gen = torch.Generator(device=self.backend.device)
        if seed is not None:
            gen.manual_seed(int(seed))
        else:
            gen.seed()
        extra = {} if candidates is None else {"candidates": candidates}
        parts = self.backend.synthesize(sentences, wav, steps=steps, cfg=cfg, temperature=temperature,
                                        generator=gen, batch_size=batch_size, progress=progress, **extra)
        gap = np.zeros(int(round(pause * self.sample_rate)), np.float32)
        pieces: list[np.ndarray] = []
        for i, p in enumerate(parts):
            if i:
                pieces.append(gap)
            pieces.append(np.asarray(p, np.float32).reshape(-1))
        return np.concatenate(pieces).astype(np.float32, copy=False), self.sample_rate

    def speak_to_file(self, path: str | os.PathLike, text: str, prompt, **kwargs) -> Path:
        """:meth:`speak` and write the result atomically to ``path`` (format from the suffix)."""
        from .audio import save_audio

        wav, sr = self.speak(text, prompt, **kwargs)
        return save_audio(path, wav, sr)
