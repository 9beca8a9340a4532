"""Cluster runs: the trainer settings (nodes, devices, gradient accumulation, precision, checkpoints
kept) from config and command line, and the SLURM runner asking for exactly what they use, checked
with fake ``sbatch``/``srun`` commands on PATH that record their arguments."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.cli import main
from latentspeech.config import from_dict, load_config
from latentspeech.errors import ConfigError
from latentspeech.train.codec import CodecTrainConfig
from latentspeech.train.common import ClusterConfig, TrainerConfig, build_trainer, job_resources
from latentspeech.train.latentlm import LatentLMTrainConfig
from latentspeech.train.valle import VALLETrainConfig

REPO = Path(__file__).resolve().parent.parent
UTILS = REPO / "recipes" / "utils"
LIBRILIGHT = REPO / "egs" / "librilight" / "tts1"
CONF = LIBRILIGHT / "conf"

# --- trainer settings -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LatentLMTrainConfig, VALLETrainConfig, CodecTrainConfig])
def test_every_family_takes_the_cluster_settings(cls):
    accumulate = 1 if cls is CodecTrainConfig else 4
    cfg = from_dict(cls, {"trainer": {"num_nodes": 2, "devices": [0, 1], "accumulate_grad_batches": accumulate,
                                      "precision": "bf16-mixed", "keep_checkpoints": 5}})
    t = cfg.trainer
    assert (t.num_nodes, t.devices, t.accumulate_grad_batches, t.precision, t.keep_checkpoints) == \
        (2, [0, 1], accumulate, "bf16-mixed", 5)
    assert from_dict(cls, {"trainer": {"devices": "auto"}}).trainer.devices == "auto"
    assert from_dict(cls, {}).trainer.keep_checkpoints == 3  # the newest few, not every one


@pytest.mark.parametrize("trainer, message", [
    ({"devices": "eight"}, "trainer.devices must be a number, a list of device indices or 'auto'"),
    ({"devices": 0}, "trainer.devices must be at least 1"),
    ({"devices": [0, 0]}, "distinct device indices"),
    ({"num_nodes": 0}, "trainer.num_nodes must be at least 1"),
    ({"accumulate_grad_batches": 0}, "trainer.accumulate_grad_batches must be at least 1"),
    ({"keep_checkpoints": -2}, "trainer.keep_checkpoints must be -1"),
    ({"precision": "bf16"}, "trainer.precision must be one of auto, 32-true, bf16-mixed"),
])
def test_bad_trainer_settings_are_one_line_config_errors(trainer, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        from_dict(LatentLMTrainConfig, {"trainer": trainer})
    assert "\n" not in str(e.value)


def test_the_codec_refuses_gradient_accumulation():
    with pytest.raises(ConfigError, match="data.batch_size"):
        from_dict(CodecTrainConfig, {"trainer": {"accumulate_grad_batches": 2}})


@pytest.mark.parametrize("devices, accelerator, gpus_if_auto, expected", [
    (1, "auto", 1, {"gpus": 1, "tasks": 1, "nodes": 1}),
    (8, "gpu", 1, {"gpus": 8, "tasks": 8, "nodes": 1}),
    ([2, 3], "gpu", 1, {"gpus": 2, "tasks": 2, "nodes": 1}),
    ("auto", "auto", 8, {"gpus": 8, "tasks": 8, "nodes": 1}),
    ("auto", "auto", 0, {"gpus": 0, "tasks": 1, "nodes": 1}),
    (2, "cpu", 8, {"gpus": 0, "tasks": 2, "nodes": 1}),
])
def test_job_resources_one_task_per_device(devices, accelerator, gpus_if_auto, expected):
    assert job_resources(ClusterConfig(devices=devices, accelerator=accelerator), gpus_if_auto) == expected
    two = job_resources(ClusterConfig(devices=devices, accelerator=accelerator, num_nodes=2), gpus_if_auto)
    assert two == {**expected, "nodes": 2}


def _resources(capsys, argv) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


LM = ["train", "latentlm", "--config", str(CONF / "latentlm.yaml"), "--data", "d", "--latents", "l", "--out", "o"]
VALLE = ["train", "valle", "--config", str(CONF / "valle.yaml"), "--data", "d", "--codes", "c", "--out", "o"]
CODEC = ["codec", "train", "--config", str(CONF / "codec.yaml"), "--data", "d", "--out", "o"]


def test_print_resources_follows_config_set_and_flags(capsys):
    r = "--print-resources"
    assert _resources(capsys, [*LM, r]) == "--gpu 8 --ntasks-per-node 8 --nodes 1"  # the config's devices: 8
    assert _resources(capsys, [*VALLE, r, "--num-nodes", "2"]) == "--gpu 8 --ntasks-per-node 8 --nodes 2"
    assert _resources(capsys, [*LM, r, "--devices", "0,1"]) == "--gpu 2 --ntasks-per-node 2 --nodes 1"
    assert _resources(capsys, [*LM, r, "--set", "trainer.num_nodes=3"]) == "--gpu 8 --ntasks-per-node 8 --nodes 3"
    # a flag wins over --set
    assert _resources(capsys, [*LM, r, "--set", "trainer.devices=4", "--devices", "2"]).startswith("--gpu 2 ")
    # the codec's devices: auto takes the GPUs per node the recipe names (0: a CPU run)
    assert _resources(capsys, [*CODEC, r, "--gpus-if-auto", "8"]) == "--gpu 8 --ntasks-per-node 8 --nodes 1"
    assert _resources(capsys, [*CODEC, r, "--gpus-if-auto", "0"]) == "--gpu 0 --ntasks-per-node 1 --nodes 1"
    with pytest.raises(SystemExit):
        main([*LM, r, "--devices", "two"])
    assert "expected a number, indices like 0,1 or 'auto'" in capsys.readouterr().err
    assert main([*LM, r, "--num-nodes", "0"]) == 1
    assert "trainer.num_nodes must be at least 1" in capsys.readouterr().err


def test_trainer_flags_reach_the_loaded_config():
    from latentspeech.cli import build_parser
    from latentspeech.cli.train import trainer_overrides

    args = build_parser().parse_args([*LM, "--devices", "auto", "--accumulate-grad-batches", "4", "--precision",
                                      "16-mixed", "--keep-checkpoints", "-1", "--activation-checkpointing",
                                      "--set", "optim.lr=1e-4"])
    cfg = load_config(CONF / "latentlm.yaml", LatentLMTrainConfig, trainer_overrides(args))
    t = cfg.trainer
    assert (t.devices, t.accumulate_grad_batches, t.precision, t.keep_checkpoints) == ("auto", 4, "16-mixed", -1)
    assert cfg.model.transformer.activation_checkpointing and cfg.optim.lr == 1e-4
    args = build_parser().parse_args([*VALLE, "--activation-checkpointing"])
    cfg = load_config(CONF / "valle.yaml", VALLETrainConfig, trainer_overrides(args))
    assert cfg.model.ar.activation_checkpointing and cfg.model.nar.activation_checkpointing
    assert not load_config(CONF / "valle.yaml", VALLETrainConfig).model.ar.activation_checkpointing


def _tiny_module():
    """A LightningModule on 16 random rows in batches of 2, counting the batches it sees."""
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)
            self.batches = 0

        def training_step(self, batch, i):
            self.batches += 1
            return self.lin(batch).square().mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

        def train_dataloader(self):
            rows = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
            return torch.utils.data.DataLoader(rows, batch_size=2)

    return Tiny()


@pytest.mark.parametrize("keep, kept", [(2, ["step3.ckpt", "step4.ckpt"]), (0, []),
                                        (-1, ["step1.ckpt", "step2.ckpt", "step3.ckpt", "step4.ckpt"])])
def test_build_trainer_accumulates_and_keeps_the_newest_checkpoints(tmp_path, keep, kept):
    tc = TrainerConfig(accelerator="cpu", devices=1, accumulate_grad_batches=2, keep_checkpoints=keep)
    trainer = build_trainer(tc, tmp_path, max_steps=4, checkpoint_every=1, logger=False,
                            enable_progress_bar=False, enable_model_summary=False)
    assert (trainer.num_nodes, trainer.accumulate_grad_batches) == (1, 2)
    module = _tiny_module()
    trainer.fit(module)
    assert trainer.global_step == 4 and module.batches == 8  # steps count optimizer steps: 2 batches each
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(["last.ckpt", *kept])


def test_build_trainer_counts_validation_in_optimizer_steps(tmp_path):
    tc = TrainerConfig(accelerator="cpu", devices=1, accumulate_grad_batches=3, precision="auto")
    trainer = build_trainer(tc, tmp_path, max_steps=2, checkpoint_every=10, val_every_steps=5, logger=False)
    assert trainer.val_check_interval == 15
    assert trainer.precision == "32-true"  # auto without a GPU


def test_the_codec_keeps_its_newest_checkpoints_and_the_model(tmp_path):
    from latentspeech.train.codec import train_codec

    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    g = np.random.default_rng(0)
    utts = ["a-1", "a-2", "b-1", "b-2"]
    for u in utts:
        sf.write(d / "wav" / f"{u}.wav", (0.1 * g.standard_normal(8000)).astype(np.float32), 16000)
    (d / "wav.scp").write_text("".join(f"{u} wav/{u}.wav\n" for u in utts))
    (d / "utt2spk").write_text("".join(f"{u} {u[0]}\n" for u in utts))
    (d / "spk2utt").write_text("a a-1 a-2\nb b-1 b-2\n")
    (d / "text").write_text("".join(f"{u} hi\n" for u in utts))
    cfg = from_dict(CodecTrainConfig, {
        "model": {"sample_rate": 16000, "n_fft": 64, "frame_hop": 16, "downsample": [2, 2], "latent_dim": 4,
                  "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1, 1]}},
        "loss": {"mel_resolutions": [[256, 64, 40]], "stft_resolutions": [[128, 32]]},
        "data": {"batch_size": 2, "crop_seconds": 0.25},
        "trainer": {"max_steps": 4, "checkpoint_every": 1, "keep_checkpoints": 2, "stats_batches": 1,
                    "log_every": 1, "accelerator": "cpu", "devices": 1},
    })
    n = torch.get_num_threads()
    try:
        model = train_codec(cfg, [d], tmp_path / "exp", progress=False)
    finally:
        torch.set_num_threads(n)
    assert sorted(p.name for p in (tmp_path / "exp" / "checkpoints").iterdir()) == \
        ["last.ckpt", "step3.ckpt", "step4.ckpt"]
    assert (model / "model.safetensors").is_file()


# --- the SLURM runner --------------------------------------------------------------------------

FAKE_SBATCH = """#!/usr/bin/env bash
# fake sbatch: records its arguments, then runs the array tasks one after another
array=""; script=""; out=""
for a in "$@"; do case "$a" in --array=*) array=${a#--array=};; --output=*) out=${a#--output=};; --*) ;; *) script=$a;; esac; done
echo "$*" >> "$FAKE_SBATCH_LOG"
array=${array%%\\%*}; rc=0
for ((i=${array%-*}; i<=${array#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i SLURM_JOB_NAME=fake bash "$script" > "${out//%a/$i}" 2>&1 || rc=1; done
echo 4242
exit $rc
"""

# fake srun: records its arguments; with FAKE_SRUN_RUN=1 runs the command once per task (nodes x tasks
# per node) with the rank variables SLURM sets, else runs nothing
FAKE_SRUN = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_SRUN_LOG"
nodes=1; per=1; ntasks=""
while [[ "$1" == --* ]]; do
  case "$1" in --nodes=*) nodes=${1#--nodes=};; --ntasks-per-node=*) per=${1#--ntasks-per-node=};; --ntasks=*) ntasks=${1#--ntasks=};; esac
  shift
done
[ -n "$ntasks" ] && per=$ntasks
[ "${FAKE_SRUN_RUN:-0}" = 1 ] || exit 0
rc=0
for ((n = 0; n < nodes; n++)); do for ((l = 0; l < per; l++)); do
  SLURM_PROCID=$((n * per + l)) SLURM_LOCALID=$l SLURM_NODEID=$n SLURM_NTASKS=$((nodes * per)) "$@" || rc=1
done; done
exit $rc
"""


def _fake_slurm(tmp_path: Path, allocation: bool = False) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}:{Path(sys.executable).parent}:{UTILS}:{env.get('PATH', '')}"
    env.update(TMPDIR=str(tmp_path), FAKE_SBATCH_LOG=str(tmp_path / "sbatch.args"),
               FAKE_SRUN_LOG=str(tmp_path / "srun.args"), FAKE_SRUN_RUN="1")
    env.pop("SLURM_JOB_ID", None)
    if allocation:
        env["SLURM_JOB_ID"] = "77"
    return env


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


RANK = "echo rank $SLURM_PROCID of $SLURM_NTASKS"


@pytest.mark.parametrize("flags, shape, ranks", [
    (["--devices", "1"], "--cpus-per-task=8 --gres=gpu:1 --mem=256G", None),
    ([], "--nodes=1 --ntasks-per-node=8 --cpus-per-task=8 --gres=gpu:8 --mem=256G", 8),
    (["--num-nodes", "2"], "--nodes=2 --ntasks-per-node=8 --cpus-per-task=8 --gres=gpu:8 --mem=256G", 16),
])
def test_slurm_job_asks_for_what_the_trainer_uses(tmp_path, capsys, flags, shape, ranks):
    """The LibriLight LatentLM config (devices: 8), as recipes/tts.sh launches it: its --print-resources
    line goes to slurm.sh, which asks sbatch for that shape and starts one task per device with srun."""
    res = _resources(capsys, [*LM, "--print-resources", *flags])
    env = _fake_slurm(tmp_path)
    cmd = [str(UTILS / "slurm.sh"), "--num-threads", "8", "--mem", "256G", "--time", "72:00:00", *shlex.split(res),
           "exp/lm/log/train.log", "bash", "-c", RANK]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (sbatch,) = _lines(tmp_path / "sbatch.args")
    assert sbatch.startswith("--wait --parsable --job-name=train --array=1-1 ")
    assert f" --output=exp/lm/log/q/train.%a.out {shape} --time=72:00:00 " in sbatch, sbatch
    log = (tmp_path / "exp/lm/log/train.log").read_text()
    srun = _lines(tmp_path / "srun.args")
    if ranks is None:  # one process: no srun, the command runs as the batch script's own task
        assert srun == [] and "--ntasks-per-node" not in sbatch
        assert "\nrank of\n" in log  # no rank variables: not started by srun
    else:
        (line,) = srun
        assert line.startswith(f"--nodes={ranks // 8} --ntasks-per-node=8 --cpus-per-task=8 --kill-on-bad-exit=1 "
                               "bash -c ")
        assert sorted(re.findall(r"rank (\d+) of (\d+)", log)) == sorted((str(r), str(ranks)) for r in range(ranks))
    assert "# Ended (code 0)" in log


def test_inside_an_allocation_a_multi_task_job_is_one_named_step(tmp_path):
    env = _fake_slurm(tmp_path, allocation=True)
    cmd = [str(UTILS / "slurm.sh"), "--num-threads", "4", "--mem", "64G", "--gpu", "2", "--ntasks-per-node", "2",
           "--nodes", "2", "exp/x/log/train.log", "bash", "-c", RANK]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (srun,) = _lines(tmp_path / "srun.args")
    # named after the job: Lightning ignores SLURM for the step names "bash" and "interactive"
    assert srun.startswith("--job-name=train --nodes=2 --ntasks-per-node=2 --cpus-per-task=4 --gres=gpu:2 --mem=64G "
                           "--kill-on-bad-exit=1 bash -c ")
    assert not (tmp_path / "sbatch.args").exists()
    log = (tmp_path / "exp/x/log/train.log").read_text()
    assert sorted(re.findall(r"rank (\d+) of 4", log)) == ["0", "1", "2", "3"]


def test_runner_options_are_checked(tmp_path):
    env = _fake_slurm(tmp_path)
    p = subprocess.run([str(UTILS / "slurm.sh"), "--ntasks-per-node", "x", "log/a.log", "true"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "take numbers, got 'x'" in p.stderr
    # the local runner takes the same options (and ignores them)
    p = subprocess.run([str(UTILS / "run.sh"), "--gpu", "8", "--ntasks-per-node", "8", "--nodes", "2", "log/b.log",
                        "echo", "ok"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "ok" in (tmp_path / "log/b.log").read_text()


@pytest.mark.parametrize("train_args, shape", [
    ("", "--nodes=1 --ntasks-per-node=8 --cpus-per-task=8 --gres=gpu:8 --mem=256G"),
    ("--devices 1", "--cpus-per-task=8 --gres=gpu:1 --mem=256G"),
    ("--devices 4 --num-nodes 2", "--nodes=2 --ntasks-per-node=4 --cpus-per-task=8 --gres=gpu:4 --mem=256G"),
])
def test_recipe_training_stage_submits_the_config_shape(tmp_path, train_args, shape):
    """Stage 3 of the LibriLight recipe with cmd.sh's slurm backend and --ngpu 8 (run.sh's): the codec
    config's devices: auto takes 8 GPUs per node unless the training arguments say otherwise."""
    env = _fake_slurm(tmp_path)
    env.update(cmd_backend="slurm", FAKE_SRUN_RUN="0")
    dirs = ["--datadir", str(tmp_path / "data"), "--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp")]
    p = subprocess.run([str(REPO / "recipes/tts.sh"), "--stage", "3", "--stop-stage", "3", "--ngpu", "8",
                        "--codec-train-args", train_args, *dirs], cwd=LIBRILIGHT, env=env, capture_output=True,
                       text=True, timeout=120)
    # the fake cluster trains nothing, so the stage stops at the missing model (or the missing data)
    assert p.returncode == 1
    assert "training codec failed" in p.stderr or "no model in" in p.stderr, p.stderr
    (sbatch,) = _lines(tmp_path / "sbatch.args")
    assert f" {shape} --time=72:00:00 " in sbatch, sbatch
    srun = _lines(tmp_path / "srun.args")
    if "--nodes=" in shape:
        (line,) = srun
        nodes, tasks = re.search(r"--nodes=(\d+) --ntasks-per-node=(\d+)", shape).groups()
        assert line.startswith(f"--nodes={nodes} --ntasks-per-node={tasks} --cpus-per-task=8 --kill-on-bad-exit=1 ")
        assert "latentspeech codec train" in line
    else:
        assert srun == []
