"""The Transformer's training and attention-kernel paths: activation checkpointing gives the same
gradients, no device-to-host read per forward, and SDPA gets no mask where nothing is padded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentspeech.config import from_dict
from latentspeech.models.transformer import Transformer, TransformerConfig


def _net(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(dim=32, n_layers=3, n_heads=4, n_kv_heads=2, max_seq_len=64, **kw))


def _grads(net: Transformer, x, pad, attention_layer=None, seed: int = 1):
    net.train()
    net.zero_grad()
    torch.manual_seed(seed)  # the same dropout draws in both runs
    out = net(x, padding_mask=pad, attention_layer=attention_layer)
    h, probs = out if attention_layer is not None else (out, None)
    loss = (h * torch.linspace(-1, 1, h.shape[-1])).sum() + (probs.square().sum() if probs is not None else 0)
    loss.backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}, h.detach()


@pytest.mark.parametrize("dropout, attention_layer", [(0.0, None), (0.1, None), (0.0, 1)])
def test_activation_checkpointing_gives_the_same_gradients(dropout, attention_layer):
    x = torch.randn(2, 9, 32)
    pad = torch.ones(2, 9, dtype=torch.bool)
    pad[1, 6:] = False
    plain = _net(dropout=dropout)
    ckpt = _net(dropout=dropout, activation_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    g0, h0 = _grads(plain, x, pad, attention_layer)
    calls = []
    import torch.utils.checkpoint as tuc

    real = tuc.checkpoint

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    import latentspeech.models.transformer as tm

    tm.checkpoint, saved = counting, tm.checkpoint
    try:
        g1, h1 = _grads(ckpt, x, pad, attention_layer)
    finally:
        tm.checkpoint = saved
    assert len(calls) == 3  # every block recomputed
    torch.testing.assert_close(h1, h0, rtol=0, atol=0)
    assert g0.keys() == g1.keys()
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-6, atol=1e-7, msg=n)


def test_activation_checkpointing_is_training_only():
    net = _net(activation_checkpointing=True).eval()
    x = torch.randn(1, 5, 32)
    import latentspeech.models.transformer as tm

    def boom(*a, **k):
        raise AssertionError("checkpoint called outside training")

    tm.checkpoint, saved = boom, tm.checkpoint
    try:
        net(x)
        net.train()
        with torch.no_grad():
            net(x)
        cache = net.new_cache(1, 16)
        net(x, cache=cache)
    finally:
        tm.checkpoint = saved


def test_the_flag_loads_from_a_config_and_defaults_off():
    assert TransformerConfig().activation_checkpointing is False
    assert from_dict(TransformerConfig, {"activation_checkpointing": True}).activation_checkpointing


def test_forward_reads_no_value_back_from_the_device():
    """On the meta device no tensor has a value: a forward that read one (``int(positions.max())``,
    a device-to-host sync on a GPU) fails there."""
    with torch.device("meta"):
        net = Transformer(TransformerConfig(dim=32, n_layers=2, n_heads=4, max_seq_len=64))
        x = torch.randn(2, 7, 32)
        pos = torch.arange(7).expand(2, 7)
        pad = torch.ones(2, 7, dtype=torch.bool)
    assert net(x, positions=pos, padding_mask=pad).shape == (2, 7, 32)
    cache = net.new_cache(2, 16)
    net(x, positions=pos, padding_mask=pad, cache=cache)
    assert net(x[:, :1], cache=cache).shape == (2, 1, 32)


def test_positions_on_the_cpu_are_still_checked():
    net = _net()
    with pytest.raises(ValueError, match="max_seq_len"):
        net(torch.randn(1, 3, 32), positions=torch.tensor([[0, 1, 64]]))
    with pytest.raises(ValueError, match="max_seq_len"):
        net(torch.randn(1, 65, 32))
    cache = net.new_cache(1, 8)
    cache.next_pos[:] = 63  # positions taken from a cache: 63, 64
    with pytest.raises(ValueError, match="max_seq_len"):
        net(torch.randn(1, 2, 32), cache=cache)


class _SDPASpy:
    """Records (mask is None, is_causal) of every SDPA call and runs the real one."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = F.scaled_dot_product_attention

        def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
            self.calls.append((attn_mask is None, is_causal, q.shape[2], k.shape[2]))
            return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)


def test_no_mask_reaches_sdpa_where_nothing_is_padded(monkeypatch):
    net = _net().eval()
    x = torch.randn(2, 8, 32)
    pos = torch.arange(8).expand(2, 8)
    full = torch.ones(2, 8, dtype=torch.bool)
    with torch.no_grad():
        ref = net(x, positions=pos)
        spy = _SDPASpy(monkeypatch)
        same = net(x, positions=pos, padding_mask=full)  # a mask without padding
        assert spy.calls == [(True, True, 8, 8)] * 3
        torch.testing.assert_close(same, ref, rtol=0, atol=0)

        # decoding with a cache that never held padding: the prefill is causal, each next token sees all
        spy.calls.clear()
        cache = net.new_cache(2, 16)
        pre = net(x[:, :5], positions=pos[:, :5], padding_mask=full[:, :5], cache=cache)
        steps = [net(x[:, t : t + 1], cache=cache) for t in range(5, 8)]
        assert spy.calls == [(True, True, 5, 5)] * 3 + [(True, False, 1, s) for s in (6, 7, 8) for _ in range(3)]
        torch.testing.assert_close(torch.cat([pre, *steps], 1), ref, rtol=1e-5, atol=1e-5)

        # several new tokens after the prefill still need the causal mask (SDPA's is_causal is top-left)
        spy.calls.clear()
        cache = net.new_cache(2, 16)
        a = net(x[:, :3], cache=cache)
        b = net(x[:, 3:], cache=cache)
        assert spy.calls == [(True, True, 3, 3)] * 3 + [(False, False, 5, 8)] * 3
        torch.testing.assert_close(torch.cat([a, b], 1), ref, rtol=1e-5, atol=1e-5)


def test_padding_still_masks(monkeypatch):
    net = _net().eval()
    x = torch.randn(2, 8, 32)
    pad = torch.ones(2, 8, dtype=torch.bool)
    pad[0, :3] = False  # left padding of row 0
    with torch.no_grad():
        alone = net(x[:1, 3:])
        spy = _SDPASpy(monkeypatch)
        pos = torch.stack([(torch.arange(8) - 3).clamp(min=0), torch.arange(8)])
        both = net(x, positions=pos, padding_mask=pad)
        assert all(not no_mask for no_mask, *_ in spy.calls)
        torch.testing.assert_close(both[:1, 3:], alone, rtol=1e-5, atol=1e-5)
        # a cache holding padding keeps masking the decoding steps
        spy.calls.clear()
        cache = net.new_cache(2, 16)
        net(x, padding_mask=pad, cache=cache)
        net(x[:, :1], cache=cache)
        assert all(not no_mask for no_mask, *_ in spy.calls)
