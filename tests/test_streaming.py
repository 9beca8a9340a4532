"""Streaming: the incremental codec decoder, ``TTS.stream`` against ``speak``, registered voices, and
``latentspeech synthesize --stream`` (on the bundled models, a tiny random codec for the decoder alone)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.api import TTS
from latentspeech.audio.pcm import pcm16, wav_header
from latentspeech.checkpoint import ASSETS, bundled_path
from latentspeech.config import from_dict
from latentspeech.errors import AudioError, ConfigError, TextError, VoiceError
from latentspeech.models.codec import AudioCodec, load_codec
from latentspeech.models.codec.config import CodecConfig
from latentspeech.models.codec.streaming import StreamingDecoder, receptive_frames

PROMPT = ASSETS / "prompts" / "demo_voice.wav"
TEXT = "The quick brown fox jumps over the lazy dog. Speech synthesis runs on this computer."
#: The stated tolerance of a stream against the whole-sequence decode / ``speak``: float rounding only.
MAX_ABS = 5e-3

needs_bundle = pytest.mark.skipif(not (bundled_path("latentlm-demo") / "model.safetensors").is_file(),
                                  reason="the bundled latentlm-demo is not installed")


def tiny_codec(source: str) -> AudioCodec:
    torch.manual_seed(0)
    decoder = {"dim": 16, "blocks": [1, 2, 1], "source": source}
    if source == "harmonic":
        decoder["f0_range"] = [60.0, 400.0]
    return AudioCodec(from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 320, "frame_hop": 160, "downsample": [2, 2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": decoder})).eval()


def streamed(codec, z: torch.Tensor, sizes, **kw) -> tuple[np.ndarray, list[int]]:
    dec = StreamingDecoder(codec, **kw)
    out, i, k = [], 0, 0
    while i < z.shape[1]:
        n = sizes[k % len(sizes)]
        out.append(dec.push(z[:, i : i + n]))
        i, k = i + n, k + 1
    out.append(dec.flush())
    return np.concatenate(out), [len(c) for c in out]


@pytest.mark.parametrize("source", ["none", "harmonic"])
def test_streaming_decoder_equals_the_whole_decode(source):
    codec = tiny_codec(source)
    z = torch.randn(8, 57, generator=torch.Generator().manual_seed(1))
    full = codec.decode(z[None])[0].numpy()
    for sizes in ([2], [1, 3, 5], [57]):
        wav, lengths = streamed(codec, z, sizes)
        assert wav.shape == full.shape
        assert np.abs(wav - full).max() < MAX_ABS * max(1.0, np.abs(full).max())
    # audio comes out before the end, in several chunks
    _, lengths = streamed(codec, z, [2])
    assert sum(1 for n in lengths if n) > 3 and lengths[0] == 0
    # too little context is not exact: the test can tell
    short, _ = streamed(codec, z, [2], lookahead=0, context=0)
    assert np.abs(short - full).max() > 10 * np.abs(streamed(codec, z, [2])[0] - full).max()


def test_receptive_field_and_errors():
    codec = tiny_codec("harmonic")
    assert receptive_frames(codec.cfg) == 1 + int(np.ceil(3 + 3 + 2 * 3 / 2 + 3 / 4))
    with pytest.raises(AudioError, match="latents"):
        StreamingDecoder(codec).push(torch.zeros(3, 4))
    with pytest.raises(AudioError, match="chunks"):
        StreamingDecoder(codec, chunk=0)
    assert StreamingDecoder(codec).flush().size == 0


@needs_bundle
def test_bundled_codec_streams_a_real_voice():
    codec = load_codec(bundled_path("latentlm-demo") / "codec")
    from latentspeech.audio import load_audio

    z = codec.encode(torch.from_numpy(load_audio(PROMPT, codec.sample_rate))[None])[0]
    full = codec.decode(z[None])[0].numpy()
    wav, _ = streamed(codec, z, [2])
    assert np.abs(wav - full).max() < MAX_ABS
    # no click at the chunk joins: the largest sample step is the whole decode's
    assert np.abs(np.diff(wav)).max() < np.abs(np.diff(full)).max() + MAX_ABS


@needs_bundle
def test_stream_equals_speak_with_one_draw_per_sentence():
    tts = TTS.from_pretrained()
    chunks = list(tts.stream(TEXT, PROMPT, seed=3))
    strength, tts.backend.prompt_stats = tts.backend.prompt_stats, 0.0  # streaming leaves the latents as drawn
    try:
        ref, sr = tts.speak(TEXT, PROMPT, seed=3, batch_size=1, candidates=1)
    finally:
        tts.backend.prompt_stats = strength
    wav = np.concatenate(chunks)
    assert wav.dtype == np.float32 and wav.shape == ref.shape and sr == tts.sample_rate
    assert np.abs(wav - ref).max() < MAX_ABS
    assert len(chunks) > 4 and len(chunks[0]) < 0.5 * sr  # audio starts long before the first sentence ends
    gap = int(round(0.3 * sr))
    assert any(len(c) == gap and not c.any() for c in chunks)  # the pause between the two sentences


@needs_bundle
def test_stream_checks_everything_before_the_first_chunk():
    tts = TTS.from_pretrained()
    with pytest.raises(TextError, match="empty"):
        tts.stream("   ", PROMPT)
    with pytest.raises(TextError, match="too long"):
        tts.stream("word " * 5000, PROMPT)
    with pytest.raises(AudioError):
        tts.stream("Hello.", np.zeros(16000, np.float32))


@needs_bundle
def test_registered_voice_is_the_prompt_it_was_made_from():
    tts = TTS.from_pretrained()
    assert tts.add_voice("demo.voice-1", PROMPT) == "demo.voice-1" and "demo.voice-1" in tts.voices
    by_name, _ = tts.speak("Hello there.", "demo.voice-1", seed=5)
    by_file, _ = tts.speak("Hello there.", PROMPT, seed=5)
    assert np.array_equal(by_name, by_file)
    assert np.array_equal(np.concatenate(list(tts.stream("Hello there.", "demo.voice-1", seed=5))),
                          np.concatenate(list(tts.stream("Hello there.", PROMPT, seed=5))))
    tts.remove_voice("demo.voice-1")
    assert "demo.voice-1" not in tts.voices
    with pytest.raises(VoiceError, match="no voice named 'demo.voice-1'"):
        tts.remove_voice("demo.voice-1")
    for bad in ("", "../etc/passwd", "a b", "x" * 65, "-lead"):
        with pytest.raises(ConfigError, match="voice name"):
            tts.add_voice(bad, PROMPT)
    with pytest.raises(AudioError):
        tts.add_voice("silent", np.zeros(32000, np.float32))
    assert "silent" not in tts.voices


@pytest.mark.skipif(not (bundled_path("valle-demo") / "model.safetensors").is_file(),
                    reason="the bundled valle-demo is not installed")
def test_valle_streams_whole_sentences():
    tts = TTS.from_pretrained("valle-demo")
    chunks = list(tts.stream(TEXT, PROMPT, seed=2))
    ref, sr = tts.speak(TEXT, PROMPT, seed=2, batch_size=1)
    assert len(chunks) == 3  # sentence, pause, sentence
    assert np.array_equal(np.concatenate(chunks), ref)


def test_wav_header_of_open_length_is_readable():
    x = (0.5 * np.sin(np.arange(4000) / 7)).astype(np.float32)
    for n in (len(x), None):
        y, sr = sf.read(io.BytesIO(wav_header(16000, n) + pcm16(x)), dtype="float32")
        assert sr == 16000 and len(y) == len(x) and np.abs(y - x).max() < 1e-4
    assert pcm16(np.array([2.0, -2.0], np.float32)) == np.array([32767, -32767], "<i2").tobytes()


@needs_bundle
def test_cli_stream_pipes_a_wav_and_saves_the_same_audio(tmp_path):
    out = tmp_path / "copy.wav"
    run = subprocess.run([sys.executable, "-m", "latentspeech", "synthesize", "--text", "Hello there.",
                          "--prompt", str(PROMPT), "--seed", "4", "--stream", "-o", str(out)],
                         capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout[:4] == b"RIFF" and b"streamed" in run.stderr
    piped, sr = sf.read(io.BytesIO(run.stdout), dtype="float32")
    saved, _ = sf.read(out, dtype="float32")
    assert sr == 16000 and len(piped) == len(saved) > 8000 and np.abs(piped - saved).max() < 1e-3
    pcm = subprocess.run([sys.executable, "-m", "latentspeech", "synthesize", "--text", "Hello there.",
                          "--prompt", str(PROMPT), "--seed", "4", "--stream", "--stream-format", "pcm"],
                         capture_output=True, timeout=300)
    assert pcm.returncode == 0 and pcm.stdout == run.stdout[44:]
    bad = subprocess.run([sys.executable, "-m", "latentspeech", "synthesize", "--text", "Hi.", "--prompt",
                          str(PROMPT), "--stream", "--candidates", "2"], capture_output=True, timeout=300)
    assert bad.returncode == 1 and b"one candidate" in bad.stderr and not bad.stdout
