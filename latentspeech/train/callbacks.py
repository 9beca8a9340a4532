"""The Lightning callbacks the Lightning-trained LMs (:mod:`.latentlm`, :mod:`.valle`) share."""

from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import torch.nn as nn

__all__ = ["EpochSetter", "Exporter"]


class EpochSetter(pl.Callback):
    """Gives the dataset the epoch, so prompt choices differ per epoch but stay reproducible."""

    def on_train_epoch_start(self, trainer, pl_module):
        ds = trainer.datamodule.train_set
        ds.set_epoch(trainer.current_epoch)


class Exporter(pl.Callback):
    """Writes the model dir every ``every`` steps and at the end of training, on rank 0 only:
    ``export(model, meta)`` with ``train_steps`` added to ``meta``."""

    def __init__(self, export: Callable[[nn.Module, dict], object], every: int, meta: dict):
        self.export, self.every, self.meta = export, every, meta

    def _export(self, trainer, pl_module):
        if trainer.global_rank == 0:
            self.export(pl_module.model, meta={**self.meta, "train_steps": trainer.global_step})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0 and trainer.global_step > 0:
            self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._export(trainer, pl_module)
