#!/usr/bin/env bash
# job_lib.sh: the command-line interface shared by the job runners run.sh and slurm.sh (sourced).
#
#   <runner> [options] [JOB=1:N] <log-file> <command> [args...]
#
# JOB (any upper-case name) is replaced by the job index in the log file name and in every
# argument. Arguments are joined into one shell command like Kaldi's run.pl does: an argument
# without white space is passed as is (so an escaped \| or \> becomes a pipe or a redirection
# of the job), one with white space is double-quoted (single-quoted if it holds a double quote).
#
# Options (accepted by both runners; the local one ignores the resource ones):
#   --max-jobs-run N   at most N jobs at once (default: all)
#   --gpu N            GPUs per node of a job         --num-threads N   CPU threads per task
#   --ntasks-per-node N  processes per node (default: --gpu when > 1, else 1; one per GPU for DDP)
#   --nodes N          nodes per job                  --mem SIZE        memory per node (4G)
#   --time T           time limit (SLURM syntax)      --partition P / --account A / --sbatch-opt OPT
# A job of several tasks (--ntasks-per-node > 1 or --nodes > 1, e.g. DDP training) asks for
# nodes x tasks, each task with --num-threads CPUs, and starts its command once per task.

jl_max_jobs=0; jl_gpu=0; jl_threads=1; jl_mem=""; jl_time=""; jl_nodes=1; jl_tasks=""
jl_partition=""; jl_account=""; jl_sbatch_opts=()

jl_die() { echo "${jl_prog:-runner}: $*" >&2; exit 1; }

# jl_parse "$@": sets jl_var, jl_first, jl_last, jl_log, jl_args (array)
jl_parse() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --max-jobs-run) jl_max_jobs=$2; shift 2 ;;
      --gpu) jl_gpu=$2; shift 2 ;;
      --num-threads) jl_threads=$2; shift 2 ;;
      --mem) jl_mem=$2; shift 2 ;;
      --time) jl_time=$2; shift 2 ;;
      --nodes) jl_nodes=$2; shift 2 ;;
      --ntasks-per-node) jl_tasks=$2; shift 2 ;;
      --partition) jl_partition=$2; shift 2 ;;
      --account) jl_account=$2; shift 2 ;;
      --sbatch-opt) jl_sbatch_opts+=("$2"); shift 2 ;;
      --config) shift 2 ;;  # Kaldi's queue.pl config: nothing to configure here
      --*) jl_die "unknown option $1" ;;
      *) break ;;
    esac
  done
  jl_var=""; jl_first=1; jl_last=1
  if [[ "${1:-}" =~ ^([A-Z][A-Z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
    jl_var=${BASH_REMATCH[1]}; jl_first=${BASH_REMATCH[2]}; jl_last=${BASH_REMATCH[3]}; shift
  elif [[ "${1:-}" =~ ^([A-Z][A-Z0-9_]*)=([0-9]+)$ ]]; then
    jl_var=${BASH_REMATCH[1]}; jl_first=${BASH_REMATCH[2]}; jl_last=${BASH_REMATCH[2]}; shift
  fi
  [ $# -ge 2 ] || jl_die "usage: ${jl_prog:-runner} [options] [JOB=1:N] <log-file> <command> [args...]"
  (( jl_first <= jl_last )) || jl_die "empty job range $jl_var=$jl_first:$jl_last"
  jl_log=$1; shift
  if [ -n "$jl_var" ] && [ "$jl_last" -gt "$jl_first" ] && [[ "$jl_log" != *"$jl_var"* ]]; then
    jl_die "the log file name must contain $jl_var when running several jobs: $jl_log"
  fi
  jl_args=("$@")
  [[ "$jl_max_jobs" =~ ^[0-9]+$ ]] || jl_die "--max-jobs-run takes a number, got '$jl_max_jobs'"
  local n
  for n in "$jl_gpu" "$jl_threads" "$jl_nodes" "${jl_tasks:-1}"; do
    [[ "$n" =~ ^[0-9]+$ ]] || jl_die "--gpu, --num-threads, --nodes and --ntasks-per-node take numbers, got '$n'"
  done
  [ -n "$jl_tasks" ] || jl_tasks=$(( jl_gpu > 1 ? jl_gpu : 1 ))
  (( jl_nodes >= 1 && jl_tasks >= 1 )) || jl_die "--nodes and --ntasks-per-node must be at least 1"
}

# jl_command I: the shell command of job I (JOB replaced, arguments quoted as run.pl does)
jl_command() {
  local i=$1 cmd="" a
  for a in "${jl_args[@]}"; do
    [ -n "$jl_var" ] && a=${a//$jl_var/$i}
    if [[ "$a" =~ ^[^[:space:]]+$ ]]; then cmd+="$a "
    elif [[ "$a" == *\"* ]]; then cmd+="'$a' "
    else cmd+="\"$a\" "
    fi
  done
  printf '%s' "${cmd% }"
}

# jl_logfile I: the log file of job I
jl_logfile() {
  if [ -n "$jl_var" ]; then printf '%s' "${jl_log//$jl_var/$1}"; else printf '%s' "$jl_log"; fi
}

# jl_report FAILED TOTAL: the summary line (and the end of the first failed log) on stderr
jl_report() {
  local failed=$1 total=$2 i log
  [ "$failed" -eq 0 ] && return 0
  for ((i = jl_first; i <= jl_last; i++)); do
    log=$(jl_logfile "$i")
    if ! grep -q '^# Ended (code 0)' "$log" 2>/dev/null; then
      local pattern=$jl_log
      [ -n "$jl_var" ] && pattern=${jl_log//$jl_var/*}
      echo "${jl_prog}: $failed / $total failed, log is in $pattern; the end of $log:" >&2
      tail -n 8 "$log" 2>/dev/null | sed 's/^/    /' >&2
      break
    fi
  done
  return 1
}
