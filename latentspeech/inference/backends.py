"""TTS backends: what runs a model dir of one kind, and the registry that maps kinds to backends.

A model directory's ``config.yaml`` names its ``kind``; :data:`BACKENDS` maps a kind to the class that
runs it (``"module:Class"``, imported on first use). A backend implements ``load(path, device)``
(classmethod), ``sample_rate``, ``max_prompt_seconds``, ``device``, ``encode_prompt(wav)`` (prepared
prompt audio → whatever its model reads: latents, codes), ``check(sentences, prompt)`` (the text checks
that depend on the model, before anything is generated) and ``synthesize(sentences, prompt, steps=,
cfg=, temperature=, generator=, batch_size=, progress=) -> list[np.ndarray]`` with an encoded prompt.
``stream(sentences, prompt, ...)`` yields audio chunks; the base class yields each sentence whole, the
LatentLM backend a few frames at a time.
``latentlm`` (:mod:`.latentlm`) and ``valle`` (:mod:`.valle`, the VALL-E baseline) are built in;
others plug in with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import CheckpointError

__all__ = ["SpeechBackend", "BACKENDS", "register_backend", "backend_class", "DEFAULT_STEPS", "DEFAULT_CFG",
           "DEFAULT_TEMPERATURE"]

DEFAULT_STEPS = 10
DEFAULT_CFG = 2.0
DEFAULT_TEMPERATURE = 1.0

#: kind → "module:Class" of its backend.
BACKENDS: dict[str, str] = {
    "latentlm": "latentspeech.inference.latentlm:LatentLMBackend",
    "valle": "latentspeech.inference.valle:VALLEBackend",  # the VALL-E baseline
}


def register_backend(kind: str, target: str | type) -> None:
    """Make model dirs of ``kind`` loadable by :meth:`TTS.from_pretrained`."""
    BACKENDS[kind] = target


def backend_class(kind: str, path: Path):
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

    def check(self, sentences: Sequence[str], prompt) -> None:
        """Raise :class:`~latentspeech.errors.TextError` for a sentence this model cannot speak."""

    def stream(self, sentences: Sequence[str], prompt, *, generator=None, **options) -> Iterator:
        """Audio chunks of the sentences, in order, without pauses: here each sentence whole, as
        :meth:`synthesize` makes it one at a time (a backend that can do better overrides this)."""
        for s in sentences:
            yield from self.synthesize([s], prompt, generator=generator, batch_size=1, progress=False, **options)
