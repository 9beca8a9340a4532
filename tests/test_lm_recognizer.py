"""The CTC phone recognizer that picks among LatentLM candidates: it learns to read a toy corpus,
scores the right phones above wrong ones, round-trips through a model dir, attaches to a LatentLM
model dir (CLI), and the TTS API keeps the candidate it scores best."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from latentspeech.data.lm_dataset import LMSource
from latentspeech.errors import CheckpointError, ConfigError
from latentspeech.text.vocab import silent_token_ids
from latentspeech.models.recognizer import RecognizerConfig, load_recognizer, phone_scores, save_recognizer
from latentspeech.train.recognizer import phone_error_rate, train_recognizer
from latentspeech.text import PhoneVocab

TINY = RecognizerConfig(dim=32, conv_layers=1, transformer_layers=1, n_heads=2, input_noise=0.1)


def toy_corpus(n=48, dim=8, seed=0):
    """Utterances of 4-7 phones (+ a silent word boundary), each phone a fixed latent held 2-4 frames."""
    v = PhoneVocab()
    rng = np.random.default_rng(seed)
    inventory = [v.encode([t])[0] for t in ("a", "i", "u", "s", "m", "k")]
    means = {p: rng.normal(size=dim) * 2 for p in inventory}
    bar = v.encode(["|"])[0]
    phones, latents = {}, {}
    for k in range(n):
        ids = [int(x) for x in rng.choice(inventory, size=int(rng.integers(4, 8)))]
        ids.insert(2, bar)
        z = np.concatenate([np.repeat(means[i][None], int(rng.integers(2, 5)), 0) for i in ids if i != bar])
        phones[f"u{k:02d}"] = ids
        latents[f"u{k:02d}"] = (z + 0.1 * rng.normal(size=z.shape)).astype(np.float32)
    return v, LMSource(latents=latents, phones=phones, utt2spk={u: "s" for u in phones}, name="toy")


@pytest.fixture(scope="module")
def trained():
    vocab, src = toy_corpus()
    untrained_per = phone_error_rate(train_recognizer([src], vocab, steps=1, batch_size=8, progress=False, log=None,
                                                      config=TINY), [src])
    rec = train_recognizer([src], vocab, steps=200, batch_size=8, lr=3e-3, progress=False, log=None, config=TINY)
    return vocab, src, rec, untrained_per


def test_training_learns_to_read_the_toy_phones(trained):
    vocab, src, rec, untrained_per = trained
    per = phone_error_rate(rec, [src])
    assert untrained_per > 0.5 and per < 0.15, (untrained_per, per)
    assert rec.cfg.silent_ids == silent_token_ids(vocab)  # the word boundary is never a target


def test_scores_prefer_the_spoken_phones(trained):
    vocab, src, rec, _ = trained
    utts = sorted(src.phones)[:16]
    z = [torch.from_numpy(src.load(u)) for u in utts]
    right = phone_scores(rec, z, [src.phones[u] for u in utts])
    wrong = phone_scores(rec, z, [src.phones[u][::-1] for u in utts])  # same phones, reversed order
    assert (right > wrong).float().mean() >= 0.9
    assert torch.isfinite(right).all() and (right <= 0).all()
    # an empty candidate and one too short for its phones can never win
    s = phone_scores(rec, [torch.zeros(0, 8), z[0][:1]], [src.phones[utts[0]]] * 2)
    assert s.tolist() == [-float("inf"), -float("inf")]


def test_model_dir_round_trip_and_inventory_check(trained, tmp_path):
    vocab, src, rec, _ = trained
    out = save_recognizer(rec, tmp_path / "rec", {"phone_vocab": vocab.to_dict()})
    again = load_recognizer(out, vocab)
    z = [torch.from_numpy(src.load(u)) for u in sorted(src.phones)[:4]]
    ph = [src.phones[u] for u in sorted(src.phones)[:4]]
    assert torch.equal(phone_scores(rec, z, ph), phone_scores(again, z, ph))
    other = dict(vocab.to_dict(), checksum="0" * 8)
    save_recognizer(rec, tmp_path / "other", {"phone_vocab": other})
    with pytest.raises(CheckpointError, match="another phone inventory"):
        load_recognizer(tmp_path / "other", vocab)
    cfg_file = out / "config.yaml"  # a config key this version does not know (a dir from another version)
    cfg_file.write_text(cfg_file.read_text().replace("config:\n", "config:\n  time_masks: 2\n", 1))
    with pytest.raises(CheckpointError, match=r"rec: bad recognizer config: unknown key time_masks"):
        load_recognizer(out, vocab)


# -- in a LatentLM model dir ------------------------------------------------------------------------
SR = 16000


@pytest.fixture
def prompt_wav(tmp_path):
    import soundfile as sf

    t = np.arange(int(1.5 * SR)) / SR
    path = tmp_path / "prompt.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), SR)
    return path


def test_cli_trains_and_attaches_then_the_api_keeps_the_best_candidate(trained, tiny_latentlm_dir, prompt_wav, tmp_path,
                                                                       monkeypatch, write_lm_corpus):
    import shutil

    import latentspeech.models.recognizer as recognizer_module
    from latentspeech.api import TTS

    vocab, src, _, _ = trained
    data, store = write_lm_corpus(tmp_path, vocab, src.phones, src.latents)
    model = tmp_path / "lm"
    shutil.copytree(tiny_latentlm_dir, model)
    cli = [sys.executable, "-m", "latentspeech", "recognizer", "--data", str(data), "--latents", str(store),
           "--valid-data", str(data), "--valid-latents", str(store), "--out", str(tmp_path / "exp"), "--steps", "3",
           "--batch-size", "4", "--num-threads", "1", "--no-progress"]
    res = subprocess.run(cli + ["--candidates", "0"], capture_output=True, text=True)
    assert res.returncode != 0 and "--candidates must be between 1 and 16" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(cli + ["--attach", str(model), "--candidates", "3"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "phone error rate" in res.stdout and (model / "recognizer" / "model.safetensors").is_file()

    tts = TTS.from_pretrained(model)
    assert tts.backend.default_candidates == 3
    seen = []

    def pick_second(rec, latents, phones):  # record the candidates, prefer the second of each sentence
        seen.append([z.clone() for z in latents])
        return torch.tensor([1.0 if i % 3 == 1 else 0.0 for i in range(len(latents))])

    monkeypatch.setattr(recognizer_module, "phone_scores", pick_second)
    wav, sr = tts.speak("Hello there.", prompt=prompt_wav, seed=1)
    assert len(seen) == 1 and len(seen[0]) == 3
    codec = tts.backend.codec
    with torch.inference_mode():
        expect = codec.decode(codec.denormalize(seen[0][1].transpose(0, 1)[None]))[0].numpy()
    np.testing.assert_allclose(wav, expect, atol=1e-5)
    monkeypatch.undo()
    a, _ = tts.speak("Hello there.", prompt=prompt_wav, seed=1)  # the real recognizer: finite, seeded
    b, _ = tts.speak("Hello there.", prompt=prompt_wav, seed=1)
    assert np.isfinite(a).all() and np.array_equal(a, b)
    one, _ = tts.speak("Hello there.", prompt=prompt_wav, seed=1, candidates=1)
    assert np.isfinite(one).all()
    with pytest.raises(ConfigError, match="candidates must be >= 1"):
        tts.speak("Hello there.", prompt=prompt_wav, candidates=0)


def test_more_candidates_than_one_need_a_recognizer(tiny_latentlm_dir, prompt_wav):
    from latentspeech.api import TTS

    tts = TTS.from_pretrained(tiny_latentlm_dir)
    assert tts.backend.default_candidates == 1
    with pytest.raises(ConfigError, match="has no recognizer/"):
        tts.speak("Hello there.", prompt=prompt_wav, candidates=2)
