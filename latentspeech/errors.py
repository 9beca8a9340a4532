"""Exceptions that carry a one-line, user-facing message.

The CLI prints ``error: <message>`` for any :class:`LatentSpeechError` and exits non-zero,
without a traceback (unless ``--debug``). Library users can catch the specific subclasses.
"""


class LatentSpeechError(Exception):
    """Base class for errors whose message is meant for the user."""


class AudioError(LatentSpeechError, ValueError):
    """Audio that cannot be read or used (unreadable, empty, silent, too short...)."""


class TextError(LatentSpeechError, ValueError):
    """Text that cannot be synthesized (empty, too long...)."""


class ConfigError(LatentSpeechError, ValueError):
    """A configuration file or value that is missing, unknown or of the wrong type."""


class CheckpointError(LatentSpeechError):
    """A model directory or checkpoint that is missing, incomplete or does not match its config."""


class DataDirError(LatentSpeechError):
    """A Kaldi data directory that is missing or malformed."""


class VoiceError(LatentSpeechError, KeyError):
    """A registered voice name that does not exist (``TTS.remove_voice``, a server's ``voice``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
