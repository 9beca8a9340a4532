"""The package version, in one place (setup.cfg, model-dir metadata and ``latentspeech --version`` read it)."""

__version__ = "0.1.0"
