"""CLI: ``latentspeech data validate|fix|duration-filter|split|utt2dur`` over Kaldi data dirs."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("data", help="check, fix, filter and split Kaldi data dirs",
                       description="Tools for Kaldi-style data dirs (wav.scp, text, utt2spk, spk2utt, segments, utt2dur).")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    v = dsub.add_parser("validate", help="list the problems of a data dir (exit 1 if any)")
    v.add_argument("dir", help="data dir")
    v.add_argument("--check-audio", action="store_true", help="also read every recording (pipes are run)")
    v.add_argument("--require-text", action="store_true", help="a missing transcript file is a problem")
    v.add_argument("--text-file", default="text", help="transcript table (default: text)")
    v.add_argument("--max-problems", type=int, default=20, help="how many problems to print (default 20)")
    v.set_defaults(func=_validate)

    f = dsub.add_parser("fix", help="keep utterances present in every file, sort, regenerate spk2utt (in place)")
    f.add_argument("dir", help="data dir")
    f.add_argument("--text-file", default="text", help="transcript table (default: text)")
    f.add_argument("--no-backup", action="store_true", help="do not copy changed files into DIR/.backup/")
    f.set_defaults(func=_fix)

    d = dsub.add_parser("duration-filter", help="copy the utterances within a duration range into a new dir")
    d.add_argument("dir", help="source data dir")
    d.add_argument("out", help="output data dir")
    d.add_argument("--min", type=float, default=0.0, help="minimum duration in seconds (default 0)")
    d.add_argument("--max", type=float, default=float("inf"), help="maximum duration in seconds (default none)")
    d.set_defaults(func=_duration_filter)

    s = dsub.add_parser("split", help="split into DIR/splitN/1..N (speakers kept together unless --per-utt)")
    s.add_argument("dir", help="data dir")
    s.add_argument("num_parts", type=int, help="number of parts")
    s.add_argument("--per-utt", action="store_true", help="split by utterance into DIR/splitNutt/")
    s.set_defaults(func=_split)

    u = dsub.add_parser("utt2dur", help="write DIR/utt2dur from the audio when it is missing")
    u.add_argument("dir", help="data dir")
    u.set_defaults(func=_utt2dur)


def _validate(args: argparse.Namespace) -> int:
    from ..data.kaldi import DataDir, validate

    problems = validate(args.dir, check_audio=args.check_audio, require_text=args.require_text, text_file=args.text_file)
    if problems:
        print(f"error: {args.dir} is not a valid data dir ({len(problems)} problem{'s' * (len(problems) > 1)}):",
              file=sys.stderr)
        for line in problems[: args.max_problems]:
            print(f"  {line}", file=sys.stderr)
        if len(problems) > args.max_problems:
            print(f"  ... and {len(problems) - args.max_problems} more", file=sys.stderr)
        print(f"hint: `latentspeech data fix {args.dir}` fixes sorting, duplicates and missing utterances",
              file=sys.stderr)
        return 1
    d = DataDir.load(args.dir, text_file=args.text_file)
    print(f"ok: {len(d)} utterances, {len(d.speakers)} speakers, {d.total_hours():.2f} hours")
    return 0


def _fix(args: argparse.Namespace) -> int:
    from ..data.kaldi import fix

    report = fix(args.dir, text_file=args.text_file, backup=not args.no_backup)
    print(f"{args.dir}: {report.summary()}")
    return 0 if report.kept else 1


def _duration_filter(args: argparse.Namespace) -> int:
    from ..data.kaldi import duration_filter

    kept, total = duration_filter(args.dir, args.out, args.min, args.max)
    print(f"{args.out}: kept {kept} of {total} utterances lasting {args.min:g}-{args.max:g} s")
    return 0


def _split(args: argparse.Namespace) -> int:
    from ..data.kaldi import split_data

    parts = split_data(args.dir, args.num_parts, per_utt=args.per_utt)
    print(parts[0].parent)
    return 0


def _utt2dur(args: argparse.Namespace) -> int:
    from ..data.kaldi import ensure_utt2dur

    print(ensure_utt2dur(args.dir, progress=True))
    return 0
