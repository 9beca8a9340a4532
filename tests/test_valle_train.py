"""Training the VALL-E baseline: collation, a few Lightning steps on a tiny code store, export, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentspeech.models.valle import load_valle
from latentspeech.config import from_dict
from latentspeech.errors import DataDirError
from latentspeech.train.valle import VALLETrainConfig, code_source, collate_valle, train_valle

Q, K = 3, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_train_config(**trainer) -> VALLETrainConfig:
    return from_dict(VALLETrainConfig, {
        "model": {"num_quantizers": Q, "codebook_size": K, "guard_min_frames": 2,
                  "ar": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 512},
                  "nar": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 512, "causal": False}},
        "data": {"prompt_seconds": [0.1, 0.2], "max_tokens": 400, "max_batch_size": 4},
        "optim": {"warmup_steps": 1, "max_steps": 4, "lr": 1e-3},
        "trainer": {"accelerator": "cpu", "val_every_steps": 2, "ckpt_every_steps": 2, "log_every_steps": 1, **trainer},
    })


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A data dir (phones, utt2spk) of 3 speakers × 3 utterances, its code store and an RVQ codec dir."""
    from latentspeech.models.codec import AudioCodec, CodecConfig, save_codec
    from latentspeech.data.latents import LatentWriter
    from latentspeech.text.vocab import PhoneVocab

    root = tmp_path_factory.mktemp("valle_corpus")
    data, codes = root / "data", root / "codes"
    data.mkdir()
    vocab = PhoneVocab()
    toks = [t for t in vocab.tokens if vocab.is_phone(t)][:12]
    rng = np.random.default_rng(0)
    utts = [(f"s{s}-u{u}", f"s{s}") for s in range(3) for u in range(3)]
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts), encoding="utf-8")
    lines = [f"{u} {' '.join(rng.choice(toks, size=4 + i % 3))}\n" for i, (u, _) in enumerate(utts)]
    (data / "phones").write_text("".join(lines), encoding="utf-8")
    with LatentWriter(codes, {"kind": "codes", "frame_rate": 50.0, "latent_dim": 8, "codec": None}, shard_size=4) as w:
        for i, (u, _) in enumerate(utts):
            w.add(u, rng.integers(0, K, size=(10 + 3 * i, Q)).astype(np.int16))
    cfg = from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 640, "frame_hop": 160, "downsample": [2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1]},
        "bottleneck": {"kind": "rvq", "num_quantizers": Q, "codebook_size": K},
    })
    torch.manual_seed(0)
    codec_dir = save_codec(AudioCodec(cfg), root / "codec_rvq")
    return data, codes, codec_dir, vocab


def test_collate_pads_each_segment():
    ex = [{"utt_id": "a", "prompt": np.arange(6).reshape(2, 3), "phones": [5, 6, 7], "target": np.ones((4, 3))},
          {"utt_id": "b", "prompt": np.zeros((3, 3)), "phones": [8], "target": 2 * np.ones((1, 3))}]
    b = collate_valle(ex, pad_id=0, num_quantizers=2)
    assert b.prompt.shape == (2, 2, 3) and b.codes.shape == (2, 2, 4) and b.phones.shape == (2, 3)
    assert b.prompt[0].tolist() == [[0, 3, 0], [1, 4, 0]]  # [P, Q] → [Q, P], first 2 levels
    assert b.code_lens.tolist() == [4, 1] and b.phone_lens.tolist() == [3, 1] and b.prompt_lens.tolist() == [2, 3]
    assert b.codes.dtype == torch.long and b.codes[1, :, 1:].eq(0).all()


def test_code_source_refuses_latents(tmp_path, corpus):
    from latentspeech.data.latents import LatentWriter

    data, _, _, vocab = corpus
    with LatentWriter(tmp_path / "lat", {"kind": "latents"}) as w:
        w.add("s0-u0", np.zeros((3, 8), np.float32))
    with pytest.raises(DataDirError, match="not RVQ codes"):
        code_source(data, tmp_path / "lat", vocab)


