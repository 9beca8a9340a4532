"""The VALL-E baseline through the TTS API and `latentspeech synthesize --model`: a tiny random
model dir (tiny random RVQ codec in codec/, real text front end)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.api import TTS
from latentspeech.models.valle import VALLE, VALLEConfig, save_valle
from latentspeech.cli import main
from latentspeech.errors import CheckpointError, ConfigError
from latentspeech.models.transformer import TransformerConfig

SR, Q, K = 16000, 3, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from latentspeech.models.codec import AudioCodec, CodecConfig
    from latentspeech.config import from_dict
    from latentspeech.text import PhoneVocab

    torch.manual_seed(0)
    codec = AudioCodec(from_dict(CodecConfig, {
        "sample_rate": SR, "n_fft": 640, "frame_hop": 160, "downsample": [2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1]},
        "bottleneck": {"kind": "rvq", "num_quantizers": Q, "codebook_size": K},
    })).eval()
    vocab = PhoneVocab()
    model = VALLE(VALLEConfig(
        phone_vocab_size=vocab.size, phone_pad_id=vocab.pad_id, num_quantizers=Q, codebook_size=K,
        ar=TransformerConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=256),
        nar=TransformerConfig(dim=32, n_layers=1, n_heads=2, max_seq_len=256, causal=False),
        frames_per_phone=1.0, guard_min_frames=2))
    return save_valle(model.eval(), tmp_path_factory.mktemp("models") / "valle", codec=codec, vocab=vocab)


@pytest.fixture
def prompt_wav(tmp_path):
    t = np.arange(int(1.5 * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path / "prompt.wav"
    sf.write(path, wav.astype(np.float32), SR)
    return path


def test_tts_loads_a_valle_dir_and_is_seeded(model_dir, prompt_wav):
    tts = TTS.from_pretrained(model_dir)
    assert tts.kind == "valle" and tts.sample_rate == SR
    a, sr = tts.speak("Hello world.", prompt=prompt_wav, seed=7)
    b, _ = tts.speak("Hello world.", prompt=prompt_wav, seed=7)
    c, _ = tts.speak("Hello world.", prompt=prompt_wav, seed=8)
    assert sr == SR and a.dtype == np.float32 and a.ndim == 1 and a.size > 0
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    out = tts.backend.last_output
    assert c.size == int(out.lengths[0]) * 320 and out.nar_passes == Q - 1  # the last call; 50 Hz codes
    assert np.array_equal(tts.speak("Hello world.", prompt=prompt_wav, seed=7, candidates=1)[0], a)
    with pytest.raises(ConfigError, match="draws one candidate per sentence"):  # no recognizer to choose with
        tts.speak("Hello world.", prompt=prompt_wav, candidates=3)


def test_several_sentences_are_batched(model_dir, prompt_wav):
    tts = TTS.from_pretrained(model_dir)
    wav, _ = tts.speak("One two. Three four five!", prompt=prompt_wav, seed=0, batch_size=2, pause=0.5)
    assert wav.size > SR * 0.5


def test_bundled_name_valle_demo_resolves(model_dir, prompt_wav, monkeypatch):
    import shutil

    import latentspeech.checkpoint as ckpt

    assets = model_dir.parent / "assets"
    if not (assets / "valle-demo").is_dir():
        shutil.copytree(model_dir, assets / "valle-demo")
    monkeypatch.setattr(ckpt, "ASSETS", assets)
    tts = TTS.from_pretrained("valle-demo")
    assert tts.kind == "valle"
    wav, _ = tts.speak("Hi.", prompt=prompt_wav, seed=0)
    assert wav.size > 0


def test_cli_synthesize_with_model_valle(model_dir, prompt_wav, tmp_path, capsys):
    out = tmp_path / "o.wav"
    rc = main(["synthesize", "--text", "Good morning.", "--prompt", str(prompt_wav), "-o", str(out),
               "--model", str(model_dir), "--seed", "1", "--steps", "5", "--cfg", "2"])  # steps/cfg ignored
    assert rc == 0 and sf.info(out).samplerate == SR and sf.info(out).frames > 0
    assert "wrote" in capsys.readouterr().out


def test_missing_codec_is_one_line_error(model_dir, tmp_path, prompt_wav, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "codec")
    with pytest.raises(CheckpointError, match="codec/"):
        TTS.from_pretrained(broken)
    rc = main(["synthesize", "--text", "Hi.", "--prompt", str(prompt_wav), "-o", str(tmp_path / "x.wav"),
               "--model", str(broken)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_unbundled_valle_demo_is_one_line_error(tmp_path, monkeypatch, prompt_wav, capsys):
    import latentspeech.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "ASSETS", tmp_path / "empty_assets")
    with pytest.raises(CheckpointError, match="valle-demo"):
        TTS.from_pretrained("valle-demo")
    rc = main(["synthesize", "--text", "Hi.", "--prompt", str(prompt_wav), "-o", str(tmp_path / "x.wav"),
               "--model", "valle-demo"])
    assert rc == 1 and "valle-demo" in capsys.readouterr().err
