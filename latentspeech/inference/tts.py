"""TTS: load a model once, then speak any text in the voice of a prompt.

    from latentspeech import TTS
    tts = TTS.from_pretrained()                                   # bundled ``latentlm-demo``
    wav, sr = tts.speak("Hello there. How are you?", prompt="speaker.wav", seed=0)
    tts.speak_to_file("out.wav", open("book.txt").read(), prompt="speaker.wav")
    tts.add_voice("anna", "speaker.wav")                          # the prompt encoded once
    for chunk in tts.stream("Hello there. How are you?", prompt="anna"):
        play(chunk)                                               # float32 at tts.sample_rate

What ``speak`` does: checks the text (empty → :class:`TextError`; more than ``MAX_TEXT_CHARS`` →
:class:`TextError`), splits it into sentences (:func:`latentspeech.text.split_sentences`),
phonemizes them in one espeak-ng call, encodes the prompt once (load, resample, trim, loudness,
checks: :func:`latentspeech.audio.prepare_prompt`), generates the sentences in batches of
``batch_size`` (progress bar when there is more than one sentence) and joins them with
``pause`` seconds of silence. ``seed`` fixes every random draw: on CPU the same call gives
bit-identical audio.

``stream`` yields the same audio in chunks while it is generated: the first after a few latent frames
(LatentLM; a VALL-E model yields each sentence whole), the sentences in the text's order with the
pauses between them. It draws what ``speak(..., batch_size=1, candidates=1)`` draws, so for the same
seed the joined chunks equal that call's output up to float rounding (the streaming codec decoder,
:mod:`latentspeech.models.codec.streaming`); ``speak``'s default batches sentences and, with a
recognizer, keeps the best of several candidates, which a stream cannot wait for.

Voices: ``add_voice(name, prompt)`` prepares and encodes a prompt once; ``speak``/``stream`` then take
the name as their ``prompt`` (a registered name wins over a file of that name).

Model kinds: a model directory's ``config.yaml`` names its ``kind``, and :mod:`.backends` maps it to
the backend that runs it (``latentlm``, ``valle``, or one added with ``register_backend``).

Loaded models are cached per (model dir, device): ``from_pretrained`` twice in a process returns
the same object.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import CheckpointError, ConfigError, TextError, VoiceError
from .backends import backend_class

__all__ = ["TTS", "MAX_TEXT_CHARS", "DEFAULT_PAUSE", "VOICE_NAME"]

#: Longest text ``speak`` accepts in one call (characters, before normalisation).
MAX_TEXT_CHARS = 20000
DEFAULT_PAUSE = 0.3
#: What a registered voice may be called.
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TTS:
    """A loaded TTS model (see the module docstring). Build it with :meth:`from_pretrained`."""

    _loaded: dict[tuple[str, str], "TTS"] = {}
    _lock = threading.Lock()

    def __init__(self, backend, path: Path | None = None, kind: str = "latentlm"):
        self.backend, self.path, self.kind = backend, path, kind
        self._voices: dict[str, object] = {}  # name → the backend's encoded prompt

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

    @property
    def voices(self) -> list[str]:
        """The names :meth:`add_voice` registered."""
        return sorted(self._voices)

    def add_voice(self, name: str, prompt, sample_rate: int | None = None) -> str:
        """Prepare and encode ``prompt`` (a file or samples at ``sample_rate``) once, as the voice ``name``
        (letters, digits, ``_.-``; at most 64); adding a name again replaces it. Returns ``name``."""
        if not isinstance(name, str) or not VOICE_NAME.fullmatch(name):
            raise ConfigError(f"voice name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                              "starting with a letter or digit")
        encoded = self.encode_prompt(prompt, sample_rate)
        self._voices[name] = encoded
        return name

    def remove_voice(self, name: str) -> None:
        if self._voices.pop(name, None) is None:
            raise VoiceError(f"no voice named {name!r} (registered: {', '.join(self.voices) or 'none'})")

    def encode_prompt(self, prompt, sample_rate: int | None = None):
        """A registered voice's encoding, or ``prompt`` (file or samples) prepared
        (:func:`latentspeech.audio.prepare_prompt`) and encoded by the model's codec."""
        from ..audio import prepare_prompt

        if isinstance(prompt, str) and prompt in self._voices:
            return self._voices[prompt]
        wav = prepare_prompt(prompt, self.sample_rate, source_rate=sample_rate,
                             max_seconds=self.backend.max_prompt_seconds)
        return self.backend.encode_prompt(wav)

    def generator(self, seed: int | None):
        """The torch generator of one call: seeded, or from fresh entropy."""
        import torch

        gen = torch.Generator(device=self.backend.device)
        if seed is not None:
            gen.manual_seed(int(seed))
        else:
            gen.seed()
        return gen

    def speak(self, text: str, prompt, sample_rate: int | None = None, steps: int | None = None,
              cfg: float | None = None, seed: int | None = None, temperature: float | None = None, batch_size: int = 8,
              pause: float = DEFAULT_PAUSE, progress: bool | None = None,
              candidates: int | None = None) -> tuple[np.ndarray, int]:
        """Synthesize ``text`` in the voice of ``prompt`` → (float32 mono waveform, sample rate).

        ``prompt``: a registered voice's name (:meth:`add_voice`), an audio file path, or an array of
        samples at ``sample_rate`` (default: the model's rate, :attr:`sample_rate`); other rates are resampled.
        ``steps``: diffusion sampler steps per frame; ``cfg``: guidance scale (1 = off); both default
        to the model's recommendation, as does ``temperature`` (the sampling noise scale).
        ``seed``: reproducible output.
        ``candidates``: draw each sentence N times in one batch and keep the one the model's phone
        recognizer reads best (LatentLM models with a ``recognizer/``; default: the model's setting).
        """
        sentences = self.split(text)
        encoded = self.encode_prompt(prompt, sample_rate)
        extra = {} if candidates is None else {"candidates": candidates}
        parts = self.backend.synthesize(sentences, encoded, steps=steps, cfg=cfg, temperature=temperature,
                                        generator=self.generator(seed), batch_size=batch_size, progress=progress,
                                        **extra)
        gap = np.zeros(int(round(pause * self.sample_rate)), np.float32)
        pieces: list[np.ndarray] = []
        for i, p in enumerate(parts):
            if i:
                pieces.append(gap)
            pieces.append(np.asarray(p, np.float32).reshape(-1))
        return np.concatenate(pieces).astype(np.float32, copy=False), self.sample_rate

    def stream(self, text: str, prompt, sample_rate: int | None = None, steps: int | None = None,
               cfg: float | None = None, seed: int | None = None, temperature: float | None = None,
               pause: float = DEFAULT_PAUSE) -> Iterator[np.ndarray]:
        """:meth:`speak` as an iterator of float32 chunks at :attr:`sample_rate`, each as soon as it exists
        (see the module docstring). The text, the prompt and every sentence's length are checked before
        this returns, so bad input raises here, not halfway through the audio."""
        sentences = self.split(text)
        encoded = self.encode_prompt(prompt, sample_rate)
        self.backend.check(sentences, encoded)
        return self._stream(sentences, encoded, pause, dict(steps=steps, cfg=cfg, temperature=temperature,
                                                            generator=self.generator(seed)))

    def _stream(self, sentences: list[str], encoded, pause: float, options: dict) -> Iterator[np.ndarray]:
        gap = np.zeros(int(round(pause * self.sample_rate)), np.float32)
        for i, sentence in enumerate(sentences):
            if i and gap.size:
                yield gap
            yield from self.backend.stream([sentence], encoded, **options)

    def speak_to_file(self, path: str | os.PathLike, text: str, prompt, **kwargs) -> Path:
        """:meth:`speak` and write the result atomically to ``path`` (format from the suffix)."""
        from ..audio import save_audio

        wav, sr = self.speak(text, prompt, **kwargs)
        return save_audio(path, wav, sr)
