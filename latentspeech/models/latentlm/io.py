"""LatentLM model dirs: the weights, the config and a copy of the codec they were trained on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ...checkpoint import ModelDir, load_model_dir, no_weight_init, save_model_dir
from ...config import to_dict
from .config import LatentLMConfig
from .model import LatentLM

__all__ = ["KIND", "save_latentlm", "load_latentlm"]

KIND = "latentlm"


def save_latentlm(model: LatentLM, out: str | os.PathLike, codec_dir: str | os.PathLike | None, meta: dict,
                  dtype: torch.dtype = torch.float32) -> Path:
    """Write a self-contained LatentLM model dir (weights, config, meta, a ``codec/`` copy of ``codec_dir``)."""
    out = save_model_dir(out, model.state_dict(), KIND, to_dict(model.cfg), meta, dtype=dtype)
    if codec_dir is not None:
        shutil.copytree(codec_dir, out / "codec", dirs_exist_ok=True)
    return out


def load_latentlm(name_or_dir=None, device=None) -> tuple[LatentLM, ModelDir]:
    """(LatentLM in eval mode, ModelDir) from a model dir or bundled name (default ``latentlm-demo``)."""
    md = load_model_dir(name_or_dir, kind=KIND)
    with no_weight_init():  # load_into overwrites every weight
        model = LatentLM(md.typed_config(LatentLMConfig))
    md.load_into(model)
    return model.eval().to(device or "cpu"), md
