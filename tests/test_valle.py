"""The VALL-E baseline model: KV cache, overfitting, stopping, sampling, seeds, model dirs."""

from __future__ import annotations

import pytest
import torch

from latentspeech.models.valle import (
    VALLE,
    VALLEBatch,
    VALLEConfig,
    layout,
    load_valle,
    pad_sequences,
    sample_logits,
    save_valle,
)
from latentspeech.errors import CheckpointError, ConfigError
from latentspeech.models.transformer import TransformerConfig

Q, K = 3, 16


def tiny_config(**kw) -> VALLEConfig:
    base = dict(
        phone_vocab_size=24, num_quantizers=Q, codebook_size=K, frame_rate=50.0,
        ar=TransformerConfig(dim=48, n_layers=2, n_heads=4, max_seq_len=128),
        nar=TransformerConfig(dim=48, n_layers=2, n_heads=4, max_seq_len=128, causal=False),
        frames_per_phone=10.0, guard_min_frames=5,
    )
    base.update(kw)
    return VALLEConfig(**base)


def random_batch(seed: int = 0, n: int = 4) -> VALLEBatch:
    """``n`` utterances of random codes with different phone, prompt and target lengths."""
    g = torch.Generator().manual_seed(seed)
    phone_lists = [list(range(3 + 4 * i, 3 + 4 * i + 3 + i % 2)) for i in range(n)]  # distinct phones
    phones, phone_lens = pad_sequences(phone_lists)
    prompt_lens = torch.tensor([4 + i % 3 for i in range(n)])
    code_lens = torch.tensor([6 + (2 * i) % 5 for i in range(n)])
    prompt = torch.randint(0, K, (n, Q, int(prompt_lens.max())), generator=g)
    codes = torch.randint(0, K, (n, Q, int(code_lens.max())), generator=g)
    return VALLEBatch(phones, phone_lens, prompt, prompt_lens, codes, code_lens)


def make_model(seed: int = 0, **kw) -> VALLE:
    torch.manual_seed(seed)
    return VALLE(tiny_config(**kw))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def overfit():
    """A tiny model trained to memorise 4 utterances of random codes (a few seconds)."""
    model = make_model()
    batch = random_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    model.train()
    history = []
    for _ in range(100):
        out = model.loss(batch, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append((float(out["ar_loss"]), float(out["nar_loss"])))
    model.eval()
    return model, batch, history


def test_demo_config_fits_the_parameter_budget():
    cfg = VALLEConfig(phone_vocab_size=158)
    with torch.device("meta"):
        counts = VALLE(cfg).num_parameters()
    assert counts["total"] <= 12_000_000
    assert counts["ar"] > 1_000_000 and counts["nar"] > 1_000_000


def test_config_validation():
    with pytest.raises(ConfigError, match="causal"):
        tiny_config(nar=TransformerConfig(dim=48, n_layers=1, n_heads=4, causal=True)).validate()
    with pytest.raises(ConfigError, match="num_quantizers"):
        tiny_config(num_quantizers=1).validate()
    with pytest.raises(ConfigError, match="min_frames"):
        tiny_config(min_frames=0).validate()
    with pytest.raises(ConfigError, match="frames_per_phone"):
        tiny_config(frames_per_phone=-1.0).validate()
    with pytest.raises(ConfigError, match="phone_position_scale"):
        tiny_config(phone_position_scale=-1.0).validate()


def test_layout_numbers_each_segment_from_zero():
    emb = [(torch.zeros(2, 3, 4), torch.tensor([3, 1])), (torch.zeros(2, 2, 4), torch.tensor([1, 2]))]
    x, pos, mask = layout(emb)
    assert x.shape == (2, 5, 4)
    assert pos.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 1]]
    assert mask.tolist() == [[True, True, True, True, False], [True, False, False, True, True]]
    emb.append((torch.zeros(2, 4, 4), torch.tensor([4, 4])))  # the second segment (phones) is spread
    _, pos, _ = layout(emb, phone_position_scale=1.8)
    assert pos[0].tolist() == [0, 1, 2, 0, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("scale", [1.0, 1.8])
def test_ar_kv_cache_equals_full_forward(scale):
    """Teacher-forced logits from one full pass = prefill + one frame at a time (padded batch)."""
    model = make_model(phone_position_scale=scale).eval()
    batch = random_batch(1)
    with torch.no_grad():
        full = model.ar(batch)[0]  # [B, T+1, K+1]
        T = batch.codes.shape[-1]
        h, cache = model.ar.start(batch.phones, batch.phone_lens, batch.prompt[:, 0], batch.prompt_lens, T)
        steps = [model.ar.logits(h)]
        for t in range(T):
            steps.append(model.ar.logits(model.ar.step(model.ar.embed_speech(batch.codes[:, 0, t]), cache)))
    inc = torch.stack(steps, dim=1)
    valid = torch.arange(T + 1)[None, :] <= batch.code_lens[:, None]  # BOS + real frames
    assert (inc - full)[valid].abs().max().item() < 1e-4


def test_ar_and_nar_overfit_four_utterances(overfit):
    model, batch, history = overfit
    ar_loss, nar_loss = history[-1]
    assert ar_loss < 0.05, history[-1]
    assert nar_loss < 0.05, history[-1]
    assert history[0][0] > 1.0 and history[0][1] > 1.0  # it did learn something
    with torch.no_grad():  # the NAR reproduces every level from the true first level
        codes, passes = model.nar.generate(batch.phones, batch.phone_lens, batch.prompt, batch.prompt_lens,
                                           batch.codes[:, 0], batch.code_lens)
    assert passes == Q - 1
    for b in range(batch.size):
        n = int(batch.code_lens[b])
        assert torch.equal(codes[b, :, :n], batch.codes[b, :, :n])


def test_greedy_decoding_reproduces_targets_and_stops_with_eos(overfit):
    model, batch, _ = overfit
    out = model.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, temperature=0.0)
    assert torch.equal(out.lengths, batch.code_lens)
    assert out.stopped.all()  # ended by the end-of-speech token, not by the length guard
    assert (out.lengths < model.cfg.length_guard(batch.phone_lens)).all()
    for b in range(batch.size):
        n = int(batch.code_lens[b])
        assert torch.equal(out.codes[b, :, :n], batch.codes[b, :, :n])
        assert (out.codes[b, :, n:] == 0).all()
    assert out.ar_steps == int(batch.code_lens.max()) + 1 and out.nar_passes == Q - 1


