"""latentspeech: zero-shot text-to-speech with next-token diffusion over σ-VAE latents.

    from latentspeech import TTS
    wav, sr = TTS.from_pretrained().speak("Hello world.", prompt="speaker.wav")
"""

from .version import __version__

__all__ = ["TTS", "__version__"]


def __getattr__(name):
    # Import lazily: `import latentspeech` stays cheap (no torch import) for the CLI's --help.
    if name == "TTS":
        from .api import TTS

        return TTS
    raise AttributeError(f"module 'latentspeech' has no attribute {name!r}")
