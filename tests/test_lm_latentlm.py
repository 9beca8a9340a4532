"""LatentLM: sequence layout, cache consistency, overfitting 4 utterances, stopping, length guard, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from latentspeech.data.batch import LMBatch
from latentspeech.data.collate import collate_lm
from latentspeech.errors import ConfigError
from latentspeech.models.alignment import default_frames_per_phone, guided_attention_loss
from latentspeech.models.diffusion import guided
from latentspeech.models.latentlm import AttentionMode, LatentLM, LatentLMConfig, PointerMode, patchify, unpatchify
from latentspeech.models.latentlm import generation
from latentspeech.models.latentlm.layout import Prefixes
from latentspeech.models.pointer import pointer_tables
from latentspeech.models.transformer import TransformerConfig
from latentspeech.train.distill import DistillConfig, distill_guidance

D = 4


def tiny_config(**kw) -> LatentLMConfig:
    base = dict(latent_dim=D, vocab_size=16, frame_rate=25.0, head_blocks=2, batch_mul=8,
                transformer=TransformerConfig(dim=48, n_layers=2, n_heads=4, max_seq_len=128))
    base.update(kw)
    return LatentLMConfig(**base)


def pattern(k: int, frames: int) -> torch.Tensor:
    """A smooth, utterance-specific latent sequence [frames, D]."""
    j = torch.arange(frames)[:, None].float()
    return torch.sin(0.3 * j * (k + 1) + torch.arange(D)[None] * 1.3 + k)


def four_utterances() -> list[dict]:
    return [dict(utt_id=f"u{k}", prompt=pattern(k + 5, 4), phones=[1 + (3 * k + i) % 11 for i in range(3 + k)],
                 target=pattern(k, 6 + 2 * k)) for k in range(4)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: a second thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_full_batch(model: LatentLM, batch: LMBatch, steps: int) -> tuple[float, float]:
    """``steps`` AdamW steps on one batch (seeded noise); returns the first and the last loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        loss = model.loss(batch, generator=g)["loss"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


@pytest.fixture(scope="module")
def overfit():
    """A 110k-parameter model trained 250 full-batch steps on 4 utterances (~6 s on one core)."""
    torch.manual_seed(0)
    examples = four_utterances()
    batch = collate_lm(examples)
    model = LatentLM(tiny_config(cfg_drop_prob=0.0))
    first, _ = train_full_batch(model, batch, 250)
    return model.eval(), examples, batch, first


def test_layout_positions_restart_per_segment():
    model = LatentLM(tiny_config())
    b = collate_lm(four_utterances()[:2])
    pk = model.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
    # row 0: 4 prompt frames, 3 phones, BOS, 6 target frames
    assert pk.positions[0, :14].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    assert pk.valid[0].sum() == 14 and pk.valid[1].sum() == 4 + 4 + 1 + 8
    g = LatentLM(tiny_config(position_mode="global"))
    pk = g.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
    assert pk.positions[0, :14].tolist() == list(range(14))
    # phone positions spread to the frame rate: phone k at round(1.8 k)
    sc = LatentLM(tiny_config(phone_position_scale=1.8))
    pk = sc.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
    assert pk.positions[0, :14].tolist() == [0, 1, 2, 3, 0, 2, 4, 0, 1, 2, 3, 4, 5, 6]
    assert pk.positions[1, 4:8].tolist() == [0, 2, 4, 5]
    with pytest.raises(ConfigError, match="phone_position_scale"):
        tiny_config(phone_position_scale=0.0).validate()


@pytest.mark.parametrize("scale", [1.0, 1.8])
def test_incremental_decoding_matches_training_forward(scale):
    """Left-padded prefix + KV cache + fed-back frames = the right-padded training forward."""
    torch.manual_seed(1)
    model = LatentLM(tiny_config(phone_position_scale=scale)).eval()
    ex = four_utterances()[1:4]
    ex[2] = dict(ex[2], prompt=torch.zeros(0, D), phones=[])  # a CFG-dropped (unconditional) row
    b = collate_lm(ex)
    n = 5  # compare the first 5 speech positions (BOS + 4 frames)
    with torch.no_grad():
        pk = model.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
        h_full = model.transformer(pk.x, pk.positions, pk.valid)
        rel = pk.slot - pk.speech_start[:, None]
        ref = torch.stack([h_full[i][(rel[i] >= 0) & (rel[i] < n)] for i in range(3)])
        zero = torch.zeros_like(b.target_lens)
        pre = model.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target[:, :0], zero, left_pad=True)
        cache = model.transformer.new_cache(3, pre.x.shape[1] + n)
        hs = [model.transformer(pre.x, pre.positions, pre.valid, cache=cache)[:, -1]]
        for j in range(n - 1):
            hs.append(model.transformer(model.speech_embedding(b.target[:, j])[:, None], cache=cache)[:, -1])
    got = torch.stack(hs, dim=1)
    assert (got - ref).abs().max().item() < 1e-4