def test_length_guard_cuts_generation():
    model = make_model().eval()
    plain = model.ar.logits

    def no_eos(h):  # make EOS impossible: generation must end at the guard
        return plain(h).index_fill(-1, torch.tensor([model.cfg.eos_id]), float("-inf"))

    model.ar.logits = no_eos
    batch = random_batch()
    out = model.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, max_frames=7, seed=0)
    assert out.lengths.tolist() == [7] * batch.size
    assert not out.stopped.any()
    out = model.generate([[3, 4]], [batch.prompt[0]], seed=0)  # phone guard: 10 frames/phone · 2 + 5
    assert out.lengths.tolist() == [25]


def test_min_frames_masks_eos(overfit):
    model, batch, _ = overfit  # it would stop with EOS after 6-10 frames
    args = (batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens)
    out = model.generate(*args, temperature=0.0, min_frames=14, max_frames=14)
    assert out.lengths.tolist() == [14] * batch.size and not out.stopped.any()


def test_same_seed_same_output_and_batching_matches_single():
    model = make_model().eval()
    batch = random_batch()
    args = (batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens)
    a = model.generate(*args, seed=123, max_frames=20, top_k=8, top_p=0.9)
    b = model.generate(*args, seed=123, max_frames=20, top_k=8, top_p=0.9)
    c = model.generate(*args, seed=124, max_frames=20, top_k=8, top_p=0.9)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.lengths, b.lengths)
    assert not torch.equal(a.codes, c.codes)
    # greedy: a padded batch gives what each sentence gives alone (segment-wise padding is exact)
    batched = model.generate(*args, temperature=0.0, max_frames=12)
    for i in range(batch.size):
        p, n = int(batch.phone_lens[i]), int(batch.prompt_lens[i])
        one = model.generate([batch.phones[i, :p]], [batch.prompt[i, :, :n]], temperature=0.0, max_frames=12)
        L = int(one.lengths[0])
        assert int(batched.lengths[i]) == L
        assert torch.equal(batched.codes[i, :, :L], one.codes[0, :, :L])


