"""Exact resume: a LatentLM run killed mid-epoch and resumed from its checkpoint ends with the weights
of an uninterrupted run (same batches in the same order, same noise draws)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentspeech.data.lm_dataset import BucketBatchSampler

import test_lm_train

data_on_disk = test_lm_train.data_on_disk  # a tiny Kaldi dir + latent store, as a fixture here
one_thread = test_lm_train.one_thread


class Killed(Exception):
    """Stands for the job being killed."""


def _config(ckpt_every: int = 4):
    from latentspeech.config import from_dict
    from latentspeech.train.latentlm import LatentLMTrainConfig

    # 6 utterances, at most 2 per batch: 3 batches per epoch, so step 4 is in the middle of epoch 1
    return from_dict(LatentLMTrainConfig, {
        "model": {"transformer": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 256}, "head_blocks": 1},
        "data": {"prompt_seconds": [0.2, 0.4], "max_tokens": 400, "max_batch_size": 2},
        "optim": {"warmup_steps": 2, "lr": 1e-3},
        "trainer": {"accelerator": "cpu", "ckpt_every_steps": ckpt_every, "log_every_steps": 1, "seed": 3},
    })


def _weights(model_dir) -> tuple[int, dict[str, torch.Tensor]]:
    from latentspeech.models.latentlm import load_latentlm

    model, md = load_latentlm(model_dir)
    return md.meta["train_steps"], {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sampler_resumes_after_the_consumed_batches():
    lengths = np.random.default_rng(0).integers(10, 300, 120)
    whole = BucketBatchSampler(lengths, 1200, 16, seed=5)
    whole.set_epoch(2)
    batches = list(whole)
    assert len(whole) == len(batches) > 6
    first = BucketBatchSampler(lengths, 1200, 16, seed=5)
    first.set_epoch(2)
    it = iter(first)
    seen = [next(it) for _ in range(4)]
    state = first.state_dict()
    assert state == {"epoch": 2, "position": 4, "seed": 5} and seen == batches[:4]
    resumed = BucketBatchSampler(lengths, 1200, 16, seed=0)  # the checkpoint's seed and epoch win
    resumed.load_state_dict(state)
    assert list(resumed) == batches[4:]
    assert list(resumed) == batches  # the skip applies to the resumed epoch only
    resumed.set_epoch(3)
    assert list(resumed) != batches and len(resumed) == len(list(resumed))


@pytest.mark.parametrize("killed_after,state", [(4, {"epoch": 1, "position": 1, "seed": 3}),  # mid-epoch
                                                 (3, {"epoch": 0, "position": 3, "seed": 3})])  # at an epoch's end
def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(data_on_disk, tmp_path, one_thread, monkeypatch,
                                                                   killed_after, state):
    import latentspeech.train.latentlm as lm

    data, dump = data_on_disk
    sets = [(str(data), str(dump))]
    cfg = _config(ckpt_every=killed_after)
    steps, whole = _weights(lm.train_latentlm(cfg, sets, tmp_path / "whole", max_steps=6, progress=False))
    assert steps == 6

    train_step = lm.LatentLMModule.training_step

    def dies_after_the_checkpoint(self, batch, batch_idx):
        if self.global_step == killed_after:
            raise Killed
        return train_step(self, batch, batch_idx)

    out = tmp_path / "killed"
    monkeypatch.setattr(lm.LatentLMModule, "training_step", dies_after_the_checkpoint)
    with pytest.raises(Killed):
        lm.train_latentlm(cfg, sets, out, max_steps=6, progress=False)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == killed_after
    assert ckpt["LatentLMDataModule"] == state  # 3 batches an epoch
    monkeypatch.setattr(lm.LatentLMModule, "training_step", train_step)
    steps, resumed = _weights(lm.train_latentlm(cfg, sets, out, max_steps=6, resume=True, progress=False))
    assert steps == 6 and resumed.keys() == whole.keys()
    for k in whole:
        assert torch.equal(resumed[k], whole[k]), k


# ------------------------------------------------------------------------- two processes (gloo)

WORLD = 2


def _phase(phase: str, data: str, dump: str, out: str) -> None:
    import dataclasses

    import latentspeech.train.latentlm as lm

    cfg = _config()
    cfg.trainer = dataclasses.replace(cfg.trainer, devices=WORLD, strategy="ddp", ckpt_every_steps=3)
    if phase == "killed":
        train_step = lm.LatentLMModule.training_step

        def dies_after_step_3(self, batch, batch_idx):
            if self.global_step == 3:
                raise Killed
            return train_step(self, batch, batch_idx)

        lm.LatentLMModule.training_step = dies_after_step_3
    lm.train_latentlm(cfg, [(data, dump)], out, max_steps=5, resume=phase == "resumed", progress=False)


def _rank_main(rank: int, port: int, phase: str, args: dict, result: str) -> None:
    """One rank as ``torchrun`` starts it: the launcher's environment, a gloo group, the phase."""
    import datetime
    import os
    import traceback
    from pathlib import Path

    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0"})
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=90))
    try:
        _phase(phase, **args)
        outcome = "done"
    except Killed:
        outcome = "killed"
    except BaseException as e:  # reported to the test, which fails with it
        outcome = f"error: {type(e).__name__}: {e}\n{traceback.format_exc()}"
    Path(result).write_text(outcome)
    dist.destroy_process_group()


def _run_ranks(tmp_path, phase: str, **args) -> list[str]:
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    results = [tmp_path / f"{phase}.rank{r}" for r in range(WORLD)]
    procs = [ctx.Process(target=_rank_main, args=(r, port, phase, args, str(results[r]))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
        if p.is_alive():
            p.kill()
            p.join()
    return [f.read_text() if f.is_file() else "no result (killed or crashed)" for f in results]


@pytest.mark.slow  # three pairs of fresh interpreters
def test_killed_data_parallel_run_resumes_to_the_weights_of_an_uninterrupted_one(data_on_disk, tmp_path):
    data, dump = data_on_disk
    args = {"data": str(data), "dump": str(dump)}
    # 2 ranks, at most 2 utterances a batch: 2 batches per rank and epoch, so the checkpoint at step 3
    # is in the middle of epoch 1; the ranks are killed as they start step 4
    assert _run_ranks(tmp_path, "whole", out=str(tmp_path / "whole"), **args) == ["done"] * WORLD
    assert _run_ranks(tmp_path, "killed", out=str(tmp_path / "run"), **args) == ["killed"] * WORLD
    assert _run_ranks(tmp_path, "resumed", out=str(tmp_path / "run"), **args) == ["done"] * WORLD
    steps, whole = _weights(tmp_path / "whole" / "model")
    steps_resumed, resumed = _weights(tmp_path / "run" / "model")
    assert steps == steps_resumed == 5
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step3.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["LatentLMDataModule"] == {"epoch": 1, "position": 1, "seed": 3}
    for k in whole:
        assert torch.equal(resumed[k], whole[k]), k