def test_tiny_model_overfits_four_utterances(overfit):
    model, examples, batch, first = overfit
    with torch.no_grad():
        out = model.loss(batch, cfg_drop=False, generator=torch.Generator().manual_seed(1))
    assert out["diff"].item() < 0.15, out  # started at ~0.8 (measured final ~0.03-0.06)
    assert out["stop"].item() < 0.05 and out["stop_acc"].item() == 1.0
    assert out["loss"].item() < 0.1 * first
    gen = model.generate([e["phones"] for e in examples], [e["prompt"] for e in examples], steps=10,
                         generator=torch.Generator().manual_seed(0))
    for e, z in zip(examples, gen.latents):
        assert abs(len(z) - len(e["target"])) <= 1
        n = min(len(z), len(e["target"]))
        err = (z[:n] - e["target"][:n]).abs().mean().item()
        scale = e["target"].abs().mean().item()  # ≈ 0.6: what predicting zeros would miss by
        assert err < 0.35 * scale, f"{e['utt_id']}: mean abs error {err:.3f}"


def test_stop_head_ends_generation_before_the_length_guard(overfit):
    model, examples, _, _ = overfit
    phones = [e["phones"] for e in examples]
    prompts = [e["prompt"] for e in examples]
    gen = model.generate(phones, prompts, steps=5, generator=torch.Generator().manual_seed(0))
    assert all(gen.stopped)
    assert all(len(z) < g for z, g in zip(gen.latents, gen.guard))
    # without the stop head every row runs exactly to its guard
    full = model.generate(phones, prompts, steps=1, use_stop=False, generator=torch.Generator().manual_seed(0))
    assert [len(z) for z in full.latents] == full.guard and not any(full.stopped)
    assert full.guard == [model.length_guard(len(p)) for p in phones]


def test_length_guard_formula():
    cfg = tiny_config(frame_rate=25.0, guard_min_frames=10)
    assert default_frames_per_phone(12.5) == 1.5 and default_frames_per_phone(25.0) == 3.0
    assert LatentLM(cfg).length_guard(7) == math.ceil(3.0 * 7) + 10
    assert LatentLM(tiny_config(frames_per_phone=2.0, guard_min_frames=0)).length_guard(5) == 10


def test_same_seed_same_output_and_cfg_batch(overfit):
    model, examples, _, _ = overfit
    phones = [e["phones"] for e in examples[:2]]
    prompt = examples[0]["prompt"]  # one prompt shared by every row

    def run(seed, cfg_scale=2.0):
        return model.generate(phones, prompt, steps=3, cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(a.latents, b.latents))
    assert any(x.shape != y.shape or not torch.equal(x, y) for x, y in zip(a.latents, c.latents))
    assert a.head_evals == 3 * (a.transformer_passes - 1)


def test_cfg_dropout_makes_unconditional_rows():
    model = LatentLM(tiny_config(cfg_drop_prob=0.5)).train()
    b = collate_lm(four_utterances())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    dropped = model.loss(b, generator=g1)["loss"]
    kept = model.loss(b, cfg_drop=False, generator=g2)["loss"]
    assert torch.isfinite(dropped) and torch.isfinite(kept)


