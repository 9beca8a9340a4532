"""The local speech server (``latentspeech serve``): FastAPI app, voice store and the web page in ``static/``.

Needs the ``serve`` extra (``pip install 'latentspeech[serve]'``: fastapi, uvicorn, python-multipart).
"""

from .app import MAX_INPUT_CHARS, create_app, warm_up
from .voices import DEFAULT_VOICES_DIR, VoiceStore

__all__ = ["create_app", "warm_up", "VoiceStore", "DEFAULT_VOICES_DIR", "MAX_INPUT_CHARS"]
