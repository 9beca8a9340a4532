"""CLI: ``latentspeech phonemize`` — show the front end's view of a text, or write a data dir's ``phones``.

    latentspeech phonemize --text 'Dr. Smith paid $3.50 on 12/03/2024.'
    echo 'Hello.' | latentspeech phonemize --text -
    latentspeech phonemize --data-dir data/train       # DIR/text -> DIR/phones (skipped if up to date)
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "phonemize",
        help="print the normalised text, phones and ids of a text, or write DIR/phones from DIR/text",
        description="Run the text front end (normaliser, espeak-ng, phone vocabulary) on a text, "
                    "or phonemize a Kaldi data dir's 'text' file into its 'phones' file.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", metavar="TEXT", help="text to phonemize ('-' reads stdin)")
    src.add_argument("--data-dir", metavar="DIR", help="Kaldi data dir: reads DIR/text, writes DIR/phones atomically")
    p.add_argument("--force", action="store_true", help="with --data-dir: rewrite DIR/phones even if up to date")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="with --data-dir: lines per espeak-ng call (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..text import TextFrontend, phonemize_file

    if args.data_dir is not None:
        d = Path(args.data_dir)
        res = phonemize_file(d / "text", d / "phones", batch_size=args.batch_size,
                             skip_if_up_to_date=not args.force)
        if res.up_to_date:
            print(f"{res.out_path} is up to date (use --force to rewrite)")
        else:
            extra = f"; {len(res.empty)} with nothing to pronounce left out" if res.empty else ""
            print(f"wrote {res.out_path}: {res.written} utterances{extra}")
        return 0

    text = sys.stdin.read() if args.text == "-" else args.text
    fe = TextFrontend()
    norm = fe.normalize(text)
    tokens = fe.phonemes(text)
    print(f"text:   {norm}")
    print(f"phones: {' '.join(tokens)}")
    print(f"ids:    {' '.join(map(str, fe.vocab.encode(tokens)))}")
    return 0
