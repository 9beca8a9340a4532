#!/usr/bin/env bash
# recipes/tts.sh: the corpus-independent stages of a latentspeech TTS recipe.
#
# Run it from a recipe folder (egs/<corpus>/tts1) that holds local/data.sh, conf/, path.sh and
# cmd.sh; egs/*/tts1/run.sh calls it with the corpus' options. Every stage is guarded by
# --stage/--stop-stage, skips work that is already done (a completion marker `.done` under exp/
# records a fingerprint of the stage's inputs; changed inputs redo the stage) and logs into
# exp/<unit>/log/. Outputs: data/ (stage 0), dump/ (stages 1-6), exp/ (models, decodes, reports).
#
#   stage 0  data preparation: local/data.sh $local_data_opts           -> $datadir/<set>
#   stage 1  validate + fix each set, duration filter (train/valid sets) -> $dumpdir/raw/<set>
#   stage 2  phonemize: latentspeech phonemize --data-dir                 -> $dumpdir/raw/<set>/phones
#   stage 3  train the σ-VAE codec (or --pretrained-codec NAME|DIR)       -> $expdir/codec/model
#            (+ --codec-finetune-config: a decoder-only fine-tune)         -> $expdir/codec_ft/model
#   stage 4  extract latents of every set, --extract-nj jobs each         -> $dumpdir/latents/<set>
#            (job J: an utterance range -> split<N>/J, resumable; then the job indices are merged)
#   stage 5  train LatentLM (pointer configs: phone durations first)      -> $expdir/<system>/model
#            + the phone recognizer that picks among its candidates       -> $expdir/latentlm/model/recognizer
#   stage 6  VALL-E baseline: RVQ codec (+ --codec-rvq-finetune-config), codes, AR+NAR model -> $expdir/{codec_rvq,<system>}/model
#   stage 7  decode the evaluation protocols with both systems            -> $expdir/decode/<set>/<protocol>/<system>/wav
#            (--eval-protocols on each test set, default ref-utt and prefix-3s; --cross-sets P:T: voices of P
#            reading sentences of T, in $expdir/decode/P_voices_T_text/cross)
#   stage 8  evaluate (WER, SIM) incl. ground truth, side-by-side table   -> $expdir/decode/<set>/<protocol>/summary.tsv, report/
#   stage 9  package model dirs (safetensors + config + model card)       -> $expdir/packed/<name>
set -euo pipefail

recipes=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
utils=$recipes/utils

