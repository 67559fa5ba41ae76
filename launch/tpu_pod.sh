#!/usr/bin/env bash
# Runs one multi-host job on a Cloud TPU VM (a pod slice): creates the VM if it does not exist, puts the code on every
# worker, installs it, runs the same command on all workers and fetches the workdir. See launch/README.md.
# The commands for the workers hold $(...) and $PY in single quotes, for the workers' shell to expand:
# shellcheck disable=SC2016
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # die, quote, parse_args
prog=launch/tpu_pod.sh
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
remote_dir=superconsistency  # on every worker, relative to the home directory

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh --name NAME --zone ZONE [OPTIONS] -- ARGS...

  1. creates the TPU VM NAME if `gcloud compute tpus tpu-vm describe` finds none (reuses it otherwise; a preempted
     spot VM is deleted and created again),
  2. puts the code in ~/superconsistency on every worker (a copy of this checkout's files, or a clone of --repo),
     mounts --bucket with gcsfuse, and installs the package and jax[tpu] in ~/superconsistency/.venv,
  3. runs `python -m superconsistency ARGS --multihost` on all workers at once (jax.distributed finds the pod),
  4. copies the workdir into --fetch (from the bucket, or from worker 0).
Checkpoints are written collectively, so on a slice of several workers WORKDIR must be in the shared bucket:
--bucket gs://B mounts B at /mnt/B on every worker; pass --workdir=/mnt/B/SOMEWHERE.
If the run is preempted (exit 143: a spot VM) rerun the same command: it resumes from the checkpoint.

Options:
  --name NAME            TPU VM name (required)
  --zone ZONE            zone, e.g. us-central2-b (required)
  --accelerator TYPE     accelerator type (default v4-32)
  --version VERSION      TPU VM software version (default tpu-ubuntu2204-base)
  --spot                 create a spot VM (cheaper, preemptible)
  --bucket gs://B        mount bucket B at /mnt/B on every worker (gcsfuse)
  --repo URL             git clone URL on the workers instead of copying this checkout
  --fetch LOCAL_DIR      after the run, copy the workdir into LOCAL_DIR
  --dry-run              print every command (gcloud and local) and run none; gcloud need not be installed
  -h, --help             show this help
The gcloud project is gcloud's default (set CLOUDSDK_CORE_PROJECT to choose another).

Example:
  launch/tpu_pod.sh --name sc-v4 --zone us-central2-b --accelerator v4-32 --spot --bucket gs://my-bucket \
      --fetch runs/ -- --config=configs/quickstart.py --workdir=/mnt/my-bucket/quickstart
EOF
}

qq() { # the arguments quoted with printf %q (no single quotes: commands built for the remote shell use this)
  local out
  printf -v out '%q ' "$@"
  printf '%s\n' "${out% }"
}

parse_args "--name --zone --accelerator --version --bucket --repo --fetch" "--spot" "$@"
name=${opt[--name]-}
zone=${opt[--zone]-}
accelerator=${opt[--accelerator]-v4-32}
version=${opt[--version]-tpu-ubuntu2204-base}
spot=${opt[--spot]-0}
bucket=${opt[--bucket]-}
repo_url=${opt[--repo]-}
fetch=${opt[--fetch]-}

