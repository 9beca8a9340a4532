"""The codec model: frame arithmetic, bottlenecks (σ-VAE, Gaussian, RVQ), save/load round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentspeech.models.codec import AudioCodec, CodecConfig, load_codec, save_codec
from latentspeech.models.codec.bottleneck import EMACodebook, SigmaBottleneck, kmeans
from latentspeech.models.codec.config import BottleneckConfig
from latentspeech.models.codec.layers import ISTFTHead, STFTFrontEnd
from latentspeech.config import from_dict
from latentspeech.errors import AudioError, CheckpointError, ConfigError


def tiny_config(kind: str = "sigma", **bottleneck) -> CodecConfig:
    """hop_length 64 (frame_hop 16 x 2 x 2) at 16 kHz, 8-d latents, a few thousand parameters."""
    return from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 64, "frame_hop": 16, "downsample": [2, 2], "latent_dim": 8,
        "encoder": {"dim": 32, "blocks": [1, 1, 1]}, "decoder": {"dim": 32, "blocks": [1, 1, 1]},
        "bottleneck": {"kind": kind, "num_quantizers": 3, "codebook_size": 16, **bottleneck},
    })


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on a shared 2-core machine run ~10x slower than one (measured): use one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def codec() -> AudioCodec:
    torch.manual_seed(0)
    return AudioCodec(tiny_config()).eval()


def test_contract_attributes(codec):
    assert codec.sample_rate == 16000
    assert codec.hop_length == 64
    assert codec.latent_dim == 8
    assert codec.frame_rate == pytest.approx(250.0)


@settings(max_examples=10, deadline=None)
@given(t=st.integers(min_value=1, max_value=700))
def test_frame_arithmetic_any_length(codec, t):
    """F = ceil(T / hop) frames; decode gives exactly F * hop samples."""
    wav = torch.randn(2, t) * 0.1
    z = codec.encode(wav)
    frames = math.ceil(t / 64)
    assert z.shape == (2, 8, frames)
    assert codec.num_frames(t) == frames
    y = codec.decode(z)
    assert y.shape == (2, frames * 64) == (2, codec.num_samples(frames))
    assert t <= y.shape[-1] < t + 64


def test_padding_is_on_the_right_and_zero(codec):
    wav = torch.randn(1, 100)
    padded = codec.pad(wav)
    assert padded.shape[-1] == 128
    assert torch.equal(padded[:, :100], wav) and torch.all(padded[:, 100:] == 0)


def test_bad_inputs_raise_one_line_errors(codec):
    with pytest.raises(AudioError, match="batch, samples"):
        codec.encode(torch.zeros(10))
    with pytest.raises(AudioError, match="no samples"):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(AudioError, match=r"latents \[batch, 8, frames\]"):
        codec.decode(torch.zeros(1, 5, 3))


def test_stft_frontend_and_istft_are_exact_inverses():
    """The "same"-padded STFT/iSTFT pair reconstructs the signal and keeps T = frames * hop."""
    n_fft, hop = 64, 16
    x = torch.randn(2, 16 * 20)
    fe, head = STFTFrontEnd(n_fft, hop), ISTFTHead(8, n_fft, hop)
    assert fe(x).shape == (2, 33, 20)
    xp = torch.nn.functional.pad(x[:, None], ((n_fft - hop) // 2,) * 2, mode="reflect")[:, 0]
    spec = torch.stft(xp, n_fft, hop, n_fft, torch.hann_window(n_fft), center=False, return_complex=True)
    y = head.istft(spec)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-4)


def test_sigma_noise_has_configured_scale():
    """σ = |N(0,1)| · C_σ / 0.8 per example: mean |σ| ≈ C_σ · sqrt(2/π) / 0.8 ≈ 0.997 C_σ."""
    b = SigmaBottleneck(BottleneckConfig(kind="sigma", sigma_scale=0.5), latent_dim=8)
    g = torch.Generator().manual_seed(0)
    sigma = b.sample_sigma(200_000, generator=g)
    assert float(sigma.min()) >= 0
    assert float(sigma.mean()) == pytest.approx(0.5 * math.sqrt(2 / math.pi) / 0.8, rel=0.01)
    assert float(sigma.std()) == pytest.approx(0.5 / 0.8 * math.sqrt(1 - 2 / math.pi), rel=0.02)
    # In training the added noise z - μ has, per example, std σ (one scalar per example).
    b.train()
    torch.manual_seed(1)
    h = torch.randn(64, 8, 400)
    out = b(h)
    per_example = (out.z - out.mu).std(dim=(1, 2))
    assert float(per_example.mean()) == pytest.approx(0.5, rel=0.15)
    assert float(per_example.std()) > 0.1  # σ varies across examples, not fixed
    # Inference returns μ exactly; the loss is mean(μ²).
    b.eval()
    out = b(h)
    assert torch.equal(out.z, h)
    assert float(out.loss) == pytest.approx(float(h.square().mean()), rel=1e-5)


def test_encode_is_deterministic_and_returns_mu():
    torch.manual_seed(0)
    c = AudioCodec(tiny_config())
    wav = torch.randn(1, 640) * 0.1
    c.train()  # encode() must ignore the training noise even on a module left in train mode
    mu = c.encoder(c.pad(wav))
    assert torch.equal(c.encode(wav), c.encode(wav))
    torch.testing.assert_close(c.encode(wav), mu.detach())


def test_gaussian_bottleneck_kl_and_channels():
    torch.manual_seed(0)
    c = AudioCodec(tiny_config("gaussian"))
    assert c.encoder.proj.out_channels == 16  # μ and log σ²
    out = c(torch.randn(2, 640) * 0.1)
    assert out.bottleneck.z.shape == (2, 8, 10)
    assert float(out.bottleneck.loss.detach()) >= 0
    assert c.encode(torch.randn(1, 640)).shape == (1, 8, 10)


def test_normalize_denormalize_round_trip(codec):
    c = AudioCodec(tiny_config())
    c.set_latent_stats(torch.arange(8.0), torch.linspace(0.5, 2.0, 8))
    z = torch.randn(2, 8, 5)
    zn = c.normalize(z)
    torch.testing.assert_close(zn[:, 3], (z[:, 3] - 3.0) / c.latent_std[3])
    torch.testing.assert_close(c.denormalize(zn), z)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    c = AudioCodec(tiny_config()).eval()
    c.set_latent_stats(torch.randn(8), torch.rand(8) + 0.5)
    path = save_codec(c, tmp_path / "codec", meta={"steps": 7})
    assert (path / "model.safetensors").is_file() and (path / "config.yaml").is_file()
    back = load_codec(path)
    assert not back.training
    wav = torch.randn(1, 1000) * 0.1
    torch.testing.assert_close(back.encode(wav), c.encode(wav), rtol=0, atol=0)
    torch.testing.assert_close(back.decode(c.encode(wav)), c.decode(c.encode(wav)), rtol=0, atol=0)
    torch.testing.assert_close(back.latent_std, c.latent_std)
    # fp16 storage: half the bytes, close outputs
    half = save_codec(c, tmp_path / "half", dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (path / "model.safetensors").stat().st_size
    torch.testing.assert_close(load_codec(half).encode(wav), c.encode(wav), rtol=0.05, atol=0.02)


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such model"):
        load_codec(tmp_path / "missing")
    c = AudioCodec(tiny_config())
    path = save_codec(c, tmp_path / "codec")
    cfg_text = (path / "config.yaml").read_text().replace("latent_dim: 8", "latent_dim: 9")
    (path / "config.yaml").write_text(cfg_text)
    with pytest.raises(CheckpointError, match="does not match"):
        load_codec(path)


def test_config_validation():
    with pytest.raises(ConfigError, match="blocks needs 3 entries"):
        from_dict(CodecConfig, {"encoder": {"blocks": [1, 1]}})
    with pytest.raises(ConfigError, match="n_fft - frame_hop must be even"):
        from_dict(CodecConfig, {"n_fft": 641})
    with pytest.raises(ConfigError, match="expected one of"):
        from_dict(CodecConfig, {"bottleneck": {"kind": "vq"}})


# -- RVQ -----------------------------------------------------------------------------------------

def test_kmeans_finds_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    found = kmeans(x, 3, iters=10, generator=g)
    d = torch.cdist(centres, found).min(dim=1).values
    assert float(d.max()) < 0.3


def test_rvq_round_trip_and_kmeans_init():
    torch.manual_seed(0)
    c = AudioCodec(tiny_config("rvq"))
    assert c.num_quantizers == 3 and c.codebook_size == 16
    wav = torch.randn(2, 1000) * 0.1
    assert not bool(c.bottleneck.codebooks[0].initialized)
    c.train()
    out = c(wav)  # first training batch: k-means initialisation + EMA update
    assert all(bool(cb.initialized) for cb in c.bottleneck.codebooks)
    assert out.bottleneck.codes.shape == (2, 3, 16)
    c.eval()
    codes = c.encode_codes(wav)
    assert codes.shape == (2, 3, math.ceil(1000 / 64))
    assert codes.dtype == torch.int64 and int(codes.min()) >= 0 and int(codes.max()) < 16
    # decode_codes(codes) is decode(encode(wav)): the same quantised latents
    torch.testing.assert_close(c.decode_codes(codes), c.decode(c.encode(wav)))
    # Each extra quantiser reduces the residual error on the encoder output.
    h = c.encoder(c.pad(wav))
    errs = [float((c.bottleneck.decode_codes(codes[:, :q]) - h).square().mean()) for q in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]


def test_rvq_errors_on_non_rvq_codec(codec):
    with pytest.raises(CheckpointError, match="needs an RVQ codec"):
        codec.encode_codes(torch.zeros(1, 64))


def test_ema_codebook_restarts_dead_codes():
    torch.manual_seed(0)
    cb = EMACodebook(dim=4, size=8, decay=0.5, kmeans_iters=2, dead_threshold=0.5).train()
    x = torch.randn(32, 4)
    cb(x)
    # Make every code but one dead and move the data far away: dead codes restart from the batch.
    far = torch.randn(32, 4) + 100.0
    cb.cluster_size.fill_(0.0)
    cb.cluster_size[0] = 100.0
    cb(far)
    near = torch.cdist(cb.embed, far).min(dim=1).values
    assert int((near < 1e-4).sum()) >= 4  # restarted exactly on batch vectors
    assert int((near < 5.0).sum()) >= 7  # all but the one live code moved to the new data


def test_rvq_save_load_keeps_codebooks(tmp_path):
    torch.manual_seed(0)
    c = AudioCodec(tiny_config("rvq")).train()
    c(torch.randn(2, 2000) * 0.1)
    c.eval()
    back = load_codec(save_codec(c, tmp_path / "rvq"))
    wav = torch.randn(1, 700) * 0.1
    assert torch.equal(back.encode_codes(wav), c.encode_codes(wav))
    assert bool(back.bottleneck.codebooks[1].initialized)


def test_demo_config_size():
    """The demo codec must stay within its share of the 50 MB bundle (≲ 4 M params, fp16)."""
    from pathlib import Path

    from latentspeech.config import load_config
    from latentspeech.train.codec import CodecTrainConfig

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "egs/demo/tts1/conf/codec.yaml", CodecTrainConfig)
    assert cfg.model.frame_rate == 25.0 and cfg.model.latent_dim == 32
    n = sum(p.numel() for p in AudioCodec(cfg.model).parameters())
    assert n < 4.5e6
    rvq = load_config(root / "egs/demo/tts1/conf/codec_rvq.yaml", CodecTrainConfig)
    assert rvq.model.frame_rate == 25.0 and rvq.model.bottleneck.num_quantizers == 8
    assert rvq.model.bottleneck.codebook_size == 1024
    # the baseline's RVQ codec shares the σ-VAE trunk (its weights are copied in: init.from_model)
    assert (rvq.model.encoder, rvq.model.decoder, rvq.model.downsample) == (
        cfg.model.encoder, cfg.model.decoder, cfg.model.downsample)
    paper = load_config(root / "egs/librilight/tts1/conf/codec.yaml", CodecTrainConfig)
    assert paper.model.frame_rate == 15.0 and paper.model.sample_rate == 24000 and paper.adversarial.enabled
    assert np.prod(paper.model.downsample) * paper.model.frame_hop == 1600


def test_harmonic_decoder_frames_pitch_and_source():
    """A source-filter decoder keeps the frame contract, reads pitch per iSTFT frame, and its
    source path is silent when unvoiced (then it equals the plain head on the same features)."""
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg.decoder.source = "harmonic"
    codec = AudioCodec(cfg).eval()
    wav = 0.1 * torch.randn(2, 1000)
    out = codec(wav)
    frames = codec.num_frames(1000)
    assert out.wav.shape == (2, frames * codec.hop_length)
    assert out.pitch.log_f0.shape == out.pitch.voiced_logit.shape == (2, frames * 4)
    lo, hi = math.log(60.0), math.log(500.0)
    assert (out.pitch.log_f0 >= lo).all() and (out.pitch.log_f0 <= hi).all()
    assert codec.decode(codec.encode(wav)).shape == (2, frames * codec.hop_length)
    z = codec.encode(wav)
    with torch.no_grad():
        codec.decoder.head.harmonic_gain.bias.fill_(0.0)  # make the source loud enough to matter
        f0 = torch.full((2, frames * 4), 150.0)
        unvoiced, _ = codec.decoder(z, f0, torch.zeros_like(f0))
        voiced, _ = codec.decoder(z, f0, torch.ones_like(f0))
        codec.decoder.head.harmonic_gain = None  # the plain head: no source
        plain, _ = codec.decoder(z, f0, torch.ones_like(f0))
    assert torch.allclose(unvoiced, plain, atol=1e-6)
    assert (voiced - plain).abs().mean() > 0.1 * plain.abs().mean()


def test_harmonic_config_validation():
    cfg = tiny_config()
    cfg.decoder.f0_range = [500.0, 60.0]
    with pytest.raises(ConfigError, match="f0_range"):
        cfg.validate()
    cfg.decoder.f0_range = [60.0, 9000.0]
    with pytest.raises(ConfigError, match="f0_range"):
        cfg.validate()


def test_joint_fine_tune_config():
    """conf/codec_joint.yaml (the bundled codec-demo) trains encoder and harmonic decoder together on the
    demo trunk: same shapes as the decoder-only fine-tune it starts from, so --init-from copies every tensor."""
    from pathlib import Path

    from latentspeech.config import load_config
    from latentspeech.train.codec import CodecTrainConfig

    conf = Path(__file__).resolve().parent.parent / "egs/demo/tts1/conf"
    joint = load_config(conf / "codec_joint.yaml", CodecTrainConfig)
    harmonic = load_config(conf / "codec_harmonic.yaml", CodecTrainConfig)
    assert joint.model == harmonic.model and joint.model.decoder.source == "harmonic"
    assert not joint.init.freeze_encoder and harmonic.init.freeze_encoder
    assert joint.trainer.stats_batches > 0  # a trained encoder: fresh latent statistics at export


@pytest.mark.parametrize("name", ["codec-demo", "codec-rvq-demo"])
def test_bundled_codecs_round_trip(name):
    """The shipped codecs load by name (safetensors + YAML) and keep the frame contract on real audio."""
    from latentspeech.audio import load_audio
    from latentspeech.checkpoint import WEIGHTS, bundled_path
    from latentspeech.cli.synthesize import demo_prompt

    if not (bundled_path(name) / WEIGHTS).is_file() or demo_prompt() is None:
        pytest.skip(f"{name} is not bundled")
    codec = load_codec(name)
    wav = load_audio(demo_prompt(), codec.sample_rate)
    x = torch.from_numpy(wav[: 2 * codec.sample_rate])[None]
    z = codec.encode(x)
    assert z.shape == (1, codec.latent_dim, codec.num_frames(x.shape[1])) and torch.isfinite(z).all()
    y = codec.decode(z)
    assert y.shape == (1, z.shape[-1] * codec.hop_length) and torch.isfinite(y).all()
    assert 0.1 < y.std() / x.std() < 10  # speech level in, speech level out
