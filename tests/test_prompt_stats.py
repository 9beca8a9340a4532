"""match_prompt_stats: generated latents moved towards the prompt's per-dimension statistics."""

import shutil

import numpy as np
import torch
import yaml

from latentspeech import TTS
from latentspeech.inference.latentlm import match_prompt_stats


def _pair(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(40, 6, generator=g) * 0.5 + 1.0  # a sentence's latents [F, D]
    prompt = torch.randn(90, 6, generator=g) * torch.linspace(0.5, 2.0, 6) - torch.linspace(-1, 1, 6)
    return z, prompt


def test_full_strength_gives_the_prompt_statistics():
    z, prompt = _pair()
    out = match_prompt_stats(z, prompt, 1.0)
    assert torch.allclose(out.mean(0), prompt.mean(0), atol=1e-5)
    assert torch.allclose(out.std(0), prompt.std(0), atol=1e-5)
    # the frames keep their order within each dimension: an affine map per dimension
    assert torch.allclose(torch.corrcoef(torch.stack([z[:, 2], out[:, 2]]))[0, 1], torch.tensor(1.0), atol=1e-5)


def test_strength_zero_and_half():
    z, prompt = _pair(1)
    assert match_prompt_stats(z, prompt, 0.0) is z
    half = match_prompt_stats(z, prompt, 0.5)
    assert torch.allclose(half.mean(0), (z.mean(0) + prompt.mean(0)) / 2, atol=1e-5)
    assert torch.allclose(half.std(0), (z.std(0) + prompt.std(0)) / 2, atol=1e-5)


def test_too_short_to_measure_is_left_alone():
    z, prompt = _pair(2)
    assert torch.equal(match_prompt_stats(z[:1], prompt, 1.0), z[:1])
    assert torch.equal(match_prompt_stats(z, prompt[:1], 1.0), z)


def test_the_model_dirs_setting_changes_the_output(tiny_latentlm_dir, tmp_path, tone):
    off_dir = tmp_path / "off"
    on_dir = tmp_path / "on"
    shutil.copytree(tiny_latentlm_dir, off_dir)
    shutil.copytree(tiny_latentlm_dir, on_dir)
    cfg = yaml.safe_load((on_dir / "config.yaml").read_text())
    cfg["meta"]["inference"]["prompt_stats"] = 1.0
    (on_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    off, on = TTS.from_pretrained(off_dir), TTS.from_pretrained(on_dir)
    assert off.backend.prompt_stats == 0.0 and on.backend.prompt_stats == 1.0
    a, _ = off.speak("Hello there.", prompt=tone[0], sample_rate=tone[1], seed=0)
    b, _ = on.speak("Hello there.", prompt=tone[0], sample_rate=tone[1], seed=0)
    assert a.shape == b.shape and not np.allclose(a, b)
