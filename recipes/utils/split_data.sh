#!/usr/bin/env bash
# split_data.sh: split a data dir into <data>/split<N>/1..N (Kaldi's utils/split_data.sh).
#
#   recipes/utils/split_data.sh [--per-utt] <data-dir> <num-parts>
#
# By default a speaker's utterances stay in one part; --per-utt splits by utterance into
# <data>/split<N>utt/. Parts that are newer than the data dir are reused.
set -euo pipefail
per_utt=""
if [ "${1:-}" = --per-utt ]; then per_utt=--per-utt; shift; fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--per-utt] <data-dir> <num-parts>" >&2; exit 1
fi
exec latentspeech data split "$1" "$2" $per_utt
