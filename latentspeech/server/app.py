"""The local speech server: an OpenAI-compatible speech endpoint, voice uploads and a web page (FastAPI).

    from latentspeech.api import TTS
    from latentspeech.server import create_app
    app = create_app(TTS.from_pretrained(), voices_dir="voices", max_queue=4)
    # uvicorn.run(app, host="127.0.0.1", port=8000)   (what `latentspeech serve` does)

Endpoints:
- ``POST /v1/audio/speech``: JSON ``{"model", "input", "voice", "response_format": "wav"|"pcm"|"flac", "speed",
  "stream"}`` (plus ``"seed"``, an extension: reproducible audio). ``stream: true`` sends the audio while it
  is generated (:meth:`TTS.stream`): ``wav`` as a header of open length then 16-bit PCM, ``pcm`` as raw
  s16le mono at the model's rate (header ``X-Sample-Rate``); ``flac`` only whole. A whole response is
  :meth:`TTS.speak`'s output. ``model`` is ignored unless it names another bundled model (400); ``speed``
  must be 1.0 (the model has no rate control, and stretching the waveform would change the voice).
- ``POST /v1/voices`` (multipart: ``file``, optional ``name``) → ``{"id"}``; ``GET /v1/voices``;
  ``DELETE /v1/voices/{id}``: the voices of :class:`~latentspeech.server.voices.VoiceStore`.
- ``GET /health``: model, sample rate, queue depth. ``GET /``: the page (``static/``).

One worker thread owns the model: every model call (generation, voice encoding, voice removal) runs
there, one at a time, in arrival order. A request waits in its queue; when ``max_queue`` requests are
already waiting behind the running one, the next gets 503 with ``Retry-After`` (seconds, from the mean
job time). A stream whose client goes away stops at its next chunk.

Errors are JSON ``{"error": {"message": "<one line>", "type": "..."}}`` with a 4xx status for bad
requests (400 bad values, 404 unknown id or route, 413 too large, 415 wrong content type), 503 when busy.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import threading
import time
from contextlib import asynccontextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException

from ..audio.pcm import pcm16, wav_header
from ..checkpoint import ASSETS, BUNDLED, bundled_path
from ..errors import AudioError, CheckpointError, ConfigError, LatentSpeechError, TextError, VoiceError
from .voices import DEFAULT_VOICES_DIR, MAX_UPLOAD_BYTES, MAX_UPLOAD_SECONDS, VoiceStore

__all__ = ["create_app", "Worker", "Busy", "ApiError", "MAX_INPUT_CHARS", "FORMATS", "STATIC_DIR", "warm_up"]

log = logging.getLogger(__name__)

#: Longest ``input`` of one speech request (characters; OpenAI's limit too).
MAX_INPUT_CHARS = 4096
#: Largest JSON body of a speech request (bytes).
MAX_JSON_BYTES = 64 * 1024
#: ``response_format`` → media type.
FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}
STATIC_DIR = Path(__file__).resolve().parent / "static"


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a one-line ``message`` and an error ``type``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.headers = status, message, type, headers or {}


class Busy(ApiError):
    def __init__(self, waiting: int, retry_after: int):
        super().__init__(503, f"the server is busy ({waiting} requests waiting): retry in {retry_after} s",
                         "server_busy", {"Retry-After": str(retry_after)})


class Worker:
    """The model's one thread, with a bounded queue (see the module docstring)."""

    def __init__(self, max_queue: int = 4):
        if max_queue < 0:
            raise ConfigError(f"max_queue must be >= 0, got {max_queue}")
        self.max_queue = int(max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentspeech-model")
        self._lock = threading.Lock()
        self._pending = 0  # admitted jobs that have not finished: the running one and those waiting
        self._mean_s = 1.0  # running mean of a job's time, for Retry-After

    @property
    def waiting(self) -> int:
        with self._lock:
            return max(0, self._pending - 1)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._pending > 0

    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)`` on the model thread, or raise :class:`Busy` when the queue is full."""
        with self._lock:
            if self._pending > self.max_queue:
                waiting = self._pending - 1
                raise Busy(waiting, max(1, math.ceil(self._mean_s * (waiting + 1))))
            self._pending += 1
        try:
            return self._executor.submit(self._timed, fn, *args)
        except RuntimeError:  # shut down
            self._finish(0.0)
            raise ApiError(503, "the server is shutting down", "server_busy", {"Retry-After": "1"}) from None

    async def call(self, fn: Callable, *args):
        """``fn(*args)`` on the model thread, awaited."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _timed(self, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._finish(time.perf_counter() - t0)

    def _finish(self, seconds: float) -> None:
        with self._lock:
            self._pending -= 1
            if seconds > 0:
                self._mean_s = 0.8 * self._mean_s + 0.2 * seconds

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_body(message: str, type: str) -> dict:
    return {"error": {"message": one_line(message), "type": type}}


