"""Latent extraction split over jobs (latentspeech.inference.extract): shard ranges, merge, resume, workers, dtype."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from latentspeech.cli import main
from latentspeech.config import from_dict
from latentspeech.data.latents import INDEX, LatentStore
from latentspeech.errors import ConfigError, DataDirError
from latentspeech.inference.extract import extract_latents, job_range, job_store_dir, merge_job_stores
from latentspeech.models.codec import AudioCodec, CodecConfig, save_codec

SR = 16000
N_UTTS = 11


def tiny_codec(kind: str = "sigma") -> AudioCodec:
    torch.manual_seed(0)
    cfg = from_dict(CodecConfig, {
        "sample_rate": SR, "n_fft": 64, "frame_hop": 16, "downsample": [2, 2], "latent_dim": 8,
        "encoder": {"dim": 16, "blocks": [1, 1, 1]}, "decoder": {"dim": 16, "blocks": [1, 1, 1]},
        "bottleneck": {"kind": kind, "num_quantizers": 3, "codebook_size": 16},
    })
    return AudioCodec(cfg).eval()


@pytest.fixture
def data_dir(tmp_path):
    """11 utterances of 2 speakers, 0.1-0.4 s; several share a frame count (hop 64), one utt2dur entry is wrong."""
    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    rng = np.random.RandomState(0)
    scp, spk, dur = [], [], []
    for i in range(N_UTTS):
        utt = f"s{i % 2}-u{i:02d}"
        n = [1600, 1600, 1650, 3200, 3200, 3200, 4800, 6400, 2000, 1600, 3230][i]
        sf.write(d / "wav" / f"{utt}.wav", (0.3 * rng.randn(n)).astype(np.float32), SR)
        scp.append(f"{utt} wav/{utt}.wav")
        spk.append(f"{utt} s{i % 2}")
        dur.append(f"{utt} {n / SR + (0.05 if i == 8 else 0.0):.4f}")  # s0-u08: utt2dur disagrees with its audio
    for name, lines in [("wav.scp", scp), ("utt2spk", spk), ("utt2dur", dur)]:
        (d / name).write_text("\n".join(sorted(lines)) + "\n")
    return d


def single(codec, data_dir, utt):
    wav, _ = sf.read(data_dir / "wav" / f"{utt}.wav", dtype="float32")
    with torch.inference_mode():
        return codec.encode(torch.from_numpy(wav)[None])[0].T.numpy()


def arrays(path):
    store = LatentStore(path)
    return {u: store[u] for u in store.utt_ids}


def test_job_ranges_cover_every_utterance_once():
    for n in (0, 1, 5, 11, 100):
        for nj in (1, 2, 3, 7):
            spans = [job_range(n, nj, j) for j in range(1, nj + 1)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(b - a for a, b in spans) - min(b - a for a, b in spans) <= 1
    with pytest.raises(ConfigError, match="job must be in 1..2"):
        job_range(5, 2, 3)


def test_two_jobs_give_the_latents_of_one(data_dir, tmp_path):
    codec = tiny_codec()
    one = arrays(extract_latents(codec, data_dir, tmp_path / "one", batch_seconds=1, shard_size=3, progress=False))
    assert len(one) == N_UTTS
    for u, z in one.items():
        np.testing.assert_allclose(z, single(codec, data_dir, u), atol=1e-5)
    out = tmp_path / "two"
    stores = [extract_latents(codec, data_dir, out, shard_size=2, nj=2, job=j, progress=False) for j in (2, 1)]
    assert stores == [job_store_dir(out, 2, 2), job_store_dir(out, 2, 1)]
    ids = sorted(one)
    assert sorted(LatentStore(stores[1]).utt_ids) == ids[:5] and sorted(LatentStore(stores[0]).utt_ids) == ids[5:]
    assert not (out / INDEX).exists()
    assert merge_job_stores(out, data_dir) == N_UTTS
    two = arrays(out)
    assert sorted(two) == ids
    for u in ids:
        np.testing.assert_allclose(two[u], one[u], atol=1e-5)
    shards = [line.split("\t")[1] for line in (out / INDEX).read_text().splitlines()]
    assert len(shards) == N_UTTS and all(s.startswith("split2/") for s in shards)
    assert LatentStore(out).meta["latent_dim"] == 8
    assert merge_job_stores(out, data_dir) == N_UTTS  # idempotent
    # in-process: nj=3 without a job runs the three ranges in turn and merges
    three = arrays(extract_latents(codec, data_dir, tmp_path / "three", nj=3, num_workers=2, progress=False))
    for u in ids:
        np.testing.assert_allclose(three[u], one[u], atol=1e-5)


def test_merge_refuses_an_unfinished_job(data_dir, tmp_path):
    codec = tiny_codec()
    extract_latents(codec, data_dir, tmp_path / "x", nj=2, job=1, progress=False)
    with pytest.raises(DataDirError, match=r"6 utterance\(s\) of .* are in no job store"):
        merge_job_stores(tmp_path / "x", data_dir)
    assert not (tmp_path / "x" / INDEX).exists()


class Killed(Exception):
    pass


class DiesAfter(torch.nn.Module):
    """The codec, killed on its n-th encode call (as a job killed mid-run)."""

    def __init__(self, codec, n):
        super().__init__()
        self.codec, self.left, self.encoded = codec, n, 0
        self.sample_rate, self.hop_length, self.frame_rate = codec.sample_rate, codec.hop_length, codec.frame_rate
        self.latent_dim, self.latent_mean, self.latent_std = codec.latent_dim, codec.latent_mean, codec.latent_std

    def encode(self, x):
        self.left -= 1
        if self.left < 0:
            raise Killed
        self.encoded += x.shape[0]
        return self.codec.encode(x)


def test_resume_after_a_kill_repairs_the_half_written_shard(data_dir, tmp_path):
    codec = tiny_codec()
    ref = arrays(extract_latents(codec, data_dir, tmp_path / "ref", progress=False))
    out = tmp_path / "store"
    job_dir = job_store_dir(out, 2, 2)
    with pytest.raises(Killed):
        extract_latents(DiesAfter(codec, 3), data_dir, out, nj=2, job=2, shard_size=2, max_batch=1, progress=False)
    done = LatentStore(job_dir).utt_ids
    assert len(done) == 2  # one shard of 2 written and indexed; the third utterance was pending
    # what a kill during a shard write leaves: a temp file, a renamed but unindexed shard, a cut index line
    (job_dir / ".shard-00001.safetensors.tmp").write_bytes(b"partial")
    (job_dir / "shard-00001.safetensors").write_bytes(b"not indexed")
    with open(job_dir / INDEX, "a", encoding="utf-8") as f:
        f.write("s1-u99\tshard-00001.safet")
    with pytest.raises(DataDirError, match="in no job store"):
        merge_job_stores(out, data_dir)  # the cut line is ignored, job 1 has not run
    again = DiesAfter(codec, 100)
    extract_latents(again, data_dir, out, nj=2, job=2, shard_size=2, progress=False)
    assert again.encoded == 6 - 2  # only the utterances not already stored
    assert not (job_dir / ".shard-00001.safetensors.tmp").exists()
    assert "s1-u99" not in (job_dir / INDEX).read_text()
    extract_latents(codec, data_dir, out, nj=2, job=1, progress=False)
    assert merge_job_stores(out, data_dir) == N_UTTS
    got = arrays(out)
    assert sorted(got) == sorted(ref)
    for u in ref:
        np.testing.assert_allclose(got[u], ref[u], atol=1e-5)
    # a re-run of a finished job encodes nothing
    idle = DiesAfter(codec, 100)
    extract_latents(idle, data_dir, out, nj=2, job=2, progress=False)
    assert idle.encoded == 0


def test_codes_over_jobs_and_bfloat16(data_dir, tmp_path):
    rvq = tiny_codec("rvq")
    one = arrays(extract_latents(rvq, data_dir, tmp_path / "one", codes=True, progress=False))
    two = arrays(extract_latents(rvq, data_dir, tmp_path / "two", codes=True, nj=2, progress=False))
    assert sorted(one) == sorted(two)
    for u in one:
        assert one[u].dtype == np.int16 and one[u].shape[1] == 3
        np.testing.assert_array_equal(two[u], one[u])
    codec = tiny_codec()
    ref = arrays(extract_latents(codec, data_dir, tmp_path / "f32", progress=False))
    half = arrays(extract_latents(codec, data_dir, tmp_path / "bf16", dtype="bfloat16", progress=False))
    for u in ref:
        assert half[u].dtype == np.float32 and half[u].shape == ref[u].shape
        assert not np.array_equal(half[u], ref[u])  # the encoder did run in bfloat16
        assert np.abs(half[u] - ref[u]).max() <= 0.05 * np.abs(ref[u]).max() + 1e-3
    with pytest.raises(ConfigError, match="float16 needs a CUDA device"):
        extract_latents(codec, data_dir, tmp_path / "f16", dtype="float16", progress=False)


def test_cli_jobs_then_merge(data_dir, tmp_path, capsys):
    codec = tiny_codec()
    model = save_codec(codec, tmp_path / "codec")
    out = tmp_path / "dump"
    for j in (1, 2):
        assert main(["codec", "extract", "--model", str(model), "--nj", "2", "--job", str(j), "--num-workers", "1",
                     "--no-progress", "--device", "cpu", str(data_dir), str(out)]) == 0
    assert main(["codec", "extract", "--nj", "2", "--merge", str(data_dir), str(out)]) == 0
    assert f"{out}: {N_UTTS} utterances (merged)" in capsys.readouterr().out
    got = arrays(out)
    for u in got:
        assert got[u].shape == (math.ceil(len(sf.read(data_dir / "wav" / f"{u}.wav")[0]) / 64), 8)
        np.testing.assert_allclose(got[u], single(codec, data_dir, u), atol=1e-4)  # saved codec: fp32 round trip
    assert main(["codec", "extract", "--model", str(model), "--nj", "2", "--job", "3", str(data_dir), str(out)]) == 1
    assert "job must be in 1..2" in capsys.readouterr().err


@pytest.mark.slow  # eight short processes: ~25 s on a loaded 2-core machine
def test_recipe_stage_4_runs_the_jobs_through_its_runner_then_merges(data_dir, tmp_path):
    """recipes/tts.sh stage 4: `$cuda_cmd JOB=1:N` extraction jobs (one log each), then the merge."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    codec = tiny_codec()
    model = save_codec(codec, tmp_path / "codec")
    for s in ("train", "dev"):
        shutil.copytree(data_dir, tmp_path / "dump" / "raw" / s)
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}:{repo / 'recipes/utils'}:{os.environ.get('PATH', '')}")
    env.pop("SLURM_JOB_ID", None)
    cmd = [str(repo / "recipes/tts.sh"), "--stage", "4", "--stop-stage", "4", "--dumpdir", str(tmp_path / "dump"),
           "--expdir", str(tmp_path / "exp"), "--train-set", "train", "--valid-set", "dev", "--test-sets", "",
           "--pretrained-codec", str(model), "--extract-nj", "3", "--extract-num-workers", "0"]
    res = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    logs = tmp_path / "exp/extract_latents/log"
    assert sorted(p.name for p in logs.glob("train.*.log")) == ["train.1.log", "train.2.log", "train.3.log", "train.merge.log"]
    assert "--nj 3 --job 2" in (logs / "train.2.log").read_text().splitlines()[0]
    for s in ("train", "dev"):
        got = arrays(tmp_path / "dump/latents" / s)
        assert sorted(got) == sorted(LatentStore(job_store_dir(tmp_path / "dump/latents" / s, 3, 1)).utt_ids
                                     + LatentStore(job_store_dir(tmp_path / "dump/latents" / s, 3, 2)).utt_ids
                                     + LatentStore(job_store_dir(tmp_path / "dump/latents" / s, 3, 3)).utt_ids)
        assert len(got) == N_UTTS
        for u in ("s0-u00", "s1-u07"):
            np.testing.assert_allclose(got[u], single(codec, data_dir, u), atol=1e-4)
    res = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.count("done before") == 2, res.stdout + res.stderr
