"""Codec training, latent stores, extraction and the ``latentspeech codec`` CLI (tiny configs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.cli import main
from latentspeech.models.codec import AudioCodec, CodecConfig, load_codec, save_codec
from latentspeech.inference.extract import extract_latents
from latentspeech.models.codec.losses import MultiResolutionMelLoss
from latentspeech.config import from_dict, save_config
from latentspeech.data.latents import INDEX, LatentStore, LatentWriter
from latentspeech.errors import ConfigError, DataDirError
from latentspeech.train.codec import CodecTrainConfig, train_codec

SR = 16000


def tiny_model(kind: str = "sigma", **bottleneck) -> dict:
    return {
        "sample_rate": SR, "n_fft": 64, "frame_hop": 16, "downsample": [2, 2], "latent_dim": 8,
        "encoder": {"dim": 32, "blocks": [1, 1, 1]}, "decoder": {"dim": 32, "blocks": [1, 1, 1]},
        "bottleneck": {"kind": kind, "num_quantizers": 2, "codebook_size": 16, **bottleneck},
    }


def voiced(seed: int, seconds: float) -> np.ndarray:
    """A vowel-like test signal: harmonics of a gliding f0 under a syllable-rate envelope."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 100 + 100 * g.random() + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum((0.3 / k) * np.sin(k * phase + 6 * g.random()) for k in range(1, 20))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 3 * g.random()) * t)
    return (0.5 * x * env).astype(np.float32)


@pytest.fixture
def data_dir(tmp_path):
    """A Kaldi data dir of 4 short synthetic utterances from 2 speakers."""
    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    utts = {"spkA-u1": 0.7, "spkA-u2": 0.5, "spkB-u1": 1.1, "spkB-u2": 0.498}  # u2s: same frame count
    scp, u2s = [], []
    for i, (utt, dur) in enumerate(sorted(utts.items())):
        sf.write(d / "wav" / f"{utt}.wav", voiced(i, dur), SR, subtype="PCM_16")
        scp.append(f"{utt} wav/{utt}.wav")
        u2s.append(f"{utt} {utt.split('-')[0]}")
    (d / "wav.scp").write_text("\n".join(scp) + "\n")
    (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    (d / "spk2utt").write_text("spkA spkA-u1 spkA-u2\nspkB spkB-u1 spkB-u2\n")
    (d / "text").write_text("".join(f"{u} hello\n" for u in sorted(utts)))
    return d


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a shared 2-core machine run ~10x slower than one (measured): use one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _fit(codec: AudioCodec, wav: torch.Tensor, steps: int, lr: float, beta: float) -> tuple[list[float], dict]:
    mel = MultiResolutionMelLoss(SR, [[256, 64, 40], [512, 128, 64]])
    opt = torch.optim.Adam(codec.parameters(), lr)
    losses, stats = [], {}
    for _ in range(steps):
        out = codec(wav)
        loss = mel(out.wav, out.target)
        opt.zero_grad()
        (15 * loss + beta * out.bottleneck.loss).backward()
        opt.step()
        losses.append(float(loss.detach()))
        stats = out.stats
    return losses, {k: float(v) for k, v in stats.items()}


def test_one_clip_overfit_drives_mel_loss_down():
    """Training on a single clip must cut the multi-resolution mel loss by a factor of 3 (measured: 4.4)."""
    torch.manual_seed(0)
    codec = AudioCodec(from_dict(CodecConfig, tiny_model()))
    losses, _ = _fit(codec, torch.from_numpy(voiced(0, 0.5))[None], steps=100, lr=1e-2, beta=0.01)
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])


