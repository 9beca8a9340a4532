"""The local speech server (``latentspeech.server``) through FastAPI's test client, on the bundled model: the
speech endpoint against ``TTS.speak``/``TTS.stream``, the voice store on disk, bad requests, the bounded
queue and ``latentspeech serve``'s wiring."""

from __future__ import annotations

import io
import struct
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from latentspeech.api import TTS  # noqa: E402
from latentspeech.audio.pcm import OPEN_LENGTH, pcm16, wav_header  # noqa: E402
from latentspeech.checkpoint import ASSETS, bundled_path  # noqa: E402
from latentspeech.server import create_app  # noqa: E402

PROMPT = ASSETS / "prompts" / "demo_voice.wav"
TEXT = "The quick brown fox jumps over the lazy dog."

pytestmark = pytest.mark.skipif(not (bundled_path("latentlm-demo") / "model.safetensors").is_file(),
                                reason="the bundled latentlm-demo is not installed")


@pytest.fixture(scope="module")
def tts():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = TTS.from_pretrained()
    before = set(model.voices)
    yield model
    for name in set(model.voices) - before:  # the model is shared by the whole process
        model.remove_voice(name)
    torch.set_num_threads(threads)


def serve(tts, root, **kw) -> TestClient:
    return TestClient(create_app(tts, root, **kw), raise_server_exceptions=False)


def upload(client, data: bytes, name: str | None = None, filename: str = "prompt.wav"):
    return client.post("/v1/voices", files={"file": (filename, data, "audio/wav")},
                       data={"name": name} if name else None)


@pytest.fixture(scope="module")
def voiced(tts, tmp_path_factory):
    """A client of a server with the voice ``anna`` uploaded from the bundled prompt."""
    root = tmp_path_factory.mktemp("voices")
    with serve(tts, root) as client:
        r = upload(client, PROMPT.read_bytes(), "anna", filename="../../etc/passwd.wav")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == "anna"
        yield client


def speech(client, **body):
    return client.post("/v1/audio/speech", json={"input": TEXT, "voice": "anna", **body})


