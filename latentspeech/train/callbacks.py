"""The Lightning callbacks (and the data-module part) the Lightning-trained LMs (:mod:`.latentlm`, :mod:`.valle`) share."""

from __future__ import annotations

import warnings
from typing import Callable, Mapping

import lightning.pytorch as pl
import torch
import torch.nn as nn

__all__ = ["EpochSetter", "Exporter", "BatchSeeder", "ResumableBatches"]


class EpochSetter(pl.Callback):
    """Gives the dataset and the train batch sampler the epoch, so prompt choices and batches differ
    per epoch but stay reproducible. A :class:`ResumableBatches` data module counts the epochs itself
    (Lightning tells only a loader's ``sampler``, not its ``batch_sampler``, and its own count can
    skip one when a run restarts from a checkpoint taken at the end of an epoch)."""

    def on_train_epoch_start(self, trainer, pl_module):
        dm = trainer.datamodule
        if isinstance(dm, ResumableBatches):
            dm.start_epoch()
        else:
            dm.train_set.set_epoch(trainer.current_epoch)


class Exporter(pl.Callback):
    """Writes the model dir every ``every`` steps and at the end of training, on rank 0 only:
    ``export(model, meta)`` with ``train_steps`` added to ``meta``."""

    def __init__(self, export: Callable[[nn.Module, dict], object], every: int, meta: dict):
        self.export, self.every, self.meta = export, every, meta
        self.exported_step = -1  # with gradient accumulation several batches end at the same step

    def _export(self, trainer, pl_module):
        if trainer.global_rank == 0 and trainer.global_step != self.exported_step:
            self.exported_step = trainer.global_step
            self.export(pl_module.model, meta={**self.meta, "train_steps": trainer.global_step})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._export(trainer, pl_module)


class BatchSeeder(pl.Callback):
    """Seeds the global RNG (the training step's noise, dropout ...) before each training batch from
    ``(seed, rank, batches trained so far)``: what a batch draws depends on its place in the run, not
    on what ran before it in this process, so a run resumed from a checkpoint draws what an
    uninterrupted one does."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        done = trainer.fit_loop.epoch_loop.batch_progress.total.ready  # this batch counted: 1, 2, ...
        torch.manual_seed((self.seed * 1_000_003 + trainer.global_rank * 7_919 + done) % (2**63 - 1))


class ResumableBatches:
    """The part of a ``LightningDataModule`` that makes its training batches resumable.

    The data module keeps the :class:`~latentspeech.data.lm_dataset.BucketBatchSampler` of its train
    loader (``train_loader(loader)`` registers it), numbers the epochs (``start_epoch``) and saves
    ``{epoch, position, seed}`` in every checkpoint, ``position`` being the batches of the epoch
    already trained. Restored from a checkpoint, the sampler starts that epoch after them (not from
    its first batch again), the dataset gets the epoch (Lightning does not repeat
    ``on_train_epoch_start`` for the rest of an epoch) and the next epoch is the one after it.
    """

    train_sampler = None
    _resume_state: dict | None = None
    _next_epoch = 0  # the epoch the next ``start_epoch`` begins

    def start_epoch(self) -> int:
        """Begin the next epoch (:class:`EpochSetter` calls this at each epoch's start): the dataset
        and the sampler get its number."""
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        self.train_set.set_epoch(epoch)
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        return epoch

    def train_loader(self, loader):
        self.train_sampler = loader.batch_sampler
        if self._resume_state is not None:
            self.train_sampler.load_state_dict(self._resume_state)
            self._resume_state = None
        return loader

    def state_dict(self) -> dict:
        if self.train_sampler is None:
            return {}
        state = self.train_sampler.state_dict()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:  # the batches trained, not those the loader's workers prefetched
            state["position"] = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return state

    def load_state_dict(self, state: Mapping) -> None:
        if not state:
            return
        # Lightning warns of a mid-epoch resume unless the DataLoader itself is stateful; here the
        # data module restores the batches, which that check does not see
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        self._resume_state = dict(state)
        self._next_epoch = int(state["epoch"]) + 1
        self.train_set.set_epoch(int(state["epoch"]))
        if self.train_sampler is not None:  # the loader already exists: restore it now
            self.train_sampler.load_state_dict(self._resume_state)
            self._resume_state = None
