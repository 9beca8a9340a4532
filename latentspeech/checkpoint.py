"""Model directories: safetensors weights + a YAML config, and the registry of bundled models.

A model directory holds

    model.safetensors   the weights (tensors only: loading never executes code)
    config.yaml         {kind, format_version, latentspeech_version, config: {...}, meta: {...}}
    README.md           optional model card

``kind`` names the model family (``codec``, ``latentlm``, ``valle``...); ``config`` is the
model's dataclass as a dict; ``meta`` holds anything else worth keeping (training steps,
latent statistics, the phone vocabulary version, the codec a LM was trained on...).

Names resolve through :func:`resolve_model`: a bundled name (``latentlm-demo``, ``valle-demo``,
``codec-demo``; see ``BUNDLED``) or a path to a model directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .version import __version__
from .config import from_dict, load_yaml, save_yaml
from .errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"

ASSETS = Path(__file__).resolve().parent / "assets"

#: Bundled model names → folder under ``latentspeech/assets``. Each TTS model dir carries the codec
#: it was trained with in ``codec/``: ``codec-demo`` (the σ-VAE codec, default of ``latentspeech codec``
#: and of LM training) is the one of ``latentlm-demo``, ``codec-rvq-demo`` the one of ``valle-demo``.
BUNDLED = {
    "latentlm-demo": "latentlm-demo",
    "valle-demo": "valle-demo",
    "codec-demo": "latentlm-demo/codec",
    "codec-rvq-demo": "valle-demo/codec",
}
DEFAULT_MODEL = "latentlm-demo"

__all__ = [
    "ModelDir",
    "save_model_dir",
    "load_model_dir",
    "resolve_model",
    "load_state_dict_strict",
    "no_weight_init",
    "BUNDLED",
    "DEFAULT_MODEL",
]


@dataclass
class ModelDir:
    """What :func:`load_model_dir` returns: weights and config of one saved model."""

    path: Path
    kind: str
    config: dict
    state_dict: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def load_into(self, module: torch.nn.Module, where: str | None = None) -> None:
        """Copy these weights into ``module``, strictly: a missing, unexpected or reshaped tensor is a
        one-line :class:`CheckpointError` naming ``where``. Each tensor takes the dtype of the module's
        (packages may be fp16: the copy into a float32 parameter is the exact upcast, without a
        float32 copy of the whole state dict first)."""
        load_state_dict_strict(module, self.state_dict, where=where or str(self.path))

    def typed_config(self, config_cls):
        """The config as the dataclass ``config_cls``: a key this version does not know (a dir written by
        another version) or a bad value is a one-line :class:`CheckpointError` naming the dir."""
        try:
            return from_dict(config_cls, self.config)
        except ConfigError as e:
            raise CheckpointError(f"{self.path}: bad {self.kind} config: {e}") from None


def bundled_path(name: str) -> Path:
    return ASSETS / BUNDLED[name]


def resolve_model(name_or_dir: str | os.PathLike | None, default: str = DEFAULT_MODEL) -> Path:
    """Turn a bundled model name or a directory path into an existing model directory."""
    name = str(name_or_dir) if name_or_dir is not None else default
    if name in BUNDLED:
        path = bundled_path(name)
        if not (path / WEIGHTS).is_file():
            raise CheckpointError(
                f"the bundled model '{name}' is not in this installation yet ({path} has no {WEIGHTS}); "
                "train one with egs/demo/tts1/run.sh and pass --model DIR"
            )
        return path
    path = Path(name).expanduser()
    if path.is_file() and path.name in (WEIGHTS, CONFIG):
        path = path.parent
    if not path.exists():
        known = ", ".join(sorted(BUNDLED))
        raise CheckpointError(f"no such model: '{name}' is neither a bundled model ({known}) nor a directory")
    if not path.is_dir():
        raise CheckpointError(f"'{name}' is not a model directory (expected a folder with {WEIGHTS} and {CONFIG})")
    return path


def umask_permissions(path: Path) -> None:
    """Give ``path`` (a file, or a folder and the files in it) the permissions of a plain ``open``/``mkdir``
    (``mkdtemp`` makes a folder private and ``safetensors`` writes 0600), so that a saved model is readable
    where the user's umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    if path.is_dir():
        os.chmod(path, 0o777 & ~umask)
        files = [f for f in path.iterdir() if f.is_file()]
    else:
        files = [path]
    for f in files:
        os.chmod(f, 0o666 & ~umask)


def cast_floating(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """``state_dict`` with its floating-point tensors in ``dtype`` (unchanged when ``dtype`` is None)."""
    if dtype is None:
        return dict(state_dict)
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state_dict.items()}


