"""VALL-E model directories (kind ``valle``): save and load.

A model dir is self-contained: ``model.safetensors`` + ``config.yaml`` (the phone vocabulary in
``meta``) and a ``codec/`` subfolder holding the RVQ codec the codes come from.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from ...errors import CheckpointError, ConfigError
from .config import VALLEConfig
from .model import VALLE

__all__ = ["KIND", "save_valle", "load_valle"]

KIND = "valle"


def save_valle(model: VALLE, path: str | os.PathLike, codec=None, vocab=None, meta: dict | None = None,
               dtype: torch.dtype = torch.float32, card: str | None = None) -> Path:
    """Write a self-contained model dir: weights + config (kind ``valle``) and ``codec/`` (the RVQ codec).

    ``vocab`` (a :class:`~latentspeech.text.PhoneVocab`) is stored in ``meta["phone_vocab"]`` (as LatentLM does).
    ``dtype=torch.float16`` halves the size (the bundle is stored that way).
    """
    from ...checkpoint import save_model_dir
    from ...config import to_dict

    info = dict(meta or {})
    info["parameters"] = model.num_parameters()
    if vocab is not None:
        info["phone_vocab"] = vocab.to_dict()
    path = save_model_dir(path, model.state_dict(), KIND, to_dict(model.cfg), info, card=card, dtype=dtype)
    if codec is not None:
        from ..codec import save_codec

        save_codec(codec, Path(path) / "codec", dtype=dtype)
    return Path(path)


def load_valle(name_or_dir: str | os.PathLike | None = "valle-demo", device: str | torch.device | None = None,
               with_codec: bool = True):
    """Load a VALL-E model dir (or bundled name). Returns ``(model, codec or None, vocab or None, meta)``.

    The model comes back in eval mode, float32, on ``device``; ``codec`` from the ``codec/``
    subfolder (``CheckpointError`` if it is missing or not an RVQ codec matching the model).
    """
    from ...checkpoint import load_model_dir

    md = load_model_dir(name_or_dir if name_or_dir is not None else "valle-demo", kind=KIND)
    cfg = md.typed_config(VALLEConfig)
    model = VALLE(cfg)
    md.load_into(model)
    model = model.eval().to(device or "cpu")
    vocab = None
    if "phone_vocab" in md.meta:
        from ...text.vocab import PhoneVocab

        try:
            vocab = PhoneVocab.from_dict(md.meta["phone_vocab"])
        except ConfigError as e:
            raise CheckpointError(f"{md.path}: {e}") from None
        if vocab.size != cfg.phone_vocab_size:
            raise CheckpointError(
                f"{md.path}: phone vocabulary has {vocab.size} tokens, the model {cfg.phone_vocab_size}")
    codec = None
    if with_codec:
        codec = _load_matching_codec(md.path / "codec", cfg, device)
    return model, codec, vocab, md.meta


def _load_matching_codec(path: Path, cfg: VALLEConfig, device):
    """The RVQ codec of a model dir's ``codec/``, checked against the model's codes and frame rate."""
    from ..codec import load_codec

    if not path.is_dir():
        raise CheckpointError(f"{path.parent} has no codec/ subfolder (a VALL-E model dir holds its RVQ codec)")
    codec = load_codec(path, device=device)
    if not codec.is_rvq:
        raise CheckpointError(f"{path} is not an RVQ codec (bottleneck '{codec.cfg.bottleneck.kind}')")
    if codec.num_quantizers < cfg.num_quantizers or codec.codebook_size != cfg.codebook_size:
        raise CheckpointError(
            f"{path}: codec has {codec.num_quantizers} x {codec.codebook_size} codes, the model needs "
            f"{cfg.num_quantizers} x {cfg.codebook_size}"
        )
    if not math.isclose(codec.frame_rate, cfg.frame_rate, rel_tol=1e-3):
        raise CheckpointError(f"{path}: codec frame rate {codec.frame_rate} Hz != model's {cfg.frame_rate} Hz")
    return codec
