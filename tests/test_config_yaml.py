"""YAML loading refuses a key given twice (plain YAML keeps the last one silently), and every shipped
config loads through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentspeech.config import load_config, load_yaml
from latentspeech.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, key, lines", [
    ("data: {max_tokens: 1}\nmodel: {}\ndata: {max_tokens: 2}\n", "data", (3, 1)),
    ("trainer: {devices: 8, precision: bf16-mixed, devices: 1}\n", "devices", (1, 1)),
    ("model:\n  ar:\n    dim: 1\n    dim: 2\n", "dim", (4, 3)),
])
def test_a_duplicate_key_is_a_one_line_config_error(tmp_path, text, key, lines):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    assert f"duplicate key '{key}' at line {lines[0]} (first at line {lines[1]})" in msg


def test_merge_keys_may_be_overridden_and_lists_repeat_freely(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\nd: [1, 1]\n")
    assert load_yaml(p) == {"base": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}, "d": [1, 1]}


def _family(path: Path):
    name = path.stem
    if name.startswith("codec"):
        from latentspeech.train.codec import CodecTrainConfig

        return CodecTrainConfig
    if name.startswith("valle"):
        from latentspeech.train.valle import VALLETrainConfig

        return VALLETrainConfig
    from latentspeech.train.latentlm import LatentLMTrainConfig

    return LatentLMTrainConfig


CONFIGS = sorted((REPO / "egs").glob("*/tts1/conf/**/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "egs")) for p in CONFIGS])
def test_every_recipe_config_loads_without_duplicate_keys(path):
    load_config(path, _family(path))


def test_librilight_latentlm_trains_in_pointer_mode_as_the_demo():
    from latentspeech.train.latentlm import LatentLMTrainConfig

    ll = load_config(REPO / "egs/librilight/tts1/conf/latentlm.yaml", LatentLMTrainConfig)
    demo = load_config(REPO / "egs/demo/tts1/conf/latentlm.yaml", LatentLMTrainConfig)
    assert ll.model.alignment == demo.model.alignment == "pointer"
    # the demo's phone-length limits in seconds, at LibriLight's 15 Hz
    for name in ("max_phone_frames", "max_hold_frames"):
        seconds = getattr(demo.model, name) / 25.0
        assert abs(getattr(ll.model, name) / 15.0 - seconds) < 0.1, name
    # the LibriLight VALL-E config has one data section: the token budget of its header (2x LatentLM's)
    from latentspeech.train.valle import VALLETrainConfig

    valle = load_config(REPO / "egs/librilight/tts1/conf/valle.yaml", VALLETrainConfig)
    assert valle.data.max_tokens == 2 * ll.data.max_tokens and valle.data.num_workers == 8
