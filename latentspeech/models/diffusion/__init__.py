"""Next-token diffusion: the noise schedule, the adaLN MLP diffusion head, its loss and samplers.

At every speech position the Transformer's hidden state ``h`` conditions a small network that
denoises the *next* latent frame (LatentLM, arXiv 2412.08635; MAR, arXiv 2406.11838):

    head = DiffusionHead(DiffusionHeadConfig(latent_dim=32, cond_dim=256, width=256))
    loss = diffusion_loss(head, x0, h, batch_mul=4)                    # training, per position
    x = sample(head_fn, (N, 32), steps=10, method="dpm++")             # inference, any model_fn
    x = head.sample(h, steps=10, temperature=0.7)                      # inference of the head (traced loop)

Modules
    :mod:`.schedule`   cosine DDPM schedule (T = 1000), ε / v parameterisations, timestep plans
    :mod:`.head`       :class:`DiffusionHeadConfig`, the adaLN blocks, :class:`DiffusionHead`
    :mod:`.fused`      the head's weights rearranged for inference (same function, fewer ops)
    :mod:`.loss`       :func:`diffusion_loss`
    :mod:`.samplers`   :func:`sample` with DPM-Solver++(2M), DDIM and ancestral DDPM
    :mod:`.guidance`   classifier-free guidance, :func:`guided`
    :mod:`.trace`      the CPU tracing of the head's sampler loop (``trace.TRACE_SAMPLER``)

Parameterisations
    ``eps`` (the net predicts ε) or ``v`` (v = α_t ε − σ_t x0, the default). v is preferred: its
    target keeps unit scale at every t, whereas x0 from a predicted ε is (x_t − σ_t ε̂) / α_t, which
    amplifies the net's error by σ_t / α_t towards t = T (Salimans & Ho 2022).

Timesteps
    ``steps`` evaluations run from t = T−1 to t = 0 (σ ≈ 0.006), at times evenly spaced in log-SNR
    (``spacing="logsnr"``, the default) or in t (``"linspace"``). At 1-5 steps log-SNR spacing is
    far more accurate: see ``test_logsnr_spacing_beats_linspace_at_few_steps`` in
    tests/test_lm_diffusion.py.

Temperature
    τ scales the initial noise x_T (and the fresh noise of ``ddpm`` steps): τ < 1 trades
    diversity for stability, as MAR's temperature does (0.95-1.0 there).

Classifier-free guidance
    :func:`guided` wraps the head so that one batched call evaluates the conditional and the
    unconditional condition and returns ``out_u + s·(out_c − out_u)``; s = 1 is exactly the
    conditional prediction.
"""

from __future__ import annotations

from . import trace
from .guidance import guided
from .head import AdaLNBlock, DiffusionHead, DiffusionHeadConfig, FinalLayer, timestep_embedding
from .loss import diffusion_loss
from .samplers import SAMPLERS, sample
from .schedule import LOGSNR_MIN, NoiseSchedule, Prediction, x0_eps

__all__ = [
    "DiffusionHeadConfig",
    "DiffusionHead",
    "AdaLNBlock",
    "FinalLayer",
    "NoiseSchedule",
    "Prediction",
    "LOGSNR_MIN",
    "SAMPLERS",
    "diffusion_loss",
    "sample",
    "guided",
    "timestep_embedding",
    "x0_eps",
    "trace",
]
