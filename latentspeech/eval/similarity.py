"""Speaker similarity (SIM): cosine between speaker embeddings, offline.

    enc = get_speaker_encoder()                       # Resemblyzer (its weights ship in its wheel)
    sim = enc.similarity("output.wav", "prompt.wav")  # cosine in [-1, 1]
    embs = enc.embed([wav_a, "b.flac"])               # [N, D], rows L2-normalised
    get_speaker_encoder("/models/spkrec-ecapa-voxceleb")   # speechbrain ECAPA-TDNN from a local directory

Backends behind :class:`SpeakerEncoder`:

* ``resemblyzer`` (the default): the GE2E d-vector model whose weights ship inside the
  ``resemblyzer`` wheel; input is volume-normalised and long silences are cut (its own
  preprocessing).
* ECAPA-TDNN from a local speechbrain model directory (``hyperparams.yaml`` +
  ``embedding_model.ckpt``, the layout of ``speechbrain/spkrec-ecapa-voxceleb``), loaded with
  the network disabled.
* WavLM-TDNN, the paper's SIM model: UniSpeech's speaker-verification checkpoint
  (``wavlm_large_finetune.pth``: WavLM-Large + an ECAPA-TDNN head over a learnt mix of all
  hidden layers), rebuilt here from torchaudio's WavLM and :class:`ECAPAHead` so that neither
  s3prl nor fairseq is needed. Sizes are read from the weights; an optional ``config.json``
  beside the checkpoint overrides the few that are not (``layer_norm_first``, ``normalize``,
  ``conv_stride``, ``max_distance``). The key layout is that of UniSpeech's
  ``downstreams/speaker_verification/models/ecapa_tdnn.py`` (``ECAPA_TDNN_SMALL``, whose
  ``feature_extract`` is s3prl's WavLM upstream, so the WavLM weights sit under
  ``feature_extract.model.`` with fairseq's names, as in UniSpeech's ``WavLM.py``), loaded as
  UniSpeech does (``torch.load(..., weights_only=True)["model"]``, extra entries ignored). It is
  tested on tiny checkpoints written in that layout; the released file itself is not available
  offline, so its sizes are read from its weights (WavLM-Large: 24 pre-norm layers, 320 relative
  position buckets; ``max_distance`` 800 is assumed, as in torchaudio's ``wavlm_large``).

Numbers from different encoders are not comparable: Resemblyzer cosines run higher than
WavLM-TDNN's.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "SpeakerEncoder",
    "ResemblyzerEncoder",
    "ECAPAEncoder",
    "ECAPAHead",
    "WavLMTDNNEncoder",
    "get_speaker_encoder",
    "cosine",
    "DEFAULT_SIM",
]

#: Name of the default speaker encoder.
DEFAULT_SIM = "resemblyzer"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0.0 when either is all zeros)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


class SpeakerEncoder(ABC):
    """Maps speech to a fixed-size speaker embedding; inputs are paths or 16 kHz float arrays."""

    name: str = "speaker-encoder"
    sample_rate: int = 16000

    def embed(self, audios: Sequence) -> np.ndarray:
        """``[N, D]`` L2-normalised embeddings, one row per input."""
        from ..audio import load_audio

        if isinstance(audios, (str, os.PathLike, np.ndarray)):
            raise TypeError("embed() takes a list of paths or arrays; wrap a single item in a list")
        rows = []
        for item in audios:
            wav = load_audio(item, self.sample_rate, source_rate=self.sample_rate)
            e = np.asarray(self._embed_one(np.ascontiguousarray(wav, dtype=np.float32)), dtype=np.float32).reshape(-1)
            n = np.linalg.norm(e)
            rows.append(e / n if n > 0 else e)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def similarity(self, a, b) -> float:
        """Cosine between the speaker embeddings of two utterances (paths or 16 kHz arrays)."""
        ea, eb = self.embed([a, b])
        return cosine(ea, eb)

    @abstractmethod
    def _embed_one(self, wav: np.ndarray) -> np.ndarray:
        """Embedding of one 16 kHz float32 mono signal."""


class ResemblyzerEncoder(SpeakerEncoder):
    """Resemblyzer's VoiceEncoder (GE2E, 256-d) with its bundled weights."""

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
            try:
                from resemblyzer import VoiceEncoder, preprocess_wav
            except ImportError:
                raise CheckpointError("speaker similarity 'resemblyzer' needs the resemblyzer package "
                                      "(pip install 'latentspeech[eval]')") from None
        self._preprocess = preprocess_wav
        self.model = VoiceEncoder(device=device, verbose=False)

    def _embed_one(self, wav: np.ndarray) -> np.ndarray:
        processed = self._preprocess(wav, source_sr=self.sample_rate)
        if processed.size < self.sample_rate // 10:  # all silence after VAD: embed the raw signal
            processed = wav
        return self.model.embed_utterance(processed)


