#!/usr/bin/env bash
# slurm.sh: run jobs on a SLURM cluster, with the same interface as run.sh (Kaldi's slurm.pl).
#
#   recipes/utils/slurm.sh [options] [JOB=1:N] <log-file> <command> [args...]
#   e.g. slurm.sh --gpu 8 --nodes 2 --time 72:00:00 exp/latentlm/log/train.log latentspeech train latentlm ...
#
# Outside an allocation the jobs go out as one array job with `sbatch --wait` (the script is kept
# in <log-dir>/q/); inside one (SLURM_JOB_ID set, e.g. under salloc) each job runs as a job step
# with `srun`. A job of several tasks (--ntasks-per-node T > 1, which --gpu N > 1 implies, or
# --nodes N > 1) asks for N nodes x T tasks with --num-threads CPUs and --gpu GPUs per node, and
# its command is started once per task by `srun` (rank = SLURM_PROCID), which is what Lightning's
# SLURM environment expects for DDP: trainer.devices = T and trainer.num_nodes = N (recipes/tts.sh
# asks for exactly what a training config uses, `latentspeech train ... --print-resources`).
# Logs, exit status and options are those of run.sh (see job_lib.sh); --sbatch-opt passes anything else.
set -uo pipefail
jl_prog=slurm.sh
# shellcheck source=job_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_lib.sh"
jl_parse "$@"

total=$((jl_last - jl_first + 1))
name=$(basename "$jl_log"); name=${name%.log}; [ -n "$jl_var" ] && name=${name//.$jl_var/}; name=${name//$jl_var/}
multi_task=false
if [ "$jl_tasks" -gt 1 ] || [ "$jl_nodes" -gt 1 ]; then multi_task=true; fi
shape=()  # the job's shape: nodes x tasks, CPUs per task, GPUs and memory per node
[ "$multi_task" = true ] && shape+=(--nodes="$jl_nodes" --ntasks-per-node="$jl_tasks")
[ "$jl_threads" -gt 1 ] && shape+=(--cpus-per-task="$jl_threads")
[ "$jl_gpu" -gt 0 ] && shape+=(--gres="gpu:$jl_gpu")
[ -n "$jl_mem" ] && shape+=(--mem="$jl_mem")
res=("${shape[@]}")
[ -n "$jl_time" ] && res+=(--time="$jl_time")
[ -n "$jl_partition" ] && res+=(--partition="$jl_partition")
[ -n "$jl_account" ] && res+=(--account="$jl_account")
res+=("${jl_sbatch_opts[@]}")

# launcher: how a multi-task job starts its command, once per task. In a batch job srun takes every GPU
# of the node for each task (Lightning picks one by SLURM_LOCALID) and the job's nodes x tasks; it is
# told the CPUs per task (newer SLURM no longer passes sbatch's --cpus-per-task on to srun).
launcher="srun --nodes=$jl_nodes --ntasks-per-node=$jl_tasks"
[ "$jl_threads" -gt 1 ] && launcher+=" --cpus-per-task=$jl_threads"
launcher+=" --kill-on-bad-exit=1"

# job_body I: the shell lines that run job I into its log (same log format as run.sh)
job_body() {
  local i=$1 log cmd
  log=$(jl_logfile "$i"); cmd=$(jl_command "$i")
  [ "$multi_task" = true ] && cmd="$launcher bash -c $(printf '%q' "$cmd")"
  cat <<BODY
mkdir -p $(printf '%q' "$(dirname "$log")")
log=$(printf '%q' "$log")
start=\$(date +%s)
{ echo $(printf '%q' "# $cmd"); echo "# Started at \$(date) on \$(hostname) (SLURM job \${SLURM_JOB_ID:-?})"; } > "\$log"
( set -o pipefail; $cmd ) >> "\$log" 2>&1 < /dev/null
rc=\$?
{ echo "# Accounting: time=\$(( \$(date +%s) - start )) threads=$jl_threads"
  echo "# Ended (code \$rc) at \$(date), elapsed time \$(( \$(date +%s) - start )) seconds"; } >> "\$log"
exit \$rc
BODY
}

count_failed() {
  local i failed=0
  for ((i = jl_first; i <= jl_last; i++)); do
    grep -q '^# Ended (code 0)' "$(jl_logfile "$i")" 2>/dev/null || failed=$((failed + 1))
  done
  echo "$failed"
}

if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
  # inside an allocation: one job step per job, in parallel; a multi-task job's step is its whole shape,
  # named after the job (Lightning ignores SLURM under the names "bash" and "interactive" salloc gives)
  [ "$multi_task" = true ] && launcher="srun --job-name=$name ${shape[*]} --kill-on-bad-exit=1"
  pids=()
  for ((i = jl_first; i <= jl_last; i++)); do
    if [ "$jl_max_jobs" -gt 0 ]; then
      while [ "$(jobs -rp | wc -l)" -ge "$jl_max_jobs" ]; do wait -n 2>/dev/null || true; done
    fi
    if [ "$multi_task" = true ]; then
      bash -c "$(job_body "$i")" &
    else
      srun --ntasks=1 --nodes=1 --exclusive "${res[@]}" bash -c "$(job_body "$i")" &
    fi
    pids+=($!)
  done
  wait
  jl_report "$(count_failed)" "$total"
  exit $?
fi

command -v sbatch >/dev/null 2>&1 || jl_die "sbatch not found: is SLURM installed here? (use run.sh in cmd.sh to run jobs locally)"

qdir="$(dirname "$(jl_logfile "$jl_first")")/q"
mkdir -p "$qdir"
script="$qdir/$name.sh"
{
  echo "#!/usr/bin/env bash"
  echo "# written by slurm.sh: $total job(s) of $(printf '%q ' "${jl_args[@]}")"
  echo "cd $(printf '%q' "$PWD")"
  echo 'i=${SLURM_ARRAY_TASK_ID:-'"$jl_first"'}'
  echo 'case "$i" in'
  for ((i = jl_first; i <= jl_last; i++)); do
    echo "$i)"
    job_body "$i" | sed 's/^/  /'
    echo "  ;;"
  done
  echo '*) echo "slurm.sh job script: no job $i" >&2; exit 1 ;;'
  echo 'esac'
} > "$script"
chmod +x "$script"

array="$jl_first-$jl_last"
[ "$jl_max_jobs" -gt 0 ] && array+="%$jl_max_jobs"
sbatch --wait --parsable --job-name="$name" --array="$array" --output="$qdir/$name.%a.out" \
  "${res[@]}" "$script" > "$qdir/$name.sbatch" 2>&1
sbatch_rc=$?
failed=$(count_failed)
if [ "$failed" -eq 0 ] && [ "$sbatch_rc" -ne 0 ]; then
  echo "slurm.sh: sbatch failed (exit $sbatch_rc): $(tail -n 1 "$qdir/$name.sbatch")" >&2
  exit 1
fi
jl_report "$failed" "$total"
