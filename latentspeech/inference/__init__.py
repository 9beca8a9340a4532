"""Inference: loading model dirs and running them (never through training code).

* :mod:`.tts` — :class:`TTS`, the one object the API, the CLI and the recipes synthesize with.
* :mod:`.backends` — the backend registry (model ``kind`` → class) and the common backend base.
* :mod:`.latentlm`, :mod:`.valle` — the two built-in backends.
* :mod:`.extract` — latents (or RVQ codes) of a whole data dir, for training.
"""

from .tts import MAX_TEXT_CHARS, TTS

__all__ = ["TTS", "MAX_TEXT_CHARS"]