def test_config_validation():
    with pytest.raises(ConfigError, match="cfg_drop_prob"):
        tiny_config(cfg_drop_prob=1.0).validate()
    with pytest.raises(ConfigError, match="width"):
        tiny_config(latent_dim=64, head_width=32).validate()
    assert isinstance(collate_lm(four_utterances()), LMBatch)


def test_attention_maps_and_alignment_stats(overfit):
    model, examples, batch, _ = overfit
    b = LMBatch(**{k: getattr(batch, k) for k in ("prompt", "prompt_lens", "phones", "phone_lens", "target",
                                                  "target_lens")})
    pk = model.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
    maps = model.transformer.attention_maps(pk.x, pk.positions, pk.valid)
    assert len(maps) == model.cfg.transformer.n_layers
    att = maps[0]
    assert torch.allclose(att.sum(-1), torch.ones_like(att.sum(-1)), atol=1e-5)
    assert att[0, :, 3, 4:].abs().max() == 0  # causal: no weight on the future
    # the explicit path reproduces the fused forward
    with torch.no_grad():
        assert torch.isfinite(model.transformer(pk.x, pk.positions, pk.valid)).all()
    al = model.alignment(b)
    for k in ("phone_mass", "focus", "monotonic", "coverage"):
        assert len(al[k]) == 2 and all(0.0 <= v <= 1.0 + 1e-6 for v in al[k])
    assert [len(p) for p in al["paths"][0]] == b.target_lens.tolist()


def test_minimum_length_overrides_an_eager_stop_head():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(min_frames_per_phone=2.0, guard_min_frames=50)).eval()
    torch.nn.init.constant_(model.stop_head.bias, 10.0)  # "stop now" everywhere
    gen = model.generate([[1, 2, 3], [4]], None, steps=1, generator=torch.Generator().manual_seed(0))
    assert [len(z) for z in gen.latents] == [6, 2] and all(gen.stopped)
    assert model.min_length(0) == 1


def test_guided_attention_loss_prefers_the_diagonal():
    # one row: 2 prompt slots, 4 phones, BOS + 7 frames (8 speech queries, F = 8)
    P, L, F_ = 2, 4, 8
    T = P + L + F_
    slot = torch.arange(T)[None]
    rel = slot - (P + L)
    args = (slot, torch.tensor([P]), torch.tensor([L]), rel, torch.tensor([F_]))
    diag = torch.zeros(1, 1, T, T)
    anti = torch.zeros(1, 1, T, T)
    for j in range(F_):
        diag[0, 0, P + L + j, P + j * L // F_] = 1.0
        anti[0, 0, P + L + j, P + L - 1 - j * L // F_] = 1.0
    lo, hi = guided_attention_loss(diag, *args), guided_attention_loss(anti, *args)
    assert lo < 0.1 < 0.5 < hi
    # attention that leaves the phones (here: on the prompt) counts as off the diagonal, so a layer
    # cannot satisfy the guide by ignoring the phones; no phones: no rows
    away = diag.clone()
    away[0, 0, P + L:] = 0.0
    away[0, 0, P + L:, 0] = 1.0
    assert abs(float(guided_attention_loss(away, *args)) - 1.0) < 1e-6
    half = 0.5 * diag + 0.5 * away
    assert abs(float(guided_attention_loss(half, *args)) - (0.5 * float(lo) + 0.5)) < 1e-6
    assert guided_attention_loss(diag, slot, torch.tensor([P]), torch.tensor([0]), rel, torch.tensor([F_])) == 0


def test_guided_attention_training_term_and_explicit_attention_path():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(guided_attention_weight=1.0, guided_attention_layer=1, cfg_drop_prob=0.0))
    b = collate_lm(four_utterances())
    pk = model.pack(b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens, left_pad=False)
    with torch.no_grad():  # the explicit softmax layer computes what SDPA computes
        h_ref = model.transformer(pk.x, pk.positions, pk.valid)
        h, att = model.transformer(pk.x, pk.positions, pk.valid, attention_layer=1)
    assert (h - h_ref).abs().max() < 1e-5 and att.shape == (4, 4, pk.x.shape[1], pk.x.shape[1])
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    guides = []
    for _ in range(60):
        out = model.loss(b, generator=g)
        guides.append(float(out["guide"]))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert guides[-1] < 0.5 * guides[0]
    model.eval()
    assert "guide" not in model.loss(b)  # a training-only term
    with pytest.raises(ConfigError, match="guided_attention_layer"):
        tiny_config(guided_attention_weight=1.0, guided_attention_layer=5).validate()


def test_corrupted_teacher_forcing_only_in_training():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(input_noise=0.3, input_dropout=0.3))
    b = collate_lm(four_utterances())
    args = (b.prompt, b.prompt_lens, b.phones, b.phone_lens, b.target, b.target_lens)
    model.train()
    a, c = model.pack(*args, left_pad=False), model.pack(*args, left_pad=False)
    prefix = int(b.prompt_lens[0] + b.phone_lens[0]) + 1  # prompt, phones and BOS are never corrupted
    assert torch.equal(a.x[0, :prefix], c.x[0, :prefix]) and not torch.equal(a.x, c.x)
    model.eval()
    assert torch.equal(model.pack(*args, left_pad=False).x, model.pack(*args, left_pad=False).x)
    with pytest.raises(ConfigError, match="input_dropout"):
        tiny_config(input_dropout=1.0).validate()