def test_repetition_aware_sampling_breaks_loops():
    model = make_model().eval()
    plain = model.ar.logits

    def loop(h):  # code 3 is the most likely code everywhere: p(3) ≈ 0.57, EOS impossible
        out = torch.zeros_like(plain(h))
        out[..., 3] = 3.0
        out[..., model.cfg.eos_id] = float("-inf")
        return out

    model.ar.logits = loop
    batch = random_batch()
    args = (batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens)
    stuck = model.generate(*args, top_k=1, max_frames=30, seed=0)
    assert (stuck.codes[:, 0] == 3).all()  # filtered sampling repeats the top code forever
    ras = model.generate(*args, top_k=1, ras_window=10, ras_threshold=0.1, max_frames=30, seed=0)
    first = ras.codes[:, 0]
    assert (first[:, :2] == 3).all()  # a code may appear once in the window before the redraw
    assert 0.2 < (first != 3).float().mean() < 0.8  # then redrawn from the full distribution


def test_sample_logits_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0, float("-inf")]]).repeat(400, 1)
    assert sample_logits(logits, temperature=0.0).unique().tolist() == [1]
    assert sample_logits(logits, top_k=1, generator=g).unique().tolist() == [1]
    assert sorted(sample_logits(logits, top_k=2, generator=g).unique().tolist()) == [1, 2]
    # p(1) ≈ 0.49, p(2) ≈ 0.44: top_p 0.3 keeps only id 1; 0.6 keeps ids 1 and 2
    assert sample_logits(logits, top_p=0.3, generator=g).unique().tolist() == [1]
    assert sorted(sample_logits(logits, top_p=0.6, generator=g).unique().tolist()) == [1, 2]
    assert 4 not in sample_logits(logits, temperature=5.0, generator=g).tolist()


def test_model_dir_round_trip(tmp_path):
    model = make_model().eval()
    batch = random_batch()
    path = save_valle(model, tmp_path / "valle", meta={"steps": 3})
    loaded, codec, vocab, meta = load_valle(path, with_codec=False)
    assert codec is None and vocab is None and meta["steps"] == 3
    args = (batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens)
    a, b = model.generate(*args, seed=5, max_frames=10), loaded.generate(*args, seed=5, max_frames=10)
    assert torch.equal(a.codes, b.codes)
    with pytest.raises(CheckpointError, match="codec/"):
        load_valle(path)  # a usable VALL-E dir must carry its codec
    with pytest.raises(CheckpointError, match="holds a 'valle' model"):
        from latentspeech.models.codec import load_codec

        load_codec(path)


def tiny_rvq_codec():
    from latentspeech.models.codec import AudioCodec, CodecConfig
    from latentspeech.config import from_dict

    cfg = from_dict(CodecConfig, {
        "sample_rate": 16000, "n_fft": 640, "frame_hop": 160, "downsample": [2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1]},
        "bottleneck": {"kind": "rvq", "num_quantizers": Q, "codebook_size": K},
    })
    torch.manual_seed(0)
    return AudioCodec(cfg).eval()


def test_rvq_codes_round_trip_through_the_decoder():
    codec = tiny_rvq_codec()
    assert codec.frame_rate == 50.0
    wav = 0.1 * torch.randn(2, 8000)
    codes = codec.encode_codes(wav)
    assert codes.shape == (2, Q, 25) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < K
    # the codes carry exactly what the decoder gets from the quantised latent
    assert torch.allclose(codec.decode_codes(codes), codec.decode(codec.encode(wav)), atol=1e-5)
    # and the model's output decodes to F · hop samples
    model = make_model().eval()
    out = model.generate([[3, 4, 5]], codes[:1], max_frames=9, seed=0)
    audio = codec.decode_codes(out.codes)
    assert audio.shape == (1, int(out.lengths.max()) * codec.hop_length)


def test_model_dir_with_codec_and_vocab(tmp_path):
    from latentspeech.text.vocab import PhoneVocab

    vocab = PhoneVocab()
    model = make_model(phone_vocab_size=vocab.size).eval()
    codec = tiny_rvq_codec()
    path = save_valle(model, tmp_path / "valle", codec=codec, vocab=vocab, dtype=torch.float16)
    assert (path / "codec" / "model.safetensors").is_file()
    loaded, codec2, vocab2, meta = load_valle(path)
    assert vocab2 == vocab and meta["parameters"]["total"] == model.num_parameters()["total"]
    codes = torch.randint(0, K, (1, Q, 6))
    assert torch.allclose(codec2.decode_codes(codes), codec.decode_codes(codes), atol=2e-2)  # fp16 weights
    bad = make_model(phone_vocab_size=vocab.size, codebook_size=2 * K).eval()
    save_valle(bad, tmp_path / "bad", codec=codec, vocab=vocab)
    with pytest.raises(CheckpointError, match="codes"):
        load_valle(tmp_path / "bad")


