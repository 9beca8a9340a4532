"""Batched latent extraction: every utterance of a Kaldi data dir → a :mod:`latent store <latentspeech.data.latents>`.

    extract_latents(codec, "data/train", "dump/train", batch_seconds=120)

Utterances are sorted by duration and batched only with others of the same frame count
``F = ceil(T / hop_length)`` (at most ``max_batch`` and ``batch_seconds`` of audio per batch), so
every utterance is padded to exactly ``F · hop_length`` samples, as :meth:`AudioCodec.encode`
pads it alone: batched latents equal one-at-a-time latents. Already stored utterances are
skipped (resumable).
RVQ codecs can store their codes instead (``codes=True``, int16 ``(F, Q)``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ..data.latents import LatentWriter

__all__ = ["extract_latents"]


def extract_latents(codec, data_dir: str | os.PathLike, out_dir: str | os.PathLike, batch_seconds: float = 60.0,
                    max_batch: int = 32, shard_size: int = 1000, codes: bool = False, progress: bool = True,
                    codec_name: str | None = None) -> Path:
    """Encode every utterance of ``data_dir`` into shards under ``out_dir``; returns ``out_dir``."""
    from tqdm import tqdm

    from ..data.kaldi import DataDir

    data = DataDir.load(data_dir)
    durs = data.utt2dur
    meta = {
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
    writer = LatentWriter(out_dir, meta, shard_size)
    todo = [u for u in sorted(data.utt_ids, key=lambda u: durs.get(u, 0.0)) if u not in writer.done]
    sr, hop = codec.sample_rate, codec.hop_length
    bar = tqdm(total=len(todo), desc=f"extract {Path(data_dir).name}", unit="utt", disable=not progress)
    i = 0
    with torch.inference_mode():
        while i < len(todo):
            wavs = [data.load_utterance(todo[i], sr)]
            frames = max(1, math.ceil(len(wavs[0]) / hop))
            # Peek ahead: same frame count (known from utt2dur, confirmed on the audio), size limits.
            while (i + len(wavs) < len(todo) and len(wavs) < max_batch
                   and (len(wavs) + 1) * frames * hop <= batch_seconds * sr
                   and max(1, math.ceil(round(durs.get(todo[i + len(wavs)], 0.0) * sr) / hop)) == frames):
                w = data.load_utterance(todo[i + len(wavs)], sr)
                if max(1, math.ceil(len(w) / hop)) != frames:
                    break  # utt2dur rounding disagreed with the audio: the next batch takes it
                wavs.append(w)
            batch = todo[i:i + len(wavs)]
            x = torch.zeros(len(wavs), frames * hop)
            for j, w in enumerate(wavs):
                x[j, : len(w)] = torch.from_numpy(w)
            if codes:
                out = codec.encode_codes(x).cpu().numpy().astype(np.int16)  # [B, Q, F]
            else:
                out = codec.encode(x).cpu().numpy().astype(np.float32)  # [B, D, F]
            for j, u in enumerate(batch):
                writer.add(u, out[j].T)
            i += len(batch)
            bar.update(len(batch))
    writer.close()
    bar.close()
    return Path(out_dir)