def test_patchify_groups_frames_and_round_trips():
    z = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    tok, lens = patchify(z, torch.tensor([5, 2]), 2)
    assert tok.shape == (2, 3, 6) and lens.tolist() == [3, 1]
    back = unpatchify(tok, 2)
    assert torch.equal(back[0, :5], z[0]) and torch.equal(back[0, 5], z[0, 4])  # last frame repeated
    assert torch.equal(back[1, :2], z[1, :2]) and torch.equal(back[1, 2], z[1, 1])  # past the row's end
    assert torch.equal(unpatchify(patchify(z, torch.tensor([5, 5]), 1)[0], 1), z)


def test_patched_model_overfits_and_generates_whole_patches():
    """patch_size 2: half the tokens, head over 2·D values; output frames come in pairs."""
    torch.manual_seed(0)
    examples = four_utterances()
    batch = collate_lm(examples)
    model = LatentLM(tiny_config(cfg_drop_prob=0.0, patch_size=2, frames_per_phone=4.0))
    assert model.cfg.token_dim == 2 * D and model.cfg.token_rate == 12.5
    first, last = train_full_batch(model, batch, 200)
    assert last < 0.2 * first
    model.eval()
    gen = model.generate([e["phones"] for e in examples], [e["prompt"] for e in examples], steps=10,
                         generator=torch.Generator().manual_seed(0))
    assert gen.guard == [math.ceil(4.0 * len(e["phones"]) / 2) + model.cfg.guard_min_frames for e in examples]
    for e, z in zip(examples, gen.latents):
        assert z.shape[1] == D and len(z) % 2 == 0
        assert abs(len(z) - len(e["target"])) <= 2, (len(z), len(e["target"]))
    with pytest.raises(ConfigError, match="patch_size"):
        tiny_config(patch_size=0).validate()


