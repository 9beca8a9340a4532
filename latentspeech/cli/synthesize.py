"""CLI: ``latentspeech synthesize`` and ``latentspeech demo``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthesize a sentence with the bundled model (what `make demo` runs)")
    p.add_argument("--out", default="demo.wav", help="output wav (default: demo.wav)")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from ..checkpoint import BUNDLED, DEFAULT_MODEL, bundled_path, WEIGHTS

    if not (bundled_path(DEFAULT_MODEL) / WEIGHTS).is_file():
        print(
            f"latentspeech: no model is bundled yet ({BUNDLED[DEFAULT_MODEL]} is trained by egs/demo/tts1); "
            "nothing to synthesize. The set-up itself succeeded."
        )
        return 0
    raise NotImplementedError
