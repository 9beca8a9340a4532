"""The LatentLM config: model sizes, training aids and the inference knobs of both alignment modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...errors import ConfigError
from ..alignment import default_frames_per_phone, validate_alignment_aids
from ..pointer import validate_alignment
from ..diffusion import DiffusionHeadConfig
from ..transformer import TransformerConfig

__all__ = ["LatentLMConfig"]


@dataclass
class LatentLMConfig:
    """The TTS model. ``latent_dim``/``frame_rate`` come from the codec, ``vocab_size``/``pad_id``
    from the :class:`~latentspeech.text.PhoneVocab`."""

    latent_dim: int = 32
    vocab_size: int = 128
    pad_id: int = 0
    frame_rate: float = 25.0
    # ``patch_size`` consecutive codec frames make one token (LatentLM's patching): the Transformer
    # runs at frame_rate / patch_size and the head denoises patch_size·latent_dim values at once, so
    # Transformer passes and head calls per second of audio both fall by patch_size.
    patch_size: int = 1
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head_width: int | None = None  # None: the Transformer's width
    head_blocks: int = 3
    head_mlp_ratio: float = 2.0
    head_modulation: Literal["joint", "separable"] = "joint"  # see DiffusionHeadConfig.modulation
    prediction: Literal["eps", "v"] = "v"
    diffusion_steps: int = 1000
    batch_mul: int = 4
    position_mode: Literal["segment", "global"] = "segment"
    phone_position_scale: float = 1.0  # "segment" mode: phone k sits at RoPE position round(k * scale)
    cfg_drop_prob: float = 0.1
    stop_weight: float = 1.0
    # Guided attention (Tachibana et al., 2018), a training-only alignment aid: layer
    # ``guided_attention_layer``'s attention from speech tokens pays for every share that is not on
    # the phones near the diagonal (band exp(-(k/L - j/F)² / 2σ²)). 0 disables it.
    guided_attention_weight: float = 0.0
    guided_attention_layer: int = 1
    guided_attention_sigma: float = 0.2
    # Corrupted teacher forcing (training only): the fed-back target latents get Gaussian noise of
    # std ``input_noise`` (normalised units) and their input embeddings dropout ``input_dropout``
    # (as Tacotron's pre-net), so the model cannot just continue the previous frame and must read
    # the phones; it also sees inputs as imperfect as its own samples.
    input_noise: float = 0.0
    input_dropout: float = 0.0
    stop_pos_weight: float = 5.0
    stop_threshold: float = 0.5
    frames_per_phone: float | None = None  # length guard; None: default_frames_per_phone(frame_rate)
    min_frames_per_phone: float | None = None  # the stop head is ignored before this many frames per phone
    guard_min_frames: int = 10
    max_prompt_seconds: float = 6.0
    # True: the diffusion head also hears a summary of the prompt (its tokens' mean and spread through
    # an MLP, :mod:`.speaker`) at every speech token, a path to the voice that does not depend on the
    # Transformer copying it from the prefix.
    speaker_condition: bool = False
    # True (with speaker_condition): the summary also enters the Transformer, added through a linear
    # map to its input at BOS and every speech token, so the state the head reads knows the voice.
    speaker_input: bool = False
    # How a speech token finds the phone it says. "attention": by attending to the phone prefix (the
    # model of the LatentLM paper, arXiv 2412.08635). "pointer": each speech token is also told its
    # phone: a bidirectional phone encoder's vector of that phone is added to its input and to the
    # head's condition, with an embedding of how many frames the phone has lasted; the phone of each
    # frame comes from per-token durations in training (``latentspeech align``), and at inference an
    # advance head moves a pointer over the sounding phones (tokens outside ``silent_token_ids``);
    # moving past the last one ends the utterance (no stop head). With patch_size p each token
    # carries the vectors of its p frames' phones and the advance head makes p decisions per token.
    alignment: Literal["attention", "pointer"] = "attention"
    phone_encoder_layers: int = 2
    max_phone_frames: int = 32  # pointer: longest elapsed count embedded; a phone held this long is left
    advance_threshold: float = 0.5
    silent_token_ids: list[int] = field(default_factory=list)  # pointer: tokens that take no frames
    # pointer, inference only: > 0 forces the pointer on after a phone has sounded this many frames
    # (a held "sh" otherwise lasts until max_phone_frames); tokens in pause_token_ids (pause
    # punctuation, whose silences run longer) keep max_phone_frames.
    max_hold_frames: int = 0
    pause_token_ids: list[int] = field(default_factory=list)
    # > 0: the head was fine-tuned to give the CFG-guided output at this scale from the conditional
    # state alone (latentspeech.train.distill); such a model samples with cfg_scale 1 (one row).
    guidance_distilled: float = 0.0

    def validate(self) -> None:
        if self.patch_size < 1:
            raise ConfigError(f"latentlm: patch_size must be >= 1, got {self.patch_size}")
        if self.latent_dim <= 0 or self.vocab_size <= 0:
            raise ConfigError(f"latentlm: latent_dim and vocab_size must be positive ({self.latent_dim}, {self.vocab_size})")
        if not 0.0 <= self.cfg_drop_prob < 1.0:
            raise ConfigError(f"latentlm: cfg_drop_prob must be in [0, 1), got {self.cfg_drop_prob}")
        if self.frame_rate <= 0:
            raise ConfigError(f"latentlm: frame_rate must be positive, got {self.frame_rate}")
        if self.input_noise < 0 or not 0 <= self.input_dropout < 1:
            raise ConfigError(f"latentlm: need input_noise >= 0 and 0 <= input_dropout < 1 "
                              f"(got {self.input_noise}, {self.input_dropout})")
        if self.speaker_input and not self.speaker_condition:
            raise ConfigError("latentlm: speaker_input adds the speaker summary of speaker_condition to the "
                              "Transformer's input; set speaker_condition: true too")
        validate_alignment_aids(self, "latentlm", "Transformer", self.transformer.n_layers)
        validate_alignment(self, "latentlm")
        if not self.transformer.causal:
            raise ConfigError("latentlm: the Transformer must be causal")
        self.head_config().validate()
        self.transformer.validate()

    def head_config(self) -> DiffusionHeadConfig:
        return DiffusionHeadConfig(
            latent_dim=self.token_dim, cond_dim=self.transformer.dim, width=self.head_width or self.transformer.dim,
            n_blocks=self.head_blocks, mlp_ratio=self.head_mlp_ratio, modulation=self.head_modulation,
            prediction=self.prediction,
            num_steps=self.diffusion_steps, batch_mul=self.batch_mul,
        )

    @property
    def token_dim(self) -> int:
        """Values per Transformer token: ``patch_size`` frames of ``latent_dim``."""
        return self.latent_dim * self.patch_size

    @property
    def token_rate(self) -> float:
        """Transformer tokens (= decoding steps) per second of audio."""
        return self.frame_rate / self.patch_size

    @property
    def guard_frames_per_phone(self) -> float:
        """Length guard in codec frames per phone token (see :meth:`LatentLM.length_guard`)."""
        return self.frames_per_phone or default_frames_per_phone(self.frame_rate)