def test_train_export_and_resume(tmp_path, corpus):
    data, codes, codec_dir, vocab = corpus
    out = tmp_path / "exp"
    cfg = tiny_train_config()
    model_dir = train_valle(cfg, [(data, codes)], out, valid=[(data, codes)], codec=str(codec_dir), max_steps=2,
                            vocab=vocab, progress=False)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    model, codec, vocab2, meta = load_valle(model_dir)
    assert meta["train_steps"] == 2 and vocab2 == vocab and codec.num_quantizers == Q
    assert model.cfg.phone_vocab_size == vocab.size and model.cfg.frame_rate == 50.0
    fpp = meta["frames_per_phone"]["max"]
    assert model.cfg.frames_per_phone == pytest.approx(1.25 * fpp, rel=1e-3)  # guard from the data
    logs = list((out / "logs").rglob("metrics.csv"))
    assert logs and "val/ar_loss" in logs[0].read_text()
    # resume: continues from last.ckpt to step 4
    train_valle(cfg, [(data, codes)], out, codec=str(codec_dir), max_steps=4, resume=True, vocab=vocab, progress=False)
    _, _, _, meta = load_valle(model_dir, with_codec=False)
    assert meta["train_steps"] == 4
    # the exported model generates codes the bundled codec can decode
    prompt = torch.randint(0, K, (Q, 5))
    gen = model.generate([vocab.encode(["a", "b"])], [prompt], seed=0)
    wav = codec.decode_codes(gen.codes)
    assert wav.shape[-1] == int(gen.lengths[0]) * codec.hop_length


def test_train_pointer_mode_on_the_stores_durations(tmp_path, corpus):
    """alignment 'pointer' reads the code store's durations file (the aligner's, shared with the latents),
    takes its silent and pause tokens from the vocabulary, and refuses a store without durations."""
    import shutil

    from latentspeech.data.durations import DURATIONS, write_durations
    from latentspeech.data.latents import LatentStore
    from latentspeech.data.lm_dataset import read_phones
    from latentspeech.text.vocab import silent_token_ids

    data, codes, codec_dir, vocab = corpus
    cfg = tiny_train_config()
    cfg.model.alignment = "pointer"
    with pytest.raises(DataDirError, match="durations"):
        train_valle(cfg, [(data, codes)], tmp_path / "none", codec=str(codec_dir), max_steps=1, vocab=vocab,
                    progress=False)
    store_dir = shutil.copytree(codes, tmp_path / "codes")
    store, phones = LatentStore(store_dir), read_phones(data / "phones", vocab)
    durations = {}
    for u, ids in phones.items():
        n = int(np.shape(store[u])[0])
        durations[u] = [2] * (len(ids) - 1) + [n - 2 * (len(ids) - 1)]
    write_durations(store_dir / DURATIONS, durations)
    model_dir = train_valle(cfg, [(data, store_dir)], tmp_path / "exp", codec=str(codec_dir), max_steps=2,
                            vocab=vocab, progress=False)
    model, _, _, meta = load_valle(model_dir, with_codec=False)
    assert model.cfg.alignment == "pointer" and model.ar.pointer is not None
    assert model.cfg.silent_token_ids == silent_token_ids(vocab) and meta["train_steps"] == 2
    logs = list((tmp_path / "exp" / "logs").rglob("metrics.csv"))
    assert logs and "train/ar_advance" in logs[0].read_text()
    gen = model.generate([vocab.encode(["a", "b"])], [torch.randint(0, K, (Q, 5))], seed=0)
    assert 1 <= int(gen.lengths[0]) <= int(model.cfg.length_guard(torch.tensor([2]))[0])


def _configs():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "egs"
    return sorted(root.glob("*/tts1/conf/valle*.yaml")) + sorted(root.glob("*/tts1/conf/smoke/valle*.yaml"))


@pytest.mark.parametrize("path", _configs(), ids=lambda p: "/".join(p.parts[-4:]))
def test_recipe_configs_load(path):
    from latentspeech.models.valle import VALLE
    from latentspeech.config import load_config

    cfg = load_config(path, VALLETrainConfig)
    if "demo" in path.parts and "smoke" not in path.parts:  # the bundled model's budget
        with torch.device("meta"):
            assert VALLE(cfg.model).num_parameters()["total"] <= 12_000_000


