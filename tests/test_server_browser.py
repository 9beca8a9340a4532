"""The server over real HTTP: a uvicorn server on a free port with the bundled model, and its web page in a
real browser, headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright). The page uploads the
bundled prompt through its file input, synthesizes typed text over the streaming endpoint and must end with
a playable wav in its <audio> element. A client that hangs up stops its stream's generation."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from latentspeech.checkpoint import ASSETS, bundled_path

CHROMIUM = Path("/usr/bin/chromium")
PROMPT = ASSETS / "prompts" / "demo_voice.wav"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not (bundled_path("latentlm-demo") / "model.safetensors").is_file(),
                                reason="the bundled latentlm-demo is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    from latentspeech.api import TTS
    from latentspeech.server import create_app

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tts = TTS.from_pretrained()
    before = set(tts.voices)
    app = create_app(tts, tmp_path_factory.mktemp("voices"))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port, app
    srv.should_exit = True
    thread.join(timeout=30)
    for name in set(tts.voices) - before:
        tts.remove_voice(name)
    torch.set_num_threads(threads)


def test_hanging_up_stops_the_stream(server, monkeypatch):
    _, port, app = server
    tts = app.state.tts
    app.state.store.add(PROMPT.read_bytes(), "hangup")
    pulled = []
    stream = tts.stream

    def counted(*args, **kwargs):
        for chunk in stream(*args, **kwargs):
            pulled.append(len(chunk))
            yield chunk

    monkeypatch.setattr(tts, "stream", counted)
    sentences = 40
    text = " ".join(f"This is sentence number {i} of a long text that takes a while to say." for i in range(sentences))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/audio/speech", json.dumps({"input": text, "voice": "hangup", "stream": True,
                                                         "response_format": "pcm"}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read1(4096)) > 0
    conn.sock.close()  # the client goes away after its first chunk
    conn.close()
    deadline = time.monotonic() + 300
    while app.state.worker.busy and time.monotonic() < deadline:
        time.sleep(0.05)
    monkeypatch.undo()
    app.state.store.remove("hangup")
    # every sentence gives a pause and several chunks: stopping after a few sentences means it stopped
    assert 0 < len(pulled) < sentences, f"{len(pulled)} chunks generated after the client left"


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}")
def test_page_uploads_synthesizes_and_plays(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _, app = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('16000')")
            page.set_input_files("#prompt-file", str(PROMPT))
            page.fill("#voice-name", "browser-voice")
            page.click("#upload")
            page.wait_for_function("document.getElementById('voice').value === 'browser-voice'", timeout=30_000)
            assert app.state.store.ids == ["browser-voice"]

            page.fill("#text", "Hello from the browser. This sentence is streamed.")
            page.fill("#seed", "0")
            page.click("#synthesize")
            page.wait_for_function("document.getElementById('audio').src.startsWith('blob:')", timeout=60_000)
            status = page.text_content("#status")
            assert "s of audio" in status and page.get_attribute("#status", "class") != "error", status
            page.wait_for_function("document.getElementById('audio').duration > 0", timeout=30_000)
            duration = page.evaluate("document.getElementById('audio').duration")
            head = page.evaluate("""async () => {
                const buf = await (await fetch(document.getElementById('audio').src)).arrayBuffer();
                const v = new DataView(buf);
                return {riff: String.fromCharCode(...new Uint8Array(buf, 0, 4)), rate: v.getUint32(24, true),
                        data: v.getUint32(40, true), size: buf.byteLength};
            }""")
            href = page.get_attribute("#download", "href")
        finally:
            browser.close()
    assert head["riff"] == "RIFF" and head["rate"] == 16000
    assert head["size"] == 44 + head["data"] and head["data"] > 2 * 16000  # over a second of 16-bit audio
    assert duration == pytest.approx(head["data"] / 2 / 16000, abs=0.01)
    assert href and href.startswith("blob:")
    assert not errors, errors
