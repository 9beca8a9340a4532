"""The LatentLM's speaker path (``speaker_condition``): a summary of the prompt in the head's condition
and, with ``speaker_input``, in the Transformer's input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latentspeech.checkpoint import load_model_dir
from latentspeech.config import from_dict
from latentspeech.data.collate import collate_lm
from latentspeech.errors import ConfigError
from latentspeech.models.codec import AudioCodec, save_codec
from latentspeech.models.codec.config import CodecConfig
from latentspeech.models.latentlm import LatentLM, LatentLMConfig, save_latentlm
from latentspeech.models.latentlm.speaker import SpeakerSummary
from latentspeech.models.transformer import TransformerConfig
from latentspeech.train.latentlm import init_latentlm_from

D = 4


def tiny_config(**kw) -> LatentLMConfig:
    base = dict(latent_dim=D, vocab_size=16, frame_rate=25.0, head_blocks=2, batch_mul=8, cfg_drop_prob=0.0,
                transformer=TransformerConfig(dim=48, n_layers=2, n_heads=4, max_seq_len=128))
    base.update(kw)
    return LatentLMConfig(**base)


def voiced_utterances(n: int = 6) -> list[dict]:
    """The same phones and contour said by ``n`` voices that differ in level: a voice's offset shows
    in its prompt's mean and nowhere else."""
    j = torch.arange(8)[:, None].float()
    contour = torch.sin(0.5 * j + torch.arange(D)[None])
    out = []
    for k in range(n):
        level = -1.5 + 3.0 * k / (n - 1)
        prompt = level + 0.3 * torch.sin(torch.arange(6)[:, None].float() * (k + 1) + torch.arange(D)[None])
        out.append(dict(utt_id=f"v{k}", prompt=prompt, phones=[1, 2, 3, 4], target=contour + level))
    return out


def test_summary_is_masked_and_zero_without_a_prompt():
    torch.manual_seed(0)
    s = SpeakerSummary(3, 8)
    torch.nn.init.normal_(s.net[2].weight)
    p = torch.randn(2, 5, 3)
    lens = torch.tensor([3, 0])
    out = s(p, lens)
    assert out[1].abs().max() == 0  # no prompt: nothing added
    padded = p.clone()
    padded[0, 3:] = 100.0  # padding does not leak into the summary
    assert torch.allclose(s(padded, lens), out)
    assert torch.allclose(out[:1], s(p[:1, :3], lens[:1]))


@pytest.mark.parametrize("to_input", [False, True])
def test_speaker_path_starts_as_the_model_without_it(to_input):
    """Zero-initialised output: a model given the path computes exactly what it computed before."""
    torch.manual_seed(0)
    base = LatentLM(tiny_config()).eval()
    spk = LatentLM(tiny_config(speaker_condition=True, speaker_input=to_input)).eval()
    state = {**base.state_dict(), **{"speaker." + k: v for k, v in spk.speaker.state_dict().items()}}
    spk.load_state_dict(state)
    b = collate_lm(voiced_utterances())
    with torch.no_grad():
        l0 = base.loss(b, cfg_drop=False, generator=torch.Generator().manual_seed(3))["loss"]
        l1 = spk.loss(b, cfg_drop=False, generator=torch.Generator().manual_seed(3))["loss"]
    assert torch.equal(l0, l1)
    ex = voiced_utterances()[:2]
    g0 = base.generate([e["phones"] for e in ex], [e["prompt"] for e in ex], steps=3, cfg_scale=2.0,
                       generator=torch.Generator().manual_seed(0))
    g1 = spk.generate([e["phones"] for e in ex], [e["prompt"] for e in ex], steps=3, cfg_scale=2.0,
                      generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, c) for a, c in zip(g0.latents, g1.latents))


