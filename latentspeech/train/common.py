"""What every training entry point shares: the LM data, optimiser and trainer configs, the learning-rate
schedule, AdamW with its parameter groups, and a plain step loop with its seeded batch draws (no
Lightning: the Lightning callbacks are in :mod:`.callbacks`).

The Lightning-trained LMs (:mod:`.latentlm`, :mod:`.valle`) take :class:`DataConfig`,
:class:`OptimConfig` and :class:`TrainerConfig` from here; the small auxiliary models fitted in one
process (:mod:`.aligner`, :mod:`.recognizer`) and guidance distillation use :func:`fit_steps` /
:func:`lr_lambda`. The codec has its own configs (:mod:`.codec`: audio crops, two optimisers).

    fit_steps(model, lambda step: batch_loss(...), opt, sched, steps, "aligner")

Every Lightning run (codec, LatentLM, VALL-E) shares :class:`ClusterConfig`, the part of its
``trainer`` section that decides processes, devices, precision and the checkpoints kept, and gets
its ``pl.Trainer`` from :func:`build_trainer`. :func:`job_resources` says what a cluster job must
request for such a section (one task per device and node), which the recipe's job runner asks for.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn

from ..data.lm_dataset import SINGLE_UTT_PROMPTS, examples
from ..errors import ConfigError, DataDirError

__all__ = ["DataConfig", "OptimConfig", "ClusterConfig", "TrainerConfig", "build_trainer", "job_resources", "on_gpu",
           "lr_lambda", "configure_adamw", "fit_steps", "utterance_sampler"]


@dataclass
class DataConfig:
    prompt_seconds: tuple[float, float] = (2.0, 5.0)
    max_target_seconds: float = 20.0
    max_tokens: int = 4000  # padded (prompt + phones + target) slots per batch
    max_batch_size: int = 32
    single_utt_prompt: str = "self_crop"  # self_crop | self_split (needs durations) | skip: lm_dataset docs
    curriculum_epochs: int = 0  # first epochs train on short utterances only
    curriculum_max_seconds: float = 5.0
    num_workers: int = 0
    guard_margin: float = 1.25

    def validate(self) -> None:
        if self.single_utt_prompt not in SINGLE_UTT_PROMPTS:
            raise ConfigError(f"data.single_utt_prompt must be one of {', '.join(SINGLE_UTT_PROMPTS)}, "
                              f"got {self.single_utt_prompt!r}")
        if self.prompt_seconds[0] > self.prompt_seconds[1] or self.prompt_seconds[0] <= 0:
            raise ConfigError(f"data.prompt_seconds must be (min, max) with 0 < min <= max, got {self.prompt_seconds}")


@dataclass
class OptimConfig:
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    max_steps: int = 100000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0


# Lightning's precision names ("auto": bf16-mixed on a GPU, 32-true otherwise)
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


@dataclass
class ClusterConfig:
    """Processes, devices and precision of a Lightning run, and the checkpoints it keeps.

    ``devices``: processes (one per device) on each of ``num_nodes`` nodes: a number, a list of
    device indices, or ``"auto"`` (every visible GPU, or one CPU process). ``accumulate_grad_batches``
    batches make one optimizer step (steps, schedules and ``*_every_steps`` count optimizer steps).
    ``precision``: a Lightning precision, or ``"auto"`` (bf16-mixed on a GPU, 32-true otherwise).
    ``keep_checkpoints``: the newest step checkpoints kept in ``OUT/checkpoints/`` besides
    ``last.ckpt`` (-1: every one; 0: ``last.ckpt`` only); the exported ``OUT/model`` is always kept.
    """

    accelerator: str = "auto"
    devices: Union[int, list[int], str] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    keep_checkpoints: int = 3

    def validate(self) -> None:
        d = self.devices
        if isinstance(d, str) and d != "auto":
            raise ConfigError(f"trainer.devices must be a number, a list of device indices or 'auto', got {d!r}")
        if isinstance(d, int) and d < 1:
            raise ConfigError(f"trainer.devices must be at least 1, got {d}")
        if isinstance(d, list) and (not d or min(d) < 0 or len(set(d)) != len(d)):
            raise ConfigError(f"trainer.devices: a list of distinct device indices >= 0, got {d}")
        if self.num_nodes < 1:
            raise ConfigError(f"trainer.num_nodes must be at least 1, got {self.num_nodes}")
        if self.accumulate_grad_batches < 1:
            raise ConfigError(f"trainer.accumulate_grad_batches must be at least 1, got {self.accumulate_grad_batches}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.keep_checkpoints < -1:
            raise ConfigError(f"trainer.keep_checkpoints must be -1 (all), 0 or more, got {self.keep_checkpoints}")


@dataclass
class TrainerConfig(ClusterConfig):
    log_every_steps: int = 25
    val_every_steps: int = 500
    ckpt_every_steps: int = 500
    seed: int = 0
    num_threads: int = 0  # torch CPU threads; 0: torch's default (1 is fastest on a busy 2-core machine)


def on_gpu(tc: ClusterConfig) -> bool:
    """Whether a run with these settings trains on CUDA GPUs."""
    return tc.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def build_trainer(tc: ClusterConfig, out_dir: str | Path, *, max_steps: int, checkpoint_every: int,
                  callbacks: Sequence = (), val_every_steps: int | None = None, **options):
    """The ``pl.Trainer`` of a run: ``tc``'s devices, nodes, strategy, precision and gradient
    accumulation, and a step checkpoint every ``checkpoint_every`` optimizer steps into
    ``OUT/checkpoints/`` (``stepN.ckpt``, the newest ``tc.keep_checkpoints`` kept, and ``last.ckpt``),
    placed before ``callbacks``. ``val_every_steps`` counts optimizer steps (Lightning counts batches).
    Other ``options`` go to ``pl.Trainer`` as they are."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    keep = tc.keep_checkpoints
    ckpt = ModelCheckpoint(dirpath=Path(out_dir) / "checkpoints", filename="step{step}", auto_insert_metric_name=False,
                           every_n_train_steps=checkpoint_every, save_last=True, save_top_k=keep,
                           monitor="step" if keep != -1 else None, mode="max")
    precision = tc.precision if tc.precision != "auto" else ("bf16-mixed" if on_gpu(tc) else "32-true")
    if val_every_steps is not None:
        options["val_check_interval"] = val_every_steps * tc.accumulate_grad_batches
    return pl.Trainer(
        default_root_dir=str(out_dir), max_steps=max_steps, accelerator=tc.accelerator, devices=tc.devices,
        num_nodes=tc.num_nodes, strategy=tc.strategy, precision=precision,
        accumulate_grad_batches=tc.accumulate_grad_batches, callbacks=[ckpt, *callbacks], **options)



