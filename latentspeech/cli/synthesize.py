"""CLI: ``latentspeech synthesize`` (text + prompt → wav) and ``latentspeech demo`` (what `make demo` runs).

``synthesize --stream`` writes the audio to stdout while it is generated, for a player reading a pipe:

    latentspeech synthesize --text "Hello there." --prompt voice.wav --stream | aplay
    latentspeech synthesize --text-file book.txt --prompt voice.wav --stream | ffplay -nodisp -autoexit -
    latentspeech synthesize --text "Hello." --prompt voice.wav --stream --stream-format pcm | \
        sox -t raw -r 16000 -e signed -b 16 -c 1 - -d

(``wav``: a WAV header of open length, then 16-bit PCM; ``pcm``: the samples alone, 16-bit little-endian
mono at the model's rate.) Messages go to stderr; ``-o`` also saves the whole audio when it ends.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

DEMO_TEXT = "The quick brown fox jumps over the lazy dog. Speech synthesis runs on this computer."


def register(sub) -> None:
    p = sub.add_parser("synthesize", help="speak text in the voice of a prompt recording",
                       description="Synthesize TEXT in the voice of the speaker in PROMPT (any clip of a few seconds).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to speak ('-' reads stdin)")
    src.add_argument("--text-file", metavar="F", help="read the text from file F (long text is split into sentences)")
    p.add_argument("--prompt", required=True, metavar="WAV", help="speaker prompt audio (wav/flac/ogg, >= 1 s)")
    p.add_argument("-o", "--out", default=None, metavar="OUT.wav",
                   help="output audio file (default: out.wav; with --stream: none unless given)")
    p.add_argument("--stream", action="store_true",
                   help="write the audio to stdout while it is generated (pipe it into aplay, ffplay -, sox -d)")
    p.add_argument("--stream-format", choices=("wav", "pcm"), default="wav",
                   help="with --stream: wav (header of open length + 16-bit PCM, default) or pcm (raw s16le)")
    p.add_argument("--model", default=None, metavar="M", help="bundled model name or model dir (default: latentlm-demo)")
    p.add_argument("--steps", type=int, default=None, metavar="N", help="diffusion sampler steps per frame (1-20)")
    p.add_argument("--cfg", type=float, default=None, metavar="F", help="classifier-free guidance scale (1 = off)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: the model's recommendation, else 1.0)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (same seed: same audio on CPU)")
    p.add_argument("--candidates", type=int, default=None, metavar="N",
                   help="draw each sentence N times and keep the one the model's phone recognizer reads best "
                        "(LatentLM models with a recognizer/; default: the model's setting, 1 = off)")
    p.add_argument("--batch-size", type=int, default=8, help="sentences generated together (default 8)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch CPU threads (default 1: the demo-size models gain nothing from more, and on a busy "
                        "machine 2 threads ran 100x slower than 1; 0 = torch's default)")
    p.set_defaults(func=run_synthesize, one_shot=True)

    d = sub.add_parser("demo", help="synthesize a sentence with the bundled model (what `make demo` runs)")
    d.add_argument("--out", default="demo.wav", help="output wav (default: demo.wav)")
    d.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1; 0 = torch's default)")
    d.set_defaults(func=run_demo, one_shot=True)


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` for ``n`` > 0 (0: torch's default); the CLI's and the recipe's decoders."""
    from ..errors import ConfigError

    if n < 0:
        raise ConfigError(f"--threads must be >= 0, got {n}")
    if n > 0:
        import torch

        torch.set_num_threads(n)


def read_text(args) -> str:
    from ..errors import TextError

    if args.text_file is not None:
        path = Path(args.text_file)
        if not path.is_file():
            raise TextError(f"text file not found: {path}")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TextError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return sys.stdin.read() if args.text == "-" else args.text


