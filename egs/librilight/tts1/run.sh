#!/usr/bin/env bash
# LibriLight + Libriheavy training, LibriSpeech test-clean evaluation (the paper's setting).
#
#   ./run.sh                                  # every stage, LibriLight "small" (577 h), downloads included
#   ./run.sh --stage 1 --stop-stage 2         # a range of stages
#   ./run.sh --subset large                   # the paper's data size (50k h; cmd.sh decides where jobs run)
#   ./run.sh --download false --librilight-dir /data/librilight --libriheavy-dir /data/libriheavy \
#            --librispeech-dir /data/LibriSpeech
#
# Options of recipes/tts.sh (--stage, --stop-stage, --nj, --ngpu, --smoke, ...) pass through;
# see README.md for the stages, their outputs, times and disk, and for running on a cluster.
# --ngpu 8: the GPUs per node that configs with trainer.devices: auto (the codecs) use; the LM
# configs name their devices and nodes themselves (trainer.devices: 8, num_nodes: 1).
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

# corpus options (each is --name value), handed to local/data.sh
subset=small            # small | medium | large (cumulative, as Libriheavy's subsets)
download=true           # fetch what is missing into $download_dir
download_dir=downloads
librilight_dir=""       # existing LibriLight copy (holds small/, medium/, large/)
libriheavy_dir=""       # existing Libriheavy manifests (libriheavy_cuts_<subset>.jsonl.gz)
librispeech_dir=""      # existing LibriSpeech (holds test-clean/)
datadir=data
smoke=false
max_utts=0              # > 0: only that many training segments (a quick look at the pipeline)
dev_speakers=20         # speakers held out of training as data/dev

# the rest goes to recipes/tts.sh as it is
tts_opts=()
corpus_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --subset|--download|--download-dir|--librilight-dir|--libriheavy-dir|--librispeech-dir|--max-utts|--dev-speakers)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      corpus_args+=("$1" "$2"); shift 2 ;;
    --datadir|--smoke)
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      corpus_args+=("$1" "$2"); tts_opts+=("$1" "$2"); shift 2 ;;
    --help|-h) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' run.sh; echo; exec ../../../recipes/tts.sh --help ;;
    *) tts_opts+=("$1"); shift ;;
  esac
done
help_message="corpus options: --subset --download --download-dir --librilight-dir --libriheavy-dir --librispeech-dir --max-utts --datadir --smoke"
. ../../../recipes/utils/parse_options.sh "${corpus_args[@]}"

local_data_opts="--subset $subset --download $download --download-dir $download_dir --datadir $datadir --max-utts $max_utts --dev-speakers $dev_speakers"
[ -n "$librilight_dir" ] && local_data_opts+=" --librilight-dir $librilight_dir"
[ -n "$libriheavy_dir" ] && local_data_opts+=" --libriheavy-dir $libriheavy_dir"
[ -n "$librispeech_dir" ] && local_data_opts+=" --librispeech-dir $librispeech_dir"
if [ "$smoke" = true ] && [ "$max_utts" = 0 ]; then local_data_opts+=" --max-utts 200"; fi

exec ../../../recipes/tts.sh \
  --train-set train --valid-set dev --test-sets test_clean \
  --min-dur 2.0 --max-dur 20.0 \
  --ngpu 8 --nj 8 \
  --local-data-opts "$local_data_opts" \
  "${tts_opts[@]}"