# Recipe environment (PATH to latentspeech, LC_ALL=C) and job runners, as in ESPnet templates.
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') [tts.sh] $*"; }
die() { echo "tts.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Options: every variable below is --option-name VALUE (see recipes/utils/parse_options.sh).
stage=0                 # first stage to run
stop_stage=9            # last stage to run
nj=4                    # parallel jobs for decoding
extract_nj=1            # stages 4 and 6: latent/code extraction jobs per set (one utterance range and GPU each)
extract_num_workers=2   # stages 4 and 6: DataLoader workers decoding audio in each extraction job
extract_dtype=float32   # stages 4 and 6: encoder precision (float16/bfloat16 on GPUs; stored latents are float32)
extract_args=""         # extra arguments of `latentspeech codec extract` (e.g. "--batch-seconds 300")
ngpu=1                  # GPUs per node of a training job whose config says trainer.devices: auto (0: CPU); a
                        # training job asks the runner for its config's devices x num_nodes (one task per device)
smoke=false             # tiny configs (from $conf_dir/smoke) for a quick run through every stage
datadir=data            # Kaldi data dirs (written by local/data.sh)
dumpdir=dump            # checked data dirs, phones, latents, codes
expdir=exp              # models, logs, completion markers, decodes, reports
conf_dir=conf           # where the default configs are
local_data_opts=""      # options for local/data.sh
train_set=train         # LM training set
extra_train_sets=""     # more LM training sets "SET[:N] ...": N copies (default 1) of SET join $train_set for the
                        # aligner, LatentLM and VALL-E (e.g. "real_train:4": a small set of real voices, upweighted)
valid_set=dev           # validation set (held-out speakers)
test_sets="test"        # sets decoded and evaluated in stages 7-8
codec_train_sets=""     # sets the codec trains on (default: $train_set)
text_file=text          # transcript table of the data dirs
min_dur=2.0             # stage 1: shortest utterance kept in train/valid sets (seconds)
max_dur=20.0            # stage 1: longest utterance kept in train/valid sets (seconds)
codec_config=""         # default: $conf_dir/codec.yaml
codec_rvq_config=""     # default: $conf_dir/codec_rvq.yaml
latentlm_config=""      # default: $conf_dir/latentlm.yaml
valle_config=""         # default: $conf_dir/valle.yaml
pretrained_codec=""     # a codec name or model dir: skip stage 3 training and use it
pretrained_codec_rvq="" # the same for the baseline's RVQ codec
package_dtype=float16   # stage 9: precision of the packaged weights (float16 halves the size; float32)
codec_rvq_init=true     # stage 6: start the RVQ codec from the σ-VAE codec's trained trunk (--init-from)
codec_finetune_config=""      # stage 3: then a decoder-only fine-tune of the codec (e.g. conf/codec_harmonic.yaml, a
                              # harmonic-source decoder; same latents) -> $expdir/codec_ft/model, used from stage 4 on
codec_rvq_finetune_config=""  # stage 6: the same for the RVQ codec (e.g. conf/codec_rvq_harmonic.yaml; same codes)
codec_train_args=""     # extra arguments of `latentspeech codec train`
latentlm_train_args=""  # extra arguments of `latentspeech train latentlm`
aligner_args=""         # stage 5, pointer-mode configs: extra arguments of `latentspeech align` (e.g. "--steps 200")
recognizer=true         # stage 5: train a CTC phone recognizer on the LM's sets and attach it to the LatentLM, which
                        # then draws N candidates per sentence and keeps the one the recognizer reads best
recognizer_args=""      # extra arguments of `latentspeech recognizer` (e.g. "--steps 500 --candidates 3")
valle_train_args=""     # extra arguments of `latentspeech train valle`
run_baseline=true       # stage 6 and the baseline's decoding/evaluation
systems=""              # the systems stages 5-9 train, decode and score (default "latentlm valle"; "latentlm" with
                        # --run-baseline false): latentlm and valle (configs --latentlm-config/--valle-config),
                        # latentlm_attention and valle_attention ($conf_dir/<system>.yaml; each family's other
                        # alignment), or any latentlm_*/valle_* with a config $conf_dir/<system>.yaml.
                        # "latentlm latentlm_attention valle valle_attention" is the 2 x 2 of RESULTS.md
cross_sets=""           # extra evaluations "PROMPTSET:TEXTSET ...": voices of one set read sentences of another
cross_num_utts=100      # rows per cross evaluation
eval_protocols="ref-utt prefix-3s"  # the named protocols of each test set (latentspeech eval protocol): ref-utt (prompt =
                        # another utterance of the speaker), prefix-3s (prompt = its first 3 s, scored on the continuation)
eval_alignments=""      # prefix-3s: word alignments of the test sets (Kaldi CTM or LibriSpeech alignments format);
                        # without them the continuation's words are estimated from the text
eval_f5_list=""         # also the f5-cross-sentence protocol: F5-TTS's librispeech_pc_test_clean_cross_sentence.lst
decode_device=auto      # stage 7: torch device of the decoding jobs (auto: GPU (J-1) mod count when CUDA is visible)
eval_device=auto        # stage 8: device of the ASR and speaker models (auto: cuda when available)
eval_min_dur=4.0        # evaluation protocol: target utterances of 4-10 s (VALL-E 2 protocol)
eval_max_dur=10.0
eval_num_utts=0         # 0: every eligible utterance; N: a seeded random subset of N
seed=0                  # protocol sampling and synthesis seed
synth_draws=1           # stage 7: synthesize each utterance N times (seeds seed..seed+N-1: wav/, wav.draw1/, ...);
                        # stage 8 scores the draws together (a single draw moves WER by ~0.05 on 120 utterances)
decode_args=""          # sampler options of stage 7 (e.g. "--steps 10 --cfg 3")
decode_engine=api       # api: load each model once per job; cli: `latentspeech synthesize` per utterance
eval_args=""            # extra arguments of `latentspeech eval`
train_cmd=${train_cmd:-$utils/run.sh}    # CPU jobs (data preparation)
cuda_cmd=${cuda_cmd:-$utils/run.sh}      # training and extraction jobs
decode_cmd=${decode_cmd:-$utils/run.sh}  # synthesis and evaluation jobs

help_message="Usage: recipes/tts.sh [options]   (run from egs/<corpus>/tts1 by its run.sh; every stage variable is an option)
  --stage N --stop-stage M     run stages N..M (0 data, 1 check/filter, 2 phonemize, 3 codec,
                               4 latents, 5 LatentLM, 6 VALL-E, 7 decode, 8 evaluate, 9 package)
  --smoke true                 tiny configs from \$conf_dir/smoke/ (and local/data.sh --smoke true if
                               the recipe passes it)
  --nj N  --ngpu N             parallel decoding jobs; GPUs per node for trainer.devices: auto
  --extract-nj N               stages 4/6: extraction jobs per set (--extract-num-workers, --extract-dtype)
  --datadir/--dumpdir/--expdir where stage outputs go (default data, dump, exp)
  --train-set/--valid-set/--test-sets/--codec-train-sets   set names under \$datadir
  --extra-train-sets 'S[:N] ...'  N copies of set S join the LM training set
  --cross-sets 'P:T ...'       also evaluate the voices of set P reading sentences of set T
  --min-dur/--max-dur S        stage 1 duration filter for train/valid sets
  --pretrained-codec NAME|DIR  skip codec training; --run-baseline false skips VALL-E
  --systems 'S ...'            the systems of stages 5-9 (default 'latentlm valle'); e.g. the 2 x 2 of
                               alignment x latents: 'latentlm latentlm_attention valle valle_attention'
  --synth-draws N              stage 7 synthesizes each utterance N times (seeds seed..seed+N-1), stage 8 pools them
  --eval-protocols 'P ...'     the protocols of each test set (default 'ref-utt prefix-3s'; --eval-alignments FILE
                               for prefix-3s, --eval-f5-list LST adds f5-cross-sentence) -> exp/decode/<set>/<protocol>
  see the comments at the top of recipes/tts.sh for every option and output"

cmdline="$0 $*"
# shellcheck source=utils/parse_options.sh
. "$utils/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $* (options are --name value)"

if [ "$smoke" = true ] && [ -d "$conf_dir/smoke" ]; then conf_dir=$conf_dir/smoke; fi
codec_config=${codec_config:-$conf_dir/codec.yaml}
codec_rvq_config=${codec_rvq_config:-$conf_dir/codec_rvq.yaml}
latentlm_config=${latentlm_config:-$conf_dir/latentlm.yaml}
valle_config=${valle_config:-$conf_dir/valle.yaml}
codec_train_sets=${codec_train_sets:-$train_set}
[[ "$nj" =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive number, got '$nj'"
[[ "$extract_nj" =~ ^[1-9][0-9]*$ ]] || die "--extract-nj must be a positive number, got '$extract_nj'"
[[ "$synth_draws" =~ ^[1-9][0-9]*$ ]] || die "--synth-draws must be a positive number, got '$synth_draws'"

for _e in $extra_train_sets; do
  [[ "$_e" =~ ^[^:]+(:[1-9][0-9]*)?$ ]] || die "--extra-train-sets takes SET or SET:N (N copies), got '$_e'"
done
extra_names=$(for _e in $extra_train_sets; do echo "${_e%%:*}"; done)

# every set once, in order: codec sets, train, valid, test
cross_parts=$(printf '%s\n' $cross_sets | tr ':' '\n')
all_sets=$(printf '%s\n' $codec_train_sets "$train_set" $extra_names "$valid_set" $test_sets $cross_parts | awk 'NF && !seen[$0]++')
lm_train_sets=$(printf '%s\n' "$train_set" $extra_names | awk 'NF && !seen[$0]++')
lm_sets=$(printf '%s\n' $lm_train_sets "$valid_set" | awk 'NF && !seen[$0]++')
is_test_set() { case " $test_sets " in *" $1 "*) return 0 ;; esac; return 1; }
for _c in $cross_sets; do
  [[ "$_c" =~ ^[^:]+:[^:]+$ ]] || die "--cross-sets takes PROMPTSET:TEXTSET pairs, got '$_c'"
done
# evaluation dirs UNIT/PROTOCOL under $expdir/decode: each test set with each named protocol (ground truth known),
# and each cross pair with the protocol "cross" (utils/cross_protocol.py)
test_protocols=$(printf '%s\n' $eval_protocols $([ -n "$eval_f5_list" ] && echo f5-cross-sentence) | awk 'NF && !seen[$0]++')
for _p in $test_protocols; do
  case $_p in
    ref-utt|prefix-3s) ;;
    f5-cross-sentence) [ -n "$eval_f5_list" ] || die "--eval-protocols: f5-cross-sentence needs --eval-f5-list LST" ;;
    *) die "--eval-protocols: unknown protocol '$_p' (ref-utt, prefix-3s, f5-cross-sentence)" ;;
  esac