#: User errors of the library → HTTP status and error type.
STATUS = [(VoiceError, 404, "not_found_error"), (TextError, 400, "invalid_request_error"),
          (AudioError, 400, "invalid_request_error"), (ConfigError, 400, "invalid_request_error"),
          (CheckpointError, 400, "invalid_request_error"), (LatentSpeechError, 400, "invalid_request_error")]


async def read_body(request, limit: int) -> bytes:
    """The request body, or 413 as soon as it passes ``limit`` bytes (declared or received)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is too large ({declared} bytes, max {limit})", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is too large (more than {limit} bytes)", "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """A multipart/form-data body (already read, so within its limit) → {field name: value bytes}, in memory."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart body without a boundary")
    fields: dict[str, bytes] = {}
    state = {"header": b"", "value": b"", "headers": {}, "data": []}

    def on_part_begin():
        state["headers"], state["data"] = {}, []

    def on_header_field(data, start, end):
        state["header"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["header"].lower()] = state["value"]
        state["header"], state["value"] = b"", b""

    def on_part_data(data, start, end):
        state["data"].append(data[start:end])

    def on_part_end():
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name")
        if name is not None:
            fields[name.decode("utf-8", "replace")] = b"".join(state["data"])

    parser = MultipartParser(boundary, {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                                        "on_header_value": on_header_value, "on_header_end": on_header_end,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:
        raise ApiError(400, f"malformed multipart body: {e}") from None
    return fields


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech`` (OpenAI's fields, plus ``seed``; other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    input: str
    voice: str | dict
    response_format: str = "wav"
    speed: float = 1.0
    stream: bool = False
    seed: int | None = None


def model_name(tts) -> str:
    path = Path(tts.path).resolve() if tts.path else None
    for name in BUNDLED:
        if path is not None and bundled_path(name).resolve() == path:
            return name
    return path.name if path is not None else str(tts.kind)


def warm_up(tts, prompt=None) -> None:
    """One short generation, so that the first request does not pay for torch's first-call set-up."""
    prompt = prompt if prompt is not None else next(iter(sorted((ASSETS / "prompts").glob("*.wav"))), None)
    if prompt is None:
        sr = tts.sample_rate
        t = np.arange(2 * sr) / sr
        prompt = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    for _ in tts.stream("Hello.", prompt, seed=0):
        pass


def create_app(tts, voices_dir=DEFAULT_VOICES_DIR, max_queue: int = 4, max_input_chars: int = MAX_INPUT_CHARS,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_upload_seconds: float = MAX_UPLOAD_SECONDS):
    """The FastAPI app serving ``tts`` (a loaded :class:`~latentspeech.api.TTS`), its voices kept in ``voices_dir``
    (registered now); ``max_queue`` requests may wait behind the running one."""
    store = VoiceStore(tts, voices_dir, max_bytes=max_upload_bytes, max_seconds=max_upload_seconds)
    store.load()
    worker = Worker(max_queue)
    name = model_name(tts)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.shutdown()

    app = FastAPI(title="latentspeech", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.tts, app.state.store, app.state.worker = tts, store, worker

    def error(status: int, message: str, type: str, headers: dict | None = None):
        return JSONResponse(error_body(message, type), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error(e.status, e.message, e.type, e.headers)

    @app.exception_handler(LatentSpeechError)
    async def user_error(request, e: LatentSpeechError):
        status, type = next((s, t) for cls, s, t in STATUS if isinstance(e, cls))
        return error(status, str(e), type)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        return error(400, describe(e.errors()), "invalid_request_error")

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        type = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return error(e.status_code, str(e.detail), type, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(e).__name__})", "server_error")

    def describe(errors) -> str:
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return f"field '{loc}': {first.get('msg')}" if loc else str(first.get("msg"))

    def check_content_type(request, expected: str) -> None:
        got = request.headers.get("content-type", "")
        if got.split(";")[0].strip().lower() != expected:
            raise ApiError(415, f"expected Content-Type {expected}, got {got or 'none'}", "unsupported_media_type")

    def speech_request(raw: bytes) -> SpeechRequest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"malformed JSON body: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the JSON body must be an object")
        try:
            req = SpeechRequest.model_validate(data)
        except ValidationError as e:
            raise ApiError(400, describe(e.errors())) from None
        if isinstance(req.voice, dict):
            req.voice = req.voice.get("id")
        if not isinstance(req.voice, str) or not req.voice:
            raise ApiError(400, "field 'voice': give the id of a registered voice (POST /v1/voices)")
        if req.voice not in store:
            raise ApiError(400, f"unknown voice {req.voice[:80]!r} (registered: {', '.join(store.ids) or 'none'}; "
                                "upload one with POST /v1/voices)")
        if req.response_format not in FORMATS:
            raise ApiError(400, f"response_format {req.response_format[:20]!r} is not supported: use "
                                f"{', '.join(FORMATS)}")
        if req.stream and req.response_format == "flac":
            raise ApiError(400, "response_format flac cannot be streamed: use wav or pcm, or stream: false")
        if not math.isclose(req.speed, 1.0):
            raise ApiError(400, f"speed {req.speed:g} is not supported: this model speaks at its own rate (use 1.0)")
        if req.model and req.model in BUNDLED and req.model != name:
            raise ApiError(400, f"this server runs {name}, not {req.model}: start one with --model {req.model}")
        if len(req.input) > max_input_chars:
            raise TextError(f"input is too long ({len(req.input)} characters, max {max_input_chars}): split it up")
        tts.split(req.input)  # empty or unspeakable text: 400 before queueing
        return req

    def registered(voice: str) -> str:
        # on the model thread, so that a voice removed while this request waited is not read as a file name
        if voice not in store:
            raise ApiError(400, f"voice {voice!r} was removed while the request waited")
        return voice

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name, "kind": tts.kind, "sample_rate": tts.sample_rate,
                "queue_depth": worker.waiting, "busy": worker.busy, "max_queue": worker.max_queue,
                "voices": len(store.ids)}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        check_content_type(request, "application/json")
        req = speech_request(await read_body(request, MAX_JSON_BYTES))
        sr = tts.sample_rate
        if not req.stream:
            wav, sr = await worker.call(
                lambda: tts.speak(req.input, registered(req.voice), seed=req.seed, progress=False))
            return Response(encode(wav, sr, req.response_format), media_type=FORMATS[req.response_format],
                            headers={"X-Sample-Rate": str(sr)})
        return await stream_response(req, sr)

    def encode(wav: np.ndarray, sr: int, fmt: str) -> bytes:
        if fmt == "pcm":
            return pcm16(wav)
        if fmt == "wav":
            return wav_header(sr, len(wav)) + pcm16(wav)
        import soundfile as sf

        buf = io.BytesIO()  # the samples of the other formats, losslessly
        sf.write(buf, np.frombuffer(pcm16(wav), "<i2"), sr, format="FLAC", subtype="PCM_16")
        return buf.getvalue()

    async def stream_response(req: SpeechRequest, sr: int):
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the event loop has closed
                stop.set()

        def produce() -> None:
            if stop.is_set():
                return put(("end", None))
            try:
                chunks = tts.stream(req.input, registered(req.voice), seed=req.seed)
            except Exception as e:
                return put(("error", e))
            put(("ok", None))
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    put(("chunk", pcm16(chunk)))
                put(("end", None))
            except Exception as e:
                log.exception("stream failed after its first chunk")
                put(("error", e))
            finally:
                chunks.close()

        worker.submit(produce)
        try:
            kind, value = await items.get()
        except asyncio.CancelledError:
            stop.set()
            raise
        if kind == "error":
            raise value
        if kind == "end":
            return Response(b"", status_code=204)

        async def body():
            try:
                if req.response_format == "wav":
                    yield wav_header(sr)
                while True:
                    kind, value = await items.get()
                    if kind == "chunk":
                        yield value
                    elif kind == "end":
                        return
                    else:
                        raise value
            finally:
                stop.set()

        return StreamingResponse(body(), media_type=FORMATS[req.response_format],
                                 headers={"X-Sample-Rate": str(sr), "Cache-Control": "no-store"})

    @app.get("/v1/voices")
    async def list_voices():
        return {"object": "list", "data": [{"id": v, "object": "voice"} for v in store.ids]}

    @app.post("/v1/voices")
    async def upload_voice(request: Request):
        check_content_type(request, "multipart/form-data")
        body = await read_body(request, store.max_bytes + 64 * 1024)
        fields = parse_multipart(request.headers["content-type"], body)
        if "file" not in fields:
            raise ApiError(400, "no 'file' field in the upload (multipart/form-data with the prompt audio as 'file')")
        if len(fields["file"]) > store.max_bytes:
            raise ApiError(413, f"the upload is too large ({len(fields['file'])} bytes, max {store.max_bytes})",
                           "request_too_large")
        voice_name = fields.get("name", b"").decode("utf-8", "replace").strip() or None
        voice_id = await worker.call(store.add, fields["file"], voice_name)
        return {"id": voice_id, "object": "voice"}

    @app.delete("/v1/voices/{voice_id}")
    async def delete_voice(voice_id: str):
        if voice_id not in store:
            raise VoiceError(f"no voice with id {voice_id[:80]!r}")
        await worker.call(store.remove, voice_id)
        return {"id": voice_id, "object": "voice", "deleted": True}

    @app.get("/")
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
