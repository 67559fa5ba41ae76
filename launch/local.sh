#!/usr/bin/env bash
# Runs one multi-host job as N local processes on CPU: the way to test the multi-host code path (jax.distributed,
# collective checkpoints, resume) on one machine. See launch/README.md.
set -euo pipefail

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"  # die, quote, parse_args
prog=launch/local.sh

usage() {
  cat <<'EOF'
Usage: launch/local.sh [OPTIONS] -- ARGS...

Starts N processes of
  python -m superconsistency ARGS --multihost --coordinator=127.0.0.1:PORT --num_processes=N --process_id=I
on this machine (I = 0..N-1), each with JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=D (appended to any XLA_FLAGS you set), so the job sees N*D devices.
Each process's output lines are prefixed with "[pI] " (stdout to stdout, stderr to stderr).

Options:
  --num_processes N        processes to start (default 2)
  --devices_per_process D  CPU devices per process (default 4)
  --port P                 coordinator port (default: a free port)
  --timeout SECONDS        stop the run after this long and exit 124 (default 0: no limit)
  --dry-run                print the N commands (with their environment) and exit without starting anything
  -h, --help               show this help

If a process fails, the others are sent SIGTERM (and SIGKILL after KILL_GRACE_SECONDS, default 10) and the script
exits with the first non-zero exit code. SIGTERM/SIGINT/SIGHUP to this script are forwarded to the processes as
SIGTERM: they save a checkpoint and exit 143, and rerunning the same command resumes from it.
The interpreter is ${PYTHON:-python}. WORKDIR is shared by all processes (they all run on this machine).

Example:
  launch/local.sh --num_processes 2 --devices_per_process 4 -- \
      --config=configs/quickstart.py --workdir=/tmp/qs2 --config.widths='(64,128)'
EOF
}

parse_args "--num_processes --devices_per_process --port --timeout" "" "$@"
num_processes=${opt[--num_processes]-2}
devices=${opt[--devices_per_process]-4}
port=${opt[--port]-}
timeout=${opt[--timeout]-0}

[[ $num_processes =~ ^[1-9][0-9]*$ ]] || die "--num_processes must be a positive integer, got '$num_processes'"
[[ $devices =~ ^[1-9][0-9]*$ ]] || die "--devices_per_process must be a positive integer, got '$devices'"
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be a whole number of seconds, got '$timeout'"
kill_grace=${KILL_GRACE_SECONDS:-10}
[[ $kill_grace =~ ^[0-9]+$ ]] || die "KILL_GRACE_SECONDS must be a whole number of seconds, got '$kill_grace'"
if [[ -z $port ]]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
    die "could not find a free port with python3; pass --port"
fi
if ! [[ $port =~ ^[1-9][0-9]*$ ]] || ((port < 1 || port > 65535)); then
  die "--port must be a port number (1-65535), got '$port'"
fi

python=${PYTHON:-python}
xla_flags="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices"
env_assignments=("XLA_FLAGS=$xla_flags" JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1)
command_for() { # the command of process $1, into the array `cmd`
  cmd=("$python" -m superconsistency "${args[@]}" --multihost "--coordinator=127.0.0.1:$port"
    "--num_processes=$num_processes" "--process_id=$1")
}

if ((dry_run)); then
  for ((i = 0; i < num_processes; i++)); do
    command_for "$i"
    quote "${env_assignments[@]}" "${cmd[@]}"
  done
  exit 0
fi

# ---- run ----------------------------------------------------------------------------------------------------------
# Each process runs in its own session (setsid, where available) so that killing its process group also ends anything
# it started. Its stdout and stderr go through FIFOs to small readers that add the "[pI] " prefix; the readers ignore
# signals and end when the process closes its output, so nothing the process prints on its way out is lost.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/launch-local.XXXXXX")
pids=()     # process i's pid
rcs=()      # process i's exit code, once it has exited
readers=()  # the prefixing readers' pids
pending_signal=""

now_us() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    printf '%s\n' "${EPOCHREALTIME//[^0-9]/}"
  else
    printf '%s000000\n' "$(date +%s)"
  fi
}

signal_processes() { # send signal $1 to every process still running (to its process group, where it has one)
  local i pid
  for i in "${!pids[@]}"; do
    [[ -n ${rcs[i]:-} ]] && continue
    pid=${pids[i]}
    kill -s "$1" -- "-$pid" 2>/dev/null || kill -s "$1" "$pid" 2>/dev/null || true
  done
}