done
eval_dirs=$(for t in $test_sets; do for p in $test_protocols; do echo "$t/$p"; done; done
            for c in $cross_sets; do echo "${c%%:*}_voices_${c##*:}_text/cross"; done)
cross_of() { local c; for c in $cross_sets; do [ "${c%%:*}_voices_${c##*:}_text" = "$1" ] && echo "$c"; done; return 0; }

# ---------------------------------------------------------------------------------------------
# Helpers: stages, completion markers, commands that may not exist yet.

stage_on() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# fingerprint ARG...: md5 of the arguments, reading the contents of those that are files
fingerprint() {
  local a
  for a in "$@"; do
    if [ -f "$a" ]; then echo "file $a"; cat "$a"; else echo "arg $a"; fi
  done | md5sum | cut -d' ' -f1
}

# is_done MARKER KEY: the unit finished before with the same inputs
is_done() {
  if [ -f "$1" ]; then
    [ "$(cat "$1")" = "$2" ] && return 0
    log "  inputs changed since $1 was written: redoing"
  fi
  return 1
}
mark_done() { mkdir -p "$(dirname "$1")"; printf '%s\n' "$2" > "$1"; }

# need_cli STAGE SUBCOMMAND...: fail clearly when a latentspeech command has not landed yet
need_cli() {
  local st=$1; shift
  command -v latentspeech >/dev/null 2>&1 || die "stage $st: the latentspeech command is not on PATH (source path.sh)"
  if ! latentspeech "$@" --help >/dev/null 2>&1; then
    echo "stage $st: needs \`latentspeech $*\` (not available yet)" >&2
    exit 1
  fi
}

# need_model STAGE DIR: a model dir that an earlier stage should have produced
need_model() {
  [ -f "$2/model.safetensors" ] && [ -f "$2/config.yaml" ] \
    || die "stage $1: no model in $2 (model.safetensors + config.yaml); run the stage that trains it"
}