def run_synthesize(args) -> int:
    from ..api import TTS
    from ..errors import ConfigError
    from . import loaded

    if args.steps is not None and not 1 <= args.steps <= 100:
        raise ConfigError(f"--steps must be between 1 and 100, got {args.steps}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.candidates is not None and not 1 <= args.candidates <= 16:
        raise ConfigError(f"--candidates must be between 1 and 16, got {args.candidates}")
    if args.stream and sys.stdout.isatty():
        raise ConfigError("--stream writes audio to stdout, which is a terminal here: pipe it (| aplay) or use -o")
    set_threads(args.threads)
    text = read_text(args)
    t0 = time.perf_counter()
    tts = TTS.from_pretrained(args.model, device=args.device)
    loaded(args)
    t1 = time.perf_counter()
    if args.stream:
        return stream_to_stdout(tts, text, args, t0, t1)
    path = tts.speak_to_file(args.out or "out.wav", text, prompt=args.prompt, steps=args.steps, cfg=args.cfg,
                             seed=args.seed, temperature=args.temperature, batch_size=args.batch_size,
                             candidates=args.candidates)
    t2 = time.perf_counter()
    import soundfile as sf

    dur = sf.info(str(path)).duration
    print(f"wrote {path} ({dur:.2f} s of audio; load {t1 - t0:.2f} s, synthesis {t2 - t1:.2f} s, "
          f"RTF {(t2 - t1) / max(dur, 1e-9):.2f})")
    return 0


def stream_to_stdout(tts, text: str, args, t0: float, t1: float) -> int:
    """``synthesize --stream``: chunks to stdout as they come (``--candidates`` does not apply: one draw)."""
    import numpy as np

    from ..audio import save_audio
    from ..audio.pcm import pcm16, wav_header
    from ..errors import ConfigError

    if args.candidates not in (None, 1):
        raise ConfigError("--stream draws one candidate per sentence: leave --candidates out")
    chunks = tts.stream(text, prompt=args.prompt, steps=args.steps, cfg=args.cfg, seed=args.seed,
                        temperature=args.temperature)
    out = sys.stdout.buffer
    if args.stream_format == "wav":
        out.write(wav_header(tts.sample_rate))
    kept, first, n = [], None, 0
    for chunk in chunks:
        out.write(pcm16(chunk))
        out.flush()
        first = time.perf_counter() if first is None else first
        n += len(chunk)
        if args.out:
            kept.append(chunk)
    t2 = time.perf_counter()
    saved = ""
    if args.out:
        saved = f" and {save_audio(args.out, np.concatenate(kept) if kept else np.zeros(0, np.float32), tts.sample_rate)}"
    print(f"streamed {n / tts.sample_rate:.2f} s of audio to stdout{saved} (load {t1 - t0:.2f} s, first audio "
          f"after {(first or t2) - t1:.2f} s, synthesis {t2 - t1:.2f} s)", file=sys.stderr)
    return 0


def demo_prompt() -> Path | None:
    from ..checkpoint import ASSETS

    folder = ASSETS / "prompts"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".wav", ".flac")) if folder.is_dir() else []
    return files[0] if files else None


def run_demo(args) -> int:
    from ..checkpoint import BUNDLED, DEFAULT_MODEL, WEIGHTS, bundled_path

    if not (bundled_path(DEFAULT_MODEL) / WEIGHTS).is_file():
        print(
            f"latentspeech: no model is bundled yet ({BUNDLED[DEFAULT_MODEL]} is trained by egs/demo/tts1); "
            "nothing to synthesize. The set-up itself succeeded."
        )
        return 0
    prompt = demo_prompt()
    if prompt is None:
        from ..errors import CheckpointError

        raise CheckpointError("no demo prompt in latentspeech/assets/prompts/ (expected a .wav or .flac)")
    from ..api import TTS
    from . import loaded

    set_threads(args.threads)
    t0 = time.perf_counter()
    tts = TTS.from_pretrained(DEFAULT_MODEL)
    loaded(args)
    path = tts.speak_to_file(args.out, DEMO_TEXT, prompt=prompt, seed=0)
    print(f"wrote {path} in the voice of {prompt.name} ({time.perf_counter() - t0:.1f} s)")
    return 0
