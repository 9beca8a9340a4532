"""Every training entry point under 2-process data parallelism over gloo on the CPU.

Each test starts two processes the way ``torchrun`` or ``srun`` does (``LOCAL_RANK``, ``MASTER_ADDR`` ...
in the environment, one process per rank), joins them in a gloo process group and calls the library's
training function on both ranks with the same arguments and output dir. Each rank records a SHA-256
of its state dict after every optimizer step and the files it writes as model dirs; the test then
checks that the ranks trained on different batches, hold bit-identical weights after every step, and
that rank 0 alone wrote the model dir.

The Lightning-trained entry points (codec, LatentLM and its guidance distillation, VALL-E) run with
``strategy: ddp``; the plain-loop ones (aligner, recognizer) run through their CLI commands, which fit
them on rank 0 and share the weights with the other ranks (see :mod:`latentspeech.train.distributed`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing
import os
import socket
import traceback
from pathlib import Path

import pytest
import torch

import test_lm_train
import test_valle_train

data_on_disk = test_lm_train.data_on_disk  # the tiny corpora of the single-process tests, as fixtures here
corpus = test_valle_train.corpus

WORLD = 2
pytestmark = pytest.mark.slow  # two fresh interpreters (torch + Lightning imports) per test


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor of ``module``'s state dict (names, dtypes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{t.numel()};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Record:
    """What one rank saw: a digest and the loss of each Lightning step, the weight files it wrote, the
    files it moved into place (atomic writes), and what a job adds to ``extra``."""

    def __init__(self):
        self.steps: list[str] = []
        self.losses: list[float] = []
        self.weights_written: list[str] = []
        self.files_placed: list[str] = []
        self.extra: dict = {}

    def to_dict(self) -> dict:
        return {"steps": self.steps, "losses": self.losses, "weights_written": self.weights_written,
                "files_placed": self.files_placed, **self.extra}


RECORD = Record()


def _instrument() -> None:
    """In a rank process: record each Lightning step's digest and loss, every safetensors file written
    and every file moved into place with ``os.replace`` / ``os.rename``."""
    import lightning.pytorch as pl
    import safetensors.torch

    def on_train_batch_end(self, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        RECORD.steps.append(state_digest(self))
        RECORD.losses.append(float(loss))

    pl.LightningModule.on_train_batch_end = on_train_batch_end
    save_file = safetensors.torch.save_file

    def recording_save_file(tensors, filename, *args, **kwargs):
        RECORD.weights_written.append(str(filename))
        return save_file(tensors, filename, *args, **kwargs)

    safetensors.torch.save_file = recording_save_file
    for name in ("replace", "rename"):
        move = getattr(os, name)

        def recording_move(src, dst, *args, _move=move, **kwargs):
            RECORD.files_placed.append(str(dst))
            return _move(src, dst, *args, **kwargs)

        setattr(os, name, recording_move)


def record_calls(module, name: str, before=None, after=None) -> None:
    """Wrap ``module.name`` (looked up at call time by its callers): ``before(*args)`` and ``after(result)``."""
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        if before:
            before(*args)
        result = real(*args, **kwargs)
        if after:
            after(result)
        return result

    setattr(module, name, wrapper)


def _rank_main(rank: int, port: int, job: str, args: dict, result: str) -> None:
    """One rank: the environment a launcher gives, a gloo process group (Lightning joins it), the job."""
    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0"})
    torch.set_num_threads(1)
    out = {"rank": rank}
    try:
        dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=90))
        _instrument()
        JOBS[job](rank, **args)
        out.update(RECORD.to_dict())
    except BaseException as e:  # reported to the test, which fails with it
        out["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
    Path(result).write_text(json.dumps(out))
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path: Path, job: str, timeout: float = 240, **args) -> list[dict]:
    """Run ``JOBS[job](rank, **args)`` on ``WORLD`` spawned ranks; returns each rank's record."""
    ctx = multiprocessing.get_context("spawn")
    port = _free_port()
    results = [tmp_path / f"rank{r}.json" for r in range(WORLD)]
    procs = [ctx.Process(target=_rank_main, args=(r, port, job, args, str(results[r]))) for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    records = [json.loads(f.read_text()) if f.is_file() else {"error": "no result (killed or crashed)"}
               for f in results]
    errors = [f"rank {r}: {rec['error']}" for r, rec in enumerate(records) if "error" in rec]
    assert not errors, "\n".join(errors)
    return records


def check_ranks(records: list[dict], steps: int, out_dir: Path) -> None:
    """Both ranks took ``steps`` steps on different batches with identical weights after each; only rank 0
    wrote model dirs, and they ended up under ``out_dir``."""
    r0, r1 = records
    assert len(r0["steps"]) == len(r1["steps"]) == steps
    assert r0["losses"][0] != r1["losses"][0], "the ranks trained on the same batch: the check proves nothing"
    for k, (a, b) in enumerate(zip(r0["steps"], r1["steps"])):
        assert a == b, f"the ranks' weights differ after step {k + 1}"
    assert len(set(r0["steps"])) == steps, "the weights did not change at every step"
    check_rank_zero_writes(records, out_dir)


def check_rank_zero_writes(records: list[dict], out_dir: Path, outputs: tuple[Path, ...] = ()) -> None:
    """Rank 0 wrote the model dir(s) under ``out_dir``; rank 1 wrote no weights and placed no file under
    ``out_dir`` or at ``outputs``. (Any reader of a data dir may build its index caches, under a lock.)"""
    r0, r1 = records
    assert r0["weights_written"] and not r1["weights_written"], (r0["weights_written"], r1["weights_written"])
    placed = [f for f in r1["files_placed"] if Path(f).is_relative_to(out_dir) or Path(f) in outputs]
    assert not placed, placed
    assert all(Path(f).parent.parent == out_dir for f in r0["weights_written"]), r0["weights_written"]


# ---------------------------------------------------------------- codec


def codec_job(rank: int, data: str, out: str, adversarial: bool, rvq_harmonic: bool) -> None:
    from latentspeech.config import from_dict
    from latentspeech.train.codec import CodecTrainConfig, train_codec
    from test_codec_train import tiny_model

    model = tiny_model("rvq") if rvq_harmonic else tiny_model()
    if rvq_harmonic:  # EMA codebook buffers and a pitch head besides the trunk
        model["decoder"].update(source="harmonic", f0_range=[60.0, 500.0])
    cfg = from_dict(CodecTrainConfig, {
        "model": model,
        "loss": {"mel_resolutions": [[256, 64, 40]], "stft_resolutions": [[128, 32]]},
        "data": {"batch_size": 2, "crop_seconds": 0.25},
        "trainer": {"accelerator": "cpu", "devices": WORLD, "strategy": "ddp", "checkpoint_every": 100,
                    "stats_batches": 1, "log_every": 1},
        "adversarial": {"enabled": adversarial, "start_step": 1,  # step 0 without, steps 1, 2 with the discriminator
                        "discriminator": {"periods": [2], "period_channels": [4], "stft_resolutions": [128],
                                          "stft_channels": 4}},
    })
    train_codec(cfg, [data], out, max_steps=3, progress=False)


@pytest.fixture
def codec_data(tmp_path):
    from test_codec_train import SR, voiced
    import soundfile as sf

    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    utts = [f"spk{s}-u{i}" for s in "AB" for i in range(3)]
    for i, u in enumerate(utts):
        sf.write(d / "wav" / f"{u}.wav", voiced(i, 0.5 + 0.1 * i), SR, subtype="PCM_16")
    (d / "wav.scp").write_text("".join(f"{u} wav/{u}.wav\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (d / "text").write_text("".join(f"{u} hello\n" for u in utts))
    return d


@pytest.mark.parametrize("adversarial,rvq_harmonic", [(False, False), (True, False), (True, True)],
                         ids=["reconstruction", "adversarial", "adversarial-rvq-harmonic"])
def test_codec_trains_data_parallel(tmp_path, codec_data, adversarial, rvq_harmonic):
    """Three steps, the first without the discriminator (``start_step: 1``) when it is enabled."""
    out = tmp_path / "exp"
    records = run_ranks(tmp_path, "codec", data=str(codec_data), out=str(out), adversarial=adversarial,
                        rvq_harmonic=rvq_harmonic)
    check_ranks(records, 3, out)


# ---------------------------------------------------------------- LatentLM (+ guidance distillation), VALL-E


def latentlm_job(rank: int, data: str, dump: str, out: str) -> None:
    import latentspeech.train.latentlm as lm
    from latentspeech.config import from_dict

    record_calls(lm, "distill_guidance", before=lambda model, *_: RECORD.extra.update(before_distill=state_digest(model)),
                 after=lambda model: RECORD.extra.update(after_distill=state_digest(model)))
    cfg = from_dict(lm.LatentLMTrainConfig, {
        "model": {"transformer": {"dim": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 256}, "head_blocks": 1},
        "data": {"prompt_seconds": [0.2, 0.4], "max_tokens": 200, "max_batch_size": 2},
        "optim": {"warmup_steps": 1, "lr": 1e-3},
        "trainer": {"accelerator": "cpu", "devices": WORLD, "strategy": "ddp", "ckpt_every_steps": 100,
                    "log_every_steps": 1},
        "distill": {"steps": 2, "warmup_steps": 1},
    })
    lm.train_latentlm(cfg, [(data, dump)], out, max_steps=2, progress=False)


def test_latentlm_and_its_guidance_distillation_train_data_parallel(tmp_path, data_on_disk):
    from latentspeech.models.latentlm import load_latentlm

    data, dump = data_on_disk
    out = tmp_path / "exp"
    records = run_ranks(tmp_path, "latentlm", data=str(data), dump=str(dump), out=str(out))
    check_ranks(records, 2, out)
    r0, r1 = records
    assert r0["before_distill"] == r1["before_distill"]
    assert r0["after_distill"] == r1["after_distill"] != r0["before_distill"]
    model, md = load_latentlm(out / "model")
    assert model.cfg.guidance_distilled == 3.0 and md.meta["train_steps"] == 2
    assert state_digest(model) == r0["after_distill"]


def valle_job(rank: int, data: str, codes: str, codec: str, out: str) -> None:
    from latentspeech.train.valle import train_valle
    from test_valle_train import tiny_train_config

    cfg = tiny_train_config(devices=WORLD, strategy="ddp", ckpt_every_steps=100)
    train_valle(cfg, [(data, codes)], out, codec=codec, max_steps=2, progress=False)


def test_valle_trains_data_parallel(tmp_path, corpus):
    data, codes, codec_dir, _ = corpus
    out = tmp_path / "exp"
    records = run_ranks(tmp_path, "valle", data=str(data), codes=str(codes), codec=str(codec_dir), out=str(out))
    check_ranks(records, 2, out)


# ---------------------------------------------------------------- aligner, recognizer (plain loops, CLI)


def plain_loop_job(rank: int, command: list[str], module: str, train: str) -> None:
    """``latentspeech COMMAND`` on every rank, recording whether ``module.fit_steps`` ran (and from which
    weights) and the digest of the model ``module.train`` returned."""
    import importlib

    from latentspeech.cli import main

    mod = importlib.import_module(module)
    record_calls(mod, "fit_steps", before=lambda model, *args: RECORD.extra.update(init=state_digest(model),
                                                                                 fitted=args[3]))
    record_calls(mod, train, after=lambda model: RECORD.extra.update(final=state_digest(model)))
    assert main(command) == 0


@pytest.fixture
def lm_corpus(tmp_path, write_lm_corpus):
    from test_lm_recognizer import toy_corpus

    vocab, src = toy_corpus(n=8)
    return write_lm_corpus(tmp_path / "corpus", vocab, src.phones, src.latents)


@pytest.mark.parametrize("command", ["align", "recognizer"])
def test_small_models_fit_on_rank_zero_and_every_rank_gets_them(tmp_path, lm_corpus, command):
    from latentspeech.data.durations import DURATIONS

    data, latents = lm_corpus
    out = tmp_path / "exp"
    module, train = {"align": ("latentspeech.train.aligner", "train_aligner"),
                     "recognizer": ("latentspeech.train.recognizer", "train_recognizer")}[command]
    cli = [command, "--data", str(data), "--latents", str(latents), "--out", str(out), "--steps", "2",
           "--batch-size", "4", "--num-threads", "1", "--no-progress"]
    r0, r1 = records = run_ranks(tmp_path, "plain_loop", command=cli, module=module, train=train)
    assert r0["fitted"] == 2 and "fitted" not in r1  # rank 0 fits, rank 1 waits
    assert r0["final"] == r1["final"] != r0["init"]  # ... and receives rank 0's trained weights
    durations = latents / DURATIONS
    check_rank_zero_writes(records, out, outputs=(durations,))
    if command == "align":
        assert str(durations) in r0["files_placed"] and durations.is_file()


JOBS = {"codec": codec_job, "latentlm": latentlm_job, "valle": valle_job, "plain_loop": plain_loop_job}
