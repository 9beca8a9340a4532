"""Training the VALL-E baseline with Lightning: config, data module, Lightning module, export, entry point.

    cfg = load_config("egs/demo/tts1/conf/valle.yaml", VALLETrainConfig)
    train_valle(cfg, train=[("data/train", "dump/codes/train")], out_dir="exp/valle", codec="exp/codec_rvq/model")

The same shape as :mod:`latentspeech.train.latentlm` (its ``data``/``optim``/``trainer`` sections,
learning-rate schedule and data pipeline are shared), so that the two systems train on the same
examples with comparable settings:

* Data: Kaldi data dirs (``phones``, ``utt2spk``) + RVQ code stores written by
  ``latentspeech codec extract --codes`` (int16 arrays ``(F, Q)``, see :mod:`latentspeech.data.latents`).
  Examples and batches come from :mod:`latentspeech.data.lm_dataset` (prompt = a crop of another
  utterance of the same speaker; length-bucketed batches under a token budget).
* The model's ``phone_vocab_size``/``phone_pad_id`` come from the phone vocabulary, ``frame_rate``
  from the code store, ``codebook_size`` from the codec (when given), and the length guard
  (``frames_per_phone``, when not set) from the training data: ``guard_margin`` × the largest
  frames-per-phone ratio seen. AR and NAR train together: ``loss = AR CE + NAR CE``.
* Resumable: Lightning checkpoints in ``OUT/checkpoints/`` (``last.ckpt``); ``resume=True`` continues.
* Export: ``OUT/model/`` is a self-contained model dir (kind ``valle``): weights, config, the phone
  vocabulary in ``meta.phone_vocab`` and ``codec/`` (a copy of the RVQ codec dir). It is rewritten at every
  checkpoint and at the end.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import lightning.pytorch as pl

from ..config import load_yaml, to_dict
from ..data.batch import VALLEBatch
from ..data.collate import collate_valle
from ..errors import ConfigError, DataDirError
from ..models.valle import VALLE, VALLEConfig, save_valle
from .callbacks import ResumableBatches
from .common import DataConfig, OptimConfig, TrainerConfig, configure_adamw, lm_trainer

__all__ = ["VALLETrainConfig", "VALLEModule", "VALLEDataModule", "code_source", "train_valle",
           "export_valle"]


@dataclass
class VALLETrainConfig:
    """``model``: :class:`VALLEConfig`; the other sections are LatentLM's (same meaning, same defaults)."""

    model: VALLEConfig = field(default_factory=VALLEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self) -> None:
        self.data.validate()



def code_source(data_dir: str | Path, codes_dir: str | Path, vocab, durations: bool = False):
    """A :class:`~latentspeech.data.lm_dataset.LMSource` over a code store (no normalisation).
    ``durations``: also read the store's ``durations`` file (per-phone frames from ``latentspeech
    align``, which the codes share with the σ-VAE latents of the same trunk): pointer mode trains
    on it, and ``data.single_utt_prompt: self_split`` cuts single-utterance speakers with it. As
    LatentLM's sources, which read it in pointer mode only, so that both systems see the same
    examples in either mode."""
    from ..data.latents import LatentStore
    from ..data.durations import DURATIONS
    from ..data.lm_dataset import LMSource, read_duration_table, read_phones, read_utt2spk

    data_dir = Path(data_dir)
    store = LatentStore(codes_dir)
    if store.meta.get("kind", "codes") != "codes":
        raise DataDirError(f"{codes_dir} holds {store.meta.get('kind')}, not RVQ codes "
                           "(extract them with `latentspeech codec extract --codes`)")
    path = Path(codes_dir) / DURATIONS
    if durations and not path.is_file():
        raise DataDirError(f"{codes_dir} has no {DURATIONS} file: alignment 'pointer' trains on per-phone durations "
                           "(`latentspeech align`, then copy the latents' durations file next to the codes)")
    return LMSource(latents=store, phones=read_phones(data_dir / "phones", vocab),
                    utt2spk=read_utt2spk(data_dir / "utt2spk"), mean=None, std=None, name=str(data_dir),
                    durations=read_duration_table(path) if durations else None)


