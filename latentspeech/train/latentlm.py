"""Training the LatentLM with Lightning: config, data module, Lightning module, export, entry point.

    cfg = load_config("egs/demo/tts1/conf/latentlm.yaml", LatentLMTrainConfig)
    train_latentlm(cfg, train=[("data/train", "dump/train")], out_dir="exp/latentlm")

* Data: Kaldi data dirs (``phones``, ``utt2spk``) + latent stores (``latentspeech codec extract``);
  see :mod:`latentspeech.data.lm_dataset` for prompts and bucketing.
* The model's ``latent_dim``/``frame_rate`` are taken from the latent store, ``vocab_size``/``pad_id``
  from the phone vocabulary, and the length guards (when not set) from the training data:
  ``frames_per_phone`` = ``guard_margin`` × the largest frames-per-phone ratio seen, and
  ``min_frames_per_phone`` = the 1st percentile / ``guard_margin``.
* Resumable: Lightning checkpoints in ``OUT/checkpoints/`` (``last.ckpt``; our own files);
  ``resume=True`` continues from ``last.ckpt``. Multi-GPU: ``trainer.devices``/``strategy``
  (the batch sampler shards batches per rank itself).
* Fine-tuning (``init_from``: a LatentLM model dir or bundled name): the run starts from that
  model's weights instead of a random init, with a fresh optimizer and schedule (e.g. to continue a
  shipped model for more steps at a lower learning rate). Its tensors must match the configured
  model exactly; a mismatch is a one-line error. With ``init_grow_layers: true`` the configured
  Transformer may be deeper than the source's: its layers fill the first ones and the extra layers
  are appended as identity maps (zero output projections), so the run starts from the source's
  function with more capacity.
* Guidance distillation (``distill.steps`` > 0, :mod:`.distill`): after training (also when a
  finished run is resumed), a head-only fine-tune folds CFG at ``distill.scale`` into the head; the
  exported model then records ``guidance_distilled`` and recommends ``cfg`` 1.
* Export: ``OUT/model/`` is a self-contained LatentLM model dir: ``model.safetensors`` +
  ``config.yaml`` (kind ``latentlm``, phone vocab in ``meta.phone_vocab``) + ``codec/`` (a copy of the
  codec model dir the latents came from). It is rewritten at every checkpoint and at the end.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import torch

from ..checkpoint import cast_floating, load_model_dir, load_state_dict_strict, resolve_model
from ..config import to_dict
from ..errors import CheckpointError
from ..models.latentlm import KIND, LatentLM, LatentLMConfig, save_latentlm
from .callbacks import ResumableBatches
from .common import DataConfig, OptimConfig, TrainerConfig, configure_adamw, lm_trainer
from .distill import DistillConfig, distill_guidance

__all__ = ["LatentLMTrainConfig", "InferenceConfig", "LatentLMModule", "LatentLMDataModule", "train_latentlm",
           "init_latentlm_from"]


@dataclass
class InferenceConfig:
    """The sampler settings the exported model recommends (``meta.inference``; what ``TTS.speak`` and
    ``latentspeech synthesize`` use unless told otherwise)."""

    steps: int = 10
    cfg: float = 2.0
    temperature: float = 1.0


@dataclass
class LatentLMTrainConfig:
    model: LatentLMConfig = field(default_factory=LatentLMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)  # steps > 0: guidance distillation after training
    init_from: str | None = None  # a LatentLM model dir / bundled name whose weights start the run (fine-tune)
    init_grow_layers: bool = False  # init_from may have fewer Transformer layers: the extra ones start as identity

    def validate(self) -> None:
        self.data.validate()
        self.distill.validate()



class LatentLMModule(pl.LightningModule):
    """Lightning wrapper: losses, logging, AdamW with warm-up + cosine."""

    def __init__(self, model_cfg: dict, optim_cfg: dict):
        super().__init__()
        self.save_hyperparameters()
        from ..config import from_dict

        self.model = LatentLM(from_dict(LatentLMConfig, model_cfg))
        self.optim_cfg = from_dict(OptimConfig, optim_cfg)

    def training_step(self, batch, batch_idx):
        out = self.model.loss(batch)
        bs = len(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, prog_bar=False, batch_size=bs)
        self.log("loss", out["loss"].detach(), prog_bar=True, batch_size=bs, logger=False)
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        g = torch.Generator(device=batch.target.device).manual_seed(batch_idx)
        out = self.model.loss(batch, cfg_drop=False, generator=g)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self):
        return configure_adamw(self.model, self.optim_cfg)


class LatentLMDataModule(ResumableBatches, pl.LightningDataModule):
    """Train/valid loaders with length-bucketed, per-rank batches; resumable mid-epoch (:class:`ResumableBatches`)."""

    def __init__(self, train, valid, cfg: LatentLMTrainConfig, pad_id: int):
        super().__init__()
        self.train_set, self.valid_set, self.cfg, self.pad_id = train, valid, cfg, pad_id

    def _loader(self, ds, shuffle: bool):
        import numpy as np
        from torch.utils.data import DataLoader

        from ..data.collate import collate_lm
        from ..data.lm_dataset import BucketBatchSampler

        dc, fr = self.cfg.data, ds.frame_rate
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        extra = np.asarray(ds.n_phones) + ds.prompt_frames[1] + 1
        sampler = BucketBatchSampler(
            ds.lengths, dc.max_tokens, dc.max_batch_size, shuffle=shuffle, seed=self.cfg.trainer.seed,
            rank=rank, world_size=world, extra_tokens=extra,
            curriculum_epochs=dc.curriculum_epochs if shuffle else 0,
            curriculum_max_len=round(dc.curriculum_max_seconds * fr))
        return DataLoader(ds, batch_sampler=sampler, num_workers=dc.num_workers,
                          collate_fn=functools.partial(collate_lm, pad_id=self.pad_id),
                          persistent_workers=dc.num_workers > 0)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)

    def train_dataloader(self):
        return self.train_loader(self._loader(self.train_set, shuffle=True))

    def val_dataloader(self):
        return self._loader(self.valid_set, shuffle=False) if self.valid_set is not None else []




def init_latentlm_from(model: LatentLM, name_or_dir: str, grow_layers: bool = False) -> Path:
    """Copy the weights of a trained LatentLM (model dir or bundled name) into ``model``.

    Every tensor must exist with the same shape (one-line :class:`CheckpointError` otherwise); the
    length guards and other non-weight settings stay those of ``model``'s config. ``grow_layers``:
    ``model``'s Transformer may have more layers than the source's; the source's fill the first ones
    and each extra layer starts as an identity map (its attention and feed-forward output
    projections zero: pre-norm residual blocks then add nothing). A ``model`` with a speaker path
    (``speaker_condition``, ``speaker_input``) may start from a source without it, or without its
    input map: what is missing starts as initialised, at zero.
    """
    md = load_model_dir(name_or_dir, kind=KIND)
    where = f"init_from {md.path}"
    state = dict(cast_floating(md.state_dict, torch.float32))
    if model.speaker is not None:
        # a source without the speaker path, or without its input map: those start as initialised
        # (adding nothing); a source with a path the model lacks still fails the strict load below
        own = {"speaker." + k: v for k, v in model.speaker.state_dict().items()}
        missing = [k for k in own if k not in state]
        if len(missing) == len(own) or all(k.startswith("speaker.input.") for k in missing):
            state.update({k: own[k].detach().clone() for k in missing})
    if not grow_layers:
        load_state_dict_strict(model, state, where=where)
        return md.path
    own = model.transformer.cfg.n_layers
    src = int(md.config.get("transformer", {}).get("n_layers", own))
    if src > own:
        raise CheckpointError(f"{where}: the source has {src} Transformer layers, the model only {own}; "
                              "init_grow_layers can only add layers")
    for i in range(src, own):
        block = model.transformer.layers[i]
        torch.nn.init.zeros_(block.attn.wo.weight)
        torch.nn.init.zeros_(block.ffn.w2.weight)
        prefix = f"transformer.layers.{i}."
        state.update({prefix + k: v.detach().clone() for k, v in block.state_dict().items()})
    load_state_dict_strict(model, state, where=where)
    return md.path


def train_latentlm(cfg: LatentLMTrainConfig, train: Sequence[tuple[str, str]], out_dir: str | Path,
                   valid: Sequence[tuple[str, str]] = (), codec: str | None = None, max_steps: int | None = None,
                   resume: bool = False, vocab=None, sources=None, valid_sources=None, progress: bool = True) -> Path:
    """Train from (data dir, latent dir) pairs (or ready :class:`LMSource` lists); returns ``OUT/model``.

    ``codec``: the codec model dir to bundle (default: the one named in the latent store's meta).
    """
    import lightning.pytorch as pl

    from ..data.lm_dataset import LMDataset, LMSource

    if vocab is None:
        from ..text import PhoneVocab

        vocab = PhoneVocab()
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    out_dir = Path(out_dir)
    pointer = cfg.model.alignment == "pointer"
    sources = sources if sources is not None else [LMSource.from_dirs(d, z, vocab, pointer) for d, z in train]
    valid_sources = (valid_sources if valid_sources is not None
                     else [LMSource.from_dirs(d, z, vocab, pointer) for d, z in valid])
    store = sources[0].latents
    meta_src = getattr(store, "meta", {}) or {}
    frame_rate = float(meta_src.get("frame_rate") or cfg.model.frame_rate)
    first = next(iter(sources[0].utt2spk))
    latent_dim = int(meta_src.get("latent_dim") or sources[0].load(first).shape[-1])
    dc = cfg.data
    max_frames = round(dc.max_target_seconds * frame_rate)
    train_ds = LMDataset(sources, frame_rate, dc.prompt_seconds, max_frames=max_frames,
                         single_utt_prompt=dc.single_utt_prompt, seed=cfg.trainer.seed,
                         word_boundary_id=vocab.word_boundary_id)
    valid_ds = (LMDataset(valid_sources, frame_rate, dc.prompt_seconds, max_frames=max_frames,
                          single_utt_prompt="self_crop", seed=cfg.trainer.seed + 1) if valid_sources else None)
    fpp = train_ds.frames_per_phone()
    mcfg = dataclasses.replace(cfg.model, latent_dim=latent_dim, frame_rate=frame_rate, vocab_size=vocab.size,
                               pad_id=vocab.pad_id)
    if pointer:
        from ..text.vocab import pause_token_ids, silent_token_ids

        mcfg.silent_token_ids = silent_token_ids(vocab)
        mcfg.pause_token_ids = pause_token_ids(vocab)
    if mcfg.frames_per_phone is None:
        mcfg.frames_per_phone = round(dc.guard_margin * fpp["max"], 3)
    if mcfg.min_frames_per_phone is None:
        mcfg.min_frames_per_phone = round(fpp["p01"] / dc.guard_margin, 3)
    mcfg.validate()
    total = max_steps or cfg.optim.max_steps
    ocfg = dataclasses.replace(cfg.optim, max_steps=total)
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module = LatentLMModule(to_dict(mcfg), to_dict(ocfg))
    if cfg.init_from and not (resume and (out_dir / "checkpoints" / "last.ckpt").is_file()):
        init_latentlm_from(module.model, cfg.init_from, grow_layers=cfg.init_grow_layers)
    codec_dir = None
    codec_name = codec or meta_src.get("codec")
    if codec_name:
        codec_dir = resolve_model(codec_name, default="codec-demo")
    meta = {"phone_vocab": vocab.to_dict(), "codec": "codec" if codec_dir else None,
            "frames_per_phone": {k: round(v, 4) for k, v in fpp.items()},
            "train_utterances": len(train_ds), "train_speakers": train_ds.speakers(),
            "train_sets": [s.name for s in sources], "parameters": module.model.num_parameters(),
            "inference": dataclasses.asdict(cfg.inference)}
    if cfg.init_from:
        meta["init_from"] = cfg.init_from  # as written (a bundled name stays a name, not this machine's path)
    tc = cfg.trainer
    export = functools.partial(save_latentlm, out=out_dir / "model", codec_dir=codec_dir)
    trainer = lm_trainer(tc, out_dir, export, meta, max_steps=total, grad_clip=ocfg.grad_clip,
                         validate=bool(valid_ds), progress=progress)
    last = out_dir / "checkpoints" / "last.ckpt"
    dm = LatentLMDataModule(train_ds, valid_ds, cfg, vocab.pad_id)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume and last.is_file() else None)
    if cfg.distill.steps > 0:
        # fold CFG into the head (a short head-only fine-tune); the exported model samples with cfg 1.
        # Under DDP every rank distills on its shard of the batches (gradients averaged), rank 0 exports.
        # Lightning's teardown left the model on the CPU: back to the training device.
        model = module.model.to(trainer.strategy.root_device)
        losses: list = []
        distill_guidance(model, dm._loader(train_ds, shuffle=True), cfg.distill, progress=progress, log=losses,
                         seed=cfg.trainer.seed)
        if trainer.is_global_zero:
            inference = {**meta["inference"], "cfg": 1.0}
            save_latentlm(model, out_dir / "model", codec_dir,
                          {**meta, "inference": inference, "train_steps": trainer.global_step,
                           "guidance_distillation": {**dataclasses.asdict(cfg.distill), "loss": losses[-1:]}})
    return out_dir / "model"
