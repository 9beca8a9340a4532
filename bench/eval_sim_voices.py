"""Speaker-similarity sanity check on ../shared/data/librispeech_voices: each clip is cut in two
halves; same-speaker SIM = cosine(first half, second half); different-speaker SIM = cosine of
first halves of different speakers. Prints a table (mean, std, top-1 and equal error rate).

    .venv/bin/python bench/eval_sim_voices.py [--sim resemblyzer] [--speakers N] [--max-seconds 16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def equal_error_rate(same: np.ndarray, diff: np.ndarray) -> float:
    """EER of the threshold test 'sim >= t means same speaker'."""
    best = 1.0
    for t in np.unique(np.concatenate([same, diff])):
        frr = float((same < t).mean())
        far = float((diff >= t).mean())
        best = min(best, max(frr, far))
    return best


def main() -> None:
    import torch

    from latentspeech.audio import load_audio
    from latentspeech.eval.similarity import get_speaker_encoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voices", default=str(REPO.parent / "shared/data/librispeech_voices"))
    ap.add_argument("--sim", default="resemblyzer")
    ap.add_argument("--speakers", type=int, default=None, help="first N clips (default: all)")
    ap.add_argument("--max-seconds", type=float, default=16.0, help="use at most this much of each clip")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    voices = Path(args.voices)
    scp = [ln.split() for ln in (voices / "wav.scp").read_text().splitlines() if ln.strip()]
    scp = scp[: args.speakers] if args.speakers else scp
    enc = get_speaker_encoder(args.sim)
    t0 = time.time()
    firsts, seconds, half_dur = [], [], []
    for _, rel in scp:
        wav = load_audio(voices / rel, 16000)[: int(args.max_seconds * 16000)]
        h = len(wav) // 2
        e = enc.embed([wav[:h], wav[h:]])
        firsts.append(e[0])
        seconds.append(e[1])
        half_dur.append(h / 16000)
    a, b = np.stack(firsts), np.stack(seconds)
    cross = a @ b.T
    same = np.diag(cross)
    diff = (a @ a.T)[np.triu_indices(len(a), k=1)]
    top1 = float((cross.argmax(axis=1) == np.arange(len(a))).mean())
    print(f"encoder {enc.name}; {len(a)} speakers; halves {np.mean(half_dur):.1f} s on average; {time.time() - t0:.0f} s")
    print("pairs            n       mean    std    min    max")
    print(f"same speaker  {len(same):5d}  {same.mean():.3f}  {same.std():.3f}  {same.min():.3f}  {same.max():.3f}")
    print(f"diff speaker  {len(diff):5d}  {diff.mean():.3f}  {diff.std():.3f}  {diff.min():.3f}  {diff.max():.3f}")
    print(f"top-1 (own second half nearest of {len(a)}): {top1:.3f}; EER: {equal_error_rate(same, diff):.3f}")


if __name__ == "__main__":
    main()
