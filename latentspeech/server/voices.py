"""The server's voices on disk: one WAV per voice under one folder, registered with the model at start-up.

    store = VoiceStore(tts, "~/.cache/latentspeech/voices")
    store.load()                                  # every <id>.wav in the folder → tts.add_voice(id, ...)
    store.add(data, name="anna")                  # uploaded bytes → checked, registered, saved as anna.wav
    store.remove("anna")

A voice's file name is ``<id>.wav``, and the id is checked against :data:`~latentspeech.inference.tts.VOICE_NAME`
(letters, digits, ``_.-``, starting with a letter or digit): no name from a request, and no uploaded file
name, ever becomes a path, so nothing outside the folder is read or written. An upload is decoded in memory
(anything libsndfile reads), limited in duration, prepared and encoded by the model (a silent or too short
clip is refused there), and only then saved, as the decoded mono samples in 16-bit PCM.

The store does not lock: the server calls :meth:`add` and :meth:`load` on its model worker, the thread
that owns the model.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from ..errors import AudioError, ConfigError, VoiceError
from ..inference.tts import VOICE_NAME

__all__ = ["VoiceStore", "DEFAULT_VOICES_DIR", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_SECONDS", "check_voice_id"]

log = logging.getLogger(__name__)

#: Where ``latentspeech serve`` keeps uploaded voices unless ``--voices-dir`` says otherwise.
DEFAULT_VOICES_DIR = Path("~/.cache/latentspeech/voices")
#: Largest accepted upload (bytes of the file) and longest accepted clip (seconds of audio).
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_SECONDS = 60.0


def check_voice_id(name) -> str:
    """``name`` if it is a valid voice id, else :class:`ConfigError`."""
    if not isinstance(name, str) or not VOICE_NAME.fullmatch(name):
        raise ConfigError(f"voice id {str(name)[:80]!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")
    return name


class VoiceStore:
    """Voices of one model (``tts``, a :class:`~latentspeech.api.TTS`) kept as WAV files in ``root``."""

    def __init__(self, tts, root: str | os.PathLike = DEFAULT_VOICES_DIR, max_bytes: int = MAX_UPLOAD_BYTES,
                 max_seconds: float = MAX_UPLOAD_SECONDS):
        self.tts = tts
        self.root = Path(root).expanduser().resolve()
        self.max_bytes, self.max_seconds = int(max_bytes), float(max_seconds)
        self._ids: set[str] = set()

    @property
    def ids(self) -> list[str]:
        return sorted(self._ids)

    def __contains__(self, voice_id) -> bool:
        return voice_id in self._ids

    def path(self, voice_id: str) -> Path:
        """The file of a (valid) voice id: always directly inside :attr:`root`."""
        path = self.root / f"{check_voice_id(voice_id)}.wav"
        if path.parent != self.root:  # pragma: no cover - VOICE_NAME admits no separator
            raise ConfigError(f"voice id {voice_id!r} is not allowed")
        return path

    def load(self) -> list[str]:
        """Register every ``<id>.wav`` of the folder (created if missing); files that are not valid voices are
        skipped with a warning. Returns the ids registered."""
        self.root.mkdir(parents=True, exist_ok=True)
        for file in sorted(self.root.glob("*.wav")):
            if not file.is_file() or not VOICE_NAME.fullmatch(file.stem):
                log.warning("skipping %s: not a voice file name", file.name)
                continue
            try:
                self.tts.add_voice(file.stem, str(file))
            except (AudioError, ConfigError) as e:
                log.warning("skipping voice %s: %s", file.stem, e)
                continue
            self._ids.add(file.stem)
        return self.ids

    def decode(self, data: bytes) -> tuple[np.ndarray, int]:
        """Uploaded bytes → (float32 mono samples, rate), within the size and duration limits."""
        import soundfile as sf

        if len(data) > self.max_bytes:
            raise AudioError(f"the upload is too large ({len(data)} bytes, max {self.max_bytes})")
        if not data:
            raise AudioError("the upload is empty")
        try:
            info = sf.info(io.BytesIO(data))
        except Exception:
            raise AudioError("the upload is not an audio file this server reads (use wav, flac or ogg)") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise AudioError("the uploaded audio has no samples")
        if info.duration > self.max_seconds:
            raise AudioError(f"the uploaded audio is too long ({info.duration:.1f} s, max {self.max_seconds:g} s)")
        from ..audio import load_audio

        return load_audio(data), int(info.samplerate)

    def new_id(self) -> str:
        return f"voice-{uuid.uuid4().hex[:12]}"

    def add(self, data: bytes, name: str | None = None) -> str:
        """Check, register and save an uploaded prompt as voice ``name`` (a fresh id when None); an existing
        id is replaced. Returns the id."""
        from ..audio import save_audio

        voice_id = check_voice_id(name) if name else self.new_id()
        wav, sr = self.decode(data)
        self.tts.add_voice(voice_id, wav, sample_rate=sr)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            save_audio(self.path(voice_id), wav, sr)
        except Exception:
            if voice_id not in self._ids:
                self.tts.remove_voice(voice_id)
            raise
        self._ids.add(voice_id)
        return voice_id

    def remove(self, voice_id: str) -> None:
        """Forget a voice and delete its file; unknown → :class:`VoiceError`."""
        if voice_id not in self._ids:
            raise VoiceError(f"no voice with id {str(voice_id)[:80]!r}")
        self._ids.discard(voice_id)
        try:
            self.tts.remove_voice(voice_id)
        except VoiceError:
            pass
        self.path(voice_id).unlink(missing_ok=True)
