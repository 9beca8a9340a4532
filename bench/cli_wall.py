#!/usr/bin/env python
"""Wall clock of whole ``latentspeech synthesize`` calls, model against model, alternating.

    nice -n 10 .venv/bin/python bench/cli_wall.py --rounds 5 --models latentlm-demo valle-demo \\
        --json exp/bench_cli_wall.json

Each round runs one cold CLI call per model (a fresh process: interpreter start, imports, model
load, synthesis, writing the wav, exit), the models in turn so that a change of machine load hits
them alike. Per model the table gives the best and the median wall clock of the rounds, and the
medians of the call's own split as it prints it: ``load`` (``TTS.from_pretrained``: the model
modules' imports, weights, codec, recognizer), ``synthesis`` (``speak_to_file``: phonemes, prompt,
generation, recognizer, codec, writing) and ``rest``, the wall clock less those two (interpreter
start, torch's import, argument parsing, the interpreter's exit).

The figures are this machine's at this moment: on a shared machine, compare models within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LATENTSPEECH_SHARED", REPO.parent / "shared"))
DEFAULT_PROMPT = SHARED / "data" / "librispeech_voices" / "flac" / "103-1240-0000.flac"
DEFAULT_TEXT = "After the concert, the musicians walked quietly back to their hotel, talking about the evening."
SPLIT = re.compile(r"load ([0-9.]+) s, synthesis ([0-9.]+) s")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["latentlm-demo", "valle-demo"], help="bundled names or model dirs")
    p.add_argument("--rounds", type=int, default=5, help="calls per model (default 5)")
    p.add_argument("--text", default=DEFAULT_TEXT, help="the text (default: one sentence)")
    p.add_argument("--prompt", default=str(DEFAULT_PROMPT), help="speaker prompt audio")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--out-dir", default="/tmp/latentspeech_cli_wall", help="where the wavs go")
    p.add_argument("--json", default=None, help="write the figures as JSON")
    return p.parse_args(argv)


def cli() -> list[str]:
    """The ``latentspeech`` script beside this interpreter, else ``python -m latentspeech``."""
    exe = Path(sys.executable).with_name("latentspeech")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "latentspeech"]


def call(cmd: list[str]) -> dict:
    """One CLI call: its wall clock and the load / synthesis seconds it prints."""
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    m = SPLIT.search(r.stdout)
    load, synth = (float(m.group(1)), float(m.group(2))) if m else (float("nan"), float("nan"))
    return {"wall": wall, "load": load, "synthesis": synth, "rest": wall - load - synth}


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    calls: dict[str, list[dict]] = {m: [] for m in args.models}
    for r in range(args.rounds):
        for m in args.models:
            wav = out / f"{Path(m).name}.wav"
            calls[m].append(call(cli() + ["synthesize", "--text", args.text, "--prompt", args.prompt, "--out", str(wav),
                                          "--seed", str(args.seed), "--model", m, "--threads", "1"]))
            print(f"round {r + 1} {m}: {calls[m][-1]['wall']:.2f} s", file=sys.stderr)
    report = {"rounds": args.rounds, "text": args.text, "prompt": args.prompt, "models": {}}
    cols = ["rest", "load", "synthesis"]
    print(f"{'model':24s} {'best':>6s} {'median':>7s}" + "".join(f" {c:>9s}" for c in cols)
          + "   (seconds; the split: medians)")
    for m in args.models:
        walls = [c["wall"] for c in calls[m]]
        row = {"best": min(walls), "median": statistics.median(walls),
               **{c: statistics.median(x[c] for x in calls[m]) for c in cols}, "calls": calls[m]}
        report["models"][m] = row
        print(f"{m:24s} {row['best']:6.2f} {row['median']:7.2f}" + "".join(f" {row[c]:9.2f}" for c in cols))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