def test_cli_train_valle(tmp_path, corpus, capsys):
    import yaml

    from latentspeech.cli import main
    from latentspeech.config import to_dict

    data, codes, codec_dir, _ = corpus
    conf = tmp_path / "valle.yaml"
    conf.write_text(yaml.safe_dump(to_dict(tiny_train_config())), encoding="utf-8")
    out = tmp_path / "exp"
    rc = main(["train", "valle", "--config", str(conf), "--data", str(data), "--codes", str(codes),
               "--codec", str(codec_dir), "--out", str(out), "--max-steps", "1", "--no-progress",
               "--set", "model.guard_min_frames=7", "--set", "optim.lr=2e-4"])
    assert rc == 0 and "exported" in capsys.readouterr().out
    assert (out / "model" / "codec" / "config.yaml").is_file()
    exported = yaml.safe_load((out / "model" / "config.yaml").read_text())
    assert exported["config"]["guard_min_frames"] == 7  # --set reached the model's config
    for bad, why in (("optim.lr", "KEY=VALUE"), ("=3", "KEY=VALUE"), ("optim.no_such=1", "no_such")):
        rc = main(["train", "valle", "--config", str(conf), "--data", str(data), "--codes", str(codes),
                   "--out", str(tmp_path / "bad"), "--set", bad])
        assert rc == 1 and why in capsys.readouterr().err, bad
    rc = main(["train", "valle", "--config", str(conf), "--data", str(data), "--out", str(out),
               "--codes", str(codes), "--codes", str(codes)])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: give one --codes per --data")


def test_codes_extracted_from_audio_reach_the_batch_unchanged(tmp_path, corpus):
    """Kaldi dir with audio → `extract_latents(codes=True)` → code_source/LMDataset → collate = encode_codes."""
    import soundfile as sf

    from latentspeech.models.codec import load_codec
    from latentspeech.inference.extract import extract_latents
    from latentspeech.data.lm_dataset import LMDataset

    _, _, codec_dir, vocab = corpus
    codec = load_codec(codec_dir)
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(1)
    utts = {"a-1": 0.41, "a-2": 0.3, "b-1": 0.5, "b-2": 0.27}
    wavs = {u: (0.2 * rng.standard_normal(int(16000 * s))).astype(np.float32) for u, s in utts.items()}
    for u, w in wavs.items():
        sf.write(d / f"{u}.wav", w, 16000, subtype="FLOAT")
    (d / "wav.scp").write_text("".join(f"{u} {d / u}.wav\n" for u in sorted(utts)))
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in sorted(utts)))
    (d / "spk2utt").write_text("a a-1 a-2\nb b-1 b-2\n")
    (d / "phones").write_text("".join(f"{u} h ə l oʊ\n" for u in sorted(utts)), encoding="utf-8")
    extract_latents(codec, d, tmp_path / "codes", max_batch=1, codes=True, progress=False)
    ds = LMDataset([code_source(d, tmp_path / "codes", vocab)], 50.0, (0.1, 0.2))
    batch = collate_valle([ds[i] for i in range(len(ds))], vocab.pad_id, num_quantizers=Q)
    for i in range(len(ds)):
        utt = ds.items[i][1]
        ref = codec.encode_codes(torch.from_numpy(wavs[utt])[None])[0]  # [Q, F]
        n = int(batch.code_lens[i])
        assert n == ref.shape[-1] and torch.equal(batch.codes[i, :, :n], ref)
    assert batch.phones[0, :4].tolist() == vocab.encode(["h", "ə", "l", "oʊ"])


def test_one_step_in_bf16_mixed_precision(tmp_path, corpus):
    """The GPU configs train in bf16-mixed: the losses must stay finite under autocast (here on CPU)."""
    data, codes, codec_dir, vocab = corpus
    cfg = tiny_train_config(precision="bf16-mixed")
    model_dir = train_valle(cfg, [(data, codes)], tmp_path / "exp", codec=str(codec_dir), max_steps=1,
                            vocab=vocab, progress=False)
    metrics = next((tmp_path / "exp" / "logs").rglob("metrics.csv")).read_text().splitlines()
    header, row = metrics[0].split(","), metrics[1].split(",")
    loss = float(row[header.index("train/loss")])
    assert np.isfinite(loss) and loss > 0
    assert load_valle(model_dir, with_codec=False)[3]["train_steps"] == 1
