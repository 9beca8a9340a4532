"""The VALL-E-style baseline: discrete RVQ codes, an AR stage and a NAR stage.

After VALL-E ("Neural Codec Language Models are Zero-Shot Text to Speech Synthesizers") and
VALL-E 2 (its repetition-aware sampling)::

    cfg = VALLEConfig(phone_vocab_size=vocab.size, num_quantizers=8, codebook_size=1024)
    model = VALLE(cfg)
    losses = model.loss(batch)                                  # training: {"loss", "ar_loss", ...}
    out = model.generate(phones, prompt_codes, seed=0)          # inference: out.codes [B, Q, T]

Two Transformers from :mod:`latentspeech.models.transformer` (the one LatentLM uses):

* **AR** (causal, KV cache) models the first codebook ``c⁰`` one frame at a time and ends the
  utterance with an end-of-speech token ``EOS``. Sampling: temperature, top-k, top-p, and
  optionally repetition-aware sampling.
* **NAR** (bidirectional) predicts codebook ``j`` (1..Q-1) for all frames at once from the sum
  of the embeddings of levels ``0..j-1``. Decoding is greedy, Q-1 passes.

Modules:

* :mod:`.config` — :class:`VALLEConfig`: sizes, code vocabulary (EOS, BOS) and the length guard.
* :mod:`.layout` — the input row ``[prompt | phones | speech]`` both stages read, and padding helpers.
* :mod:`.sampling` — :func:`sample_logits` (temperature, top-k, top-p) and :func:`repetition_aware_sample`.
* :mod:`.ar` — :class:`ARStage`: first-level codes up to EOS, with KV-cache decoding.
* :mod:`.nar` — :class:`NARStage`: levels 1..Q-1.
* :mod:`.model` — :class:`VALLE` (both stages: loss, generate) and :class:`VALLEOutput`.
* :mod:`.io` — model directories of kind :data:`KIND`: :func:`save_valle`, :func:`load_valle`.
"""

from ...data.batch import VALLEBatch
from .ar import ARStage
from .config import VALLEConfig
from .io import KIND, load_valle, save_valle
from .layout import layout, pad_sequences
from .model import VALLE, VALLEOutput
from .nar import NARStage
from .sampling import repetition_aware_sample, sample_logits

__all__ = [
    "VALLEConfig",
    "VALLEOutput",
    "VALLE",
    "VALLEBatch",
    "ARStage",
    "NARStage",
    "sample_logits",
    "repetition_aware_sample",
    "pad_sequences",
    "layout",
    "save_valle",
    "load_valle",
    "KIND",
]