[[ -n $name ]] || die "--name NAME is required (the TPU VM to create or reuse)"
[[ -n $zone ]] || die "--zone ZONE is required"
[[ $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name must be lower-case letters, digits and -, got '$name'"
[[ $zone =~ ^[a-z0-9-]+$ ]] || die "--zone must look like us-central2-b, got '$zone'"
[[ $accelerator =~ ^[a-z0-9-]+$ ]] || die "--accelerator must look like v4-32, got '$accelerator'"
bucket_name=""
if [[ -n $bucket ]]; then
  [[ $bucket =~ ^gs://([a-z0-9][-a-z0-9_.]*[a-z0-9])/?$ ]] || die "--bucket must look like gs://BUCKET, got '$bucket'"
  bucket_name=${BASH_REMATCH[1]}
fi

# The workdir, from the run's arguments (--workdir=DIR or --workdir DIR).
workdir=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --workdir=*) workdir=${args[i]#--workdir=} ;;
    --workdir) ((i + 1 < ${#args[@]})) && workdir=${args[i + 1]} ;;
  esac
done
[[ -z $fetch || -n $workdir ]] || die "--fetch needs --workdir=DIR among the run's arguments"
mount=""
if [[ -n $bucket_name ]]; then
  mount=/mnt/$bucket_name
  if [[ -n $workdir && $workdir != "$mount" && $workdir != "$mount"/* ]]; then
    echo "$prog: warning: --workdir=$workdir is not under $mount: its checkpoints are not in the shared bucket" >&2
  fi
elif [[ $accelerator =~ -([0-9]+)$ ]] && ((BASH_REMATCH[1] > 8)); then
  echo "$prog: warning: no --bucket: WORKDIR is on each worker's own disk, but a multi-worker slice writes its" \
    "checkpoints collectively to a shared filesystem (use --bucket gs://B --workdir=/mnt/B/...)" >&2
fi

gcloud=${GCLOUD:-gcloud}
tpu=("$gcloud" compute tpus tpu-vm)
tmp=""
trap '[[ -z $tmp ]] || rm -rf "$tmp"' EXIT

show() { # print a command; run it unless this is a dry run
  if ((dry_run)); then
    quote "$@"
  else
    echo "+ $(quote "$@")" >&2
    "$@"
  fi
}
if ((dry_run)); then
  step() { echo; echo "# $*"; }
else
  step() { echo "$prog: $*" >&2; }
fi

# ---- 1. the TPU VM ----------------------------------------------------------------------------------------------------
create=("${tpu[@]}" create "$name" "--zone=$zone" "--accelerator-type=$accelerator" "--version=$version")
((spot)) && create+=(--spot)
[[ -z $bucket_name ]] || create+=(--scopes=https://www.googleapis.com/auth/cloud-platform)  # gcsfuse writes
describe=("${tpu[@]}" describe "$name" "--zone=$zone" '--format=value(state)')
delete=("${tpu[@]}" delete "$name" "--zone=$zone" --quiet)
if ((dry_run)); then
  step "1. the TPU VM: reused if it exists (its state printed by describe)"
  quote "${describe[@]}"
  echo "# if absent:"
  quote "${create[@]}"
  echo "# if PREEMPTED or TERMINATED (a spot VM cannot be restarted):"
  quote "${delete[@]}"
  quote "${create[@]}"
else
  step "1. the TPU VM"
  echo "+ $(quote "${describe[@]}")" >&2
  if state=$("${describe[@]}" 2>/dev/null); then
    case $state in
      PREEMPTED | TERMINATED)
        echo "$prog: $name is $state: deleting it and creating it again" >&2
        show "${delete[@]}"
        show "${create[@]}" ;;
      READY) echo "$prog: reusing $name (READY)" >&2 ;;
      *) echo "$prog: warning: reusing $name in state '$state'" >&2 ;;
    esac
  else
    echo "$prog: $name does not exist: creating it" >&2
    show "${create[@]}"
  fi
fi

# ---- 2. code, bucket and install on every worker ------------------------------------------------------------------------
ssh_all=("${tpu[@]}" ssh "$name" "--zone=$zone" --worker=all)
if [[ -n $repo_url ]]; then
  get_code="if [ -d ~/$remote_dir/.git ]; then git -C ~/$remote_dir pull --ff-only; else git clone $(qq "$repo_url") ~/$remote_dir; fi"
  step "2. code: clone $repo_url on every worker"
else
  tarball_name=$remote_dir-code.tgz
  if ((dry_run)); then
    tarball=/tmp/$tarball_name
    step "2. code: copy this checkout's files (tracked and untracked, not ignored) to every worker"
    echo "# local:"
    echo "(cd $(quote "$repo") && git ls-files -z --cached --others --exclude-standard | tar --null -czf $(quote "$tarball") -T -)"
  else
    step "2. code: copying this checkout's files to every worker"
    git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || die "$repo is not a git checkout: pass --repo URL"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/launch-tpu.XXXXXX")
    tarball=$tmp/$tarball_name
    (
      cd "$repo"
      git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
        [[ -e $f || -L $f ]] && printf '%s\0' "$f"   # skips files deleted but not yet committed
      done | tar --null -czf "$tarball" -T -
    )
  fi
  show "${tpu[@]}" scp "$tarball" "$name:$tarball_name" "--zone=$zone" --worker=all
  get_code="mkdir -p ~/$remote_dir && tar -xzf ~/$tarball_name -C ~/$remote_dir && rm -f ~/$tarball_name"
fi

if [[ -n $bucket_name ]]; then
  mount_cmd='set -e; if ! command -v gcsfuse >/dev/null; then'
  mount_cmd+=' curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --batch --yes --dearmor -o /usr/share/keyrings/cloud.google.gpg;'
  mount_cmd+=' echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null;'
  mount_cmd+=' sudo apt-get update -qq; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcsfuse; fi;'
  mount_cmd+=" sudo mkdir -p $(qq "$mount"); sudo chown \"\$(id -u):\$(id -g)\" $(qq "$mount");"
  mount_cmd+=" mountpoint -q $(qq "$mount") || gcsfuse --implicit-dirs $(qq "$bucket_name") $(qq "$mount")"
  step "2b. mount $bucket at $mount on every worker"
  show "${ssh_all[@]}" "--command=$mount_cmd"
fi

# The package needs Python >= 3.11; tpu-ubuntu2204-base has 3.10, so python3.11 comes from apt there.
install_cmd="set -e; $get_code; cd ~/$remote_dir;"
install_cmd+=' PY=python3; python3 -c "import sys; sys.exit(sys.version_info < (3, 11))" || PY=python3.11;'
install_cmd+=' command -v $PY >/dev/null || { sudo apt-get update -qq; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PY $PY-venv; };'
install_cmd+=' [ -x .venv/bin/python ] || $PY -m venv .venv || { rm -rf .venv; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PY-venv; $PY -m venv .venv; };'
install_cmd+=" . .venv/bin/activate; pip install -q -U pip;"
install_cmd+=" pip install -q -e \".[test]\" \"jax[tpu]\" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"
step "2c. install on every worker"
show "${ssh_all[@]}" "--command=$install_cmd"

# ---- 3. the run -----------------------------------------------------------------------------------------------------------
run_cmd="cd ~/$remote_dir && . .venv/bin/activate && exec python -m superconsistency $(qq "${args[@]}") --multihost"
step "3. run on all workers (exit 143: preempted after saving a checkpoint; rerun this script to resume)"
rc=0
show "${ssh_all[@]}" "--command=$run_cmd" || rc=$?

if ((!dry_run && rc != 0)); then
  state=$("${describe[@]}" 2>/dev/null) || state=""
  if ((rc == 143)) || [[ $state == PREEMPTED ]]; then
    echo "$prog: the run was preempted (exit $rc${state:+, VM state $state}). Its last checkpoint is in the workdir;" \
      "rerun this same command to resume from it." >&2
    [[ -n $bucket_name ]] || echo "$prog: (without --bucket the checkpoint is on the workers' disks, lost if the VM" \
      "is deleted)" >&2
    exit 143
  fi
  echo "$prog: the run failed with exit code $rc" >&2
  exit "$rc"
fi

# ---- 4. fetch the workdir -------------------------------------------------------------------------------------------------
if [[ -n $fetch ]]; then
  step "4. fetch $workdir into $fetch"
  show mkdir -p "$fetch"
  if [[ -n $mount && ($workdir == "$mount" || $workdir == "$mount"/*) ]]; then
    show "$gcloud" storage cp -r "gs://$bucket_name${workdir#"$mount"}" "$fetch"
  else
    [[ $workdir == /* ]] || workdir=$remote_dir/$workdir   # a relative workdir is relative to the code on worker 0
    show "${tpu[@]}" scp --recurse "$name:$workdir" "$fetch" "--zone=$zone" --worker=0
  fi
fi
if ((!dry_run)); then
  echo "$prog: done${fetch:+; the workdir is in $fetch}" >&2
fi