@pytest.mark.slow
def test_sigma_vae_keeps_latent_noise_where_gaussian_vae_collapses():
    """The variance-collapse ablation on one short run (same trunk, data, steps and seed).

    noise_to_signal = median over dims of σ_d / std(μ_d): the perturbation the decoder learns
    to tolerate, relative to the spread of the latents. The σ-VAE keeps it; the Gaussian VAE
    with a weak KL lets its posterior σ collapse.
    """
    wav = torch.stack([torch.from_numpy(voiced(i, 0.5)) for i in range(4)])
    res = {}
    for kind, beta in (("sigma", 0.01), ("gaussian", 1e-4)):
        torch.manual_seed(0)
        codec = AudioCodec(from_dict(CodecConfig, tiny_model(kind, beta=beta)))
        losses, stats = _fit(codec, wav, steps=250, lr=3e-3, beta=beta)
        res[kind] = stats
    assert res["sigma"]["noise_std"] == pytest.approx(0.5, rel=0.6)  # one batch of 4 draws of σ
    assert res["gaussian"]["noise_std"] < 0.25  # its median posterior σ fell from ~0.9 at init
    assert res["sigma"]["noise_to_signal"] > 2 * res["gaussian"]["noise_to_signal"], res


def _train_cfg(tmp_path, **model) -> CodecTrainConfig:
    return from_dict(CodecTrainConfig, {
        "model": tiny_model(**model),
        "loss": {"mel_resolutions": [[256, 64, 40]], "stft_resolutions": [[128, 32]]},
        "data": {"batch_size": 2, "crop_seconds": 0.25},
        "trainer": {"max_steps": 3, "checkpoint_every": 2, "stats_batches": 2, "log_every": 1},
    })


def test_train_export_and_resume(tmp_path, data_dir):
    out = tmp_path / "exp"
    model_dir = train_codec(_train_cfg(tmp_path), [data_dir], out, progress=False)
    codec = load_codec(model_dir)
    assert codec.latent_dim == 8
    assert not torch.allclose(codec.latent_std, torch.ones(8))  # measured on data, not the default
    assert (out / "checkpoints" / "last.ckpt").is_file()
    metrics = (out / "logs" / "run1" / "metrics.csv").read_text()
    assert "loss/mel" in metrics and "latent/mu_std_mean" in metrics and "latent/noise_to_signal" in metrics
    import yaml

    info = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert info["meta"]["steps"] == 3
    with pytest.raises(ConfigError, match="--resume"):
        train_codec(_train_cfg(tmp_path), [data_dir], out, progress=False)
    train_codec(_train_cfg(tmp_path), [data_dir], out, max_steps=5, resume=True, progress=False)
    info = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert info["meta"]["steps"] == 5
    assert (out / "logs" / "run2" / "metrics.csv").is_file() and (out / "logs" / "run1" / "metrics.csv").is_file()


def test_adversarial_training_smoke(tmp_path, data_dir):
    """The paper config's adversarial path (MPD + multi-resolution STFT discriminators) runs."""
    cfg = _train_cfg(tmp_path)
    cfg.adversarial = from_dict(type(cfg.adversarial), {
        "enabled": True, "start_step": 1,
        "discriminator": {"periods": [2, 3], "period_channels": [4, 8], "stft_resolutions": [128], "stft_channels": 4},
    })
    out = tmp_path / "adv"
    train_codec(cfg, [data_dir], out, max_steps=3, progress=False)
    metrics = (out / "logs" / "run1" / "metrics.csv").read_text()
    assert "loss/disc" in metrics and "loss/feat" in metrics
    import yaml

    assert yaml.safe_load((out / "model" / "config.yaml").read_text())["meta"]["steps"] == 3  # generator steps


def test_paper_config_builds_and_steps():
    """The 24 kHz / 15 Hz paper config: exact frame arithmetic, one discriminator forward."""
    from pathlib import Path

    from latentspeech.models.codec.discriminators import CodecDiscriminator
    from latentspeech.config import load_config

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "egs/librilight/tts1/conf/codec.yaml", CodecTrainConfig)
    torch.manual_seed(0)
    codec = AudioCodec(cfg.model).eval()
    z = codec.encode(torch.randn(1, 24000) * 0.1)
    assert z.shape == (1, 32, 15)
    assert codec.decode(z).shape == (1, 24000)
    logits, feats = CodecDiscriminator(cfg.adversarial.discriminator)(torch.randn(1, 4800))
    assert len(logits) == 5 + 3 and len(feats) == len(logits)