# model_dir GIVEN DEFAULT: a pretrained name/dir if given, else the recipe's own model dir
model_dir() { if [ -n "$1" ]; then echo "$1"; else echo "$2"; fi; }

codec_base=$(model_dir "$pretrained_codec" "$expdir/codec/model")
codec_rvq_base=$(model_dir "$pretrained_codec_rvq" "$expdir/codec_rvq/model")
# the codecs used from here on: the fine-tuned ones when a decoder fine-tune is configured
codec_model=$codec_base
[ -z "$pretrained_codec" ] && [ -n "$codec_finetune_config" ] && codec_model=$expdir/codec_ft/model
codec_rvq_model=$codec_rvq_base
[ -z "$pretrained_codec_rvq" ] && [ -n "$codec_rvq_finetune_config" ] && codec_rvq_model=$expdir/codec_rvq_ft/model
# the systems: a family (latentlm* or valle*), a config and a model dir $expdir/<system>/model each
if [ -z "$systems" ]; then
  systems="latentlm"; [ "$run_baseline" = true ] && systems="latentlm valle"
fi
system_config() {
  case $1 in
    latentlm) echo "$latentlm_config" ;;
    valle) echo "$valle_config" ;;
    *) echo "$conf_dir/$1.yaml" ;;
  esac
}
for _s in $systems; do
  [[ "$_s" =~ ^(latentlm|valle)(_[A-Za-z0-9_]+)?$ ]] \
    || die "--systems: '$_s' is not a LatentLM or VALL-E system (latentlm, valle, latentlm_NAME, valle_NAME)"
done
lm_systems=$(for _s in $systems; do case $_s in latentlm*) printf '%s ' "$_s" ;; esac; done)
valle_systems=$(for _s in $systems; do case $_s in valle*) printf '%s ' "$_s" ;; esac; done)
[ "$run_baseline" = true ] || valle_systems=""
systems=$(echo $lm_systems $valle_systems)
is_pointer() { grep -Eqs '^[[:space:]]*alignment:[[:space:]]*pointer' "$(system_config "$1")"; }
need_durations=false
for _s in $systems; do is_pointer "$_s" && need_durations=true; done

log "$cmdline"
log "stages $stage..$stop_stage; sets: $(echo $all_sets); configs: $conf_dir"

# ---------------------------------------------------------------------------------------------
if stage_on 0; then
  log "stage 0: data preparation (local/data.sh $local_data_opts)"
  [ -x local/data.sh ] || die "stage 0: local/data.sh not found (or not executable) in $PWD"
  marker=$expdir/local_data/.done
  key=$(fingerprint local/data.sh "$local_data_opts" "$datadir")
  if is_done "$marker" "$key"; then
    log "  done before ($marker)"
  else
    # shellcheck disable=SC2086
    $train_cmd "$expdir/local_data/log/data.log" local/data.sh $local_data_opts \
      || die "stage 0: local/data.sh failed, see $expdir/local_data/log/data.log"
    mark_done "$marker" "$key"
  fi
fi

# ---------------------------------------------------------------------------------------------
if stage_on 1; then
  log "stage 1: validate, fix and filter the data dirs -> $dumpdir/raw"
  for set in $all_sets; do
    src=$datadir/$set; out=$dumpdir/raw/$set
    [ -f "$src/wav.scp" ] || die "stage 1: no data dir $src (run stage 0)"
    if is_test_set "$set"; then lo=0; hi=inf; else lo=$min_dur; hi=$max_dur; fi
    marker=$expdir/data_prep/$set.done
    key=$(fingerprint "$src/wav.scp" "$src/utt2spk" "$src/$text_file" "$src/segments" "$src/utt2dur" "$lo" "$hi")
    if is_done "$marker" "$key" && [ -f "$out/utt2spk" ]; then log "  $set: done before"; continue; fi
    logdir=$expdir/data_prep/log
    $train_cmd "$logdir/fix_$set.log" latentspeech data fix "$src" --text-file "$text_file" \
      || die "stage 1: cannot fix $src, see $logdir/fix_$set.log"
    rm -rf "$out"
    $train_cmd "$logdir/filter_$set.log" latentspeech data duration-filter "$src" "$out" --min "$lo" --max "$hi" \
      || die "stage 1: duration filter of $src failed, see $logdir/filter_$set.log"
    $train_cmd "$logdir/validate_$set.log" latentspeech data validate "$out" --require-text \
      || die "stage 1: $out is not valid, see $logdir/validate_$set.log"
    log "  $set: $(grep -h 'kept' "$logdir/filter_$set.log" | head -n 1); $(grep -h '^ok:' "$logdir/validate_$set.log")"
    # the fingerprint of the fixed source (fix may have rewritten it)
    key=$(fingerprint "$src/wav.scp" "$src/utt2spk" "$src/$text_file" "$src/segments" "$src/utt2dur" "$lo" "$hi")
    mark_done "$marker" "$key"
  done
fi

