"""LatentLM for speech: a causal Transformer over [prompt latents | phones | speech latents] whose
hidden state at each speech position conditions a diffusion head that denoises the next latent
(next-token diffusion, as in the LatentLM paper, arXiv 2412.08635).

* The speaker prompt comes first, as codec latents of *another* utterance of the speaker (no
  prompt transcript: any clip of the voice works at inference, and the model cannot learn to
  read the prompt's words). Then the phones of the text to speak, then a learned BOS and the
  target latents; each token gets the embedding of its segment (prompt, phones, speech) added.
* Latents are the codec's *normalised* latents (``codec.normalize``: per-dim zero mean, unit std).
  With ``patch_size`` p > 1 every speech token is p consecutive frames: the sequence, the
  Transformer passes and the head calls per second of audio all shrink by p.
* Classifier-free guidance: rows trained without prompt and phones (``cfg_drop_prob``) give the
  unconditional predictions, generated in the same batch. A model whose head was
  guidance-distilled (``guidance_distilled``, :mod:`latentspeech.train.distill`) gives the guided
  output from the conditional rows alone and samples with ``cfg_scale`` 1.
* ``alignment`` picks how a speech token finds the phone it says: ``"attention"`` (the paper's
  model; a stop head ends the utterance) or ``"pointer"`` (every token is told its phone; an
  advance head moves a pointer over the phones, and passing the last one ends the utterance).

Modules, one concept each:

* :mod:`.config` — :class:`LatentLMConfig`.
* :mod:`.layout` — the sequence layout (slots, segments, positions), patching, generation prefixes.
* :mod:`.model` — :class:`LatentLM`: embeddings, heads, teacher forcing and the losses.
* pointer mode's layers, teacher-forced inputs and walk are :mod:`latentspeech.models.pointer` (shared with VALL-E).
* :mod:`.modes` — the two alignment modes of generation (:class:`AttentionMode`, :class:`PointerMode`).
* :mod:`.generation` — the decoding loop (:func:`generate`, :class:`GenerationOutput`).
* :mod:`.diagnostics` — text-to-speech attention statistics.
* :mod:`.io` — model dirs (:data:`KIND`, :func:`save_latentlm`, :func:`load_latentlm`).
"""

from .config import LatentLMConfig
from .generation import GenerationOutput
from .io import KIND, load_latentlm, save_latentlm
from .layout import patchify, unpatchify
from .model import LatentLM
from .modes import AttentionMode, PointerMode

__all__ = ["LatentLMConfig", "LatentLM", "GenerationOutput", "KIND", "save_latentlm", "load_latentlm",
           "patchify", "unpatchify", "AttentionMode", "PointerMode"]
