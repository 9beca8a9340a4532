"""Training the audio codec with Lightning: random crops → reconstruction (+ adversarial) losses.

    cfg = load_config("egs/demo/tts1/conf/codec.yaml", CodecTrainConfig)
    train_codec(cfg, ["data/train", "data/real_train"], "exp/codec_demo", max_steps=20000, resume=True)

``EXP_DIR`` receives ``config.yaml`` (the full training config), ``checkpoints/`` (Lightning
checkpoints: ``last.ckpt`` plus one every ``trainer.checkpoint_every`` steps, the newest
``trainer.keep_checkpoints`` kept, for resuming),
``logs/runN/metrics.csv`` (CSV metrics of the N-th (resumed) run: losses, learning rate, latent
statistics) and ``model/``:
the exported codec model directory (safetensors + config, latent mean/std measured on the
training data), refreshed at every checkpoint and at the end.

Steps count generator updates; the discriminator (adversarial configs) steps alongside.
On a GPU the default precision is bf16-mixed; ``trainer.devices > 1`` or ``trainer.num_nodes > 1``
trains data-parallel (DDP). With a discriminator each network's gradients are averaged over the ranks
right before its optimizer steps, in place of DDP's reducer (see ``CodecLightning.on_train_start``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import torch

from ..audio.augment import AugmentConfig
from ..models.codec.config import CodecConfig
from ..models.codec.discriminators import DiscriminatorConfig
from ..models.codec.losses import LossConfig
from ..config import save_config, to_dict
from ..errors import ConfigError
from .common import ClusterConfig, build_trainer, on_gpu

__all__ = [
    "OptimConfig",
    "DataConfig",
    "TrainerConfig",
    "AdversarialConfig",
    "CodecTrainConfig",
    "train_codec",
    "measure_latent_stats",
    "export_codec",
    "InitConfig",
    "init_from_codec",
]


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decay to lr · min_lr_ratio at trainer.max_steps
    grad_clip: float = 1.0
    disc_lr: float = 2e-4


@dataclass
class DataConfig:
    batch_size: int = 8
    crop_seconds: float = 1.0
    min_seconds: float = 0.2
    gain_db: list[float] | None = field(default_factory=lambda: [-6.0, 6.0])
    num_workers: int = 0
    cache_mb: float = 1024.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # reverberation, band limits, noise


@dataclass
class TrainerConfig(ClusterConfig):
    """:class:`~.common.ClusterConfig` (devices, nodes, precision, checkpoints kept) + the codec's steps;
    no gradient accumulation (two optimizers stepped by hand): raise ``data.batch_size`` instead."""

    max_steps: int = 20000
    devices: Union[int, list[int], str] = "auto"
    precision: str = "auto"  # "auto": bf16-mixed on GPU, 32-true on CPU
    num_threads: int = 1  # torch threads on CPU
    log_every: int = 25
    checkpoint_every: int = 500
    stats_batches: int = 16  # batches of crops to measure the latent mean/std at export
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        if self.accumulate_grad_batches != 1:
            raise ConfigError("trainer.accumulate_grad_batches: the codec steps its two optimizers itself and does "
                              "not accumulate gradients; raise data.batch_size (per device) instead")


@dataclass
class AdversarialConfig:
    enabled: bool = False
    start_step: int = 0
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


@dataclass
class InitConfig:
    """Start from a trained codec's trunk (e.g. the RVQ baseline codec from the σ-VAE codec).

    ``from_model``: a codec name or model dir whose encoder and decoder weights are copied (the
    trunk shapes must match; the bottleneck is this config's own). RVQ codebooks are then set by
    residual k-means over ``codebook_batches`` batches of encoder outputs, so that training starts
    from a working codec. ``freeze_encoder`` keeps the copied encoder fixed (only the decoder and
    the codebooks adapt to quantisation) and its latent statistics, so that latents extracted
    with the source codec stay valid for the result (e.g. a decoder fine-tuned adversarially).
    Tensors the source lacks (e.g. a harmonic decoder's pitch read-out and source gain) keep
    their initialisation; source tensors this codec lacks are dropped (a plain decoder from a
    harmonic one). ``keep_bottleneck`` copies the source's bottleneck too (RVQ codebooks) and keeps
    it fixed (no k-means, no EMA updates or restarts; the σ-VAE noise still applies): with
    ``freeze_encoder`` the result gives exactly the source's latents or codes, a decoder-only
    fine-tune that leaves LMs trained on them valid. ``anchor_weight`` > 0 trains the encoder but
    pulls its latents towards the source's (the squared difference of the deterministic latents, in
    units of the source's latent std, averaged, times this weight) and keeps the source's latent
    statistics: the encoder may carry more of a voice while LMs trained on the source's latents stay
    usable.
    """

    from_model: str | None = None
    freeze_encoder: bool = False
    keep_bottleneck: bool = False
    codebook_batches: int = 64
    anchor_weight: float = 0.0

    @property
    def keeps_latent_stats(self) -> bool:
        return self.freeze_encoder or self.anchor_weight > 0


@dataclass
class CodecTrainConfig:
    model: CodecConfig = field(default_factory=CodecConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def validate(self) -> None:
        self.model.validate()
        self.data.augment.validate()
        if self.data.batch_size < 1 or self.data.crop_seconds <= 0:
            raise ConfigError("data.batch_size must be >= 1 and data.crop_seconds > 0")
        if self.init.anchor_weight < 0:
            raise ConfigError(f"init.anchor_weight must be >= 0, got {self.init.anchor_weight}")
        if self.data.crop_seconds * self.model.sample_rate < self.model.hop_length:
            raise ConfigError(f"data.crop_seconds={self.data.crop_seconds} is shorter than one latent frame")


def _lightning_module_class():
    import lightning.pytorch as pl

    from ..audio.pitch import yin
    from ..models.codec.discriminators import CodecDiscriminator
    from ..models.codec.losses import (
        MultiResolutionMelLoss,
        MultiResolutionSTFTLoss,
        discriminator_loss,
        feature_matching_loss,
        generator_adv_loss,
        pitch_loss,
    )
    from ..models.codec.model import AudioCodec
    from .distributed import average_gradients

    class CodecLightning(pl.LightningModule):
        """Wraps :class:`AudioCodec` (+ discriminators) with manual optimisation."""

        def __init__(self, cfg: CodecTrainConfig):
            super().__init__()
            self.cfg = cfg
            self.codec = AudioCodec(cfg.model)
            self.mel_loss = MultiResolutionMelLoss(cfg.model.sample_rate, cfg.loss.mel_resolutions)
            self.stft_loss = MultiResolutionSTFTLoss(cfg.loss.stft_resolutions)
            adv = cfg.adversarial
            self.disc = CodecDiscriminator(adv.discriminator) if adv.enabled else None
            self.automatic_optimization = False
            self.sync_gradients = False  # True: on_train_start took gradient averaging over from DDP
            self.anchor = None  # init.anchor_weight: (the source codec's frozen encoder, its latent std)

        def set_anchor(self, source) -> None:
            """Keep ``source``'s encoder and latent std to pull the encoder's latents towards (kept out of
            the module's state: it is not trained, and a resumed run takes it from the source again)."""
            enc = source.encoder.eval().requires_grad_(False)
            object.__setattr__(self, "anchor", (enc, source.latent_std.clone()[None, :, None]))

        def anchor_loss(self, padded: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
            """Mean squared distance of the latents ``mu`` [B, D, F] of the padded crops from the source
            encoder's, in units of its latent std."""
            enc, std = self.anchor
            with torch.no_grad():
                ref = self.codec.bottleneck.infer(enc(padded))
            return ((mu - ref) / std).square().mean()

        def on_train_start(self):
            # An adversarial step makes two backward passes through the one DDP-wrapped module, each
            # reaching one network (and before adversarial.start_step the discriminator is idle): DDP's
            # reducer, which expects every parameter in each backward, fails at the next step. So the
            # reducer stays off (``no_sync``; buffers need no broadcast: RVQ codebooks average their EMA
            # statistics over the ranks) and each network's gradients are averaged just before its
            # optimizer steps. Without a discriminator DDP's reducer does it, overlapped with backward.
            from torch.nn.parallel import DistributedDataParallel

            self.sync_gradients = self.disc is not None and isinstance(self.trainer.strategy.model,
                                                                       DistributedDataParallel)
            if self.anchor is not None:  # not a submodule: Lightning does not move it
                enc, std = self.anchor
                object.__setattr__(self, "anchor", (enc.to(self.device), std.to(self.device)))

        def backward_and_sync(self, loss: torch.Tensor, net: torch.nn.Module) -> None:
            """``manual_backward(loss)``, then (under DDP with a discriminator) ``net``'s gradients averaged."""
            if not self.sync_gradients:
                self.manual_backward(loss)
                return
            with self.trainer.strategy.model.no_sync():
                self.manual_backward(loss)
            average_gradients(net.parameters())

        def configure_optimizers(self):
            o, max_steps = self.cfg.optim, self.cfg.trainer.max_steps

            def schedule(step: int) -> float:
                if step < o.warmup_steps:
                    return (step + 1) / max(1, o.warmup_steps)
                frac = min(1.0, (step - o.warmup_steps) / max(1, max_steps - o.warmup_steps))
                return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

            opt_g = torch.optim.AdamW(self.codec.parameters(), o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
            sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)
            if self.disc is None:
                return [opt_g], [sched_g]
            opt_d = torch.optim.AdamW(self.disc.parameters(), o.disc_lr, betas=tuple(o.betas),
                                      weight_decay=o.weight_decay)
            return [opt_g, opt_d], [sched_g]

        def on_train_batch_start(self, batch, batch_idx):
            if self.cfg.init.keep_bottleneck and self.codec.is_rvq:
                self.codec.bottleneck.eval()  # fixed codebooks: no EMA updates or dead-code restarts

        def training_step(self, batch: torch.Tensor, batch_idx: int):
            cfg = self.cfg
            opts = self.optimizers()
            opt_g = opts[0] if isinstance(opts, list) else opts
            sched = self.lr_schedulers()
            sched = sched[0] if isinstance(sched, list) else sched

            harmonic = cfg.model.decoder.source == "harmonic"
            if harmonic:  # the pitch target, and in some batches the source's F0 (teacher forcing)
                f0, voiced = yin(self.codec.pad(batch), cfg.model.sample_rate, cfg.model.frame_hop,
                                 *cfg.model.decoder.f0_range)
                forced = torch.rand(()) < cfg.loss.pitch_teacher_forcing
                out = self.codec(batch, f0, voiced.float()) if forced else self.codec(batch)
            else:
                out = self.codec(batch)
            mel = self.mel_loss(out.wav, out.target)
            stft = self.stft_loss(out.wav, out.target)
            reg = out.bottleneck.loss
            loss = cfg.loss.mel_weight * mel + cfg.loss.stft_weight * stft + cfg.model.bottleneck.beta * reg
            logs = {"loss/mel": mel, "loss/stft": stft, "loss/reg": reg}
            if self.anchor is not None:
                anchor = self.anchor_loss(out.target, out.bottleneck.mu)
                loss = loss + cfg.init.anchor_weight * anchor
                logs["loss/anchor"] = anchor.detach()
            if harmonic:
                f0_l1, voicing = pitch_loss(out.pitch, f0, voiced)
                loss = loss + cfg.loss.pitch_weight * (f0_l1 + voicing)
                logs.update({"loss/f0": f0_l1.detach(), "loss/voicing": voicing.detach()})

            if self.disc is not None and self.global_step >= cfg.adversarial.start_step:
                opt_d = opts[1]
                real_logits, _ = self.disc(out.target)
                fake_logits, _ = self.disc(out.wav.detach())
                d_loss = discriminator_loss(real_logits, fake_logits)
                opt_d.zero_grad()
                self.backward_and_sync(d_loss, self.disc)
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
                # Step the raw optimizer so that Lightning's global_step counts generator steps only.
                opt_d.optimizer.step()
                fake_logits, fake_feats = self.disc(out.wav)
                with torch.no_grad():
                    _, real_feats = self.disc(out.target)
                adv = generator_adv_loss(fake_logits)
                fm = feature_matching_loss(real_feats, fake_feats)
                loss = loss + cfg.loss.adv_weight * adv + cfg.loss.feat_weight * fm
                logs.update({"loss/disc": d_loss.detach(), "loss/adv": adv.detach(), "loss/feat": fm.detach()})

            opt_g.zero_grad()
            self.backward_and_sync(loss, self.codec)
            self.clip_gradients(opt_g, gradient_clip_val=cfg.optim.grad_clip, gradient_clip_algorithm="norm")
            opt_g.step()
            sched.step()

            logs["loss/total"] = loss.detach()
            logs["lr"] = torch.tensor(sched.get_last_lr()[0])
            logs.update({f"latent/{k}": v for k, v in out.stats.items()})
            self.log_dict({k: v.detach().float() for k, v in logs.items()}, on_step=True, prog_bar=False,
                          batch_size=batch.shape[0])
            self.log("mel", mel.detach(), prog_bar=True, on_step=True, batch_size=batch.shape[0])
            return loss.detach()

    return CodecLightning


def _export_callback_class():
    import lightning.pytorch as pl

    class ExportCodec(pl.Callback):
        """Exports ``EXP_DIR/model`` (with fresh latent statistics) every ``every`` steps and at the end."""

        def __init__(self, out_dir: Path, dataset, every: int, batches: int, batch_size: int, meta: dict):
            self.out_dir, self.dataset, self.every = out_dir, dataset, every
            self.batches, self.batch_size, self.meta = batches, batch_size, meta
            self.t0 = time.time()
            self._last = -1

        def _export(self, trainer, module) -> None:
            if not trainer.is_global_zero or trainer.global_step == self._last:
                return
            self._last = trainer.global_step
            meta = dict(self.meta, steps=int(trainer.global_step),
                        train_seconds_this_run=round(time.time() - self.t0, 1))
            export_codec(module.codec, self.dataset, self.out_dir / "model", self.batches, self.batch_size, meta)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if self.every > 0 and trainer.global_step % self.every == 0:
                self._export(trainer, module)

        def on_train_end(self, trainer, module):
            self._export(trainer, module)

    return ExportCodec


@torch.no_grad()
def measure_latent_stats(codec, dataset, batches: int = 16, batch_size: int = 8,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the codec's inference latents over random crops of ``dataset``."""
    was_training = codec.training
    codec.eval()
    device = codec.latent_mean.device
    g = torch.Generator().manual_seed(seed)
    n = min(len(dataset), batches * batch_size)
    idx = torch.randperm(len(dataset), generator=g)[:n].tolist()
    s = torch.zeros(codec.latent_dim, dtype=torch.float64)
    s2 = torch.zeros_like(s)
    count = 0
    for i in range(0, n, batch_size):
        wav = torch.stack([dataset[j] for j in idx[i:i + batch_size]]).to(device)
        z = codec.encode(wav).double().cpu()  # [B, D, F]
        s += z.sum(dim=(0, 2))
        s2 += z.square().sum(dim=(0, 2))
        count += z.shape[0] * z.shape[2]
    codec.train(was_training)
    mean = s / max(count, 1)
    std = (s2 / max(count, 1) - mean.square()).clamp(min=0).sqrt()
    return mean.float(), std.float()


def export_codec(codec, dataset, out_dir: str | os.PathLike, batches: int = 16, batch_size: int = 8,
                 meta: dict | None = None) -> Path:
    """Measure latent statistics on ``dataset`` and write ``codec`` as a model directory."""
    from ..models.codec.model import save_codec

    if batches > 0:  # 0: keep the codec's statistics (a frozen encoder, see InitConfig)
        mean, std = measure_latent_stats(codec, dataset, batches, batch_size)
        codec.set_latent_stats(mean, std)
    return save_codec(codec, out_dir, meta=meta)


def freeze_codec_parts(codec, init: InitConfig) -> None:
    """Stop gradients to the encoder (``init.freeze_encoder``) and the bottleneck (``init.keep_bottleneck``).

    Called at the start and on every ``--resume``: a checkpoint restores weights, not ``requires_grad``.
    """
    if init.freeze_encoder:
        codec.encoder.requires_grad_(False)
    if init.keep_bottleneck:
        codec.bottleneck.requires_grad_(False)


@torch.no_grad()
def init_from_codec(codec, init: InitConfig, dataset=None, batch_size: int = 8, seed: int = 0) -> dict:
    """Copy ``init.from_model``'s encoder + decoder into ``codec``; k-means its RVQ codebooks on
    ``dataset`` crops. Returns a summary (copied tensors, codebook fit) for the log. Freezing the
    copied parts is :func:`freeze_codec_parts`' job (``train_codec`` calls it on every start)."""
    from ..checkpoint import load_state_dict_strict
    from ..models.codec.bottleneck import ResidualVQ
    from ..models.codec.model import load_codec

    src = load_codec(init.from_model)
    if init.keep_bottleneck and src.cfg.bottleneck != codec.cfg.bottleneck:
        raise ConfigError(f"init.keep_bottleneck: {init.from_model} has another bottleneck "
                          f"({src.cfg.bottleneck}) than this config ({codec.cfg.bottleneck})")
    parts = ("encoder.", "decoder.", "bottleneck.") if init.keep_bottleneck else ("encoder.", "decoder.")
    theirs = {k: v for k, v in src.state_dict().items() if k.startswith(parts)}
    own = codec.state_dict()
    trunk = {k: v for k, v in theirs.items() if k in own}
    mine = {k: v for k, v in own.items() if k not in trunk}
    load_state_dict_strict(codec, {**mine, **trunk}, where=f"{init.from_model} (init.from_model)")
    info = {"from_model": str(init.from_model), "copied_tensors": len(trunk),
            "new_tensors": sorted(k for k in mine if k.startswith(parts)),
            "dropped_tensors": sorted(k for k in theirs if k not in own)}
    if init.keeps_latent_stats:  # the source's latents (or near them, anchored): keep its latent statistics
        codec.set_latent_stats(src.latent_mean, src.latent_std)
    if init.keep_bottleneck:
        return info
    if isinstance(codec.bottleneck, ResidualVQ) and dataset is not None and init.codebook_batches > 0:
        g = torch.Generator().manual_seed(seed)
        n = min(len(dataset), init.codebook_batches * batch_size)
        idx = torch.randperm(len(dataset), generator=g)[:n].tolist()
        device = codec.latent_mean.device
        feats = []
        for i in range(0, n, batch_size):
            wav = torch.stack([dataset[j] for j in idx[i:i + batch_size]]).to(device)
            h = codec.encoder(codec.pad(wav))
            feats.append(h.float().transpose(1, 2).reshape(-1, h.shape[1]))
        residual = torch.cat(feats)
        energy = residual.square().mean()
        for cb in codec.bottleneck.codebooks:
            cb.kmeans_init(residual)
            residual = residual - cb.embed[cb.quantize(residual)]
        info["codebook_vectors"] = int(residual.shape[0])
        info["residual_energy_ratio"] = round(float(residual.square().mean() / energy), 5)
    return info


def _next_log_version(logs: Path) -> str:
    """``run1``, ``run2``...: each (resumed) run logs into its own folder, earlier CSVs are kept."""
    n = 1
    while (logs / f"run{n}").exists():
        n += 1
    return f"run{n}"


def train_codec(
    cfg: CodecTrainConfig,
    data_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train (or resume) a codec on random crops of ``data_dirs``; returns the exported model dir."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from ..data.dataset import AudioCropDataset

    import warnings

    # Lightning warns that manual-optimisation checkpoints hold the post-step state: that is what we want.
    warnings.filterwarnings("ignore", message=".*ModelCheckpoint with manual optimization.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    out = Path(out_dir)
    if max_steps is not None:
        cfg.trainer.max_steps = max_steps
    cfg.validate()
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if last.exists() and not resume:
        raise ConfigError(f"{out} already has checkpoints: pass --resume to continue, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    t, d = cfg.trainer, cfg.data
    if not on_gpu(t):
        torch.set_num_threads(max(1, t.num_threads))
    pl.seed_everything(t.seed, workers=True, verbose=False)

    dataset = AudioCropDataset(data_dirs, cfg.model.sample_rate, d.crop_seconds, d.min_seconds,
                               tuple(d.gain_db) if d.gain_db else None, d.cache_mb, seed=t.seed,
                               augment=d.augment)
    print(f"codec training data: {dataset.describe()}", flush=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=d.batch_size, shuffle=True, drop_last=True,
                                         num_workers=d.num_workers, persistent_workers=d.num_workers > 0)
    module = _lightning_module_class()(cfg)
    if cfg.init.from_model and not (resume and last.exists()):
        info = init_from_codec(module.codec, cfg.init, dataset, d.batch_size, seed=t.seed)
        print(f"codec init: {info}", flush=True)
    if cfg.init.anchor_weight > 0:
        from ..models.codec.model import load_codec

        if not cfg.init.from_model:
            raise ConfigError("init.anchor_weight needs init.from_model (--init-from): the codec whose latents to stay near")

        module.set_anchor(load_codec(cfg.init.from_model))
    freeze_codec_parts(module.codec, cfg.init)
    n_params = sum(p.numel() for p in module.codec.parameters())
    print(f"codec: {n_params / 1e6:.2f} M parameters, {cfg.model.frame_rate:g} Hz, {cfg.model.latent_dim}-d "
          f"{cfg.model.bottleneck.kind} latents", flush=True)
    meta = {"data": [str(p) for p in data_dirs], "hours": round(dataset.hours, 3),
            "train_config": to_dict(cfg)}
    callbacks = [
        _export_callback_class()(out, dataset, t.checkpoint_every, 0 if cfg.init.keeps_latent_stats else t.stats_batches,
                                 d.batch_size, meta),
    ]
    if progress:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=1 if os.isatty(2) else 50))
    trainer = build_trainer(
        t, out, max_steps=t.max_steps, checkpoint_every=t.checkpoint_every, callbacks=callbacks, max_epochs=-1,
        logger=CSVLogger(str(out), name="logs", version=_next_log_version(out / "logs")),
        log_every_n_steps=t.log_every,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    if trainer.is_global_zero:  # every rank of a DDP launch runs this function; the trainer knows its rank
        save_config(cfg, out / "config.yaml")
    trainer.fit(module, loader, ckpt_path=str(last) if (resume and last.exists()) else None)
    return out / "model"
