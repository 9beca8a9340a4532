"""Start-up time and resident memory of LatentLM training metadata at corpus scale.

Generates a fake index of N utterances in a temp dir, in the layouts stage 5 reads: a Kaldi data
dir (``phones`` of ~``--phones`` tokens per utterance, ``utt2spk``) and a latent store (``index.tsv``,
``meta.yaml``, ``durations`` and safetensors shards whose arrays are sparse, so they take no disk).
Then, each in a fresh interpreter:

* ``build``: the first read, which parses the text files and caches their arrays beside them
  (once per corpus; the other ranks wait on the lock and then map the cache);
* ``rank``: what one training rank does at start-up: ``LMSource.from_dirs`` (pointer mode, with
  durations), ``LMDataset``, ``BucketBatchSampler`` and its first epoch's batches, then a
  ``DataLoader`` with ``--workers`` forked workers that collate ``--batches`` batches.

Memory is read from ``/proc/<pid>/smaps_rollup``: USS (private pages), PSS (private + a share of
shared pages, as if ``--world`` ranks mapped the same cache) and the anonymous part of PSS, after
imports (the baseline) and after start-up; workers report theirs from inside the worker. Two sizes
give a per-utterance slope, extrapolated to ``--target`` utterances.

    python bench/metadata_scale.py                       # 250k and 1M utterances, extrapolated to 15M
    python bench/metadata_scale.py --sizes 20000 --workers 1 --batches 5   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAME_RATE = 15.0  # the paper's σ-VAE (LibriLight recipe)
LATENT_DIM = 32
SHARD = 1000  # utterances per shard, as `latentspeech codec extract` writes


def smaps() -> dict[str, int]:
    """This process's memory in kB: rss, pss, pss_anon, uss."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1])
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0), "pss_anon": fields.get("Pss_Anon", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def generate(root: Path, n: int, phones: int, speakers: int, seed: int = 0) -> tuple[Path, Path]:
    """A fake data dir + latent store of ``n`` utterances under ``root``."""
    from latentspeech.config import save_yaml
    from latentspeech.text import PhoneVocab

    rng = np.random.default_rng(seed)
    vocab = PhoneVocab()
    toks = [t.encode("utf-8") for t in vocab.tokens if not t.startswith("<")]
    data, dump = root / "data", root / "dump"
    data.mkdir(parents=True)
    dump.mkdir(parents=True)
    utts = [f"{s:05d}-{i:09d}".encode() for i, s in enumerate(np.sort(rng.integers(0, speakers, n)))]
    n_ph = np.clip(rng.normal(phones, phones / 3, n), 8, 4 * phones).astype(np.int64)
    frames = np.maximum(n_ph, np.round(n_ph * rng.uniform(1.0, 1.6, n))).astype(np.int64)
    ids = rng.integers(0, len(toks), int(n_ph.sum()))
    ends = np.cumsum(n_ph)
    with open(data / "phones", "wb") as fp, open(data / "utt2spk", "wb") as fs, open(dump / "durations", "wb") as fd:
        for k, u in enumerate(utts):
            row = ids[ends[k] - n_ph[k]: ends[k]]
            fp.write(u + b" " + b" ".join(toks[t] for t in row.tolist()) + b"\n")
            fs.write(u + b" " + u[:5] + b"\n")
            base, extra = divmod(int(frames[k]), int(n_ph[k]))
            d = np.full(n_ph[k], base)
            d[:extra] += 1
            fd.write(u + b" " + " ".join(map(str, d.tolist())).encode() + b"\n")
    with open(dump / "index.tsv", "wb") as fi:
        for a in range(0, n, SHARD):
            name = f"shard-{a // SHARD:05d}.safetensors"
            header, off = {}, 0
            for k in range(a, min(n, a + SHARD)):
                size = int(frames[k]) * LATENT_DIM * 4
                header[utts[k].decode()] = {"dtype": "F32", "shape": [int(frames[k]), LATENT_DIM],
                                            "data_offsets": [off, off + size]}
                off += size
                fi.write(utts[k] + b"\t" + name.encode() + b"\t" + str(int(frames[k])).encode() + b"\n")
            head = json.dumps(header).encode()
            head += b" " * (-len(head) % 8)
            with open(dump / name, "wb") as f:
                f.write(len(head).to_bytes(8, "little") + head)
                f.truncate(8 + len(head) + off)  # sparse: the arrays read as zeros and take no disk
    save_yaml({"latent_dim": LATENT_DIM, "frame_rate": FRAME_RATE, "codec": None, "kind": "latents",
               "latent_mean": [0.0] * LATENT_DIM, "latent_std": [1.0] * LATENT_DIM}, dump / "meta.yaml")
    return data, dump


def _startup(data: Path, dump: Path):
    """What a rank builds before training: sources, dataset, sampler and its first epoch."""
    from latentspeech.data.lm_dataset import BucketBatchSampler, LMDataset, LMSource
    from latentspeech.text import PhoneVocab

    vocab = PhoneVocab()
    src = LMSource.from_dirs(data, dump, vocab, durations=True)
    ds = LMDataset([src], FRAME_RATE, (3.0, 5.0), max_frames=round(30 * FRAME_RATE))
    sampler = BucketBatchSampler(ds.lengths, 20000, 64, seed=0, rank=0, world_size=8,
                                 extra_tokens=ds.n_phones + ds.prompt_frames[1] + 1)
    return vocab, ds, sampler, len(sampler)


def _worker_collate(examples, pad_id):
    from latentspeech.data.collate import collate_lm

    collate_lm(examples, pad_id)
    return {"pid": os.getpid(), "mem": smaps()}


def child(mode: str, data: Path, dump: Path, workers: int, batches: int) -> dict:
    import functools
    import importlib

    from torch.utils.data import DataLoader

    for name in ("lightning.pytorch", "latentspeech.data.lm_dataset"):  # the baseline: a training process's imports
        importlib.import_module(name)
    base = smaps()
    t0 = time.perf_counter()
    vocab, ds, sampler, n_batches = _startup(data, dump)
    out = {"seconds": time.perf_counter() - t0, "base": base, "after": smaps(), "items": len(ds),
           "batches_per_rank": n_batches}
    if mode == "rank" and workers:
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers,
                            collate_fn=functools.partial(_worker_collate, pad_id=vocab.pad_id),
                            multiprocessing_context="fork")
        seen = {}
        for k, b in enumerate(loader):
            seen[b["pid"]] = b["mem"]
            if k + 1 >= batches:
                break
        out["workers"] = list(seen.values())
        out["after_loader"] = smaps()
    return out