class VALLEModule(pl.LightningModule):
    """Lightning wrapper: AR + NAR losses, logging, AdamW with warm-up + cosine (as LatentLM's)."""

    def __init__(self, model_cfg: dict, optim_cfg: dict):
        super().__init__()
        self.save_hyperparameters()
        from ..config import from_dict

        self.model = VALLE(from_dict(VALLEConfig, model_cfg))
        self.optim_cfg = from_dict(OptimConfig, optim_cfg)

    def training_step(self, batch: VALLEBatch, batch_idx):
        out = self.model.loss(batch)
        bs = batch.size
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, batch_size=bs)
        self.log("loss", out["loss"].detach(), prog_bar=True, batch_size=bs, logger=False)
        return out["loss"]

    def validation_step(self, batch: VALLEBatch, batch_idx):
        g = torch.Generator().manual_seed(batch_idx)  # the same NAR levels at every validation
        out = self.model.loss(batch, generator=g)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=batch.size, sync_dist=True)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)

    def configure_optimizers(self):
        return configure_adamw(self.model, self.optim_cfg)


class VALLEDataModule(ResumableBatches, pl.LightningDataModule):
    """Train/valid loaders with length-bucketed, per-rank batches (LatentLM's sampler), resumable mid-epoch
    (:class:`ResumableBatches`)."""

    def __init__(self, train, valid, cfg: VALLETrainConfig, pad_id: int, num_quantizers: int):
        super().__init__()
        self.train_set, self.valid_set, self.cfg = train, valid, cfg
        self.pad_id, self.num_quantizers = pad_id, num_quantizers

    def _collate(self, examples):
        return collate_valle(examples, self.pad_id, self.num_quantizers)

    def _loader(self, ds, shuffle: bool):
        from torch.utils.data import DataLoader

        from ..data.lm_dataset import BucketBatchSampler

        dc = self.cfg.data
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        extra = np.asarray(ds.n_phones) + ds.prompt_frames[1] + 2  # phones + prompt + BOS/EOS
        sampler = BucketBatchSampler(
            ds.lengths, dc.max_tokens, dc.max_batch_size, shuffle=shuffle, seed=self.cfg.trainer.seed,
            rank=rank, world_size=world, extra_tokens=extra,
            curriculum_epochs=dc.curriculum_epochs if shuffle else 0,
            curriculum_max_len=round(dc.curriculum_max_seconds * ds.frame_rate))
        return DataLoader(ds, batch_sampler=sampler, num_workers=dc.num_workers, collate_fn=self._collate,
                          persistent_workers=dc.num_workers > 0)

    def train_dataloader(self):
        return self.train_loader(self._loader(self.train_set, shuffle=True))

    def val_dataloader(self):
        return self._loader(self.valid_set, shuffle=False) if self.valid_set is not None else []



def export_valle(model: VALLE, out: str | Path, codec_dir: str | Path | None, vocab, meta: dict,
                 dtype: torch.dtype = torch.float32) -> Path:
    """Write a self-contained VALL-E model dir (weights, config, meta + vocab, ``codec/`` copy)."""
    out = save_valle(model, out, vocab=vocab, meta=meta, dtype=dtype)
    if codec_dir is not None:
        shutil.copytree(codec_dir, out / "codec", dirs_exist_ok=True)
    return out


def _codec_facts(codec_dir: Path) -> dict:
    """num_quantizers, codebook_size, frame_rate of an RVQ codec dir (from its config only)."""
    info = load_yaml(codec_dir / "config.yaml")
    cfg = info.get("config") or {}
    bn = cfg.get("bottleneck") or {}
    if info.get("kind") != "codec" or bn.get("kind") != "rvq":
        raise ConfigError(f"{codec_dir} is not an RVQ codec (kind {info.get('kind')}, bottleneck {bn.get('kind')})")
    meta = info.get("meta") or {}
    return {"num_quantizers": int(bn.get("num_quantizers", 8)), "codebook_size": int(bn.get("codebook_size", 1024)),
            "frame_rate": meta.get("frame_rate")}