def test_speaker_path_carries_the_voice_of_the_prompt():
    """Trained on voices told apart only by their prompts, the model's output follows the prompt's level,
    and the speaker path is what carries it: zeroing its output costs most of the fit."""
    torch.manual_seed(0)
    model = LatentLM(tiny_config(speaker_condition=True))
    ex = voiced_utterances()
    b = collate_lm(ex)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = model.loss(b, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        fit = model.loss(b, generator=torch.Generator().manual_seed(1))["diff"].item()
        saved = [p.clone() for p in model.speaker.net[2].parameters()]
        for p in model.speaker.net[2].parameters():
            p.zero_()
        cut = model.loss(b, generator=torch.Generator().manual_seed(1))["diff"].item()
        for p, v in zip(model.speaker.net[2].parameters(), saved):
            p.copy_(v)
    assert cut > 2 * fit, (fit, cut)
    # a new voice between the trained levels comes out at its own level
    prompt = 0.75 + 0.3 * torch.sin(torch.arange(6)[:, None].float() * 2.5 + torch.arange(D)[None])
    gen = model.generate([[1, 2, 3, 4]] * 2, [prompt, -prompt], steps=8, max_frames=8,
                         generator=torch.Generator().manual_seed(0), use_stop=False)
    hi, lo = (z.mean().item() for z in gen.latents)
    assert hi > 0.3 and lo < -0.3, (hi, lo)


def test_speaker_input_needs_the_summary():
    with pytest.raises(ConfigError, match="speaker_condition"):
        tiny_config(speaker_input=True).validate()


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_generation_feeds_the_speaker_input_as_training_does(scale):
    """With the input map trained away from zero, the head conditions of generation (KV cache, fed-back
    tokens) equal the teacher-forced ones of the same tokens; the CFG rows get no speaker input."""
    torch.manual_seed(0)
    model = LatentLM(tiny_config(speaker_condition=True, speaker_input=True)).eval()
    for p in (model.speaker.net[2].weight, model.speaker.input.weight):
        torch.nn.init.normal_(p, std=0.2)
    ex = voiced_utterances()[:2]
    seen = []
    sample = model.head.sample

    def recording(cond, uncond, **kw):
        seen.append((cond.clone(), None if uncond is None else uncond.clone()))
        return sample(cond, uncond, **kw)

    model.head.sample = recording
    out = model.generate([e["phones"] for e in ex], [e["prompt"] for e in ex], steps=2, cfg_scale=scale,
                         max_frames=3, use_stop=False, generator=torch.Generator().manual_seed(0))
    assert all(len(z) == 3 for z in out.latents)
    forced = collate_lm([dict(e, target=z) for e, z in zip(ex, out.latents)])
    with torch.no_grad():
        cond, _ = model.head_conditions(forced)
        uncond, _ = model.head_conditions(forced, conditional=False)
    got = torch.stack([c for c, _ in seen], 1).reshape(-1, cond.shape[-1])  # row-major, as head_conditions
    assert (got - cond).abs().max().item() < 1e-4
    if scale != 1.0:
        # head_conditions' unconditional rows add the (zero) summary; the head's uncond input is h alone
        got_u = torch.stack([u for _, u in seen], 1).reshape(-1, cond.shape[-1])
        assert (got_u - uncond).abs().max().item() < 1e-4


def test_init_from_a_model_with_the_path_but_no_input_map(tmp_path):
    """A model with the speaker path continues with its input map added: all weights load, the map is zero."""
    torch.manual_seed(0)
    src = LatentLM(tiny_config(speaker_condition=True))
    torch.nn.init.normal_(src.speaker.net[2].weight)
    codec = AudioCodec(from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 320, "frame_hop": 160, "downsample": [2, 2], "latent_dim": D,
        "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1, 1]}}))
    md = save_latentlm(src, tmp_path / "lm", save_codec(codec, tmp_path / "codec"), {})
    model = LatentLM(tiny_config(speaker_condition=True, speaker_input=True))
    init_latentlm_from(model, str(md))
    assert model.speaker.input.weight.abs().max() == 0
    assert torch.equal(model.speaker.net[2].weight, src.speaker.net[2].weight)


def test_init_from_a_model_without_the_path(tiny_latentlm_dir, tmp_path):
    """A bundled LatentLM continues training with the path added: its weights load, the path starts at zero."""
    md = load_model_dir(tiny_latentlm_dir, kind="latentlm")
    cfg = dataclasses.replace(from_dict(LatentLMConfig, md.config), speaker_condition=True)
    model = LatentLM(cfg)
    init_latentlm_from(model, str(tiny_latentlm_dir))
    assert model.speaker.net[2].weight.abs().max() == 0
    src = md.state_dict["head.in_proj.weight"].float()
    assert torch.equal(model.state_dict()["head.in_proj.weight"], src)
