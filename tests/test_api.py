"""TTS API and `latentspeech synthesize` end to end on a tiny untrained model dir (real codec class,
real text front end), plus the error paths: missing model, silent/short/corrupt prompt, empty text."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.api import TTS
from latentspeech.cli import main
from latentspeech.errors import AudioError, CheckpointError, ConfigError, TextError
from latentspeech.models.latentlm import LatentLM, LatentLMConfig
from latentspeech.models.transformer import TransformerConfig
from latentspeech.models.latentlm import save_latentlm

SR = 16000


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tiny_latentlm_dir):
    """A self-contained LatentLM model dir: tiny random LatentLM + tiny random 25 Hz codec in codec/ (conftest)."""
    return tiny_latentlm_dir


@pytest.fixture
def prompt_wav(tmp_path):
    t = np.arange(int(1.5 * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path / "prompt.wav"
    sf.write(path, wav.astype(np.float32), SR)
    return path


def test_model_dir_is_self_contained_and_loaded_once(model_dir):
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "codec" / "model.safetensors").is_file()
    a = TTS.from_pretrained(model_dir)
    assert TTS.from_pretrained(str(model_dir)) is a
    assert a.kind == "latentlm" and a.sample_rate == SR


def test_speak_is_seeded_and_bit_identical(model_dir, prompt_wav):
    tts = TTS.from_pretrained(model_dir)
    wav1, sr = tts.speak("Hello world.", prompt=prompt_wav, seed=123)
    wav2, _ = tts.speak("Hello world.", prompt=prompt_wav, seed=123)
    wav3, _ = tts.speak("Hello world.", prompt=prompt_wav, seed=124)
    assert sr == SR and wav1.dtype == np.float32 and wav1.ndim == 1 and wav1.size > 0
    assert np.array_equal(wav1, wav2)
    assert not np.array_equal(wav1, wav3)


def test_long_text_is_split_batched_and_joined_with_pauses(model_dir, prompt_wav):
    tts = TTS.from_pretrained(model_dir)
    text = "One two three. Four five six seven! Eight?"
    assert len(tts.split(text)) == 3
    one, _ = tts.speak("One two three.", prompt=prompt_wav, seed=0, pause=0.0)
    wav, _ = tts.speak(text, prompt=prompt_wav, seed=0, batch_size=2, pause=0.5)
    assert wav.size > one.size + 2 * 0.5 * SR  # three sentences and two half-second pauses


def test_array_prompt_at_its_sample_rate(model_dir, prompt_wav):
    tts = TTS.from_pretrained(model_dir)
    wav, sr = sf.read(prompt_wav, dtype="float32")
    ref, _ = tts.speak("Hi there.", prompt=prompt_wav, seed=0)
    same, _ = tts.speak("Hi there.", prompt=wav, sample_rate=sr, seed=0)
    default, _ = tts.speak("Hi there.", prompt=wav, seed=0)  # arrays default to the model's rate
    assert np.array_equal(same, ref) and np.array_equal(default, ref)
    low, _ = tts.speak("Hi there.", prompt=wav[::2].copy(), sample_rate=SR // 2, seed=0)  # resampled
    assert low.size > 0


def test_speak_to_file(model_dir, prompt_wav, tmp_path):
    out = TTS.from_pretrained(model_dir).speak_to_file(tmp_path / "o.wav", "Good morning.", prompt=prompt_wav, seed=1)
    info = sf.info(out)
    assert info.samplerate == SR and info.frames > 0


@pytest.mark.parametrize("text,match", [("", "empty"), ("   \n", "empty"), ("a" * 20001, "too long")])
def test_bad_text_is_a_text_error(model_dir, prompt_wav, text, match):
    with pytest.raises(TextError, match=match):
        TTS.from_pretrained(model_dir).speak(text, prompt=prompt_wav)


def test_bad_prompts_are_audio_errors(model_dir, tmp_path):
    tts = TTS.from_pretrained(model_dir)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR * 2, np.float32), SR)
    short = tmp_path / "short.wav"
    sf.write(short, (0.3 * np.sin(np.arange(SR // 4) / 5)).astype(np.float32), SR)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    for path, match in ((silent, "silent"), (short, "too short"), (corrupt, "cannot read"),
                        (tmp_path / "missing.wav", "not found")):
        with pytest.raises(AudioError, match=match):
            tts.speak("Hello.", prompt=path)


def test_missing_model_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such model"):
        TTS.from_pretrained(tmp_path / "nope")
    (tmp_path / "codec_only").mkdir()
    with pytest.raises(CheckpointError, match="config.yaml"):
        TTS.from_pretrained(tmp_path / "codec_only")


def test_non_tts_model_kind_is_rejected(model_dir):
    with pytest.raises(CheckpointError, match="not a TTS model"):
        TTS.from_pretrained(model_dir / "codec")


# -- CLI ------------------------------------------------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_cli_synthesize_writes_wav(model_dir, prompt_wav, tmp_path, capsys):
    out = tmp_path / "cli.wav"
    rc = main(["synthesize", "--text", "Hello there.", "--prompt", str(prompt_wav), "-o", str(out),
               "--model", str(model_dir), "--seed", "5", "--steps", "2"])
    assert rc == 0 and out.is_file()
    assert "wrote" in capsys.readouterr().out
    wav, _ = TTS.from_pretrained(model_dir).speak("Hello there.", prompt=prompt_wav, seed=5, steps=2)
    got, _ = sf.read(out, dtype="float32")
    assert np.abs(got - np.clip(wav, -1, 1)).max() < 1e-4  # PCM-16 rounding only


def test_cli_program_writes_what_the_call_from_python_writes(model_dir, prompt_wav, tmp_path):
    """``python -m latentspeech synthesize`` (the program: its garbage collector off while loading, then
    frozen, see latentspeech.cli) writes the same file as ``main([...])``, which leaves the collector alone."""
    import gc
    import subprocess

    args = ["synthesize", "--text", "Hello there.", "--prompt", str(prompt_wav), "--model", str(model_dir),
            "--seed", "5", "--steps", "2"]
    frozen = gc.get_freeze_count()
    assert main(args + ["-o", str(tmp_path / "call.wav")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    r = subprocess.run([sys.executable, "-m", "latentspeech"] + args + ["-o", str(tmp_path / "program.wav")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    assert (tmp_path / "program.wav").read_bytes() == (tmp_path / "call.wav").read_bytes()


def test_cli_reads_stdin_and_text_file(model_dir, prompt_wav, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("From standard input."))
    assert main(["synthesize", "--text", "-", "--prompt", str(prompt_wav), "-o", str(tmp_path / "a.wav"),
                 "--model", str(model_dir)]) == 0
    f = tmp_path / "t.txt"
    f.write_text("From a file. Two sentences.", encoding="utf-8")
    assert main(["synthesize", "--text-file", str(f), "--prompt", str(prompt_wav), "-o", str(tmp_path / "b.wav"),
                 "--model", str(model_dir)]) == 0
    assert (tmp_path / "a.wav").is_file() and (tmp_path / "b.wav").is_file()


def test_cli_errors_are_one_line(model_dir, prompt_wav, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    assert main(["synthesize", "--text", "Hi.", "--prompt", str(silent), "-o", str(tmp_path / "x.wav"),
                 "--model", str(model_dir)]) == 1
    assert "silent" in _one_error_line(capsys)
    assert not (tmp_path / "x.wav").exists()
    assert main(["synthesize", "--text", "Hi.", "--prompt", str(prompt_wav), "--model", str(tmp_path / "none")]) == 1
    assert "no such model" in _one_error_line(capsys)
    assert main(["synthesize", "--text", "  ", "--prompt", str(prompt_wav), "--model", str(model_dir)]) == 1
    assert "empty" in _one_error_line(capsys)
    assert main(["synthesize", "--text", "Hi.", "--prompt", str(prompt_wav), "--model", str(model_dir),
                 "--threads", "-1"]) == 1
    assert "--threads" in _one_error_line(capsys)


def test_pointer_mode_model_speaks_through_the_api(model_dir, prompt_wav, tmp_path):
    """A pointer-mode LatentLM (alignment 'pointer') exports, loads and speaks like any other; an
    untrained advance head never advances by itself, so every sounding phone is held for
    max_phone_frames and the length guard ends the row."""
    from latentspeech.text.vocab import silent_token_ids
    from latentspeech.text import PhoneVocab

    vocab = PhoneVocab()
    torch.manual_seed(0)
    lm = LatentLM(LatentLMConfig(latent_dim=8, vocab_size=vocab.size, pad_id=vocab.pad_id, frame_rate=25.0,
                                 transformer=TransformerConfig(dim=32, n_layers=2, n_heads=4, max_seq_len=512),
                                 head_blocks=1, guard_min_frames=2, frames_per_phone=0.5, alignment="pointer",
                                 phone_encoder_layers=1, max_phone_frames=2,
                                 silent_token_ids=silent_token_ids(vocab)))
    out = save_latentlm(lm, tmp_path / "lm", model_dir / "codec",
                          {"phone_vocab": vocab.to_dict(), "inference": {"steps": 2, "cfg": 2.0}})
    tts = TTS.from_pretrained(out)
    cfg = tts.backend.model.cfg
    assert cfg.alignment == "pointer" and cfg.silent_token_ids == silent_token_ids(vocab)
    wav, sr = tts.speak("Hello there.", prompt=prompt_wav, seed=1)
    assert sr == SR and len(wav) > 0 and np.isfinite(wav).all()


def test_cli_demo_without_bundled_model_exits_zero(capsys):
    from latentspeech.checkpoint import WEIGHTS, bundled_path

    if (bundled_path("latentlm-demo") / WEIGHTS).is_file():
        pytest.skip("a demo model is bundled")
    assert main(["demo", "--out", "unused.wav"]) == 0
    assert "no model is bundled" in capsys.readouterr().out


def test_cli_demo_with_a_bundled_model(model_dir, prompt_wav, tmp_path, monkeypatch, capsys):
    import shutil

    import latentspeech.checkpoint as ckpt

    assets = tmp_path / "assets"
    shutil.copytree(model_dir, assets / "latentlm-demo")
    (assets / "prompts").mkdir()
    shutil.copy(prompt_wav, assets / "prompts" / "voice.wav")
    monkeypatch.setattr(ckpt, "ASSETS", assets)
    out = tmp_path / "demo.wav"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and str(out) in printed and "voice.wav" in printed


@pytest.mark.parametrize("name", ["latentlm-demo", "valle-demo"])
def test_bundled_demo_models_speak_offline(name):
    """The shipped models load (no code execution: safetensors + YAML) and speak with the shipped prompt."""
    from latentspeech.checkpoint import WEIGHTS, bundled_path
    from latentspeech.cli.synthesize import demo_prompt

    if not (bundled_path(name) / WEIGHTS).is_file():
        pytest.skip(f"{name} is not bundled")
    tts = TTS.from_pretrained(name)
    wav, sr = tts.speak("Hello there.", prompt=demo_prompt(), seed=0)
    assert sr == 16000 and wav.dtype == np.float32 and np.isfinite(wav).all()
    assert 0.3 < len(wav) / sr < 6.0  # stopped by itself, well before a runaway
    again, _ = tts.speak("Hello there.", prompt=demo_prompt(), seed=0)
    assert np.array_equal(wav, again)
    if name == "latentlm-demo":  # the sampler the model dir recommends: guidance is built into its head
        assert tts.backend.default_temperature == 0.7 and tts.backend.default_cfg == 1.0
        assert tts.backend.model.cfg.guidance_distilled == 3.0
        with pytest.raises(ConfigError, match="use cfg 1"):  # guidance on top of built-in guidance
            tts.speak("Hello there.", prompt=demo_prompt(), cfg=3.0)