def test_guided_attention_in_the_ar_stage():
    model = make_model(guided_attention_weight=1.0, guided_attention_layer=0, phone_position_scale=1.5)
    model.train()
    batch = random_batch(1)
    loss, stats = model.ar.loss(batch)
    assert 0.0 < float(stats["ar_guide"]) < 1.0 and loss.requires_grad
    model.eval()
    _, stats = model.ar.loss(batch)
    assert "ar_guide" not in stats  # training only
    with pytest.raises(ConfigError, match="guided_attention_layer"):
        tiny_config(guided_attention_weight=1.0, guided_attention_layer=9).validate()


# -- pointer mode: the AR stage told each frame's phone (latentspeech.models.pointer) ---------------
def durations_of(batch: VALLEBatch) -> torch.Tensor:
    """Per-phone frames summing to each row's code length: 2 per phone, the rest on the last one."""
    d = torch.zeros_like(batch.phones)
    for b in range(batch.size):
        n, T = int(batch.phone_lens[b]), int(batch.code_lens[b])
        d[b, : n - 1] = 2
        d[b, n - 1] = T - 2 * (n - 1)
    return d


@pytest.fixture(scope="module")
def pointer_overfit():
    """A tiny pointer-mode model trained to memorise 4 utterances with their phone durations."""
    model = make_model(alignment="pointer", phone_encoder_layers=1, max_phone_frames=8)
    batch = random_batch()
    batch.durations = durations_of(batch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        out = model.loss(batch, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    model.eval()
    return model, batch, out


def test_pointer_mode_learns_codes_and_durations_and_ends_after_the_last_phone(pointer_overfit):
    model, batch, out = pointer_overfit
    assert {"ar_advance", "ar_advance_acc"} <= set(out) and float(out["ar_advance_acc"]) == 1.0
    assert float(out["ar_loss"]) < 0.05
    got = model.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, temperature=0.0)
    assert torch.equal(got.lengths, batch.code_lens)  # the pointer passed the last phone exactly there
    assert got.stopped.all()
    for b in range(batch.size):
        n = int(batch.code_lens[b])
        assert torch.equal(got.codes[b, :, :n], batch.codes[b, :, :n])
    assert got.ar_steps == int(batch.code_lens.max()) + 1


def test_pointer_mode_without_advancing_holds_each_phone_to_its_limit():
    """An advance head that never fires holds every phone max_phone_frames, then moves on: the
    length is the phones' count times the limit, whatever the codes say (EOS is never drawn)."""
    model = make_model(alignment="pointer", max_phone_frames=3, frames_per_phone=20.0).eval()
    with torch.no_grad():
        model.ar.pointer.advance_head.bias.fill_(-30.0)
    batch = random_batch()
    out = model.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, seed=0)
    assert out.lengths.tolist() == (3 * batch.phone_lens).tolist() and out.stopped.all()


def test_pointer_mode_needs_durations_and_a_valid_config():
    model = make_model(alignment="pointer")
    with pytest.raises(ValueError, match="durations"):
        model.loss(random_batch())
    batch = random_batch()
    batch.durations = durations_of(batch)
    batch.durations[0, 0] += 1
    with pytest.raises(ValueError, match="do not sum"):
        model.loss(batch)
    with pytest.raises(ConfigError, match="alignment"):
        tiny_config(alignment="diagonal").validate()
    with pytest.raises(ConfigError, match="pointer"):
        tiny_config(alignment="pointer", phone_encoder_layers=0).validate()


def test_pointer_model_dir_round_trip(tmp_path, pointer_overfit):
    model, batch, _ = pointer_overfit
    save_valle(model, tmp_path / "m")
    loaded = load_valle(tmp_path / "m", with_codec=False)[0]
    assert loaded.cfg.alignment == "pointer" and loaded.ar.pointer is not None
    a = model.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, temperature=0.0)
    b = loaded.generate(batch.phones, batch.prompt, batch.phone_lens, batch.prompt_lens, temperature=0.0)
    assert torch.equal(a.codes, b.codes)
