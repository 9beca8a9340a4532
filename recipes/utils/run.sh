#!/usr/bin/env bash
# run.sh: run jobs as local processes, with Kaldi's run.pl interface.
#
#   recipes/utils/run.sh [options] [JOB=1:N] <log-file> <command> [args...]
#   e.g. run.sh JOB=1:4 exp/x/log/extract.JOB.log latentspeech codec extract data/split4/JOB dump/x/JOB
#
# Jobs run in parallel (--max-jobs-run N caps them), each with stdout and stderr in its log file,
# which starts with the command and ends with "# Ended (code C) ...". The exit status is 0 only when
# every job succeeded; otherwise it prints how many failed and the end of the first failed log.
# Options: see job_lib.sh (GPU/memory/time options are accepted and ignored: jobs share this machine).
set -uo pipefail
jl_prog=run.sh
# shellcheck source=job_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_lib.sh"
jl_parse "$@"

status_dir=$(mktemp -d "${TMPDIR:-/tmp}/run_sh.XXXXXX")
pids=()
cleanup() { rm -rf "$status_dir"; }
on_signal() {
  echo "$jl_prog: interrupted, stopping ${#pids[@]} job(s)" >&2
  for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  cleanup; exit 130
}
trap on_signal INT TERM
trap cleanup EXIT

run_job() {
  local i=$1 log cmd start rc
  log=$(jl_logfile "$i"); cmd=$(jl_command "$i")
  mkdir -p "$(dirname "$log")"
  start=$(date +%s)
  {
    echo "# $cmd"
    echo "# Started at $(date) on $(hostname)"
  } > "$log"
  ( set -o pipefail; bash -c "$cmd" ) >> "$log" 2>&1 < /dev/null
  rc=$?
  {
    echo "# Accounting: time=$(( $(date +%s) - start )) threads=$jl_threads"
    echo "# Ended (code $rc) at $(date), elapsed time $(( $(date +%s) - start )) seconds"
  } >> "$log"
  echo "$rc" > "$status_dir/$i"
  return "$rc"
}

set -m  # each job in its own process group, so that an interrupt stops its children too
for ((i = jl_first; i <= jl_last; i++)); do
  if [ "$jl_max_jobs" -gt 0 ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$jl_max_jobs" ]; do wait -n 2>/dev/null || true; done
  fi
  run_job "$i" &
  pids+=($!)
done
wait
set +m

total=$((jl_last - jl_first + 1)); failed=0
for ((i = jl_first; i <= jl_last; i++)); do
  [ "$(cat "$status_dir/$i" 2>/dev/null || echo 1)" = 0 ] || failed=$((failed + 1))
done
jl_report "$failed" "$total"
