#!/usr/bin/env python3
"""Synthesize every line of a decode list with one model (one job of recipe stage 7).

    decode_list.py [--model M] [--device D] [--seed N] [--steps N] [--cfg F] [--temperature T] [--candidates N] [--threads N] [--engine api|cli] LIST WAV_DIR

LIST has tab-separated lines ``utt_id prompt text [ref_wav]`` (a header line starting with
``utt_id`` is skipped); each becomes ``WAV_DIR/<utt_id>.wav``. Outputs that exist are skipped,
so a killed job resumes. ``--engine api`` (default) loads the model once with
:class:`latentspeech.api.TTS` and reuses it for every line; ``--engine cli`` runs
``latentspeech synthesize`` once per line (slower: one model load each). ``--threads`` (default 1, as
``latentspeech synthesize``): torch threads per job; stage 7 runs ``--nj`` jobs side by side, and two
jobs of 2 threads each on this 2-core machine synthesized 50-100x slower than two of 1 thread.
``--device`` (default ``auto``: ``cuda`` when a GPU is visible, else ``cpu``) is the torch device of the
model; ``--job J`` with ``auto`` and several visible GPUs takes GPU ``(J - 1) mod count``, so that
``--nj`` local jobs spread over the GPUs of a node.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def read_list(path: str | Path) -> list[tuple[str, str, str]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if not line.strip() or fields[0] == "utt_id":
            continue
        if len(fields) < 3:
            raise SystemExit(f"error: {path}: expected 'utt_id<TAB>prompt<TAB>text', got '{line}'")
        rows.append((fields[0], fields[1], fields[2]))
    return rows


def pick_device(device: str, job: int | None = None) -> str:
    """``auto``: GPU ``(job - 1) mod count`` when CUDA is available, else ``cpu``; other names pass through."""
    if device != "auto":
        return device
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return "cpu" if n == 0 else f"cuda:{((job or 1) - 1) % n}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("list")
    ap.add_argument("wav_dir")
    ap.add_argument("--model", default=None, help="model name or dir (default: the bundled LatentLM)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--candidates", type=int, default=None, help="LatentLM: candidates per sentence (default: the model's)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per job (default 1; 0 = torch's default)")
    ap.add_argument("--engine", choices=("api", "cli"), default="api")
    ap.add_argument("--device", default="auto", help="torch device (default auto: cuda when available, else cpu)")
    ap.add_argument("--job", type=int, default=None, help="this job's number (with --device auto: picks the GPU)")
    args = ap.parse_args(argv)
    if args.threads < 0:
        ap.error(f"--threads must be >= 0, got {args.threads}")
    rows = read_list(args.list)
    out_dir = Path(args.wav_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [r for r in rows if not (out_dir / f"{r[0]}.wav").is_file()]
    print(f"decode_list: {len(todo)} to synthesize, {len(rows) - len(todo)} already done", flush=True)
    if not todo:
        return 0
    start = time.time()
    device = pick_device(args.device, args.job)
    print(f"decode_list: device {device}", flush=True)
    if args.engine == "api":
        from latentspeech.api import TTS
        from latentspeech.cli.synthesize import set_threads
        from latentspeech.errors import LatentSpeechError

        set_threads(args.threads)
        try:
            tts = TTS.from_pretrained(args.model, device=device)
        except LatentSpeechError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for utt, prompt, text in todo:
            t0 = time.time()
            try:
                tts.speak_to_file(out_dir / f"{utt}.wav", text, prompt, steps=args.steps, cfg=args.cfg, seed=args.seed,
                                  temperature=args.temperature, candidates=args.candidates)
            except LatentSpeechError as e:
                print(f"error: {utt}: {e}", file=sys.stderr)
                return 1
            print(f"{utt}\t{time.time() - t0:.1f}s", flush=True)
    else:
        for utt, prompt, text in todo:
            cmd = ["latentspeech", "synthesize", f"--text={text}", "--prompt", prompt, "-o", str(out_dir / f"{utt}.wav"),
                   "--seed", str(args.seed), "--threads", str(args.threads), "--device", device]
            cmd += ["--model", args.model] if args.model else []
            cmd += ["--steps", str(args.steps)] if args.steps is not None else []
            cmd += ["--cfg", str(args.cfg)] if args.cfg is not None else []
            cmd += ["--temperature", str(args.temperature)] if args.temperature is not None else []
            cmd += ["--candidates", str(args.candidates)] if args.candidates is not None else []
            if subprocess.run(cmd).returncode != 0:
                print(f"error: synthesizing {utt} failed", file=sys.stderr)
                return 1
            print(utt, flush=True)
    print(f"decode_list: {len(todo)} utterances in {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