class ECAPAEncoder(SpeakerEncoder):
    """speechbrain ECAPA-TDNN (``EncoderClassifier``) from a local model directory, no network."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu"):
        import logging

        self.model_dir = Path(model_dir).resolve()
        self.name = f"ecapa:{self.model_dir.name}"
        if not (self.model_dir / "hyperparams.yaml").is_file():
            raise CheckpointError(f"speechbrain model directory {self.model_dir} has no hyperparams.yaml")
        logging.getLogger("speechbrain").setLevel(logging.WARNING)
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy

        # Files are symlinked into a scratch folder; ``pretrained_path`` (a hub id in the
        # published YAML) is pointed at the local directory.
        self._scratch = tempfile.TemporaryDirectory(prefix="latentspeech-ecapa-")
        try:
            self.model = EncoderClassifier.from_hparams(
                source=str(self.model_dir),
                savedir=self._scratch.name,
                overrides={"pretrained_path": str(self.model_dir)},
                overrides_must_match=False,
                run_opts={"device": device},
                local_strategy=LocalStrategy.SYMLINK,
                fetch_config=FetchConfig(allow_network=False),
            )
        except Exception as e:  # speechbrain raises many types; all mean the directory is unusable
            raise CheckpointError(f"cannot load speechbrain model {self.model_dir}: {str(e).strip().splitlines()[-1]}") from None
        self.model.eval()

    def _embed_one(self, wav: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            emb = self.model.encode_batch(torch.from_numpy(wav)[None])
        return emb.reshape(-1).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# WavLM-TDNN: WavLM hidden states -> ECAPA-TDNN head (UniSpeech speaker verification)


class _ConvReluBn(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, 1, padding, dilation)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class _Res2ConvReluBn(nn.Module):
    """Res2Net block: channel groups processed in a cascade (each adds the previous output)."""

    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int):
        super().__init__()
        self.width = channels // scale
        self.scale = scale
        self.nums = scale if scale == 1 else scale - 1
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel, 1, padding, dilation) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.nums))

    def forward(self, x):
        chunks = torch.split(x, self.width, dim=1)
        out, sp = [], None
        for i in range(self.nums):
            sp = chunks[i] if i == 0 else sp + chunks[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            out.append(sp)
        if self.scale != 1:
            out.append(chunks[self.nums])
        return torch.cat(out, dim=1)


class _SEConnect(nn.Module):
    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x):
        w = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * w.unsqueeze(2)


class _SERes2Block(nn.Module):
    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int, se_bottleneck: int):
        super().__init__()
        self.Conv1dReluBn1 = _ConvReluBn(channels, channels)
        self.Res2Conv1dReluBn = _Res2ConvReluBn(channels, kernel, padding, dilation, scale)
        self.Conv1dReluBn2 = _ConvReluBn(channels, channels)
        self.SE_Connect = _SEConnect(channels, se_bottleneck)

    def forward(self, x):
        y = self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))
        return x + y


class _AttentiveStatsPool(nn.Module):
    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.linear1 = nn.Conv1d(channels, attention_channels, kernel_size=1)
        self.linear2 = nn.Conv1d(attention_channels, channels, kernel_size=1)

    def forward(self, x):
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * x**2, dim=2) - mean**2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-9))], dim=1)


class ECAPAHead(nn.Module):
    """ECAPA-TDNN over a softmax-weighted sum of SSL hidden layers (UniSpeech's ``ECAPA_TDNN``;
    parameter names match its checkpoints). Input: ``[layers, B, T, feat_dim]``; output ``[B, emb_dim]``."""

    def __init__(self, num_layers: int, feat_dim: int, channels: int = 512, emb_dim: int = 256,
                 scale: int = 8, se_bottleneck: int = 128, attention_channels: int = 128, out_channels: int = 1536):
        super().__init__()
        self.feature_weight = nn.Parameter(torch.zeros(num_layers))
        self.instance_norm = nn.InstanceNorm1d(feat_dim)
        self.layer1 = _ConvReluBn(feat_dim, channels, kernel=5, padding=2)
        self.layer2 = _SERes2Block(channels, 3, 2, 2, scale, se_bottleneck)
        self.layer3 = _SERes2Block(channels, 3, 3, 3, scale, se_bottleneck)
        self.layer4 = _SERes2Block(channels, 3, 4, 4, scale, se_bottleneck)
        self.conv = nn.Conv1d(channels * 3, out_channels, kernel_size=1)
        self.pooling = _AttentiveStatsPool(out_channels, attention_channels)
        self.bn = nn.BatchNorm1d(out_channels * 2)
        self.linear = nn.Linear(out_channels * 2, emb_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.feature_weight, dim=-1).view(-1, 1, 1, 1)
        x = (w * hidden).sum(dim=0).transpose(1, 2) + 1e-6
        x = self.instance_norm(x)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(out)))

    @classmethod
    def from_state_dict(cls, sd: dict) -> "ECAPAHead":
        """Build with the sizes found in a head state dict (keys without ``feature_extract.``)."""
        try:
            channels, feat_dim, _ = sd["layer1.conv.weight"].shape
            width = sd["layer2.Res2Conv1dReluBn.convs.0.weight"].shape[0]
            return cls(
                num_layers=sd["feature_weight"].shape[0], feat_dim=feat_dim, channels=channels,
                emb_dim=sd["linear.weight"].shape[0], scale=channels // width,
                se_bottleneck=sd["layer2.SE_Connect.linear1.weight"].shape[0],
                attention_channels=sd["pooling.linear1.weight"].shape[0], out_channels=sd["conv.weight"].shape[0],
            )
        except KeyError as e:
            raise CheckpointError(f"not a WavLM-TDNN checkpoint: no {e.args[0]!r} in its weights") from None


#: Top-level modules of :class:`ECAPAHead` (UniSpeech's ``ECAPA_TDNN`` names them alike).
_HEAD_MODULES = ("feature_weight", "instance_norm", "layer1", "layer2", "layer3", "layer4", "conv", "pooling", "bn", "linear")


#: fairseq/s3prl WavLM weight names -> torchaudio ``wavlm_model`` names (after ``feature_extract.model.``).
_WAVLM_RENAMES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^layer_norm\.", "encoder.feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "encoder.feature_projection.projection."),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.", "encoder.transformer.pos_conv_embed.conv."),
    (r"^encoder\.layer_norm\.", "encoder.transformer.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.", r"encoder.transformer.layers.\1.attention.rel_attn_embed."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.", r"encoder.transformer.layers.\1.attention.gru_rel_pos_linear."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$", r"encoder.transformer.layers.\1.attention.gru_rel_pos_const"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"encoder.transformer.layers.\1.attention.attention.out_proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.transformer.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.transformer.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.transformer.layers.\1.feed_forward.output_dense."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.transformer.layers.\1.final_layer_norm."),
]


def wavlm_fairseq_to_torchaudio(sd: dict) -> dict:
    """Rename a fairseq/s3prl WavLM state dict for torchaudio (q/k/v projections are fused into
    ``in_proj``; ``mask_emb`` and other training-only weights are dropped)."""
    out, qkv = {}, {}
    for k, v in sd.items():
        m = re.match(r"^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", k)
        if m:
            qkv[(int(m.group(1)), m.group(3), m.group(2))] = v
            continue
        for pattern, repl in _WAVLM_RENAMES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = v
                break
    for layer, kind in sorted({(i, kind) for i, kind, _ in qkv}):
        out[f"encoder.transformer.layers.{layer}.attention.attention.in_proj_{kind}"] = torch.cat(
            [qkv[(layer, kind, c)] for c in "qkv"]
        )
    return out


def _wavlm_config(sd: dict, overrides: dict) -> dict:
    """torchaudio ``wavlm_model`` arguments from a torchaudio-named WavLM state dict."""
    convs = sorted({int(m.group(1)) for k in sd if (m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", k))})
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.transformer\.layers\.(\d+)\.", k))})
    if not convs or not layers:
        raise CheckpointError("not a WavLM-TDNN checkpoint: no WavLM feature extractor / encoder weights")
    strides = overrides.get("conv_stride", [5] + [2] * (len(convs) - 1))
    shapes = [(sd[f"feature_extractor.conv_layers.{i}.conv.weight"].shape[0], sd[f"feature_extractor.conv_layers.{i}.conv.weight"].shape[2], strides[i]) for i in convs]
    has_ln = f"feature_extractor.conv_layers.{convs[-1]}.layer_norm.weight" in sd
    pos_v = sd["encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"]
    embed = sd["encoder.transformer.layer_norm.weight"].shape[0]
    rel = sd["encoder.transformer.layers.0.attention.rel_attn_embed.weight"]
    return {
        "extractor_mode": "layer_norm" if has_ln else "group_norm",
        "extractor_conv_layer_config": shapes,
        "extractor_conv_bias": "feature_extractor.conv_layers.0.conv.bias" in sd,
        "encoder_embed_dim": embed,
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": pos_v.shape[2],
        "encoder_pos_conv_groups": embed // pos_v.shape[1],
        "encoder_num_layers": len(layers),
        "encoder_num_heads": rel.shape[1],
        "encoder_num_buckets": rel.shape[0],
        "encoder_max_distance": overrides.get("max_distance", 800),
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": sd["encoder.transformer.layers.0.feed_forward.intermediate_dense.weight"].shape[0],
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": overrides.get("layer_norm_first", len(layers) >= 24),
        "encoder_layer_drop": 0.0,
        "aux_num_out": None,
    }


def wavlm_hidden_states(model, wav: torch.Tensor) -> torch.Tensor:
    """``[layers + 1, B, T, D]``: the input of every Transformer layer and the encoder output
    (after the final layer norm of pre-norm models), as s3prl's WavLM upstream returns them."""
    feats, _ = model.feature_extractor(wav, None)
    x, mask = model.encoder._preprocess(feats, None)
    tr = model.encoder.transformer
    x = tr._preprocess(x)
    hidden, bias = [], None
    for layer in tr.layers:
        hidden.append(x)
        x, bias = layer(x, mask, position_bias=bias)
    # torchaudio's Transformer flag is the inverse of the model's: False means pre-norm layers,
    # whose encoder applies its layer norm after the last layer.
    hidden.append(x if tr.layer_norm_first else tr.layer_norm(x))
    return torch.stack(hidden)


