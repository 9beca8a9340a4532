#!/usr/bin/env bash
# local/data.sh: LibriLight audio + Libriheavy transcripts -> data/train, data/dev;
#                LibriSpeech test-clean -> data/test_clean.
#
# Downloads (with --download true; resumable with wget -c / curl -C -):
#   LibriLight small   https://dl.fbaipublicfiles.com/librilight/data/small.tar    35 GB    577 h
#   LibriLight medium  https://dl.fbaipublicfiles.com/librilight/data/medium.tar   321 GB   5,193 h
#   LibriLight large   https://dl.fbaipublicfiles.com/librilight/data/large.tar    3.05 TB  51,934 h
#   Libriheavy         https://huggingface.co/datasets/pkufool/libriheavy  (libriheavy_cuts_<subset>.jsonl.gz)
#   LibriSpeech        https://www.openslr.org/resources/12/test-clean.tar.gz      346 MB   5.4 h
# Subsets are cumulative like Libriheavy's: medium = small + medium, large = all three.
#
# Libriheavy segments of --min-dur..--max-dur seconds (2-20 s) become Kaldi `segments` into the
# LibriLight recordings (nothing is cut or copied); --dev-speakers speakers are held out of
# training as data/dev. The work is done by latentspeech/data/librilight.py.
set -euo pipefail

subset=small
download=true
download_dir=downloads
librilight_dir=""       # default: $download_dir/librilight
libriheavy_dir=""       # default: $download_dir/libriheavy
librispeech_dir=""      # default: $download_dir/LibriSpeech
datadir=data
min_dur=2.0
max_dur=20.0
text_index=0            # 0: book text with casing and punctuation; 1: upper-case normalised
dev_speakers=20         # speakers held out of training for validation
dev_utts_per_speaker=20
max_utts=0              # > 0: stop after that many training segments
seed=0
help_message="Usage: local/data.sh [--subset small|medium|large] [--download true|false] [--librilight-dir DIR]
  [--libriheavy-dir DIR] [--librispeech-dir DIR] [--datadir data] [--min-dur 2] [--max-dur 20] [--max-utts N]"
. "$(dirname "$0")/../../../../recipes/utils/parse_options.sh"

librilight_dir=${librilight_dir:-$download_dir/librilight}
libriheavy_dir=${libriheavy_dir:-$download_dir/libriheavy}
librispeech_dir=${librispeech_dir:-$download_dir/LibriSpeech}
py() { python3 -m latentspeech.data.librilight "$@"; }
subsets=$(py urls --subset "$subset" | awk -F'\t' '/^librilight_/ { sub("librilight_", "", $1); print $1 }')

fetch() {  # fetch URL FILE: resumable download
  local url=$1 out=$2
  mkdir -p "$(dirname "$out")"
  echo "downloading $url -> $out"
  if command -v wget >/dev/null 2>&1; then wget -c -q --show-progress -O "$out" "$url"
  else curl -L -C - -o "$out" "$url"; fi
}

if [ "$download" = true ]; then
  for s in $subsets; do
    if [ ! -f "$librilight_dir/$s/.complete" ]; then
      fetch "https://dl.fbaipublicfiles.com/librilight/data/$s.tar" "$download_dir/$s.tar"
      mkdir -p "$librilight_dir"
      tar -xf "$download_dir/$s.tar" -C "$librilight_dir"
      touch "$librilight_dir/$s/.complete"
    fi
    m=$libriheavy_dir/libriheavy_cuts_$s.jsonl.gz
    [ -s "$m" ] || fetch "https://huggingface.co/datasets/pkufool/libriheavy/resolve/main/libriheavy_cuts_$s.jsonl.gz" "$m"
  done
  if [ ! -d "$librispeech_dir/test-clean" ]; then
    fetch https://www.openslr.org/resources/12/test-clean.tar.gz "$download_dir/test-clean.tar.gz"
    mkdir -p "$(dirname "$librispeech_dir")"
    tar -xzf "$download_dir/test-clean.tar.gz" -C "$(dirname "$librispeech_dir")"
  fi
fi

manifests=()
for s in $subsets; do
  [ -d "$librilight_dir/$s" ] || { echo "local/data.sh: no LibriLight '$s' audio in $librilight_dir (use --download true or --librilight-dir)" >&2; exit 1; }
  m=$libriheavy_dir/libriheavy_cuts_$s.jsonl.gz
  [ -f "$m" ] || { echo "local/data.sh: missing Libriheavy manifest $m (use --download true or --libriheavy-dir)" >&2; exit 1; }
  manifests+=(--manifest "$m")
done
[ -d "$librispeech_dir/test-clean" ] || { echo "local/data.sh: no $librispeech_dir/test-clean (use --download true or --librispeech-dir)" >&2; exit 1; }

py libriheavy "${manifests[@]}" --librilight-dir "$librilight_dir" --out "$datadir/train_all" \
  --min-dur "$min_dur" --max-dur "$max_dur" --text-index "$text_index" --max-utts "$max_utts"
py holdout --src "$datadir/train_all" --train-out "$datadir/train" --dev-out "$datadir/dev" \
  --num-speakers "$dev_speakers" --max-utts-per-speaker "$dev_utts_per_speaker" --seed "$seed"
py librispeech --dir "$librispeech_dir/test-clean" --out "$datadir/test_clean"
for set in train dev test_clean; do
  echo "$datadir/$set: $(latentspeech data validate "$datadir/$set" --require-text)"
done
