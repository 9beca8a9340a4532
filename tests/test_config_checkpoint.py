import os
import threading
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import torch

from latentspeech.checkpoint import (
    load_model_dir,
    load_state_dict_strict,
    no_weight_init,
    resolve_model,
    save_model_dir,
)
from latentspeech.config import from_dict, load_config, save_config, to_dict
from latentspeech.errors import CheckpointError, ConfigError


@dataclass
class Inner:
    dim: int = 8
    rates: list[int] = field(default_factory=lambda: [2, 4])


@dataclass
class Outer:
    name: str
    lr: float = 1e-3
    kind: Literal["sigma", "rvq"] = "sigma"
    inner: Inner = field(default_factory=Inner)
    extra: Optional[int] = None


def test_from_dict_nested_and_defaults():
    cfg = from_dict(Outer, {"name": "x", "lr": "2e-4", "inner": {"dim": 16}})
    assert cfg.inner.dim == 16 and cfg.inner.rates == [2, 4] and cfg.lr == 2e-4
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,match",
    [
        ({"name": "x", "inner": {"dimm": 3}}, "unknown key inner.dimm"),
        ({"name": "x", "inner": {"dim": "big"}}, "inner.dim: expected int"),
        ({"name": "x", "kind": "vq"}, "kind: expected one of"),
        ({"lr": 1.0}, "missing required key name"),
        ({"name": "x", "inner": {"rates": [1, "a"]}}, r"inner.rates\[1\]"),
    ],
)
def test_config_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_yaml_roundtrip_and_file_errors(tmp_path):
    cfg = from_dict(Outer, {"name": "y"})
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml", Outer) == cfg
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", Outer)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "bad.yaml", Outer)


def test_model_dir_roundtrip(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {"dim": 3}, meta={"steps": 5}, card="# card")
    md = load_model_dir(tmp_path / "m", kind="codec")
    assert md.kind == "codec" and md.config == {"dim": 3} and md.meta == {"steps": 5}
    other = torch.nn.Linear(3, 2)
    load_state_dict_strict(other, md.state_dict)
    assert torch.equal(other.weight, model.weight)
    # Overwriting keeps a complete directory.
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {"dim": 4})
    assert load_model_dir(tmp_path / "m").config == {"dim": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    # Permissions are those of a plain mkdir/open under the user's umask (not mkdtemp's private 0700).
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_model_dir_fp16_export_and_float32_load(tmp_path):
    """``dtype=float16`` halves float tensors only (integer buffers kept); ``load_into`` restores float32."""
    model = torch.nn.BatchNorm1d(3)
    model.running_mean.copy_(torch.tensor([0.5, -1.25, 2.0]))
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {}, dtype=torch.float16)
    md = load_model_dir(tmp_path / "m")
    assert md.state_dict["running_mean"].dtype == torch.float16
    assert md.state_dict["num_batches_tracked"].dtype == torch.int64
    other = torch.nn.BatchNorm1d(3)
    md.load_into(other)
    assert other.running_mean.dtype == torch.float32
    assert other.running_mean.tolist() == [0.5, -1.25, 2.0]


def test_no_weight_init_skips_the_fills_of_this_thread_only():
    t = torch.ones(3)
    seen = []
    with no_weight_init():
        assert torch.nn.init.zeros_(t) is t and t.tolist() == [1, 1, 1]
        with no_weight_init():  # nested
            torch.nn.init.normal_(t)
        assert t.tolist() == [1, 1, 1]
        other = threading.Thread(target=lambda: seen.append(torch.nn.init.zeros_(torch.ones(2)).tolist()))
        other.start()
        other.join()
    assert seen == [[0.0, 0.0]]  # another thread still initialises
    assert torch.nn.init.zeros_(t).tolist() == [0, 0, 0]  # and this one again after the block


def test_a_module_built_without_init_loads_every_weight(tmp_path):
    """What the loaders do: build under no_weight_init, then load_into (fp16 package → the exact float32 values)."""
    def build():
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Conv1d(4, 4, 3),
                                   torch.nn.BatchNorm1d(4))

    model = build()
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {}, dtype=torch.float16)
    with no_weight_init():
        other = build()
    load_model_dir(tmp_path / "m").load_into(other)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        expect = a.half().float() if a.is_floating_point() else a
        assert b.dtype == a.dtype and torch.equal(b, expect), k


def test_model_dir_errors(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {})
    with pytest.raises(CheckpointError, match="expected latentlm"):
        load_model_dir(tmp_path / "m", kind="latentlm")
    with pytest.raises(CheckpointError, match="does not match"):
        load_state_dict_strict(torch.nn.Linear(4, 2), load_model_dir(tmp_path / "m").state_dict)
    with pytest.raises(CheckpointError, match="no such model"):
        resolve_model(tmp_path / "nothing")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_model_dir(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_model_dir(tmp_path / "m")


def test_checkpoint_loading_executes_no_code(tmp_path):
    """A config.yaml with a Python tag is rejected by safe_load instead of being run."""
    model = torch.nn.Linear(1, 1)
    save_model_dir(tmp_path / "m", model.state_dict(), "codec", {})
    (tmp_path / "m" / "config.yaml").write_text("kind: !!python/object/apply:os.system ['touch PWNED']\n")
    with pytest.raises(ConfigError):
        load_model_dir(tmp_path / "m")
    assert not (tmp_path / "PWNED").exists()