def train_valle(cfg: VALLETrainConfig, train: Sequence[tuple[str, str]], out_dir: str | Path,
                valid: Sequence[tuple[str, str]] = (), codec: str | None = None, max_steps: int | None = None,
                resume: bool = False, vocab=None, sources=None, valid_sources=None, progress: bool = True) -> Path:
    """Train from (data dir, code store dir) pairs (or ready ``LMSource`` lists); returns ``OUT/model``.

    ``codec``: the RVQ codec model dir to bundle (default: the one named in the code store's meta).
    """
    import lightning.pytorch as pl

    from ..checkpoint import resolve_model
    from ..data.lm_dataset import LMDataset

    if vocab is None:
        from ..text import PhoneVocab

        vocab = PhoneVocab()
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    out_dir = Path(out_dir)
    pointer = cfg.model.alignment == "pointer"
    sources = sources if sources is not None else [code_source(d, z, vocab, pointer) for d, z in train]
    valid_sources = (valid_sources if valid_sources is not None
                     else [code_source(d, z, vocab, pointer) for d, z in valid])
    if not sources:
        raise DataDirError("no training data given (a data dir and its code store)")
    store = sources[0].latents
    meta_src = getattr(store, "meta", {}) or {}
    codec_name = codec or meta_src.get("codec")
    codec_dir = resolve_model(codec_name, default="codec-rvq-demo") if codec_name else None
    facts = _codec_facts(codec_dir) if codec_dir is not None else {}
    frame_rate = float(meta_src.get("frame_rate") or facts.get("frame_rate") or cfg.model.frame_rate)
    first = next(u for u in sources[0].utt2spk if u in store)
    store_q = int(np.shape(store[first])[-1])
    mcfg = dataclasses.replace(cfg.model, phone_vocab_size=vocab.size, phone_pad_id=vocab.pad_id, frame_rate=frame_rate)
    if "codebook_size" in facts:
        mcfg.codebook_size = facts["codebook_size"]
    if pointer:
        from ..text.vocab import pause_token_ids, silent_token_ids

        mcfg.silent_token_ids = silent_token_ids(vocab)
        mcfg.pause_token_ids = pause_token_ids(vocab)
    if mcfg.num_quantizers > store_q:
        raise ConfigError(f"model.num_quantizers {mcfg.num_quantizers} > the {store_q} code levels in {store.path}")
    dc = cfg.data
    max_frames = round(dc.max_target_seconds * frame_rate)
    train_ds = LMDataset(sources, frame_rate, dc.prompt_seconds, max_frames=max_frames,
                         single_utt_prompt=dc.single_utt_prompt, seed=cfg.trainer.seed,
                         word_boundary_id=vocab.word_boundary_id)
    valid_ds = (LMDataset(valid_sources, frame_rate, dc.prompt_seconds, max_frames=max_frames,
                          single_utt_prompt="self_crop", seed=cfg.trainer.seed + 1) if valid_sources else None)
    fpp = train_ds.frames_per_phone()
    if mcfg.frames_per_phone is None:
        mcfg.frames_per_phone = round(dc.guard_margin * fpp["max"], 3)
    mcfg.validate()
    total = max_steps or cfg.optim.max_steps
    ocfg = dataclasses.replace(cfg.optim, max_steps=total)
    pl.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    module = VALLEModule(to_dict(mcfg), to_dict(ocfg))
    meta = {"codec": "codec" if codec_dir else None,
            "frames_per_phone": {k: round(v, 4) for k, v in fpp.items()},
            "train_utterances": len(train_ds), "train_speakers": train_ds.speakers(),
            "train_sets": [s.name for s in sources]}
    tc = cfg.trainer
    export = functools.partial(export_valle, out=out_dir / "model", codec_dir=codec_dir, vocab=vocab)
    trainer = lm_trainer(tc, out_dir, export, meta, max_steps=total, grad_clip=ocfg.grad_clip,
                         validate=bool(valid_ds), progress=progress)
    last = out_dir / "checkpoints" / "last.ckpt"
    dm = VALLEDataModule(train_ds, valid_ds, cfg, vocab.pad_id, mcfg.num_quantizers)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume and last.is_file() else None)
    return out_dir / "model"