def pointer_utterances() -> list[dict]:
    """Four utterances whose phones have known durations; token 2 is silent (takes no frames); two
    have an odd number of frames."""
    out = []
    for k, ex in enumerate(four_utterances()):
        if k % 2:
            ex = {**ex, "target": ex["target"][:-1]}
        phones = list(ex["phones"])
        phones.insert(1, 2)
        d = [0] * len(phones)
        sounding = [i for i, p in enumerate(phones) if p != 2]
        for n in range(len(ex["target"])):
            d[sounding[min(n * len(sounding) // len(ex["target"]), len(sounding) - 1)]] += 1
        out.append({**ex, "phones": phones, "durations": d})
    return out


@pytest.mark.parametrize("patch_size", [1, 2])
def test_pointer_mode_learns_durations_and_ends_after_the_last_phone(patch_size):
    """alignment 'pointer': frames are told their phone; the advance head reproduces the trained
    durations at inference and moving past the last sounding phone ends the row. With 2-frame
    patches too: a token carries two frames' phones, the head makes two advance decisions, and a row
    may end inside a token (odd lengths come out exact)."""
    torch.manual_seed(0)
    examples = pointer_utterances()
    batch = collate_lm(examples)
    assert batch.durations is not None and batch.durations.sum(1).tolist() == batch.target_lens.tolist()
    if patch_size > 1:
        assert any(n % patch_size for n in batch.target_lens.tolist())  # some row ends inside a token
    model = LatentLM(tiny_config(cfg_drop_prob=0.0, alignment="pointer", silent_token_ids=[0, 2],
                                 patch_size=patch_size))
    assert not hasattr(model, "stop_head")
    first, _ = train_full_batch(model, batch, 250)
    model.eval()
    with torch.no_grad():
        out = model.loss(batch, cfg_drop=False, generator=torch.Generator().manual_seed(1))
    assert out["advance_acc"].item() == 1.0 and out["diff"].item() < 0.15, out
    gen = model.generate([e["phones"] for e in examples], [e["prompt"] for e in examples], steps=10,
                         generator=torch.Generator().manual_seed(0))
    assert all(gen.stopped)
    for e, z in zip(examples, gen.latents):
        assert len(z) == len(e["target"])
        err = (z - e["target"]).abs().mean().item()
        assert err < 0.35 * e["target"].abs().mean().item(), e["utt_id"]
    # CFG rows (no phones, no prompt) ride along without changing the pointer's bookkeeping
    g2 = model.generate([e["phones"] for e in examples], [e["prompt"] for e in examples], steps=4, cfg_scale=2.0,
                        generator=torch.Generator().manual_seed(0))
    assert len(g2.latents) == 4 and all(len(z) > 0 for z in g2.latents)
    # without durations the pointer model cannot train; stale durations are named
    with pytest.raises(ValueError, match="durations"):
        model.loss(collate_lm([{k: v for k, v in e.items() if k != "durations"} for e in examples]))
    bad = [dict(e) for e in examples]
    bad[0]["durations"] = [x + 1 for x in bad[0]["durations"]]
    with pytest.raises(ValueError, match="u0"):
        model.loss(collate_lm(bad))
    with pytest.raises(ConfigError, match="pointer"):
        LatentLM(tiny_config(alignment="pointer", max_phone_frames=0))


def test_pointer_tables_skip_silent_tokens():
    model = LatentLM(tiny_config(alignment="pointer", silent_token_ids=[2, 4]))
    phones = torch.tensor([[2, 5, 4, 6, 2], [2, 4, 0, 0, 0]])
    lens = torch.tensor([5, 2])
    c_pad, nxt, first = pointer_tables(model.encode_phones(phones, lens), phones, lens, model.cfg.silent_token_ids)
    assert first.tolist() == [1, 0]  # row 1 has only silent tokens: then every token sounds
    assert nxt[0].tolist() == [1, 3, 3, 5, 5, 5] and nxt[1, :2].tolist() == [1, 5]
    assert c_pad.shape == (2, 6, 48) and c_pad[:, -1].abs().sum() == 0


# -- guidance distillation (latentspeech/train/distill.py) ---------------------------------------
@pytest.fixture(scope="module")
def pointer_model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    examples = pointer_utterances()
    batch = collate_lm(examples)
    model = LatentLM(tiny_config(cfg_drop_prob=0.3, alignment="pointer", silent_token_ids=[0, 2], patch_size=2))
    train_full_batch(model, batch, 150)
    return model.eval(), examples, batch


def _guided_gap(model, teacher_head, batch, scale, student_head=None):
    """Mean squared gap between the (student) conditional head and the teacher's guided pair."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        h_c, x0 = model.head_conditions(batch, conditional=True)
        h_u, _ = model.head_conditions(batch, conditional=False)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
        x_t = teacher_head.schedule.add_noise(x0, torch.randn(x0.shape, generator=g), t)
        want = guided(teacher_head, h_c, h_u, scale)(x_t, t)
        got = (student_head or model.head)(x_t, t, h_c)
    return (got - want).pow(2).mean().item()


def test_head_conditions_pair_conditional_and_unconditional_rows(pointer_model):
    model, _, batch = pointer_model
    with torch.no_grad():
        h_c, x_c = model.head_conditions(batch, conditional=True)
        h_u, x_u = model.head_conditions(batch, conditional=False)
    n_tokens = int(((batch.target_lens + 1) // 2).sum())  # 2-frame tokens
    assert h_c.shape == h_u.shape == (n_tokens, 48) and torch.equal(x_c, x_u)
    assert not torch.allclose(h_c, h_u)  # the unconditional rows lack prompt and phones


def test_distillation_folds_guidance_into_the_head(pointer_model):
    import copy

    model, examples, batch = pointer_model
    model = copy.deepcopy(model)
    teacher = copy.deepcopy(model.head).eval()
    before = _guided_gap(model, teacher, batch, 3.0)
    log = []
    distill_guidance(model, [batch], DistillConfig(scale=3.0, steps=150, lr=3e-3, warmup_steps=5),
                     progress=False, log=log)
    after = _guided_gap(model, teacher, batch, 3.0)
    assert after < 0.5 * before, (before, after)
    assert log and log[-1][1] < log[0][1]
    assert model.cfg.guidance_distilled == 3.0 and not model.training
    assert all(p.requires_grad for p in model.parameters())
    # the Transformer and the advance head are untouched
    base = pointer_model[0]
    assert torch.equal(model.pointer.advance_head.weight, base.pointer.advance_head.weight)
    assert torch.equal(model.transformer.layers[0].attn.wq.weight, base.transformer.layers[0].attn.wq.weight)
    # a distilled model samples with one row per sentence; asking for CFG again is a clear error
    gen = model.generate([e["phones"] for e in examples], [e["prompt"] for e in examples], steps=4,
                         generator=torch.Generator().manual_seed(0))
    assert len(gen.latents) == 4 and all(len(z) > 0 for z in gen.latents)
    with pytest.raises(ValueError, match="cfg 1"):
        model.generate([examples[0]["phones"]], examples[0]["prompt"], cfg_scale=3.0)
    with pytest.raises(ValueError, match="already"):
        distill_guidance(model, [batch], DistillConfig(steps=1), progress=False)


def test_distill_config_validation():
    with pytest.raises(ConfigError, match="distill"):
        DistillConfig(scale=0.5).validate()
    with pytest.raises(ConfigError, match="distill"):
        DistillConfig(steps=-1).validate()


@pytest.mark.parametrize("patch_size", [1, 2])
def test_max_hold_frames_forces_the_pointer_on_except_at_pauses(patch_size):
    """An advance head that never advances holds every sounding phone until it is forced on: after
    max_phone_frames by default, after max_hold_frames with it set, except for pause tokens."""
    torch.manual_seed(0)
    phones = [[1, 3, 5, 3, 6]]  # 5 stands for pause punctuation; 2 is silent (absent here)

    def frames(**kw) -> int:
        model = LatentLM(tiny_config(alignment="pointer", silent_token_ids=[0, 2], max_phone_frames=6,
                                     patch_size=patch_size, guard_min_frames=200, frames_per_phone=40.0, **kw)).eval()
        with torch.no_grad():
            model.pointer.advance_head.bias.fill_(-30.0)  # never advances by itself
            out = model.generate(phones, torch.zeros(2, D), steps=1, cfg_scale=1.0)
        assert out.stopped == [True]  # passing the last phone ends the row
        return int(out.latents[0].shape[0])

    assert frames() == 5 * 6
    assert frames(max_hold_frames=2, pause_token_ids=[5]) == 4 * 2 + 6
    assert frames(max_hold_frames=2) == 5 * 2
    with pytest.raises(ConfigError, match="max_hold_frames"):
        LatentLM(tiny_config(alignment="pointer", max_hold_frames=-1))


# -- the alignment modes of generation (latentspeech/models/latentlm/modes.py) -------------------
def prefixes(phones, patch_size=1, guided=True) -> Prefixes:
    return Prefixes.build(phones, None, pad_id=0, latent_dim=D, patch_size=patch_size, guided=guided,
                          device=torch.device("cpu"), dtype=torch.float32)


def test_generate_runs_the_strategy_of_the_configured_mode(monkeypatch):
    calls = []
    for cls in (AttentionMode, PointerMode):
        class Spy(cls):
            def ends_before(self, j, h, active, _name=cls.__name__):
                calls.append(_name)
                return super().ends_before(j, h, active)
        monkeypatch.setattr(generation, cls.__name__, Spy)
    for alignment, name in (("attention", "AttentionMode"), ("pointer", "PointerMode")):
        torch.manual_seed(0)
        model = LatentLM(tiny_config(alignment=alignment)).eval()
        calls.clear()
        gen = model.generate([[1, 3, 4]], None, steps=1, max_frames=3, use_stop=False,
                             generator=torch.Generator().manual_seed(0))
        assert calls == [name] * 3 and [len(z) for z in gen.latents] == [3]


def test_attention_mode_stops_rows_with_the_stop_head_after_their_minimum_length():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(min_frames_per_phone=2.0)).eval()
    torch.nn.init.constant_(model.stop_head.bias, 10.0)  # "stop now" everywhere
    pre = prefixes([[1, 2, 3], [4]])
    assert (pre.rows, pre.n) == (4, 2) and pre.phone_lens.tolist() == [3, 1, 0, 0]  # + the CFG rows
    mode = AttentionMode(model, pre, use_stop=True)
    assert mode.start() is None
    h, active = torch.randn(2, 48), torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        assert not mode.ends_before(0, h, active).any()  # never before the first token
        assert mode.ends_before(2, h, active).tolist() == [False, True]  # minimum lengths 6 and 2
        assert mode.ends_before(6, h, active).tolist() == [True, True]
        assert mode.stopped.tolist() == [True, True] and not mode.ends_inside().any()
        assert torch.equal(mode.condition(h), h) and mode.frames_kept.tolist() == [1, 1]
        x = mode.feed_back(torch.randn(2, D))
        assert x.shape == (4, 48) and torch.equal(x[:2], x[2:])  # the CFG rows are fed the same tokens
        assert not AttentionMode(model, pre, use_stop=False).ends_before(6, h, active).any()


def test_pointer_mode_walks_the_sounding_phones_frame_by_frame():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(alignment="pointer", silent_token_ids=[0, 2], patch_size=2)).eval()
    torch.nn.init.constant_(model.pointer.advance_head.bias, 30.0)  # advances on every frame
    mode = PointerMode(model, prefixes([[1, 2, 3, 4], [1, 3]], patch_size=2), use_stop=True)
    h, active = torch.randn(2, 48), torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        assert mode.start().shape == (4, 1, 48)
        # token 0: its first frame says the first phone, its second the next sounding one (2 is silent)
        assert not mode.ends_before(0, h, active).any() and mode.ptr.tolist() == [2, 1]
        vec = mode.table.vectors
        assert torch.equal(mode.phones_now, torch.stack([torch.cat([vec[0, 0], vec[0, 2]]),
                                                         torch.cat([vec[1, 0], vec[1, 1]])]))
        assert torch.allclose(mode.condition(h), h + model.pointer.aligned_cond(mode.phones_now))
        assert mode.frames_kept.tolist() == [2, 2] and not mode.ends_inside().any()
        # token 1: row 0 says its last phone and passes it on the second frame (it keeps one frame);
        # row 1 passes its last phone on the first frame: nothing left to sample
        assert mode.ends_before(1, h, active).tolist() == [False, True]
        assert mode.ptr.tolist() == [3, 1] and mode.frames_kept.tolist() == [1, 0]
        assert mode.ends_inside().tolist() == [True, True] and mode.stopped.tolist() == [True, True]
        x = mode.feed_back(torch.randn(2, 2 * D))
        assert x.shape == (4, 48)
        assert torch.allclose(x[:2] - x[2:], model.pointer.aligned_in(mode.phones_now), atol=1e-6)  # CFG rows: no phones
