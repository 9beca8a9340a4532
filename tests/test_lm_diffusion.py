"""Diffusion schedule, head, loss and samplers.

Sampler accuracy is checked with the *exact* denoiser of a Gaussian target N(μ, s²) (for which
E[x0 | x_t] is known in closed form): starting from pure noise the sampler must reproduce μ and s.
Tolerances (relative error of the per-dimension std; mean error in units of s), measured values
in brackets for DPM-Solver++ with v-prediction, 20k samples:
    5 steps: 15 % [≤ 11 %], 10 steps: 6 % [≤ 4 %], 20 steps: 3 % [≤ 1.5 %]; mean: 0.1 s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentspeech.errors import ConfigError
from latentspeech.models.diffusion import (
    DiffusionHead,
    DiffusionHeadConfig,
    NoiseSchedule,
    diffusion_loss,
    guided,
    sample,
)

MU = torch.tensor([1.5, -0.5, 0.0, 2.0, 0.0])
SD = torch.tensor([0.5, 1.0, 2.0, 0.1, 0.25])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: a second thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exact_model(schedule: NoiseSchedule, prediction: str):
    """The optimal ε / v prediction for x0 ~ N(MU, SD²)."""

    def fn(x, t):
        a, s = schedule.alpha[t, None], schedule.sigma[t, None]
        x0 = MU + a * SD**2 * (x - a * MU) / (a**2 * SD**2 + s**2)
        eps = (x - a * x0) / s
        return eps if prediction == "eps" else a * eps - s * x0

    return fn


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule(1000)


def test_cosine_schedule_shape(schedule):
    ab = schedule.alpha_bar
    assert ab.shape == (1000,)
    assert torch.all(ab[1:] < ab[:-1])
    assert ab[0] > 0.9999 and ab[-1] < 1e-6
    assert torch.allclose(schedule.alpha**2 + schedule.sigma**2, torch.ones(1000), atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_prediction_conversions_round_trip(schedule, prediction):
    x0, eps = torch.randn(8, 4), torch.randn(8, 4)
    t = torch.randint(0, 1000, (8,))
    x_t = schedule.add_noise(x0, eps, t)
    out = schedule.target(x0, eps, t, prediction)
    x0_hat, eps_hat = schedule.to_x0_eps(out, x_t, t, prediction)
    keep = t < 990  # x0 from ε is ill-conditioned where α ≈ 0
    assert torch.allclose(eps_hat, eps, atol=1e-3)
    assert torch.allclose(x0_hat[keep], x0[keep], atol=1e-2)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps,std_tol", [(5, 0.15), (10, 0.06), (20, 0.03)])
def test_dpm_solver_recovers_gaussian(schedule, prediction, steps, std_tol):
    g = torch.Generator().manual_seed(0)
    x = sample(exact_model(schedule, prediction), (20000, 5), schedule, prediction, steps=steps,
               method="dpm++", generator=g)
    rel_std = (x.std(0) / SD - 1).abs().max().item()
    mean_err = ((x.mean(0) - MU).abs() / SD).max().item()
    assert rel_std < std_tol, f"std off by {rel_std:.3f} at {steps} steps"
    assert mean_err < 0.1, f"mean off by {mean_err:.3f} σ at {steps} steps"


@pytest.mark.slow
def test_ddpm_reference_sampler_recovers_gaussian(schedule):
    """999 ancestral steps (~3 s alone, ~25 s on a busy 2-core machine)."""
    g = torch.Generator().manual_seed(1)
    x = sample(exact_model(schedule, "v"), (4000, 5), schedule, "v", steps=999, method="ddpm", generator=g)
    assert (x.std(0) / SD - 1).abs().max().item() < 0.06
    assert ((x.mean(0) - MU).abs() / SD).max().item() < 0.1


def test_logsnr_spacing_beats_linspace_at_few_steps(schedule):
    """At 5 steps times evenly spaced in log-SNR recover the std far better than times evenly spaced
    in t, which spend most steps where the sample is still almost pure noise [11 % against 41 %]."""
    errs = {}
    for spacing in ("logsnr", "linspace"):
        x = sample(exact_model(schedule, "v"), (20000, 5), schedule, "v", steps=5, spacing=spacing,
                   generator=torch.Generator().manual_seed(0))
        errs[spacing] = (x.std(0) / SD - 1).abs().max().item()
    assert errs["logsnr"] < 0.15 and errs["linspace"] > 2 * errs["logsnr"], errs


def test_ddim_converges_with_more_steps(schedule):
    g = torch.Generator().manual_seed(2)
    errs = []
    for steps in (10, 50):
        x = sample(exact_model(schedule, "v"), (4000, 5), schedule, "v", steps=steps, method="ddim", generator=g)
        errs.append((x.std(0) / SD - 1).abs().max().item())
    assert errs[1] < errs[0] and errs[1] < 0.15


def test_temperature_scales_spread(schedule):
    fn = exact_model(schedule, "v")
    g = torch.Generator().manual_seed(3)
    hot = sample(fn, (4000, 5), schedule, "v", steps=20, generator=g, temperature=1.0)
    cold = sample(fn, (4000, 5), schedule, "v", steps=20, generator=g, temperature=0.5)
    ratio = cold.std(0) / hot.std(0)
    assert torch.all((ratio > 0.4) & (ratio < 0.6))


def test_same_generator_seed_same_sample(schedule):
    fn = exact_model(schedule, "v")
    a = sample(fn, (16, 5), schedule, "v", steps=5, generator=torch.Generator().manual_seed(7))
    b = sample(fn, (16, 5), schedule, "v", steps=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def _head(**kw) -> DiffusionHead:
    torch.manual_seed(0)
    return DiffusionHead(DiffusionHeadConfig(latent_dim=6, cond_dim=10, width=16, n_blocks=2, **kw))


@pytest.mark.parametrize("modulation", ["joint", "separable"])
def test_head_is_zero_initialised(modulation):
    head = _head(modulation=modulation)
    out = head(torch.randn(4, 6), torch.randint(0, 1000, (4,)), torch.randn(4, 10))
    assert out.shape == (4, 6)
    assert torch.count_nonzero(out) == 0


def test_cfg_scale_one_equals_conditional_prediction():
    head = _head()
    for p in head.parameters():  # leave the zero init so the conditions matter
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(5, 6), torch.randint(0, 1000, (5,))
    hc, hu = torch.randn(5, 10), torch.randn(5, 10)
    cond = head(x, t, hc)
    assert torch.allclose(guided(head, hc, hu, 1.0)(x, t), cond)
    # the batched two-condition path at scale 1 must give the same answer too
    calls = []
    wrapped = lambda a, b, c: (calls.append(a.shape[0]), head(a, b, c))[1]  # noqa: E731
    g = guided(wrapped, hc, hu, 1.0 + 1e-12)
    assert torch.allclose(g(x, t), cond, atol=1e-5) and calls == [10]
    g3 = guided(head, hc, hu, 3.0)(x, t)
    assert torch.allclose(g3, head(x, t, hu) + 3.0 * (cond - head(x, t, hu)), atol=1e-5)


@pytest.mark.parametrize("modulation", ["joint", "separable"])
def test_inference_fast_path_matches_the_plain_forward(modulation):
    """denoiser(h) (h projected once per frame) and the memoised time embedding (and, separable,
    the memoised timestep modulations) change nothing."""
    head = _head(modulation=modulation)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, h = torch.randn(5, 6), torch.randn(5, 10)
    t = torch.full((5,), 321)
    ref = head(x, t, h)
    head.eval()
    with torch.no_grad():
        first, again = head.denoiser(h)(x, t), head.denoiser(h)(x, t)  # the second hits the cache
        mixed = torch.tensor([1, 2, 3, 4, 5]) * 100  # several timesteps in one batch: no memo
        assert torch.allclose(head.denoiser(h)(x, mixed), head.train()(x, mixed, h), atol=1e-6)
    assert torch.allclose(first, ref, atol=1e-6) and torch.equal(first, again)
    with torch.no_grad():  # weights changed in place (an optimiser step, load_state_dict): no stale memo
        head.time_mlp[0].bias.add_(1.0)
        assert not torch.allclose(head.denoiser(h)(x, t), first)
        head.blocks[0].w1.weight.mul_(2.0)
        assert torch.allclose(head.denoiser(h)(x, t), head.train()(x, t, h), atol=1e-6)


def _traced_keys(head):
    return [k for k, v in head._inference_memo().items() if isinstance(k, tuple) and k[0] == "traced" and v]


@pytest.mark.parametrize("modulation,cfg,method", [("separable", 1.0, "dpm++"), ("separable", 3.0, "dpm++"),
                                                   ("joint", 1.0, "ddim"), ("joint", 2.0, "dpm++")])
def test_head_sample_traced_loop_gives_the_eager_numbers(modulation, cfg, method):
    """DiffusionHead.sample traces its sampler loop on the first call (which runs eagerly) and runs the
    graph afterwards: the same latents, bit for bit, as the eager loop from the same generator."""
    from latentspeech.models.diffusion import trace

    head = _head(modulation=modulation)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    head.eval()
    h, hu = torch.randn(3, 10), torch.randn(3, 10)
    uncond = hu if cfg != 1.0 else None

    def draw(seed):
        return head.sample(h, uncond, cfg, steps=6, method=method, temperature=0.8,
                           generator=torch.Generator().manual_seed(seed))

    first, traced = draw(0), draw(1)
    assert len(_traced_keys(head)) == 1 and all(p.requires_grad for p in head.parameters())
    again = draw(1)
    trace.TRACE_SAMPLER = False  # the flag the head reads at every call
    try:
        eager = draw(1)
        assert torch.equal(draw(0), first)
    finally:
        trace.TRACE_SAMPLER = True
    assert torch.equal(traced, eager) and torch.equal(again, eager) and not torch.equal(first, traced)
    with torch.no_grad():  # a weight change drops the graph with the other inference tensors
        head.final.linear.bias.add_(0.5)
    assert not _traced_keys(head)
    changed = draw(1)
    assert not torch.equal(changed, eager)
    assert torch.equal(draw(1), changed) and len(_traced_keys(head)) == 1


def test_head_sample_stays_eager_where_a_trace_would_be_wrong(monkeypatch):
    """Training mode and the stochastic ``ddpm`` sampler never trace; a failed trace falls back to the
    eager loop (and leaves the weights trainable)."""
    head = _head(modulation="separable")
    h = torch.randn(2, 10)
    head.train()
    head.sample(h, steps=3), head.sample(h, steps=3)
    head.eval()
    a = head.sample(h, steps=3, method="ddpm", generator=torch.Generator().manual_seed(0))
    b = head.sample(h, steps=3, method="ddpm", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not _traced_keys(head)

    def broken(*args, **kwargs):
        raise RuntimeError("no tracing here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    x = [head.sample(h, steps=3, generator=torch.Generator().manual_seed(0)) for _ in range(3)]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and not _traced_keys(head)
    assert all(p.requires_grad for p in head.parameters())


def test_separable_modulation_splits_state_and_timestep():
    """Separable: each modulation is Linear(SiLU(c_h)) + Linear(SiLU(c_t)); joint: Linear(SiLU(c_h + c_t))."""
    head = _head(modulation="separable")
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    blk = head.blocks[0]
    assert blk.ada_t[-1].bias is None and not hasattr(_head().blocks[0], "ada_t")
    c_h, c_t = torch.randn(3, 16), torch.randn(3, 16)
    ref = blk.ada[-1](F.silu(c_h)) + blk.ada_t[-1](F.silu(c_t))
    assert torch.allclose(blk.modulation(c_h, c_t), ref, atol=1e-6)
    with pytest.raises(ConfigError, match="modulation"):
        DiffusionHeadConfig(modulation="film").validate()


def test_loss_is_per_position_and_trains_the_head():
    head = _head(batch_mul=4)
    x0 = torch.randn(8, 6)
    h = torch.randn(8, 10)
    loss = diffusion_loss(head, x0, h)
    assert loss.shape == (8,)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(60):
        loss = diffusion_loss(head, x0, h, generator=g).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


def test_narrow_head_is_a_config_error():
    with pytest.raises(ConfigError, match="width"):
        DiffusionHeadConfig(latent_dim=64, width=32).validate()
