"""Speaker similarity of the bundled LatentLM's output for prompts with and without their DC offset.

For each prompt file, the prompt as loaded (``raw``) and with its mean subtracted (``dc-removed``) are
passed to :meth:`latentspeech.TTS.speak` as arrays; two sentences x ``--seeds``; SIM = Resemblyzer cosine
of the output to the prompt file. ``prepare_prompt`` now removes the offset itself, so on the current
code the two conditions coincide; to see the difference run it on commit 877e793, the last before that change:

    git worktree add ../before 877e793 && cp bench/prompt_dc.py ../before/bench/ && cd ../before
    PYTHONPATH=. ../main/.venv/bin/python bench/prompt_dc.py ../shared/data/librispeech_voices/flac/445-123857-0000.flac ...
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

TEXTS = ["That will mean an upper range engagement somewhere, will it not?",
         "The quick brown fox jumps over the lazy dog."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--model", default=None, help="model name or dir (default: the bundled LatentLM)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from latentspeech import TTS
    from latentspeech.audio import load_audio
    from latentspeech.eval.similarity import ResemblyzerEncoder

    tts = TTS.from_pretrained(args.model)
    enc = ResemblyzerEncoder()
    for path in args.prompts:
        x = load_audio(path, tts.sample_rate)
        ref = load_audio(path, 16000)
        for name, prompt in (("raw", x), ("dc-removed", x - x.mean())):
            sims = [enc.similarity(tts.speak(t, prompt.astype(np.float32), seed=s)[0], ref)
                    for t in TEXTS for s in args.seeds]
            print(f"{path}\t{name}\tSIM {np.mean(sims):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