# ---------------------------------------------------------------------------------------------
if stage_on 2; then
  log "stage 2: phonemize -> $dumpdir/raw/<set>/phones"
  need_cli 2 phonemize
  latentspeech phonemize --help 2>&1 | grep -q -- '--data-dir' \
    || { echo "stage 2: needs \`latentspeech phonemize --data-dir\` (not available yet)" >&2; exit 1; }
  for set in $all_sets; do
    dir=$dumpdir/raw/$set
    [ -f "$dir/utt2spk" ] || die "stage 2: no data dir $dir (run stage 1)"
    marker=$expdir/phonemize/$set.done
    key=$(fingerprint "$dir/$text_file" "$expdir/data_prep/$set.done")
    if is_done "$marker" "$key" && [ -f "$dir/phones" ]; then log "  $set: done before"; continue; fi
    $train_cmd "$expdir/phonemize/log/$set.log" latentspeech phonemize --data-dir "$dir" \
      || die "stage 2: phonemizing $dir failed, see $expdir/phonemize/log/$set.log"
    [ -f "$dir/phones" ] || die "stage 2: latentspeech phonemize wrote no $dir/phones"
    mark_done "$marker" "$key"
  done
fi

# train_model STAGE NAME CONFIG OUTDIR MARKER_INPUTS... -- COMMAND...: one training unit
train_model() {
  local st=$1 name=$2 config=$3 out=$4; shift 4
  local inputs=()
  while [ "$1" != -- ]; do inputs+=("$1"); shift; done; shift
  [ -f "$config" ] || die "stage $st: config not found: $config"
  local marker=$out/.done key
  key=$(fingerprint "$config" "${inputs[@]}" "$*")
  if is_done "$marker" "$key" && [ -f "$out/model/model.safetensors" ]; then
    log "  $name: done before ($marker)"; return 0
  fi
  local resume=()
  if [ -f "$out/checkpoints/last.ckpt" ]; then
    resume=(--resume); log "  $name: resuming from $out/checkpoints/last.ckpt"
  fi
  # the job asks for what the trainer settings (config + --set/--devices/... in the command) use
  local res
  res=$("$@" --print-resources --gpus-if-auto "$ngpu" | tail -n 1) \
    || die "stage $st: cannot read the trainer settings of $name (the error is above)"
  log "  $name: training ($res), log in $out/log/train.log"
  # shellcheck disable=SC2086
  $cuda_cmd $res "$out/log/train.log" "$@" "${resume[@]}" \
    || die "stage $st: training $name failed, see $out/log/train.log"
  need_model "$st" "$out/model"
  mark_done "$marker" "$key"
}

# extract STAGE MODEL KIND SET...: latents (KIND=latents) or RVQ codes (KIND=codes) of each set, split over
# $extract_nj jobs of the job runner (job J: the J-th range of the set's utterances -> $dumpdir/KIND/SET/split<N>/J,
# resumable), then merged into one store index
extract() {
  local st=$1 model=$2 kind=$3 set codes=(); shift 3
  [ "$kind" = codes ] && codes=(--codes)
  for set in "$@"; do
    local in=$dumpdir/raw/$set out=$dumpdir/$kind/$set marker=$expdir/extract_$kind/$set.done key
    local logdir=$expdir/extract_$kind/log
    [ -f "$in/utt2spk" ] || die "stage $st: no data dir $in (run stage 1)"
    key=$(fingerprint "$expdir/data_prep/$set.done" "$model" "$model/config.yaml" "$model/model.safetensors")
    if is_done "$marker" "$key"; then log "  $kind of $set: done before"; continue; fi
    log "  $kind of $set: $extract_nj job(s), logs in $logdir/$set.*.log"
    # shellcheck disable=SC2086
    $cuda_cmd --gpu "$(( ngpu > 0 ? 1 : 0 ))" JOB=1:"$extract_nj" "$logdir/$set.JOB.log" \
      latentspeech codec extract --model "$model" "${codes[@]}" --nj "$extract_nj" --job JOB --no-progress \
      --num-workers "$extract_num_workers" --dtype "$extract_dtype" $extract_args "$in" "$out" \
      || die "stage $st: extracting $kind of $set failed, see $logdir/$set.*.log"
    $train_cmd "$logdir/$set.merge.log" latentspeech codec extract --nj "$extract_nj" --merge "$in" "$out" \
      || die "stage $st: merging the $kind jobs of $set failed, see $logdir/$set.merge.log"
    mark_done "$marker" "$key"
  done
}

data_args() {  # data_args FLAG SET...: FLAG dump/raw/A FLAG dump/raw/B ...
  local flag=$1 s; shift
  for s in "$@"; do printf '%s %s ' "$flag" "$dumpdir/raw/$s"; done
}

