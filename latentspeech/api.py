"""The Python API: load a TTS model once, then speak any text in the voice of a prompt.

    from latentspeech import TTS
    tts = TTS.from_pretrained()                                   # bundled ``latentlm-demo``
    wav, sr = tts.speak("Hello there. How are you?", prompt="speaker.wav", seed=0)
    tts.speak_to_file("out.wav", open("book.txt").read(), prompt="speaker.wav")

The implementation lives in :mod:`latentspeech.inference` (:class:`~latentspeech.inference.tts.TTS`,
the backends and their registry); this module is the stable import path for users.
"""

from .inference.backends import BACKENDS, SpeechBackend, register_backend
from .inference.latentlm import LatentLMBackend
from .inference.tts import MAX_TEXT_CHARS, TTS

__all__ = ["TTS", "LatentLMBackend", "SpeechBackend", "BACKENDS", "register_backend", "MAX_TEXT_CHARS"]