class WavLMTDNNEncoder(SpeakerEncoder):
    """UniSpeech's WavLM-TDNN speaker verifier from a local checkpoint (``{"model": state_dict}``)."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu"):
        from torchaudio.models import wavlm_model

        path = Path(checkpoint)
        if path.is_dir():
            found = sorted(path.glob("*.pth")) + sorted(path.glob("*.pt"))
            if not found:
                raise CheckpointError(f"no .pth checkpoint in {path}")
            path = found[0]
        self.checkpoint = path
        self.name = f"wavlm-tdnn:{path.name}"
        self.device = torch.device(device)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {path} as a weights-only checkpoint: {str(e).strip().splitlines()[-1][:200]}") from None
        sd = obj.get("model", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict):
            raise CheckpointError(f"{path}: expected a state dict (or {{'model': state_dict}})")
        cfg_file = path.parent / "config.json"
        overrides = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        self.normalize = bool(overrides.get("normalize", True))
        prefix = "feature_extract.model."
        upstream = wavlm_fairseq_to_torchaudio({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
        # the head's own weights; other top-level entries (UniSpeech loads with strict=False) are not used
        head_sd = {k: v for k, v in sd.items() if k.split(".")[0] in _HEAD_MODULES}
        self.wavlm = wavlm_model(**_wavlm_config(upstream, overrides))
        self.head = ECAPAHead.from_state_dict(head_sd)
        for module, weights, what in ((self.wavlm, upstream, "WavLM"), (self.head, head_sd, "ECAPA head")):
            own = module.state_dict()
            # batch-norm step counters do not affect inference and may be left out of a checkpoint
            missing = sorted(k for k in set(own) - set(weights) if not k.endswith("num_batches_tracked"))
            unexpected = sorted(set(weights) - set(own))
            if missing or unexpected:
                raise CheckpointError(f"{path}: {what} weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
            module.load_state_dict(weights, strict=False)
            module.eval().to(self.device)

    def _embed_one(self, wav: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(wav).to(self.device)[None]
        if self.normalize:
            x = F.layer_norm(x, x.shape[1:])
        with torch.inference_mode():
            return self.head(wavlm_hidden_states(self.wavlm, x))[0].cpu().numpy()


_CACHE: dict[tuple, SpeakerEncoder] = {}


def get_speaker_encoder(name_or_dir: str = DEFAULT_SIM, device: str = "cpu") -> SpeakerEncoder:
    """Load (once per process) a speaker encoder:

    * ``resemblyzer`` (default);
    * ``ecapa:DIR`` or a directory holding ``hyperparams.yaml``: speechbrain ECAPA-TDNN;
    * ``wavlm-tdnn:PATH`` or a ``.pth`` file: UniSpeech WavLM-TDNN checkpoint (PATH may be its folder).
    """
    name = str(name_or_dir)
    if name == "resemblyzer":
        key = ("resemblyzer", device)
        if key not in _CACHE:
            _CACHE[key] = ResemblyzerEncoder(device)
        return _CACHE[key]
    if name.startswith("wavlm-tdnn:") or name.endswith((".pth", ".pt")):
        path = Path(name.split(":", 1)[1] if name.startswith("wavlm-tdnn:") else name).expanduser()
        if not path.exists():
            raise CheckpointError(f"WavLM-TDNN checkpoint not found: {path}")
        key = ("wavlm-tdnn", str(path.resolve()), device)
        if key not in _CACHE:
            _CACHE[key] = WavLMTDNNEncoder(path, device)
        return _CACHE[key]
    path = Path(name[len("ecapa:") :] if name.startswith("ecapa:") else name).expanduser()
    if path.is_dir() and (path / "hyperparams.yaml").is_file():
        key = ("ecapa", str(path.resolve()), device)
        if key not in _CACHE:
            _CACHE[key] = ECAPAEncoder(path, device)
        return _CACHE[key]
    if path.is_dir():
        raise CheckpointError(f"{path} is not a speechbrain speaker model directory (no hyperparams.yaml)")
    raise CheckpointError(
        f"unknown speaker encoder {name!r}: use 'resemblyzer', a speechbrain ECAPA directory or wavlm-tdnn:CHECKPOINT.pth"
    )