def save_model_dir(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    kind: str,
    config: dict,
    meta: dict | None = None,
    card: str | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write weights + config (+ model card) into ``path`` atomically (a temp dir, then rename).

    ``dtype`` (e.g. ``torch.float16``) casts the floating-point tensors on the way out; integer buffers are kept.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in cast_floating(state_dict, dtype).items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"kind": kind, "format_version": str(FORMAT_VERSION)})
        save_yaml(
            {
                "kind": kind,
                "format_version": FORMAT_VERSION,
                "latentspeech_version": __version__,
                "config": config,
                "meta": meta or {},
            },
            tmp / CONFIG,
        )
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        umask_permissions(tmp)
        if path.exists():
            old = path.with_name(path.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_model_dir(name_or_dir: str | os.PathLike | None, kind: str | tuple[str, ...] | None = None) -> ModelDir:
    """Read a model directory (or bundled name); check it is complete and of the expected kind."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_model(name_or_dir)
    for fname in (CONFIG, WEIGHTS):
        if not (path / fname).is_file():
            raise CheckpointError(f"incomplete model directory {path}: {fname} is missing")
    info = load_yaml(path / CONFIG)
    got = info.get("kind")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and got not in kinds:
        raise CheckpointError(f"{path} holds a '{got}' model, expected {' or '.join(kinds)}")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version!r} is not supported (expected {FORMAT_VERSION})")
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read weights {path / WEIGHTS}: {e}") from None
    return ModelDir(path=path, kind=got, config=info.get("config") or {}, state_dict=state, meta=info.get("meta") or {})


#: ``torch.nn.init``'s in-place fills, which :func:`no_weight_init` skips.
INIT_FILLS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
              "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
_init_lock = threading.Lock()
_init_skipping = threading.local()  # .depth > 0: this thread is inside no_weight_init
_init_saved: dict[str, Any] = {}  # the original fills while any thread is inside no_weight_init
_init_users = 0


def _skipping(fill):
    def skip_or_fill(tensor, *args, **kwargs):
        return tensor if getattr(_init_skipping, "depth", 0) else fill(tensor, *args, **kwargs)

    return skip_or_fill


@contextmanager
def no_weight_init():
    """Build modules without their random initialisation: ``torch.nn.init``'s fills (what
    ``reset_parameters`` of ``nn.Linear``, ``nn.Conv1d``, ``nn.Embedding``, ``nn.LayerNorm`` and the
    models' own init call) leave the tensor as allocated, in this thread only. For a module that a
    strict load then overwrites whole (every parameter and persistent buffer): the demo LatentLM builds
    in ~8 ms instead of ~55. What ``__init__`` computes otherwise (RoPE tables, noise schedules,
    windows: the non-persistent buffers) is built as always."""
    global _init_users
    import torch.nn.init as init

    with _init_lock:
        if _init_users == 0:
            _init_saved.update({n: getattr(init, n) for n in INIT_FILLS})
            for n, fill in _init_saved.items():
                setattr(init, n, _skipping(fill))
        _init_users += 1
    _init_skipping.depth = getattr(_init_skipping, "depth", 0) + 1
    try:
        yield
    finally:
        _init_skipping.depth -= 1
        with _init_lock:
            _init_users -= 1
            if _init_users == 0:
                for n, fill in _init_saved.items():
                    setattr(init, n, fill)
                _init_saved.clear()


def load_state_dict_strict(module: torch.nn.Module, state_dict: dict[str, Any], where: str = "checkpoint") -> None:
    """``module.load_state_dict`` that reports a mismatch in one line instead of a traceback."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    if problems:
        raise CheckpointError(f"{where} does not match the model config: tensors " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True)


def save_config_model(model: torch.nn.Module, out: str | os.PathLike, kind: str, meta: dict | None = None) -> Path:
    """Write a module whose architecture is its dataclass ``model.cfg`` as a model dir of ``kind``."""
    from .config import to_dict

    return save_model_dir(out, model.state_dict(), kind, to_dict(model.cfg), meta or {})


def load_config_model(path: str | os.PathLike, kind: str, model_cls, config_cls, vocab=None) -> torch.nn.Module:
    """A model dir saved by :func:`save_config_model`, rebuilt as ``model_cls(config_cls(...))`` in eval
    mode. With ``vocab`` (a ``PhoneVocab``) its phone inventory must be the one recorded in the dir's
    ``meta.phone_vocab`` (a one-line :class:`CheckpointError` otherwise)."""
    md = load_model_dir(path, kind=kind)
    saved = md.meta.get("phone_vocab") or {}
    if vocab is not None and saved and saved.get("checksum") != vocab.to_dict().get("checksum"):
        raise CheckpointError(f"{md.path}: the {kind} was trained with another phone inventory "
                              f"(checksum {saved.get('checksum')} vs {vocab.to_dict().get('checksum')})")
    with no_weight_init():  # the load below overwrites every weight
        model = model_cls(md.typed_config(config_cls))
    load_state_dict_strict(model, md.state_dict, str(md.path))
    return model.eval()