def run_child(mode: str, data: Path, dump: Path, workers: int, batches: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(data), str(dump), "--workers", str(workers),
           "--batches", str(batches)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="250000,1000000", help="utterance counts to measure (comma-separated)")
    p.add_argument("--target", type=int, default=15_000_000, help="utterances to extrapolate to")
    p.add_argument("--phones", type=int, default=180, help="mean phone tokens per utterance (~15 s segments)")
    p.add_argument("--speakers", type=int, default=7000)
    p.add_argument("--world", type=int, default=8, help="ranks per node sharing the page cache (for PSS)")
    p.add_argument("--workers", type=int, default=2, help="dataloader workers per rank")
    p.add_argument("--batches", type=int, default=20, help="batches the workers collate before they report")
    p.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "DUMP"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], Path(a.child[1]), Path(a.child[2]), a.workers, a.batches)))
        return 0
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="metadata_scale_") as tmp:
            t0 = time.perf_counter()
            data, dump = generate(Path(tmp), n, a.phones, a.speakers)
            gen = time.perf_counter() - t0
            build = run_child("build", data, dump, 0, 0)
            rank = run_child("rank", data, dump, a.workers, a.batches)
            cache = sum(f.stat().st_size for f in Path(tmp).rglob("*.npy"))
        d = {k: rank["after"][k] - rank["base"][k] for k in rank["base"]}
        w = max((m["uss"] for m in rank.get("workers", [])), default=0)
        wp = max((m["pss"] for m in rank.get("workers", [])), default=0)
        # PSS if --world ranks (and their workers) map the same cache: file pages shared world-ways
        row = {"utts": n, "gen_s": gen, "build_s": build["seconds"], "startup_s": rank["seconds"],
               "rank_uss_mb": d["uss"] / 1024, "rank_pss_anon_mb": d["pss_anon"] / 1024,
               "rank_rss_mb": d["rss"] / 1024, "cache_mb": cache / 2**20,
               "rank_pss_world_mb": (d["pss_anon"] + cache / 1024 / a.world) / 1024,
               "worker_uss_mb": w / 1024, "worker_pss_mb": wp / 1024, "base_rss_mb": rank["base"]["rss"] / 1024}
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    keys = ["build_s", "startup_s", "rank_uss_mb", "rank_pss_anon_mb", "rank_pss_world_mb", "rank_rss_mb",
            "cache_mb", "worker_uss_mb"]
    first, last = rows[0], rows[-1]
    print(f"\nextrapolated to {a.target:,} utterances (linear in the utterance count):")
    for k in keys:
        if len(rows) > 1 and last["utts"] != first["utts"]:
            slope = (last[k] - first[k]) / (last["utts"] - first["utts"])
            value = last[k] + slope * (a.target - last["utts"])
        else:
            value = last[k] * a.target / last["utts"]
        unit = "s" if k.endswith("_s") else "GB"
        print(f"  {k:18s} {value if unit == 's' else value / 1024:8.2f} {unit}"
              f"   (at {last['utts']:,}: {last[k]:.2f} {'s' if unit == 's' else 'MB'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