# lm_train_args FLAG KIND: "--data dump/raw/S FLAG dump/KIND/S" for the train set and every copy of the extra sets
lm_train_args() {
  local flag=$1 kind=$2 e s n k
  for e in "$train_set" $extra_train_sets; do
    s=${e%%:*}; n=1; [ "$s" != "$e" ] && n=${e##*:}
    for ((k = 0; k < n; k++)); do printf -- '--data %s %s %s ' "$dumpdir/raw/$s" "$flag" "$dumpdir/$kind/$s"; done
  done
}

# markers STAGE_DIR SET...: the completion markers of a stage for these sets
markers() { local d=$1 s; shift; for s in "$@"; do echo "$expdir/$d/$s.done"; done; }

# ---------------------------------------------------------------------------------------------
if stage_on 3; then
  log "stage 3: the σ-VAE codec"
  if [ -n "$pretrained_codec" ]; then
    log "  using the given codec $pretrained_codec (no training)"
  else
    need_cli 3 codec train
    # shellcheck disable=SC2046,SC2086
    train_model 3 codec "$codec_config" "$expdir/codec" \
      $(markers data_prep $codec_train_sets) -- \
      latentspeech codec train --config "$codec_config" $(data_args --data $codec_train_sets) \
      --out "$expdir/codec" $codec_train_args
    if [ -n "$codec_finetune_config" ]; then
      # shellcheck disable=SC2046,SC2086
      train_model 3 codec_ft "$codec_finetune_config" "$expdir/codec_ft" \
        "$expdir/codec/.done" $(markers data_prep $codec_train_sets) -- \
        latentspeech codec train --config "$codec_finetune_config" $(data_args --data $codec_train_sets) \
        --init-from "$codec_base" --out "$expdir/codec_ft" $codec_train_args
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
if stage_on 4; then
  log "stage 4: extract latents with $codec_model -> $dumpdir/latents"
  need_cli 4 codec extract
  [ -n "$pretrained_codec" ] || need_model 4 "$codec_model"
  # shellcheck disable=SC2086
  extract 4 "$codec_model" latents $lm_sets
fi

# ---------------------------------------------------------------------------------------------
if stage_on 5; then
  log "stage 5: LatentLM ($(echo ${lm_systems:-none}))"
  if [ "$need_durations" = true ]; then
    # pointer mode (LatentLM's or VALL-E's) trains on per-phone durations: fit the MAS aligner, write
    # dump/latents/<set>/durations (stage 6 copies them next to the codes, which share the latents' frames)
    need_cli 5 align
    # shellcheck disable=SC2046,SC2086
    align_key=$(fingerprint $(markers extract_latents $lm_sets) $(markers phonemize $lm_train_sets) "$aligner_args")
    if is_done "$expdir/aligner/.done" "$align_key" && [ -f "$dumpdir/latents/$train_set/durations" ]; then
      log "  aligner: done before ($expdir/aligner/.done)"
    else
      log "  aligner: training + durations, log in $expdir/aligner/log/align.log"
      # shellcheck disable=SC2086
      $train_cmd "$expdir/aligner/log/align.log" latentspeech align --no-progress \
        $(for s in $lm_sets; do echo --data "$dumpdir/raw/$s" --latents "$dumpdir/latents/$s"; done) \
        --out "$expdir/aligner" $aligner_args \
        || die "stage 5: the aligner failed, see $expdir/aligner/log/align.log"
      mark_done "$expdir/aligner/.done" "$align_key"
    fi
  fi
  for sys in $lm_systems; do
    need_cli 5 train latentlm
    config=$(system_config "$sys")
    # shellcheck disable=SC2086
    # shellcheck disable=SC2046
    train_model 5 "$sys" "$config" "$expdir/$sys" \
      $(markers extract_latents $lm_sets) $(markers phonemize $lm_train_sets) -- \
      latentspeech train latentlm --config "$config" $(lm_train_args --latents latents) \
      --valid-data "$dumpdir/raw/$valid_set" --valid-latents "$dumpdir/latents/$valid_set" \
      --codec "$codec_model" --out "$expdir/$sys" $latentlm_train_args
  done
  # the recognizer that picks the best of N candidates goes with the system "latentlm"
  case " $lm_systems " in *" latentlm "*) with_recognizer=$recognizer ;; *) with_recognizer=false ;; esac
  if [ "$with_recognizer" = true ]; then
    need_cli 5 recognizer
    # shellcheck disable=SC2046,SC2086
    rec_key=$(fingerprint "$expdir/latentlm/model/model.safetensors" $(markers extract_latents $lm_sets) \
      $(markers phonemize $lm_train_sets) "$recognizer_args")
    if is_done "$expdir/recognizer/.done" "$rec_key" && [ -f "$expdir/latentlm/model/recognizer/model.safetensors" ]; then
      log "  recognizer: done before ($expdir/recognizer/.done)"
    else
      log "  recognizer: training + attaching to $expdir/latentlm/model, log in $expdir/recognizer/log/train.log"
      # shellcheck disable=SC2046,SC2086
      $train_cmd "$expdir/recognizer/log/train.log" latentspeech recognizer --no-progress $(lm_train_args --latents latents) \
        --valid-data "$dumpdir/raw/$valid_set" --valid-latents "$dumpdir/latents/$valid_set" \
        --out "$expdir/recognizer" --attach "$expdir/latentlm/model" $recognizer_args \
        || die "stage 5: the recognizer failed, see $expdir/recognizer/log/train.log"
      mark_done "$expdir/recognizer/.done" "$rec_key"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
