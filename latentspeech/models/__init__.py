"""Models: plain ``nn.Module``s with their config dataclasses and model-directory save/load.

* :mod:`.codec` — the audio codec (σ-VAE, Gaussian VAE or residual VQ on one ConvNeXt + iSTFT trunk).
* :mod:`.transformer` — the causal Transformer (RoPE, KV cache) shared by every LM below.
* :mod:`.diffusion` — the per-token diffusion head, its noise schedule and samplers.
* :mod:`.latentlm` — LatentLM: next-token diffusion over codec latents.
* :mod:`.alignment` — how an LM is told where it is in the text (shared by LatentLM and VALL-E).
* :mod:`.valle` — the VALL-E-style baseline over RVQ codes (AR + NAR).
* :mod:`.aligner` — the monotonic phone aligner that gives pointer mode its durations.
* :mod:`.recognizer` — the CTC phone recognizer that picks the clearest of several candidates.

Nothing here imports training or inference code: those layers sit above this one.
"""
