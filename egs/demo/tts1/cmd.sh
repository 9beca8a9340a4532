# cmd.sh: how the recipe's jobs run. Pick one backend.
#   local: recipes/utils/run.sh runs jobs as parallel processes on this machine (the default)
#   slurm: recipes/utils/slurm.sh submits them with sbatch (or srun inside an allocation)
# The runners take Kaldi's interface: $cmd [options] [JOB=1:N] <log> <command...>.
cmd_backend=${cmd_backend:-local}
_utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../recipes/utils" && pwd)
case "$cmd_backend" in
  local)
    export train_cmd="$_utils/run.sh"                    # data preparation
    export cuda_cmd="$_utils/run.sh --max-jobs-run 1"    # training / extraction, one at a time
    export decode_cmd="$_utils/run.sh"                   # synthesis and evaluation
    ;;
  slurm)
    export train_cmd="$_utils/slurm.sh --num-threads 2 --mem 8G --time 4:00:00"
    # GPU jobs: recipes/tts.sh gives each its GPUs, tasks and nodes (a training job: its config's trainer
    # section, one task per device; run.sh's --ngpu 0 keeps devices: auto configs on the CPU). --num-threads
    # is CPUs per task, --mem per node.
    export cuda_cmd="$_utils/slurm.sh --num-threads 8 --mem 32G --time 12:00:00"
    export decode_cmd="$_utils/slurm.sh --num-threads 2 --mem 8G --time 4:00:00"
    ;;
  *) echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2; return 1 ;;
esac
unset _utils