def error_of(r, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type"} and "\n" not in err["message"] and err["message"]
    return err["message"]


def test_health_and_page(voiced):
    h = voiced.get("/health").json()
    assert h["model"] == "latentlm-demo" and h["sample_rate"] == 16000 and h["queue_depth"] == 0
    page = voiced.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="prompt-file"' in page.text and 'id="synthesize"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = voiced.get(asset)
        assert r.status_code == 200 and len(r.text) > 100
        assert "http://" not in r.text and "https://" not in r.text  # nothing from a CDN
    assert "http" not in page.text.replace('"/static/', "")


def test_whole_wav_is_speak(voiced, tts):
    r = speech(voiced, seed=3)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, sr = tts.speak(TEXT, "anna", seed=3, progress=False)
    assert r.content == wav_header(sr, len(wav)) + pcm16(wav)
    assert len(wav) > sr  # more than a second of speech


def test_flac_and_ignored_model_name(voiced, tts):
    r = speech(voiced, seed=3, response_format="flac", model="tts-1")
    assert r.status_code == 200 and r.content[:4] == b"fLaC"
    got, sr = sf.read(io.BytesIO(r.content), dtype="int16")
    wav, _ = tts.speak(TEXT, "anna", seed=3, progress=False)
    assert sr == 16000 and np.array_equal(got, np.frombuffer(pcm16(wav), "<i2"))


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
def test_stream_is_tts_stream(voiced, tts, fmt):
    with voiced.stream("POST", "/v1/audio/speech",
                       json={"input": TEXT, "voice": {"id": "anna"}, "seed": 5, "stream": True,
                             "response_format": fmt, "model": "latentlm-demo"}) as r:
        assert r.status_code == 200 and r.headers["x-sample-rate"] == "16000"
        parts = list(r.iter_bytes())
    body = b"".join(parts)
    expected = pcm16(np.concatenate(list(tts.stream(TEXT, "anna", seed=5))))
    if fmt == "wav":
        assert body[:4] == b"RIFF" and struct.unpack("<I", body[40:44])[0] == OPEN_LENGTH
        assert body[:44] == wav_header(16000)
        body = body[44:]
    assert body == expected


@pytest.mark.parametrize("body, needle", [
    ({"input": ""}, "empty"),
    ({"input": "x " * 3000}, "too long"),
    ({"voice": "bob"}, "unknown voice 'bob'"),
    ({"voice": None}, "voice"),
    ({"speed": 1.5}, "speed 1.5"),
    ({"model": "valle-demo"}, "valle-demo"),
    ({"response_format": "mp3"}, "mp3"),
    ({"response_format": "flac", "stream": True}, "cannot be streamed"),
    ({"input": 3}, "input"),
    ({"stream": "often"}, "stream"),
])
def test_bad_speech_requests(voiced, body, needle):
    assert needle in error_of(speech(voiced, **body), 400)


def test_malformed_bodies_and_routes(voiced):
    post = voiced.post
    assert "malformed JSON" in error_of(post("/v1/audio/speech", content=b"{bad",
                                             headers={"content-type": "application/json"}), 400)
    assert "object" in error_of(post("/v1/audio/speech", json=[1, 2]), 400)
    assert "input" in error_of(post("/v1/audio/speech", json={"voice": "anna"}), 400)
    assert "Content-Type" in error_of(post("/v1/audio/speech", content=b"hello",
                                           headers={"content-type": "text/plain"}), 415)
    assert "too large" in error_of(post("/v1/audio/speech", json={"input": "a" * 70000, "voice": "anna"}), 413)
    assert error_of(voiced.get("/v1/nothing"), 404)
    assert error_of(voiced.get("/v1/audio/speech"), 405)
    assert speech(voiced, seed=0).status_code == 200  # still serving


def test_voice_store_on_disk(tts, tmp_path):
    root = tmp_path / "voices"
    with serve(tts, root) as client:
        assert client.get("/v1/voices").json() == {"object": "list", "data": []}
        anon = upload(client, PROMPT.read_bytes(), filename="../../../outside.wav").json()["id"]
        assert anon.startswith("voice-")
        assert upload(client, PROMPT.read_bytes(), "bea.1").json()["id"] == "bea.1"
        assert sorted(p.name for p in root.iterdir()) == sorted([f"{anon}.wav", "bea.1.wav"])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["voices"]  # nothing written beside it
        ids = [v["id"] for v in client.get("/v1/voices").json()["data"]]
        assert ids == sorted([anon, "bea.1"])
        assert client.delete(f"/v1/voices/{anon}").json()["deleted"] is True
        assert sorted(p.name for p in root.iterdir()) == ["bea.1.wav"]
        assert anon not in tts.voices
        assert "no voice" in error_of(client.delete(f"/v1/voices/{anon}"), 404)
        assert error_of(client.delete("/v1/voices/..%2F..%2Fetc"), 404)
    # a restart registers what is on disk; files that are not voices are skipped
    tts.remove_voice("bea.1")
    (root / "notes.txt").write_text("not audio")
    (root / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    (root / "bad name.wav").write_bytes(PROMPT.read_bytes())
    with serve(tts, root) as client:
        assert [v["id"] for v in client.get("/v1/voices").json()["data"]] == ["bea.1"]
        r = client.post("/v1/audio/speech", json={"input": "Hello.", "voice": "bea.1", "response_format": "pcm"})
        assert r.status_code == 200 and len(r.content) > 1000


def test_bad_uploads(tts, tmp_path):
    sr = 16000
    silent, long_tone = io.BytesIO(), io.BytesIO()
    sf.write(silent, np.zeros(2 * sr, np.float32), sr, format="WAV")
    sf.write(long_tone, 0.3 * np.sin(np.linspace(0, 4000, 3 * sr)).astype(np.float32), sr, format="WAV")
    with serve(tts, tmp_path, max_upload_bytes=120_000, max_upload_seconds=2.5) as client:
        assert "not an audio file" in error_of(upload(client, b"garbage" * 100), 400)
        assert "empty" in error_of(upload(client, b""), 400)
        assert "silent" in error_of(upload(client, silent.getvalue()), 400)
        assert "too long" in error_of(upload(client, long_tone.getvalue()), 400)
        assert "too large" in error_of(upload(client, PROMPT.read_bytes()), 413)
        assert "not allowed" in error_of(upload(client, silent.getvalue(), "../evil"), 400)
        assert "'file'" in error_of(client.post("/v1/voices", data={"name": "x"},
                                                files={"other": ("a.wav", b"x", "audio/wav")}), 400)
        assert "multipart/form-data" in error_of(client.post("/v1/voices", json={"file": "a.wav"}), 415)
        assert list(tmp_path.iterdir()) == []
        assert client.get("/health").json()["voices"] == 0


def test_full_queue_gets_503(voiced):
    worker = voiced.app.state.worker
    release = threading.Event()
    jobs = [worker.submit(release.wait, 30) for _ in range(worker.max_queue + 1)]  # one runs, the rest wait
    try:
        assert voiced.get("/health").json()["queue_depth"] == worker.max_queue
        r = speech(voiced, seed=0)
        assert "busy" in error_of(r, 503)
        assert int(r.headers["retry-after"]) >= 1
        assert "busy" in error_of(upload(voiced, PROMPT.read_bytes(), "late"), 503)
    finally:
        release.set()
    for job in jobs:
        job.result(timeout=30)
    assert speech(voiced, seed=0, response_format="pcm").status_code == 200
    assert voiced.get("/health").json()["queue_depth"] == 0


def test_serve_command(tts, tmp_path, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    from latentspeech.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: seen.update(app=app, host=host, port=port))
    assert main(["serve", "--port", "8123", "--voices-dir", str(tmp_path / "v"), "--max-queue", "2"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    with TestClient(seen["app"]) as client:
        assert client.get("/health").json()["max_queue"] == 2
    assert (tmp_path / "v").is_dir()
    assert main(["serve", "--max-queue", "-1"]) == 1
    assert "error: --max-queue must be >= 0" in capsys.readouterr().err
