"""Batched latent extraction: every utterance of a Kaldi data dir → a :mod:`latent store <latentspeech.data.latents>`.

    extract_latents(codec, "data/train", "dump/train", batch_seconds=120)
    # split over 4 jobs (processes, devices or cluster tasks), then merge the job indices:
    extract_latents(codec, "data/train", "dump/train", nj=4, job=2, num_workers=4, dtype="bfloat16")
    merge_job_stores("dump/train", "data/train")

Utterances are sorted by duration and batched only with others of the same frame count
``F = ceil(T / hop_length)`` (at most ``max_batch`` and ``batch_seconds`` of audio per batch), so
every utterance is padded to exactly ``F · hop_length`` samples, as :meth:`AudioCodec.encode`
pads it alone: batched latents equal one-at-a-time latents. Batches are planned from
``utt2dur``; their audio is decoded in DataLoader workers (``num_workers``), and an utterance
whose decoded length disagrees with ``utt2dur`` is encoded in a group of its true frame count.

Jobs: job ``J`` of ``nj`` takes the ``J``-th of ``nj`` contiguous ranges of the data dir's
utterance ids in C order and writes its own store ``OUT_DIR/split<nj>/<J>/`` (its shards and
index). :func:`merge_job_stores` then lists every job's shards in ``OUT_DIR/index.tsv``, so
``LatentStore(OUT_DIR)`` reads all of them. Every run is resumable: utterances already in the
job's store or in the merged index are skipped, and a shard left half-written by a killed job
(an unindexed shard file, a temp file, a cut index line) is removed by
:class:`~latentspeech.data.latents.LatentWriter` when the job starts again. With ``nj=1`` and no
``job`` the store is written directly into ``OUT_DIR``.

RVQ codecs can store their codes instead (``codes=True``, int16 ``(F, Q)``). ``dtype`` runs the
encoder under autocast in float16 or bfloat16 (for GPUs; the STFT stays float32); the stored
latents are float32 either way.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..data.latents import INDEX, META, LatentWriter
from ..errors import ConfigError, DataDirError, LatentSpeechError

__all__ = ["extract_latents", "merge_job_stores", "job_range", "job_store_dir", "DTYPES"]

#: ``dtype`` names accepted by :func:`extract_latents`.
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def job_range(n: int, nj: int, job: int) -> tuple[int, int]:
    """``[start, stop)`` of job ``job`` (1-based) among ``nj`` contiguous, near-equal ranges of ``n`` items."""
    if nj < 1:
        raise ConfigError(f"the number of jobs must be >= 1, got {nj}")
    if not 1 <= job <= nj:
        raise ConfigError(f"job must be in 1..{nj}, got {job}")
    return n * (job - 1) // nj, n * job // nj


def job_store_dir(out_dir: str | os.PathLike, nj: int, job: int) -> Path:
    """The store that job ``job`` of ``nj`` writes: ``OUT_DIR/split<nj>/<job>``."""
    return Path(out_dir) / f"split{nj}" / str(job)


def _store_meta(codec, data_dir, codes: bool, codec_name: str | None) -> dict:
    return {
        "codec": codec_name,
        "data_dir": str(data_dir),
        "kind": "codes" if codes else "latents",
        "sample_rate": codec.sample_rate,
        "hop_length": codec.hop_length,
        "frame_rate": codec.frame_rate,
        "latent_dim": codec.latent_dim,
        "layout": "frames x dims (F, D)" if not codes else "frames x quantizers (F, Q)",
        "latent_mean": [float(v) for v in codec.latent_mean],
        "latent_std": [float(v) for v in codec.latent_std],
    }


def _read_index_lines(path: Path) -> list[tuple[str, str, str]]:
    """``(utt, shard, frames)`` of an index file; a last line cut by a killed writer is ignored."""
    if not path.is_file():
        return []
    out = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # no newline yet: a line still being (or never fully) written
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[2].isdigit():
            raise DataDirError(f"{path}:{n}: expected '<utt>\\t<shard>\\t<frames>', got {line!r}")
        out.append((parts[0], parts[1], parts[2]))
    return out


def _plan_batches(todo: list[str], durs: dict[str, float], sr: int, hop: int, max_batch: int,
                  batch_seconds: float) -> list[list[str]]:
    """Consecutive runs of ``todo`` (sorted by duration) with the same frame count by ``utt2dur``."""
    batches: list[list[str]] = []
    cur: list[str] = []
    cur_frames = -1
    for u in todo:
        frames = max(1, math.ceil(round(durs.get(u, 0.0) * sr) / hop))
        if cur and (frames != cur_frames or len(cur) >= max_batch or (len(cur) + 1) * frames * hop > batch_seconds * sr):
            batches.append(cur)
            cur = []
        cur.append(u)
        cur_frames = frames
    if cur:
        batches.append(cur)
    return batches


class _BatchAudio(torch.utils.data.Dataset):
    """Batch ``i`` → ``[(utt, wav)]``; a user error comes back as the exception object (raised by the caller)."""

    def __init__(self, data, batches: list[list[str]], sample_rate: int):
        self.data, self.batches, self.sample_rate = data, batches, sample_rate

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        try:
            return [(u, self.data.load_utterance(u, self.sample_rate)) for u in self.batches[i]]
        except LatentSpeechError as e:
            return e


def _identity(x):
    return x


def _autocast(device: torch.device, dtype: str):
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float32":
        return nullcontext()
    if dtype == "float16" and device.type == "cpu":
        raise ConfigError("dtype float16 needs a CUDA device (use bfloat16 or float32 on the CPU)")
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def extract_latents(codec, data_dir: str | os.PathLike, out_dir: str | os.PathLike, batch_seconds: float = 60.0,
                    max_batch: int = 32, shard_size: int = 1000, codes: bool = False, progress: bool = True,
                    codec_name: str | None = None, nj: int = 1, job: int | None = None, num_workers: int = 0,
                    dtype: str = "float32") -> Path:
    """Encode the utterances of ``data_dir`` (all, or job ``job`` of ``nj``) into shards; returns the store written.

    With ``job`` given the store is :func:`job_store_dir` (merge the jobs with :func:`merge_job_stores`);
    with ``nj > 1`` and no ``job`` every job runs here in turn and the result is merged; with ``nj=1``
    and no ``job`` the shards go straight into ``out_dir``."""
    from ..data.kaldi import DataDir

    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if max_batch < 1 or batch_seconds <= 0:
        raise ConfigError(f"need max_batch >= 1 and batch_seconds > 0, got {max_batch}, {batch_seconds}")
    job_range(1, nj, job or 1)  # validates nj and job
    device = next(codec.parameters()).device
    _autocast(device, dtype)  # validates dtype before any work
    data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
    name = str(data.path if data.path is not None else data_dir)
    jobs = range(1, nj + 1) if job is None and nj > 1 else [job]
    for j in jobs:
        store_dir = _extract_job(codec, data, name, out_dir, batch_seconds, max_batch, shard_size, codes, progress,
                                 codec_name, nj, j, num_workers, dtype)
    if job is None and nj > 1:
        merge_job_stores(out_dir, data)
        return Path(out_dir)
    return store_dir


def _extract_job(codec, data, name, out_dir, batch_seconds, max_batch, shard_size, codes, progress, codec_name,
                 nj, job, num_workers, dtype) -> Path:
    ids = data.utt_ids
    merged = {u for u, _, _ in _read_index_lines(Path(out_dir) / INDEX)}
    if job is None:
        store_dir, mine = Path(out_dir), ids
    else:
        store_dir = job_store_dir(out_dir, nj, job)
        lo, hi = job_range(len(ids), nj, job)
        mine = ids[lo:hi]
    writer = LatentWriter(store_dir, _store_meta(codec, name, codes, codec_name), shard_size)
    done = writer.done | merged
    durs = data.utt2dur
    todo = sorted((u for u in mine if u not in done), key=lambda u: (durs.get(u, 0.0), u))
    _encode_into(codec, data, todo, writer, durs, batch_seconds, max_batch, codes, progress, num_workers, dtype,
                 desc=f"extract {Path(name).name}" + (f" {job}/{nj}" if job is not None else ""))
    return store_dir


def _encode_into(codec, data, todo, writer, durs, batch_seconds, max_batch, codes, progress, num_workers, dtype,
                 desc: str) -> None:
    from tqdm import tqdm

    sr, hop = codec.sample_rate, codec.hop_length
    device = next(codec.parameters()).device
    batches = _plan_batches(todo, durs, sr, hop, max_batch, batch_seconds)
    loader = torch.utils.data.DataLoader(_BatchAudio(data, batches, sr), batch_size=None, shuffle=False,
                                         num_workers=num_workers, collate_fn=_identity,
                                         persistent_workers=False)
    bar = tqdm(total=len(todo), desc=desc, unit="utt", disable=not progress)
    try:
        with torch.inference_mode():
            for items in loader:
                if isinstance(items, Exception):
                    raise items
                # utt2dur rounding may disagree with the audio: encode each true frame count on its own
                groups: dict[int, list[tuple[str, np.ndarray]]] = {}
                for u, w in items:
                    groups.setdefault(max(1, math.ceil(len(w) / hop)), []).append((u, np.asarray(w)))
                for frames, group in groups.items():
                    x = torch.zeros(len(group), frames * hop)
                    for j, (_, w) in enumerate(group):
                        x[j, : len(w)] = torch.from_numpy(w)
                    x = x.to(device)
                    with _autocast(device, dtype):
                        if codes:
                            out = codec.encode_codes(x).cpu().numpy().astype(np.int16)  # [B, Q, F]
                        else:
                            out = codec.encode(x).float().cpu().numpy()  # [B, D, F]
                    for j, (u, _) in enumerate(group):
                        writer.add(u, out[j].T)
                bar.update(len(items))
        writer.close()
    finally:
        bar.close()


def merge_job_stores(out_dir: str | os.PathLike, data_dir=None) -> int:
    """List the shards of every job store under ``out_dir`` (``split*/*``) in ``out_dir/index.tsv``.

    Entries already in that index stay (first listing wins); job stores must hold latents of one
    codec. With ``data_dir`` (a path or a loaded DataDir), every one of its utterances must be in
    the merged index (otherwise DataDirError naming how many are missing: a job has not finished).
    The index is replaced atomically; running the merge again is harmless. Returns the number of
    utterances listed."""
    from ..config import load_yaml, save_yaml

    out = Path(out_dir)
    entries: dict[str, tuple[str, str]] = {}
    for u, shard, frames in _read_index_lines(out / INDEX):
        if (out / shard).is_file():
            entries.setdefault(u, (shard, frames))
    jobs = sorted((p.parent for p in out.glob("split*/*/" + INDEX)),
                  key=lambda p: (p.parent.name, int(p.name) if p.name.isdigit() else 0, p.name))
    meta = None
    for jd in jobs:
        m = load_yaml(jd / META) if (jd / META).is_file() else {}
        if meta is None:
            meta = m
        elif any(meta.get(k) != m.get(k) for k in ("latent_dim", "hop_length", "codec", "kind")):
            raise DataDirError(f"{jd} holds latents of another codec ({m.get('codec')}) than the other jobs of {out}")
        rel = jd.relative_to(out).as_posix()
        for u, shard, frames in _read_index_lines(jd / INDEX):
            if (jd / shard).is_file():
                entries.setdefault(u, (f"{rel}/{shard}", frames))
    if data_dir is not None:
        from ..data.kaldi import DataDir

        data = data_dir if hasattr(data_dir, "utt_ids") else DataDir.load(data_dir)
        missing = [u for u in data.utt_ids if u not in entries]
        if missing:
            raise DataDirError(f"{out}: {len(missing)} utterance(s) of {getattr(data, 'path', data_dir)} are in no job "
                               f"store (e.g. '{missing[0]}'): run the jobs that have not finished")
    out.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        old = load_yaml(out / META) if (out / META).is_file() else {}
        if old and entries and any(old.get(k) != meta.get(k) for k in ("latent_dim", "hop_length", "codec")):
            if any("/" not in s for s, _ in entries.values()):
                raise DataDirError(f"{out} holds latents of another codec ({old.get('codec')}) than its job stores")
        save_yaml(meta, out / META)
    tmp = out / f".{INDEX}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for u, (shard, frames) in entries.items():
            f.write(f"{u}\t{shard}\t{frames}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / INDEX)
    return len(entries)