if stage_on 6 && [ -n "$valle_systems" ]; then
  log "stage 6: the VALL-E baseline (RVQ codec, codes, AR + NAR: $(echo $valle_systems))"
  if [ -n "$pretrained_codec_rvq" ]; then
    log "  using the given RVQ codec $pretrained_codec_rvq"
  else
    need_cli 6 codec train
    # shellcheck disable=SC2046,SC2086
    train_model 6 codec_rvq "$codec_rvq_config" "$expdir/codec_rvq" \
      $(markers data_prep $codec_train_sets) -- \
      latentspeech codec train --config "$codec_rvq_config" $(data_args --data $codec_train_sets) \
      $([ "$codec_rvq_init" = true ] && echo --init-from "$codec_base") \
      --out "$expdir/codec_rvq" $codec_train_args
    if [ -n "$codec_rvq_finetune_config" ]; then
      # shellcheck disable=SC2046,SC2086
      train_model 6 codec_rvq_ft "$codec_rvq_finetune_config" "$expdir/codec_rvq_ft" \
        "$expdir/codec_rvq/.done" $(markers data_prep $codec_train_sets) -- \
        latentspeech codec train --config "$codec_rvq_finetune_config" $(data_args --data $codec_train_sets) \
        --init-from "$codec_rvq_base" --out "$expdir/codec_rvq_ft" $codec_train_args
    fi
  fi
  need_cli 6 codec extract
  # shellcheck disable=SC2086
  extract 6 "$codec_rvq_model" codes $lm_sets
  for s in $lm_sets; do  # the codes share the latents' frames, so their phone durations too (self_split prompts)
    if [ -f "$dumpdir/latents/$s/durations" ]; then cp "$dumpdir/latents/$s/durations" "$dumpdir/codes/$s/durations"; fi
  done
  need_cli 6 train valle
  for sys in $valle_systems; do
    config=$(system_config "$sys")
    if is_pointer "$sys" && [ ! -f "$dumpdir/codes/$train_set/durations" ]; then
      die "stage 6: $sys is a pointer-mode config and trains on phone durations: run stage 5 (the aligner) first"
    fi
    # shellcheck disable=SC2086
    # shellcheck disable=SC2046
    train_model 6 "$sys" "$config" "$expdir/$sys" \
      $(markers extract_codes $lm_sets) $(markers phonemize $lm_train_sets) -- \
      latentspeech train valle --config "$config" $(lm_train_args --codes codes) \
      --valid-data "$dumpdir/raw/$valid_set" --valid-codes "$dumpdir/codes/$valid_set" \
      --codec "$codec_rvq_model" --out "$expdir/$sys" $valle_train_args
  done
elif stage_on 6; then
  log "stage 6: skipped (no VALL-E system)"
fi

# ---------------------------------------------------------------------------------------------
if stage_on 7; then
  log "stage 7: decode the evaluation protocols ($systems) -> $expdir/decode/<set>/<protocol>"
  need_cli 7 eval protocol
  need_cli 7 synthesize
  for edir in $eval_dirs; do
    unit=${edir%/*}; proto=${edir##*/}
    ddir=$expdir/decode/$edir
    cross=$(cross_of "$unit")
    marker=$ddir/protocol.done
    if [ "$proto" = cross ]; then
      key=$(fingerprint "$expdir/data_prep/${cross%%:*}.done" "$expdir/data_prep/${cross##*:}.done" "$cross_num_utts" "$seed")
    else
      key=$(fingerprint "$expdir/data_prep/$unit.done" "$proto" "$eval_min_dur" "$eval_max_dur" "$eval_num_utts" "$seed" \
        "$([ "$proto" = prefix-3s ] && echo "$eval_alignments")" "$([ "$proto" = f5-cross-sentence ] && echo "$eval_f5_list")")
    fi
    if ! is_done "$marker" "$key"; then
      if [ "$proto" = cross ]; then
        $train_cmd "$ddir/log/protocol.log" python3 "$utils/cross_protocol.py" "$dumpdir/raw/${cross%%:*}" \
          "$dumpdir/raw/${cross##*:}" "$ddir" --num "$cross_num_utts" --seed "$seed" --text-file "$text_file" \
          || die "stage 7: protocol of $edir failed, see $ddir/log/protocol.log"
      else
        opts=(--protocol "$proto" --seed "$seed")
        [ "$eval_num_utts" -gt 0 ] && opts+=(--max-utts "$eval_num_utts")
        case $proto in
          f5-cross-sentence) opts+=(--list "$eval_f5_list") ;;
          *) opts+=(--min-seconds "$eval_min_dur" --max-seconds "$eval_max_dur")
             [ "$proto" = prefix-3s ] && [ -n "$eval_alignments" ] && opts+=(--alignments "$eval_alignments") ;;
        esac
        $train_cmd "$ddir/log/protocol.log" latentspeech eval protocol --data-dir "$dumpdir/raw/$unit" \
          --out "$ddir/protocol.tsv" "${opts[@]}" \
          || die "stage 7: protocol $proto of $unit failed, see $ddir/log/protocol.log"
        python3 "$utils/make_pairs.py" --ground-truth "$ddir/protocol.tsv" - "$ddir/ground_truth/pairs.tsv" >/dev/null
      fi
      mark_done "$marker" "$key"
    fi
    for sys in $systems; do
      model=$expdir/$sys/model
      need_model 7 "$model"
      sdir=$ddir/$sys
      wav_dirs=()
      for ((k = 0; k < synth_draws; k++)); do
        # draw 0 in wav/ (marker .done), draw k in wav.drawK/ (marker .done.drawK), synthesized with seed + k
        draw=""; [ "$k" -gt 0 ] && draw=.draw$k
        wdir=$sdir/wav$draw; marker=$sdir/.done$draw; wav_dirs+=("$wdir")
        # the nested codec too: a decoder-only fine-tune put in later (utils/replace_codec.py) changes the audio;
        # and the recognizer that picks among candidates (attached after training; its config holds their number)
        key=$(fingerprint "$ddir/protocol.done" "$model/model.safetensors" "$model/codec/model.safetensors" \
          "$model/recognizer/model.safetensors" "$model/recognizer/config.yaml" "$decode_args" "$((seed + k))")
        if is_done "$marker" "$key"; then log "  $sys on $edir${draw:+ ($draw)}: done before"; continue; fi
        rm -rf "$sdir/split" "$wdir"; mkdir -p "$sdir/split" "$wdir"
        for ((j = 1; j <= nj; j++)); do : > "$sdir/split/list.$j"; done
        awk -v n="$nj" -v d="$sdir/split" 'NR > 1 { print > (d "/list." ((NR - 2) % n + 1)) }' "$ddir/protocol.tsv"
        log "  $sys on $edir${draw:+ ($draw, seed $((seed + k)))}: $(($(wc -l < "$ddir/protocol.tsv") - 1)) utterances, $nj jobs, logs in $sdir/log"
        # shellcheck disable=SC2086
        $decode_cmd JOB=1:"$nj" "$sdir/log/decode$draw.JOB.log" \
          python3 "$utils/decode_list.py" --model "$model" --seed "$((seed + k))" --engine "$decode_engine" \
          --device "$decode_device" --job JOB $decode_args \
          "$sdir/split/list.JOB" "$wdir" || die "stage 7: decoding $edir with $sys failed, see $sdir/log"
        mark_done "$marker" "$key"
      done
      python3 "$utils/make_pairs.py" "$ddir/protocol.tsv" "${wav_dirs[@]}" "$sdir/pairs.tsv" >/dev/null
    done
  done
