"""The ``latentspeech`` command line: thin wrappers over library functions.

One module per command group under ``latentspeech/cli/``; each defines ``register(subparsers)``,
which adds its sub-command(s) and sets ``func`` (called with the parsed args; returns an exit
code or None). Modules import nothing heavy at import time so that ``--help`` stays fast.

Errors meant for the user (:class:`~latentspeech.errors.LatentSpeechError`) print as one
line on stderr with a non-zero exit; ``--debug`` shows the traceback instead.

A command that sets ``one_shot=True`` (``synthesize``, ``demo``: one model load, then done) runs, when
``main`` is the program (the ``latentspeech`` script, ``python -m latentspeech``), with Python's cyclic
garbage collector tuned for a process that ends with it: off until the command calls
:func:`loaded` (its full passes over the objects torch's import creates cost ~0.15 s there), then
on with what exists so far frozen out of its passes, and frozen again at the end so that the
interpreter's exit does not walk them either (~0.5 s after a torch import). Nothing else changes:
the exit still runs every atexit handler and finalizer.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from ..version import __version__

#: Command modules, in the order their commands appear in ``--help``.
COMMAND_MODULES = [
    "latentspeech.cli.synthesize",  # synthesize, demo
    "latentspeech.cli.text",  # phonemize
    "latentspeech.cli.data",  # data validate / fix
    "latentspeech.cli.codec",  # codec train / encode / decode / extract
    "latentspeech.cli.align",  # align (phone durations for LatentLM's pointer mode)
    "latentspeech.cli.train",  # train latentlm / valle
    "latentspeech.cli.recognizer",  # recognizer (picks the clearest of a LatentLM's candidates)
    "latentspeech.cli.eval",  # eval
    "latentspeech.cli.serve",  # serve (the local speech server)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentspeech",
        description="Zero-shot text-to-speech with next-token diffusion over σ-VAE latents.",
    )
    parser.add_argument("--version", action="version", version=f"latentspeech {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def loaded(args) -> None:
    """A ``one_shot`` command's models are loaded: the garbage collector back on, with every object that
    exists now (torch's, the models') frozen out of its passes (see the module docstring)."""
    if getattr(args, "gc_paused", False):
        args.gc_paused = False
        gc.freeze()
        gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    # the program (not a call from Python) running a one_shot command: the process ends with it
    one_shot = argv is None and getattr(args, "one_shot", False) and gc.isenabled()
    args.gc_paused = one_shot
    if one_shot:
        gc.disable()
    try:
        return run(args)
    finally:
        if one_shot:
            loaded(args)  # where the command failed before calling it
            gc.freeze()  # the exit's collection skips everything


def run(args) -> int:
    """``args.func(args)`` with the user errors as one line on stderr (``--debug``: the traceback)."""
    from ..errors import LatentSpeechError

    try:
        code = args.func(args)
    except LatentSpeechError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
