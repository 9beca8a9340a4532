"""The shared Transformer: KV-cache decoding equals the full forward; padding; GQA; non-causal."""

from __future__ import annotations

import pytest
import torch

from latentspeech.errors import ConfigError
from latentspeech.models.transformer import Transformer, TransformerConfig

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: a second thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, max_seq_len=64, **kw)
    return Transformer(cfg).eval()


@pytest.mark.parametrize("n_kv_heads", [None, 2])
def test_kv_cache_equals_full_forward(n_kv_heads):
    net = _net(n_kv_heads=n_kv_heads)
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        full = net(x)
        cache = net.new_cache(2, 16)
        parts = [net(x[:, :5], cache=cache)]  # prefill
        for t in range(5, 12):  # one token at a time
            parts.append(net(x[:, t : t + 1], cache=cache))
    step = torch.cat(parts, dim=1)
    assert cache.length == 12
    assert (step - full).abs().max().item() < 1e-4


def test_output_is_causal():
    net = _net()
    x = torch.randn(1, 10, 32)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 32)
    with torch.no_grad():
        a, b = net(x), net(y)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def test_left_padded_batched_decoding_matches_single_sequences():
    """Two prompts of different lengths, left-padded, decoded together = each decoded alone."""
    net = _net()
    torch.manual_seed(1)
    long, short = torch.randn(1, 7, 32), torch.randn(1, 4, 32)
    cont = torch.randn(2, 3, 32)  # three continuation tokens per sequence
    with torch.no_grad():
        refs = [net(torch.cat([p, cont[i : i + 1]], dim=1))[:, -3:] for i, p in enumerate((long, short))]
        x = torch.zeros(2, 7, 32)
        x[0], x[1, 3:] = long[0], short[0]
        mask = torch.ones(2, 7, dtype=torch.bool)
        mask[1, :3] = False
        pos = torch.stack([torch.arange(7), (torch.arange(7) - 3).clamp(min=0)])
        cache = net.new_cache(2, 10)
        net(x, positions=pos, padding_mask=mask, cache=cache)
        outs = [net(cont[:, t : t + 1], cache=cache) for t in range(3)]
    got = torch.cat(outs, dim=1)
    assert (got[0] - refs[0][0]).abs().max().item() < 1e-4
    assert (got[1] - refs[1][0]).abs().max().item() < 1e-4


def test_right_padding_does_not_change_real_tokens_and_gives_no_nan():
    net = _net()
    x = torch.randn(2, 8, 32)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        y = net(x, padding_mask=mask)
        alone = net(x[1:, :5])
    assert torch.isfinite(y).all()
    assert (y[1, :5] - alone[0]).abs().max().item() < 1e-5


def test_explicit_positions_give_relative_invariance():
    """RoPE: shifting every position by the same offset leaves the outputs unchanged."""
    net = _net()
    x = torch.randn(1, 6, 32)
    pos = torch.arange(6)[None]
    with torch.no_grad():
        a, b = net(x, positions=pos), net(x, positions=pos + 20)
    assert (a - b).abs().max().item() < 1e-4


def test_non_causal_sees_the_future():
    net = _net(causal=False)
    x = torch.randn(1, 6, 32)
    y = x.clone()
    y[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x)[:, 0], net(y)[:, 0], atol=1e-4)
    with pytest.raises(RuntimeError):
        net.new_cache(1, 8)


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match="divisible"):
        TransformerConfig(dim=30, n_heads=4).validate()
    with pytest.raises(ConfigError, match="n_kv_heads"):
        TransformerConfig(dim=32, n_heads=4, n_kv_heads=3).validate()
    assert TransformerConfig(dim=256).hidden_dim == 704