def lm_trainer(tc, out_dir: str | Path, export: Callable, meta: dict, *, max_steps: int, grad_clip: float,
               validate: bool, progress: bool = True):
    """The ``pl.Trainer`` of an LM run (LatentLM, VALL-E): :func:`build_trainer` with a CSV log in
    ``OUT/logs``, the per-epoch and per-batch seeding of exact resume, and ``export(model)`` refreshed
    every ``tc.ckpt_every_steps`` steps (rank 0). ``validate``: a validation set exists."""
    from lightning.pytorch.loggers import CSVLogger

    from .callbacks import BatchSeeder, EpochSetter, Exporter

    return build_trainer(
        tc, out_dir, max_steps=max_steps, checkpoint_every=tc.ckpt_every_steps,
        val_every_steps=tc.val_every_steps if validate else None, gradient_clip_val=grad_clip,
        log_every_n_steps=tc.log_every_steps, check_val_every_n_epoch=None if validate else 1,
        limit_val_batches=None if validate else 0, logger=CSVLogger(str(out_dir), name="logs"),
        use_distributed_sampler=False,
        callbacks=[EpochSetter(), BatchSeeder(tc.seed), Exporter(export, tc.ckpt_every_steps, meta)],
        enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
    )

def job_resources(tc: ClusterConfig, gpus_if_auto: int = 1) -> dict:
    """What one cluster job must request to run a trainer section: ``{"gpus": per node, "tasks":
    processes per node, "nodes": nodes}``, one task per device as Lightning's SLURM environment
    expects. ``gpus_if_auto``: the GPUs per node that ``devices: auto`` stands for (0: a CPU run)."""
    cpu = tc.accelerator == "cpu" or (tc.accelerator == "auto" and gpus_if_auto == 0)
    if isinstance(tc.devices, list):
        n = len(tc.devices)
    elif tc.devices == "auto":
        n = 1 if cpu else max(1, gpus_if_auto)
    else:
        n = tc.devices
    return {"gpus": 0 if cpu else n, "tasks": n, "nodes": tc.num_nodes}


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def configure_adamw(model: torch.nn.Module, oc: OptimConfig) -> dict:
    """AdamW (no weight decay on vectors and embeddings) with warm-up + cosine, stepped per batch."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": oc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=oc.lr, betas=tuple(oc.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, oc.warmup_steps, oc.max_steps, oc.min_lr_ratio))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}



def fit_steps(model: nn.Module, batch_loss: Callable[[int], torch.Tensor], opt: torch.optim.Optimizer, sched,
              steps: int, name: str, progress: bool = True, log_every: int = 100, log=print,
              clip: float = 1.0) -> nn.Module:
    """``steps`` optimizer steps on ``batch_loss(step)`` (gradient norm clipped to ``clip``); shows a
    running loss on the bar, or logs it every ``log_every`` steps without one. Returns the model in eval mode."""
    from tqdm.auto import tqdm

    model.train()
    bar = tqdm(range(steps), desc=name, disable=not progress)
    running = None
    for step in bar:
        loss = batch_loss(step)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.set_postfix(loss=f"{running:.3f}")
        if log and not progress and (step + 1) % log_every == 0:
            log(f"{name} step {step + 1}/{steps} loss {running:.4f}")
    return model.eval()


def utterance_sampler(sources, name: str, seed: int) -> tuple[Callable[[int], list[tuple[int, str]]], int]:
    """Seed torch and a batch sampler over the sources' utterances that have phones and latents, for the
    models :func:`fit_steps` trains. Returns ``(draw, latent_dim)``: ``draw(n)`` is n (source index,
    utterance id) pairs drawn with replacement; a one-line :class:`DataDirError` when there is none."""
    items = examples(sources)
    if not items:
        raise DataDirError(f"{name}: no utterance has both phones and latents")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    latent_dim = sources[items[0][0]].load(items[0][1]).shape[-1]

    def draw(n: int) -> list[tuple[int, str]]:
        return [items[rng.randrange(len(items))] for _ in range(n)]

    return draw, latent_dim