def test_latent_store_round_trip_and_interrupted_shard(tmp_path):
    arrays = {f"u{i}": np.random.default_rng(i).standard_normal((i + 1, 4)).astype(np.float32) for i in range(5)}
    with LatentWriter(tmp_path / "s", {"latent_dim": 4, "frame_rate": 25.0}, shard_size=2) as w:
        for k, v in arrays.items():
            w.add(k, v)
    store = LatentStore(tmp_path / "s")
    assert len(store) == 5 and store.latent_dim == 4 and store.frames("u3") == 4
    assert len(list((tmp_path / "s").glob("shard-*.safetensors"))) == 3
    for k, v in arrays.items():
        np.testing.assert_array_equal(store[k], v)
    assert dict((k, v.shape) for k, v in store.items()) == {k: v.shape for k, v in arrays.items()}
    # A shard written but never indexed (interrupted run) is removed on resume, and so is a
    # half-written index line; the ids fully indexed stay done.
    (tmp_path / "s" / "shard-00009.safetensors").write_bytes(b"partial")
    with open(tmp_path / "s" / INDEX, "a") as f:
        f.write("u9\tshard-00009.safe")
    w = LatentWriter(tmp_path / "s", {"latent_dim": 4, "frame_rate": 25.0})
    assert w.done == set(arrays)
    assert not (tmp_path / "s" / "shard-00009.safetensors").exists()
    with pytest.raises(DataDirError, match="no index.tsv"):
        LatentStore(tmp_path / "nothing")
    with pytest.raises(DataDirError, match="another codec"):
        LatentWriter(tmp_path / "s", {"latent_dim": 8, "codec": "other"})


def test_extract_is_batched_exact_and_resumable(tmp_path, data_dir):
    torch.manual_seed(0)
    codec = AudioCodec(from_dict(CodecConfig, tiny_model())).eval()
    codec.set_latent_stats(torch.zeros(8), torch.full((8,), 2.0))
    out = extract_latents(codec, data_dir, tmp_path / "dump", batch_seconds=10, shard_size=3, progress=False)
    store = LatentStore(out)
    assert len(store) == 4
    assert store.normalization()[1].tolist() == [2.0] * 8
    for utt in store.utt_ids:
        wav, _ = sf.read(data_dir / "wav" / f"{utt}.wav", dtype="float32")
        z = store[utt]
        assert z.shape == (math.ceil(len(wav) / codec.hop_length), 8)
        single = codec.encode(torch.from_numpy(wav)[None])[0].T.numpy()
        np.testing.assert_allclose(z, single, atol=1e-5)  # batching never changes a latent
    # resume: remove one utterance from the index; only that one is extracted again
    idx = (out / INDEX).read_text().splitlines()
    (out / INDEX).write_text("\n".join(idx[1:]) + "\n")
    extract_latents(codec, data_dir, out, progress=False)
    assert len(LatentStore(out)) == 4


