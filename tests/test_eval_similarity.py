"""Speaker similarity (latentspeech.eval.similarity): Resemblyzer ranks same-speaker pairs
above different-speaker pairs on real speech; the speechbrain ECAPA loader on a tiny local model."""

import numpy as np
import pytest

from latentspeech.errors import CheckpointError
from latentspeech.eval.similarity import cosine, get_speaker_encoder


def test_cosine():
    assert cosine([1, 0], [2, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine([1, 1], [-1, -1]) == pytest.approx(-1.0)
    assert cosine([0, 0], [1, 0]) == 0.0


def _halves(voices_dir, n):
    from latentspeech.audio import load_audio

    lines = sorted(voices_dir.joinpath("wav.scp").read_text().split("\n"))
    lines = [ln.split() for ln in lines if ln.strip()]
    gender = dict(ln.split() for ln in voices_dir.joinpath("spk2gender").read_text().splitlines())
    utt2spk = dict(ln.split() for ln in voices_dir.joinpath("utt2spk").read_text().splitlines())
    # alternate female and male speakers so "different speaker" includes same-gender pairs
    by_g = {"f": [], "m": []}
    for utt, path in lines:
        by_g[gender[utt2spk[utt]]].append(path)
    chosen = [p for pair in zip(by_g["f"], by_g["m"]) for p in pair][:n]
    out = []
    for p in chosen:
        wav = load_audio(voices_dir / p, 16000)[: 16000 * 6]  # 3 s halves keep the test quick
        h = len(wav) // 2
        out.append((wav[:h], wav[h:]))
    return out


@pytest.fixture(scope="module")
def resemblyzer():
    pytest.importorskip("resemblyzer")
    return get_speaker_encoder("resemblyzer")


def test_resemblyzer_ranks_same_speaker_above_different(resemblyzer, voices_dir):
    halves = _halves(voices_dir, 5)
    first = resemblyzer.embed([a for a, _ in halves])
    second = resemblyzer.embed([b for _, b in halves])
    assert first.shape == (5, 256)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    sims = first @ second.T
    same = np.diag(sims)
    diff = sims[~np.eye(len(sims), dtype=bool)]
    assert same.mean() > diff.mean() + 0.15, (same, diff)
    # each first half finds its own second half as the nearest of the five
    assert (sims.argmax(axis=1) == np.arange(5)).mean() >= 4 / 5
    # the similarity() shortcut agrees with the matrix
    assert resemblyzer.similarity(halves[0][0], halves[0][1]) == pytest.approx(float(sims[0, 0]), abs=1e-5)


def test_resemblyzer_is_cached(resemblyzer):
    assert get_speaker_encoder("resemblyzer") is resemblyzer


def test_unknown_encoder_fails_in_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="unknown speaker encoder"):
        get_speaker_encoder("microsoft/wavlm-base-plus-sv")
    with pytest.raises(CheckpointError, match="hyperparams.yaml"):
        get_speaker_encoder(str(tmp_path))


ECAPA_YAML = """
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
n_mels: 24
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    lin_neurons: 12
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def test_ecapa_from_local_directory(tmp_path):
    """The published spkrec-ecapa-voxceleb YAML points pretrained_path at a hub id; the loader
    must read the local files instead (the tiny model here has random weights)."""
    torch = pytest.importorskip("torch")
    ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")
    d = tmp_path / "ecapa"
    d.mkdir()
    (d / "hyperparams.yaml").write_text(ECAPA_YAML)
    torch.manual_seed(0)
    model = ecapa.ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], kernel_sizes=[5, 3, 3, 3, 1],
                             dilations=[1, 2, 3, 4, 1], attention_channels=8, lin_neurons=12)
    torch.save(model.state_dict(), d / "embedding_model.ckpt")
    enc = get_speaker_encoder(f"ecapa:{d}")
    loaded = enc.model.mods.embedding_model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    wav = (0.1 * np.random.RandomState(0).randn(16000)).astype(np.float32)
    e = enc.embed([wav, wav * 0.5])
    assert e.shape == (2, 12)
    assert float(e[0] @ e[1]) == pytest.approx(1.0, abs=1e-3)  # scale-invariant (sentence mean norm + fbank log)


# ---- WavLM-TDNN ---------------------------------------------------------------------------


def _to_unispeech_names(ta_sd: dict) -> dict:
    """torchaudio WavLM names -> fairseq/s3prl names under ``feature_extract.model.`` (the
    layout of UniSpeech's speaker-verification checkpoints), written independently of the loader."""
    import re

    import torch

    out = {}
    for k, v in ta_sd.items():
        m = re.match(r"encoder\.transformer\.layers\.(\d+)\.attention\.attention\.in_proj_(weight|bias)", k)
        if m:
            for name, part in zip("qkv", torch.chunk(v, 3, dim=0)):
                out[f"encoder.layers.{m.group(1)}.self_attn.{name}_proj.{m.group(2)}"] = part.clone()
            continue
        n = k
        for a, b in [
            (r"feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
            (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.1."),
            (r"encoder\.feature_projection\.layer_norm\.", "layer_norm."),
            (r"encoder\.feature_projection\.projection\.", "post_extract_proj."),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
            (r"encoder\.transformer\.pos_conv_embed\.conv\.", "encoder.pos_conv.0."),
            (r"encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
            (r"\.attention\.rel_attn_embed\.", ".self_attn.relative_attention_bias."),
            (r"\.attention\.gru_rel_pos_linear\.", ".self_attn.grep_linear."),
            (r"\.attention\.gru_rel_pos_const", ".self_attn.grep_a"),
            (r"\.attention\.attention\.out_proj\.", ".self_attn.out_proj."),
            (r"(layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
            (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
            (r"\.feed_forward\.output_dense\.", ".fc2."),
            (r"encoder\.transformer\.layers\.", "encoder.layers."),
        ]:
            n = re.sub(a, b, n)
        out[n] = v.clone()
    out["mask_emb"] = torch.zeros(16)  # training-only weight present in real checkpoints
    return {"feature_extract.model." + k: v for k, v in out.items()}


def test_wavlm_tdnn_from_unispeech_layout(tmp_path):
    torch = pytest.importorskip("torch")
    from torchaudio.models import wavlm_model

    from latentspeech.eval.similarity import ECAPAHead, WavLMTDNNEncoder

    torch.manual_seed(0)
    wavlm = wavlm_model(
        extractor_mode="layer_norm", extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 2, 2)],
        extractor_conv_bias=False, encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=4,
        encoder_pos_conv_groups=2, encoder_num_layers=3, encoder_num_heads=2, encoder_num_buckets=16,
        encoder_max_distance=800, encoder_attention_dropout=0.0, encoder_ff_interm_features=32,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=True, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()
    head = ECAPAHead(num_layers=4, feat_dim=16, channels=16, emb_dim=8, scale=4, se_bottleneck=4,
                     attention_channels=4, out_channels=24).eval()
    with torch.no_grad():
        head.feature_weight.copy_(torch.randn(4))
        for m in head.modules():  # non-trivial batch-norm statistics
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {**_to_unispeech_names(wavlm.state_dict()), **head.state_dict()}
    ckpt = tmp_path / "wavlm_tiny_finetune.pth"
    torch.save({"model": sd}, ckpt)
    (tmp_path / "config.json").write_text('{"layer_norm_first": true, "conv_stride": [5, 2, 2]}')

    enc = get_speaker_encoder(f"wavlm-tdnn:{ckpt}")
    assert isinstance(enc, WavLMTDNNEncoder) and enc.head.layer2.Res2Conv1dReluBn.scale == 4
    wav = (0.1 * np.random.RandomState(0).randn(8000)).astype(np.float32)

    # reference: s3prl-style hidden states (input of each layer + normed encoder output) -> head
    with torch.no_grad():
        x = torch.nn.functional.layer_norm(torch.from_numpy(wav)[None], (8000,))
        feats, _ = wavlm.feature_extractor(x, None)
        h = wavlm.encoder.feature_projection(feats)
        h = wavlm.encoder.transformer._preprocess(h)
        states, bias = [], None
        for layer in wavlm.encoder.transformer.layers:
            states.append(h)
            h, bias = layer(h, None, position_bias=bias)
        states.append(wavlm.encoder.transformer.layer_norm(h))
        expected = head(torch.stack(states))[0].numpy()
    got = enc.embed([wav])[0]
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), rtol=1e-4, atol=1e-5)
    assert get_speaker_encoder(f"wavlm-tdnn:{tmp_path}") is not enc  # the folder form loads too


def test_wavlm_tdnn_rejects_other_checkpoints(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a WavLM-TDNN checkpoint"):
        get_speaker_encoder(str(tmp_path / "x.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        get_speaker_encoder(f"wavlm-tdnn:{tmp_path / 'missing.pth'}")


def test_wavlm_tdnn_head_names_and_extra_entries(tmp_path):
    """The head's weight names are those of UniSpeech's ECAPA_TDNN (SE_Res2Block with named parts);
    a checkpoint as UniSpeech loads it (strict=False) may hold other entries and no batch-norm counters."""
    torch = pytest.importorskip("torch")
    from torchaudio.models import wavlm_model

    from latentspeech.eval.similarity import ECAPAHead

    head = ECAPAHead(num_layers=3, feat_dim=16, channels=16, emb_dim=8, scale=4, se_bottleneck=4,
                     attention_channels=4, out_channels=24).eval()
    block = {k[len("layer2."):] for k in head.state_dict() if k.startswith("layer2.") and "num_batches" not in k}
    bn = ("weight", "bias", "running_mean", "running_var")
    assert block == {
        *(f"{m}.conv.{p}" for m in ("Conv1dReluBn1", "Conv1dReluBn2") for p in ("weight", "bias")),
        *(f"{m}.bn.{p}" for m in ("Conv1dReluBn1", "Conv1dReluBn2") for p in bn),
        *(f"Res2Conv1dReluBn.convs.{i}.{p}" for i in range(3) for p in ("weight", "bias")),
        *(f"Res2Conv1dReluBn.bns.{i}.{p}" for i in range(3) for p in bn),
        *(f"SE_Connect.linear{i}.{p}" for i in (1, 2) for p in ("weight", "bias")),
    }
    assert {k.split(".")[0] for k in head.state_dict()} == {
        "feature_weight", "layer1", "layer2", "layer3", "layer4", "conv", "pooling", "bn", "linear"}
    torch.manual_seed(1)
    wavlm = wavlm_model(
        extractor_mode="layer_norm", extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2)], extractor_conv_bias=False,
        encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=4, encoder_pos_conv_groups=2,
        encoder_num_layers=2, encoder_num_heads=2, encoder_num_buckets=8, encoder_max_distance=800,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=32, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_norm_first=True, encoder_layer_drop=0.0, aux_num_out=None,
    ).eval()
    sd = {**_to_unispeech_names(wavlm.state_dict()), **head.state_dict()}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    sd["feature_extract.model.label_embs_concat"] = torch.zeros(4, 16)  # pre-training entries
    sd["loss_calculator.projection.weight"] = torch.zeros(10, 8)  # a training head outside the model
    torch.save({"model": sd, "epoch": 7}, tmp_path / "wavlm_large_finetune.pth")
    (tmp_path / "config.json").write_text('{"layer_norm_first": true, "conv_stride": [5, 2]}')
    enc = get_speaker_encoder(f"wavlm-tdnn:{tmp_path / 'wavlm_large_finetune.pth'}")
    assert all(torch.equal(enc.head.state_dict()[k], v) for k, v in head.state_dict().items() if "num_batches" not in k)
    e = enc.embed([(0.1 * np.random.RandomState(2).randn(4000)).astype(np.float32)])
    assert e.shape == (1, 8) and np.isfinite(e).all()
    sd.pop("layer3.SE_Connect.linear1.weight")
    torch.save({"model": sd}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"ECAPA head weights do not match \(missing \['layer3.SE_Connect"):
        get_speaker_encoder(str(tmp_path / "broken.pth"))