fi

# ---------------------------------------------------------------------------------------------
if stage_on 8; then
  log "stage 8: evaluate (WER, SIM) -> $expdir/decode/<set>/<protocol>/summary.tsv and report/index.html"
  need_cli 8 eval
  for edir in $eval_dirs; do
    ddir=$expdir/decode/$edir
    [ -f "$ddir/protocol.done" ] || die "stage 8: no protocol in $ddir (run stage 7)"
    results=(); jsons=()
    scored="$systems"; [ -f "$ddir/ground_truth/pairs.tsv" ] && scored="ground_truth $systems"
    for sys in $scored; do
      sdir=$ddir/$sys
      [ -f "$sdir/pairs.tsv" ] || die "stage 8: no decodes in $sdir (run stage 7)"
      marker=$sdir/eval.done
      key=$(fingerprint "$sdir/pairs.tsv" "$sdir/.done" "$ddir/protocol.done" "$eval_args")
      if ! is_done "$marker" "$key"; then
        # shellcheck disable=SC2086
        $decode_cmd "$sdir/log/eval.log" latentspeech eval --pairs "$sdir/pairs.tsv" --out "$sdir/result.json" \
          --system "$sys" --device "$eval_device" $eval_args \
          || die "stage 8: evaluating $sys on $edir failed, see $sdir/log/eval.log"
        mark_done "$marker" "$key"
      fi
      results+=("$sys=$sdir/result.json"); jsons+=("$sdir/result.json")
    done
    python3 "$utils/summarize_results.py" --out "$ddir/summary.tsv" "${results[@]}"
    $decode_cmd "$ddir/log/report.log" latentspeech eval report --results "${jsons[@]}" --out "$ddir/report" \
      || die "stage 8: the HTML report of $edir failed, see $ddir/log/report.log"
    log "  $edir (report: $ddir/report/index.html):"; sed 's/^/    /' "$ddir/summary.tsv"
  done
fi

# ---------------------------------------------------------------------------------------------
if stage_on 9; then
  log "stage 9: package model dirs -> $expdir/packed"
  models=()
  [ -z "$pretrained_codec" ] && models+=("codec=$codec_model")
  for sys in $lm_systems; do models+=("$sys=$expdir/$sys/model"); done
  if [ -n "$valle_systems" ]; then
    [ -z "$pretrained_codec_rvq" ] && models+=("codec_rvq=$codec_rvq_model")
    for sys in $valle_systems; do models+=("$sys=$expdir/$sys/model"); done
  fi
  summaries=()
  for edir in $eval_dirs; do
    [ -f "$expdir/decode/$edir/summary.tsv" ] && summaries+=(--results "$edir=$expdir/decode/$edir/summary.tsv")
  done
  python3 "$utils/package_models.py" --out "$expdir/packed" --recipe "$PWD" --dtype "$package_dtype" \
    --train-data "$dumpdir/raw/$train_set" "${summaries[@]}" "${models[@]}" \
    || die "stage 9: packaging failed"
fi

log "finished stages $stage..$stop_stage"