def test_cli_encode_decode_round_trip(tmp_path, capsys):
    torch.manual_seed(0)
    model = save_codec(AudioCodec(from_dict(CodecConfig, tiny_model())), tmp_path / "codec")
    wav = tmp_path / "in.wav"
    sf.write(wav, voiced(3, 0.3), SR)
    npy, back = tmp_path / "z.npy", tmp_path / "out.wav"
    assert main(["codec", "encode", "--model", str(model), str(wav), str(npy)]) == 0
    z = np.load(npy)
    assert z.shape == (math.ceil(0.3 * SR / 64), 8) and z.dtype == np.float32
    assert main(["codec", "decode", "--model", str(model), str(npy), str(back)]) == 0
    y, sr = sf.read(back)
    assert sr == SR and len(y) == z.shape[0] * 64
    # normalised latents decode to the same audio when flagged
    assert main(["codec", "encode", "--normalize", "--model", str(model), str(wav), str(tmp_path / "zn.npy")]) == 0
    assert main(["codec", "decode", "--normalized", "--model", str(model), str(tmp_path / "zn.npy"),
                 str(tmp_path / "out2.wav")]) == 0
    np.testing.assert_allclose(sf.read(tmp_path / "out2.wav")[0], y, atol=1e-4)
    # wrong shapes fail with one line, exit 1
    np.save(tmp_path / "bad.npy", np.zeros((5, 3), np.float32))
    capsys.readouterr()
    assert main(["codec", "decode", "--model", str(model), str(tmp_path / "bad.npy"), str(back)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "frames x 8" in err and len(err.strip().splitlines()) == 1
    assert main(["codec", "encode", "--model", str(tmp_path / "nope"), str(wav), str(npy)]) == 1


def test_cli_rvq_codes_and_extract(tmp_path, data_dir):
    torch.manual_seed(0)
    c = AudioCodec(from_dict(CodecConfig, tiny_model("rvq"))).train()
    c(torch.from_numpy(voiced(1, 1.0))[None])
    model = save_codec(c.eval(), tmp_path / "rvq")
    sf.write(tmp_path / "in.wav", voiced(2, 0.3), SR)
    assert main(["codec", "encode", "--codes", "--model", str(model), str(tmp_path / "in.wav"),
                 str(tmp_path / "c.npy")]) == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.dtype == np.int16 and codes.shape == (math.ceil(0.3 * SR / 64), 2)
    assert main(["codec", "decode", "--model", str(model), str(tmp_path / "c.npy"), str(tmp_path / "o.wav")]) == 0
    assert main(["codec", "extract", "--codes", "--model", str(model), str(data_dir), str(tmp_path / "dump")]) == 0
    store = LatentStore(tmp_path / "dump")
    assert len(store) == 4 and store["spkB-u1"].dtype == np.int16


def test_cli_train_runs(tmp_path, data_dir):
    cfg = _train_cfg(tmp_path)
    save_config(cfg, tmp_path / "c.yaml")
    assert main(["codec", "train", "--config", str(tmp_path / "c.yaml"), "--data", str(data_dir),
                 "--out", str(tmp_path / "exp"), "--max-steps", "2", "--no-progress"]) == 0
    assert (tmp_path / "exp" / "model" / "model.safetensors").is_file()
    assert main(["codec", "stats", "--model", str(tmp_path / "exp" / "model")]) == 0


def test_rvq_codec_starts_from_a_trained_sigma_trunk(tmp_path, data_dir):
    """init.from_model copies encoder + decoder, k-means sets the codebooks, the encoder stays fixed."""
    torch.manual_seed(0)
    src = AudioCodec(from_dict(CodecConfig, tiny_model("sigma")))
    src_dir = save_codec(src.eval(), tmp_path / "sigma")
    cfg = _train_cfg(tmp_path)
    cfg.model = from_dict(CodecConfig, tiny_model("rvq"))
    cfg.init.from_model = str(src_dir)
    cfg.init.freeze_encoder = True
    cfg.init.codebook_batches = 2
    model_dir = train_codec(cfg, [data_dir], tmp_path / "rvq", max_steps=2, progress=False)
    rvq = load_codec(model_dir)
    for k, v in src.encoder.state_dict().items():
        assert torch.equal(rvq.encoder.state_dict()[k], v), k  # copied and frozen
    dec = [k for k, v in src.decoder.state_dict().items() if not torch.equal(rvq.decoder.state_dict()[k], v)]
    assert dec  # the decoder fine-tuned
    codes = rvq.encode_codes(torch.from_numpy(voiced(7, 0.5))[None])
    assert codes.shape[1] == 2 and int(codes.max()) < 16
    # a trunk that does not match is a clear error
    bad = tiny_model("rvq")
    bad["encoder"] = {"dim": 16, "blocks": [1, 1, 1]}
    cfg.model = from_dict(CodecConfig, bad)
    with pytest.raises(Exception, match="init.from_model"):
        train_codec(cfg, [data_dir], tmp_path / "bad", max_steps=1, progress=False)


def test_decoder_only_fine_tune_keeps_codes_and_latents(tmp_path, data_dir):
    """init.freeze_encoder + init.keep_bottleneck: a harmonic decoder fine-tuned on a trained RVQ codec
    (or σ-VAE codec) gives exactly its source's codes (latents and statistics), also after --resume;
    only decoding changes; a plain codec initialised from the harmonic one drops the source-only tensors."""
    torch.manual_seed(0)
    wav = torch.from_numpy(voiced(7, 0.5))[None]
    for kind in ("rvq", "sigma"):
        cfg = _train_cfg(tmp_path)
        cfg.model = from_dict(CodecConfig, tiny_model(kind))
        cfg.init.codebook_batches = 2
        src_dir = train_codec(cfg, [data_dir], tmp_path / kind, max_steps=2, progress=False)
        cfg = _train_cfg(tmp_path)
        cfg.model = from_dict(CodecConfig, tiny_model(kind))
        cfg.model.decoder.source = "harmonic"
        cfg.init.from_model, cfg.init.freeze_encoder, cfg.init.keep_bottleneck = str(src_dir), True, True
        ft_dir = train_codec(cfg, [data_dir], tmp_path / f"{kind}_ft", max_steps=2, progress=False)
        ft_dir = train_codec(cfg, [data_dir], tmp_path / f"{kind}_ft", max_steps=4, resume=True, progress=False)
        src, ft = load_codec(src_dir), load_codec(ft_dir)
        assert torch.equal(ft.encode(wav), src.encode(wav)), kind
        assert torch.equal(ft.latent_mean, src.latent_mean) and torch.equal(ft.latent_std, src.latent_std)
        if kind == "rvq":
            assert torch.equal(ft.encode_codes(wav), src.encode_codes(wav))
            for k, v in src.bottleneck.state_dict().items():
                assert torch.equal(ft.bottleneck.state_dict()[k], v), k  # no EMA update, no restart
        assert not torch.allclose(ft.decode(ft.encode(wav)), src.decode(src.encode(wav)))
    # keep_bottleneck needs the same bottleneck; a plain decoder from a harmonic codec drops its extras
    cfg = _train_cfg(tmp_path)
    cfg.init.from_model, cfg.init.keep_bottleneck = str(tmp_path / "rvq_ft" / "model"), True
    with pytest.raises(ConfigError, match="keep_bottleneck"):
        train_codec(cfg, [data_dir], tmp_path / "mismatch", max_steps=1, progress=False)
    from latentspeech.train.codec import init_from_codec

    plain = AudioCodec(from_dict(CodecConfig, tiny_model("sigma")))
    info = init_from_codec(plain, from_dict(type(cfg.init), {"from_model": str(tmp_path / "sigma_ft" / "model")}))
    assert info["new_tensors"] == [] and any(k.startswith("decoder.pitch.") for k in info["dropped_tensors"])
    assert torch.equal(plain.encoder.embed.weight, load_codec(tmp_path / "sigma_ft" / "model").encoder.embed.weight)


def test_harmonic_decoder_learns_the_pitch_of_a_clip():
    """Fitting one voiced clip with the pitch loss (YIN targets) cuts the log-F0 error 3-fold
    (measured 3.6x), the voicing loss 1.5-fold (2.6x) and the mel loss 2-fold (4.6x)."""
    from latentspeech.audio.pitch import yin
    from latentspeech.models.codec.losses import pitch_loss

    torch.manual_seed(0)
    model = tiny_model()
    model["decoder"]["source"] = "harmonic"
    codec = AudioCodec(from_dict(CodecConfig, model))
    mel = MultiResolutionMelLoss(SR, [[256, 64, 40], [512, 128, 64]])
    wav = torch.from_numpy(voiced(1, 0.5))[None]
    f0, is_voiced = yin(codec.pad(wav), SR, 16)
    assert is_voiced.float().mean() > 0.8
    opt = torch.optim.Adam(codec.parameters(), 1e-2)
    first = last = None
    for step in range(80):
        out = codec(wav, f0, is_voiced.float()) if step % 2 else codec(wav)
        f0_l1, voicing = pitch_loss(out.pitch, f0, is_voiced)
        m = mel(out.wav, out.target)
        opt.zero_grad()
        (15 * m + 2 * (f0_l1 + voicing)).backward()
        opt.step()
        last = (float(f0_l1.detach()), float(m.detach()), float(voicing.detach()))
        first = first or last
    assert last[0] < first[0] / 3 and last[1] < first[1] / 2 and last[2] < first[2] / 1.5, (first, last)


def test_harmonic_training_logs_pitch_and_inits_from_a_plain_codec(tmp_path, data_dir):
    plain = train_codec(_train_cfg(tmp_path), [data_dir], tmp_path / "plain", progress=False)
    cfg = _train_cfg(tmp_path)
    cfg.model.decoder.source = "harmonic"
    cfg.init.from_model = str(plain)
    out = tmp_path / "harmonic"
    model_dir = train_codec(cfg, [data_dir], out, max_steps=2, progress=False)
    metrics = (out / "logs" / "run1" / "metrics.csv").read_text()
    assert "loss/f0" in metrics and "loss/voicing" in metrics
    codec, src = load_codec(model_dir), load_codec(plain)
    assert codec.cfg.decoder.source == "harmonic" and codec.decoder.pitch is not None
    assert codec.decode(torch.zeros(1, 8, 5)).shape == (1, 5 * codec.hop_length)
    # the copied trunk started from the plain codec (2 steps at lr 1e-3 move it only a little)
    w, w0 = codec.decoder.embed.weight, src.decoder.embed.weight
    assert (w - w0).abs().max() < 0.05 < w0.abs().max()


def test_anchored_joint_fine_tune_stays_near_the_source_latents(tmp_path, data_dir):
    """init.anchor_weight: the encoder trains (its latents change) but stays nearer the source's latents
    than without the anchor, keeps the source's latent statistics, and the anchor is logged; the
    weight needs a source."""
    torch.manual_seed(0)
    wav = torch.from_numpy(voiced(7, 0.5))[None]
    cfg = _train_cfg(tmp_path)
    src_dir = train_codec(cfg, [data_dir], tmp_path / "src", max_steps=2, progress=False)
    src = load_codec(src_dir)
    drift = {}
    for weight in (0.0, 50.0):
        cfg = _train_cfg(tmp_path)
        cfg.optim.lr, cfg.optim.warmup_steps = 3e-3, 1
        cfg.init.from_model, cfg.init.anchor_weight = str(src_dir), weight
        out = tmp_path / f"anchor{weight:g}"
        ft = load_codec(train_codec(cfg, [data_dir], out, max_steps=12, progress=False))
        z, ref = ft.encode(wav), src.encode(wav)
        drift[weight] = ((z - ref) / src.latent_std[None, :, None]).square().mean().item()
        if weight:
            assert torch.equal(ft.latent_mean, src.latent_mean) and torch.equal(ft.latent_std, src.latent_std)
            assert "loss/anchor" in (out / "logs" / "run1" / "metrics.csv").read_text()
    assert 0 < drift[50.0] < 0.5 * drift[0.0], drift
    cfg = _train_cfg(tmp_path)
    cfg.init.anchor_weight = 1.0
    with pytest.raises(ConfigError, match="init-from"):
        train_codec(cfg, [data_dir], tmp_path / "no_source", max_steps=1, progress=False)
    cfg.init.anchor_weight = -1.0
    with pytest.raises(ConfigError, match="anchor_weight"):
        cfg.validate()