any_running() {
  local i
  for i in "${!pids[@]}"; do
    [[ -z ${rcs[i]:-} ]] && kill -0 "${pids[i]}" 2>/dev/null && return 0
  done
  return 1
}

finish_readers() {
  local fifo fd pid deadline
  # A reader still blocked opening its FIFO (its process died before opening it) is released by opening the FIFO
  # read-write for a moment: that never blocks, and closing it leaves the reader at end of file.
  for fifo in "$tmp"/out* "$tmp"/err*; do
    [[ -p $fifo ]] || continue
    exec {fd}<>"$fifo" && exec {fd}>&-
  done
  deadline=$(($(now_us) + 3000000))
  for pid in "${readers[@]}"; do
    while kill -0 "$pid" 2>/dev/null && (($(now_us) < deadline)); do sleep 0.05; done
    kill -s KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  readers=()
}

cleanup() { # on any exit: no process is left running, and the readers have printed everything
  local status=$? deadline
  trap - EXIT INT TERM HUP
  if ((${#pids[@]})) && any_running; then
    signal_processes TERM
    deadline=$(($(now_us) + 2000000))
    while any_running && (($(now_us) < deadline)); do sleep 0.05; done
    signal_processes KILL
  fi
  finish_readers
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'pending_signal=TERM' TERM
trap 'pending_signal=INT' INT
trap 'pending_signal=HUP' HUP

prefix_lines() { # copy stdin to stdout, each line prefixed with "[p$1] "
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '[p%s] %s\n' "$1" "$line"
  done
}

setsid_cmd=()
command -v setsid >/dev/null 2>&1 && setsid_cmd=(setsid)
echo "$prog: starting $num_processes processes x $devices CPU devices, coordinator 127.0.0.1:$port" >&2
for ((i = 0; i < num_processes; i++)); do
  mkfifo "$tmp/out$i" "$tmp/err$i"
  (trap '' INT TERM HUP; prefix_lines "$i" <"$tmp/out$i") &
  readers+=($!)
  (trap '' INT TERM HUP; prefix_lines "$i" <"$tmp/err$i" >&2) &
  readers+=($!)
  command_for "$i"
  "${setsid_cmd[@]}" env "${env_assignments[@]}" "${cmd[@]}" >"$tmp/out$i" 2>"$tmp/err$i" &
  pids[i]=$!
done

first_rc=""
stopping=""   # why the processes are being stopped: failure, timeout or signal
kill_at=0     # when to escalate from SIGTERM to SIGKILL (0: never)
start=$(now_us)
while :; do
  running=0
  for i in "${!pids[@]}"; do
    [[ -n ${rcs[i]:-} ]] && continue
    if kill -0 "${pids[i]}" 2>/dev/null; then
      running=$((running + 1))
      continue
    fi
    rc=0
    wait "${pids[i]}" || rc=$?
    rcs[i]=$rc
    ((rc == 0)) && continue
    [[ -n $first_rc ]] || first_rc=$rc
    echo "$prog: process $i exited with code $rc" >&2
    if [[ -z $stopping ]]; then
      stopping=failure
      echo "$prog: stopping the other processes" >&2
      signal_processes TERM
      kill_at=$(($(now_us) + kill_grace * 1000000))
    fi
  done
  ((running)) || break
  now=$(now_us)
  if [[ -n $pending_signal ]]; then
    if [[ $stopping == signal ]]; then  # a second signal: stop waiting for the checkpoint
      echo "$prog: got SIG$pending_signal again: killing the processes" >&2
      signal_processes KILL
    else
      echo "$prog: got SIG$pending_signal: sending SIGTERM to the processes (they checkpoint and exit 143)" >&2
      signal_processes TERM
      [[ -n $stopping ]] || kill_at=0
      stopping=signal
    fi
    pending_signal=""
  fi
  if [[ -z $stopping ]] && ((timeout > 0 && now - start >= timeout * 1000000)); then
    echo "$prog: timeout after ${timeout}s: stopping the processes" >&2
    first_rc=124
    stopping=timeout
    signal_processes TERM
    kill_at=$((now + kill_grace * 1000000))
  fi
  if ((kill_at > 0 && now >= kill_at)); then
    echo "$prog: processes still running ${kill_grace}s after SIGTERM: killing them" >&2
    signal_processes KILL
    kill_at=0
  fi
  sleep 0.1
done
finish_readers
exit "${first_rc:-0}"
