#!/usr/bin/env bash
# Renders an sbatch script for one multi-host run (one task per node, each seeing all of its node's GPUs) and
# submits it. See launch/README.md.
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # die, quote, parse_args
prog=launch/slurm.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<'EOF'
Usage: launch/slurm.sh [OPTIONS] -- ARGS...

Writes an sbatch script to SCRIPT_DIR and submits it with sbatch. The job runs, on every node,
  srun python -m superconsistency ARGS --multihost
(jax.distributed.initialize() reads the SLURM_* variables), one task per node that sees all the node's GPUs.
Preemption and the time limit arrive as SIGTERM (--signal=TERM@120: two minutes before the limit); the run saves a
checkpoint and exits 143, and the job requeues itself; the requeued job runs the same command, which resumes.
WORKDIR and this checkout must be on a filesystem every node shares (NFS, Lustre, ...).

Options:
  --nodes N            nodes (default 1)
  --gpus_per_node G    GPUs per node (default 1)
  --partition P        partition (default: the cluster's)
  --time HH:MM:SS      time limit (default: the partition's)
  --job_name NAME      job name (default superconsistency)
  --account A          account to charge (default: yours)
  --venv PATH          virtual environment to activate in the job (default: none; sbatch passes on your environment)
  --script_dir DIR     where the sbatch script and the job's log go (default slurm/)
  --dry-run            print the sbatch script and the sbatch command; write and submit nothing
  -h, --help           show this help

Example:
  launch/slurm.sh --nodes 2 --gpus_per_node 4 --time 01:00:00 --venv .venv -- \
      --config=configs/quickstart.py --workdir=runs/quickstart
EOF
}

parse_args "--nodes --gpus_per_node --partition --time --job_name --account --venv --script_dir" "" "$@"
nodes=${opt[--nodes]-1}
gpus=${opt[--gpus_per_node]-1}
partition=${opt[--partition]-}
time_limit=${opt[--time]-}
job_name=${opt[--job_name]-superconsistency}
account=${opt[--account]-}
venv=${opt[--venv]-}
script_dir=${opt[--script_dir]-slurm}

[[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, got '$nodes'"
[[ $gpus =~ ^[0-9]+$ ]] || die "--gpus_per_node must be a whole number, got '$gpus'"
word='^[A-Za-z0-9._,+-]+$'  # #SBATCH lines are not read by a shell: their values must not need quoting
[[ $job_name =~ $word ]] || die "--job_name may only contain letters, digits and . _ , + -, got '$job_name'"
[[ -z $partition || $partition =~ $word ]] || die "--partition may only contain letters, digits and . _ , + -, got '$partition'"
[[ -z $account || $account =~ $word ]] || die "--account may only contain letters, digits and . _ , + -, got '$account'"
[[ -z $time_limit || $time_limit =~ ^([0-9]+-)?[0-9]+(:[0-9]{1,2}){0,2}$ ]] ||
  die "--time must look like HH:MM:SS (or D-HH:MM:SS, MM:SS, minutes), got '$time_limit'"
[[ $script_dir != *[[:space:]]* ]] || die "--script_dir must not contain whitespace, got '$script_dir'"
[[ -z $venv || $venv == /* ]] || venv="$PWD/$venv"
[[ $script_dir == /* ]] || script_dir="$PWD/$script_dir"
script_dir=${script_dir%/}
[[ -z $venv || $dry_run == 1 || -f $venv/bin/activate ]] || die "--venv $venv has no bin/activate"

python=${PYTHON:-python}
script="$script_dir/$job_name-$(date +%Y%m%d-%H%M%S).sbatch"

render() {
  echo "#!/bin/bash"
  echo "# Rendered by launch/slurm.sh; submitted with: sbatch $(quote "$script")"
  echo "#SBATCH --job-name=$job_name"
  echo "#SBATCH --nodes=$nodes"
  echo "#SBATCH --ntasks-per-node=1"
  ((gpus == 0)) || echo "#SBATCH --gpus-per-node=$gpus"
  [[ -z $partition ]] || echo "#SBATCH --partition=$partition"
  [[ -z $time_limit ]] || echo "#SBATCH --time=$time_limit"
  [[ -z $account ]] || echo "#SBATCH --account=$account"
  echo "#SBATCH --signal=TERM@120"
  echo "#SBATCH --requeue"
  echo "#SBATCH --open-mode=append"
  echo "#SBATCH --output=$script_dir/$job_name-%j.out"
  cat <<'EOF'

# One task per node; each sees all of its node's GPUs, and jax.distributed.initialize() (--multihost) finds the
# coordinator, the process count and its process id in the SLURM_* variables. Every task runs the same command;
# process 0 writes the results, and checkpoints are written collectively to WORKDIR, so WORKDIR must be on a
# filesystem all nodes share.
#
# --signal=TERM@120 sends SIGTERM to the tasks two minutes before the time limit; on preemption SLURM sends SIGTERM
# too (and SIGKILL after the partition's GraceTime). On SIGTERM the run saves a checkpoint and exits 143.
set -uo pipefail
EOF
  echo "cd $(quote "$repo")"
  [[ -z $venv ]] || echo "source $(quote "$venv/bin/activate")"
  cat <<'EOF'
# The batch shell may get SIGTERM as well: note it and keep waiting for srun, so the exit code below is srun's.
trap 'echo "batch script: got SIGTERM; waiting for the run to save its checkpoint"' TERM
echo "$(date -Is) job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}"
EOF
  echo "srun $(quote "$python" -m superconsistency "${args[@]}" --multihost)"
  cat <<'EOF'
rc=$?
if [ "$rc" -eq 143 ]; then
  # Preempted or out of time: every process saved a checkpoint in WORKDIR before exiting. Requeue this job (same job
  # id, same log, appended); the rerun runs the same command and resumes from that checkpoint.
  echo "$(date -Is) preempted (exit 143): requeueing job ${SLURM_JOB_ID}; the rerun resumes from the checkpoint"
  scontrol requeue "${SLURM_JOB_ID}"
fi
exit "$rc"
EOF
}

if ((dry_run)); then
  echo "# $script"
  render
  echo
  echo "# submit with:"
  quote sbatch "$script"
  exit 0
fi

command -v sbatch >/dev/null 2>&1 || {
  echo "$prog: error: sbatch not found (run this on a SLURM login node)" >&2
  exit 1
}
mkdir -p "$script_dir"
render >"$script"
chmod +x "$script"
echo "$prog: wrote $script; the job's log goes to $script_dir/$job_name-<jobid>.out" >&2
echo "+ $(quote sbatch "$script")" >&2
exec sbatch "$script"
