"""TTS: load a model once, then speak any text in the voice of a prompt.

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

Model kinds: a model directory's ``config.yaml`` names its ``kind``, and :mod:`.backends` maps it to
the backend that runs it (``latentlm``, ``valle``, or one added with ``register_backend``).

Loaded models are cached per (model dir, device): ``from_pretrained`` twice in a process returns
the same object.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, TextError
from .backends import backend_class

__all__ = ["TTS", "MAX_TEXT_CHARS", "DEFAULT_PAUSE"]

#: Longest text ``speak`` accepts in one call (characters, before normalisation).
MAX_TEXT_CHARS = 20000
DEFAULT_PAUSE = 0.3


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
        from ..checkpoint import CONFIG, resolve_model
        from ..config import load_yaml

        path = resolve_model(name_or_dir).resolve()
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"incomplete model directory {path}: {CONFIG} is missing")
        dev = str(device or "cpu")
        key = (str(path), dev)
        with cls._lock:
            if key not in cls._loaded:
                kind = load_yaml(path / CONFIG).get("kind")
                backend = backend_class(kind, path).load(path, device=dev)
                cls._loaded[key] = cls(backend, path, kind)
            return cls._loaded[key]

    @property
    def sample_rate(self) -> int:
        return self.backend.sample_rate

    def split(self, text: str) -> list[str]:
        """The sentences ``speak`` would generate (after the text checks)."""
        from ..text import split_sentences

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

        from ..audio import prepare_prompt

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
        from ..audio import save_audio

        wav, sr = self.speak(text, prompt, **kwargs)
        return save_audio(path, wav, sr)
