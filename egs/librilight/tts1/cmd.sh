# cmd.sh: how the recipe's jobs run. Pick one backend.
#   local: recipes/utils/run.sh runs jobs as parallel processes on this machine
#   slurm: recipes/utils/slurm.sh submits them with sbatch (or srun inside an allocation)
# The runners take Kaldi's interface: $cmd [options] [JOB=1:N] <log> <command...>.
cmd_backend=${cmd_backend:-local}
_utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../recipes/utils" && pwd)
case "$cmd_backend" in
  local)
    export train_cmd="$_utils/run.sh"                    # data preparation (CPU)
    export cuda_cmd="$_utils/run.sh --max-jobs-run 1"    # training / extraction: one at a time on the GPU(s)
    export decode_cmd="$_utils/run.sh"                   # synthesis and evaluation
    ;;
  slurm)
    # GPU jobs: recipes/tts.sh gives each its GPUs, tasks and nodes (a training job: its config's
    # trainer.devices x num_nodes, one task per GPU; an extraction job: 1 GPU). --num-threads is CPUs
    # per task (a training rank and its data.num_workers loader processes), --mem per node.
    # Edit --time/--partition/--account (--sbatch-opt passes anything else).
    export train_cmd="$_utils/slurm.sh --num-threads 8 --mem 32G --time 24:00:00"
    export cuda_cmd="$_utils/slurm.sh --num-threads 8 --mem 256G --time 72:00:00"
    export decode_cmd="$_utils/slurm.sh --gpu 1 --num-threads 4 --mem 32G --time 12:00:00"
    ;;
  *) echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2; return 1 ;;
esac
unset _utils
