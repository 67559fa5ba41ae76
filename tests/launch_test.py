"""launch/*.sh: the commands their --dry-run prints, their usage errors, and real runs against fake commands
(a fake interpreter for local.sh; fake sbatch/srun/scontrol for slurm.sh; a fake gcloud for tpu_pod.sh)."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL, SLURM, TPU = (os.path.join(ROOT, 'launch', f'{name}.sh') for name in ('local', 'slurm', 'tpu_pod'))
WIDTHS = '--config.widths=(64, 128)'   # an argument with a space, parentheses and a comma
QUOTED = "--note=it's \"quoted\" $HOME"  # and one with both quotes and a dollar sign


def run(cmd, env=None, timeout=20, **kw):
  return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                        cwd=kw.pop('cwd', ROOT), **kw)


def fake(path, body):
  """An executable Python script at `path`."""
  path.write_text(f'#!{sys.executable}\n{body}')
  path.chmod(0o755)
  return str(path)


def gone(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  return False


def wait_for(paths, timeout=10):
  deadline = time.time() + timeout
  while not all(os.path.exists(p) and open(p).read() for p in paths):
    assert time.time() < deadline, f'not written: {paths}'
    time.sleep(0.05)


# ---- local.sh ---------------------------------------------------------------------------------------------------------


def test_local_dry_run_prints_one_command_per_process():
  r = run([LOCAL, '--num_processes', '3', '--devices_per_process=2', '--port', '5555', '--dry-run', '--',
           '--config=configs/quickstart.py', '--workdir=/tmp/qs', WIDTHS, QUOTED], env={'PYTHON': 'python3.12'})
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    words = shlex.split(line)
    env = dict(w.split('=', 1) for w in words[:3])
    assert env['XLA_FLAGS'].split()[-1] == '--xla_force_host_platform_device_count=2'
    assert env['JAX_PLATFORMS'] == 'cpu'
    assert words[3:] == ['python3.12', '-m', 'superconsistency', '--config=configs/quickstart.py', '--workdir=/tmp/qs',
                         WIDTHS, QUOTED, '--multihost', '--coordinator=127.0.0.1:5555', '--num_processes=3',
                         f'--process_id={i}']


def test_local_dry_run_picks_one_free_port_for_all_processes():
  r = run([LOCAL, '--dry-run', '--', '--config=configs/quickstart.py'])
  assert r.returncode == 0, r.stderr
  coordinators = {w for line in r.stdout.splitlines() for w in shlex.split(line) if w.startswith('--coordinator=')}
  ids = [w for line in r.stdout.splitlines() for w in shlex.split(line) if w.startswith('--process_id=')]
  assert ids == ['--process_id=0', '--process_id=1'] and len(coordinators) == 1
  port = int(coordinators.pop().rsplit(':', 1)[1])
  assert 0 < port < 65536


FAKE_PYTHON = '''
import json, os, signal, sys, time
argv = sys.argv[1:]
i = int([a for a in argv if a.startswith('--process_id=')][0].split('=')[1])
mode = os.environ.get('FAKE_MODE', 'print')
print(json.dumps({'argv': argv, 'xla': os.environ.get('XLA_FLAGS'), 'platforms': os.environ.get('JAX_PLATFORMS')}))
print(f'stderr of {i}', file=sys.stderr)
if mode == 'print':
  sys.exit(0)
piddir = os.environ['PIDDIR']
def on_term(*_):
  print('got SIGTERM, checkpoint saved')
  sys.exit(143)
if mode == 'checkpoint':
  signal.signal(signal.SIGTERM, on_term)
if mode == 'fail' and i == 1:   # fails once process 0 is up and sleeping
  while not os.path.exists(f'{piddir}/0'):
    time.sleep(0.02)
  sys.exit(3)
with open(f'{piddir}/{i}.tmp', 'w') as f:
  f.write(str(os.getpid()))
os.rename(f'{piddir}/{i}.tmp', f'{piddir}/{i}')
time.sleep(60)
'''


def test_local_runs_every_process_and_prefixes_its_lines(tmp_path):
  python = fake(tmp_path / 'python', FAKE_PYTHON)
  r = run([LOCAL, '--num_processes', '3', '--devices_per_process', '2', '--', '--workdir=/tmp/x', WIDTHS, QUOTED],
          env={'PYTHON': python})
  assert r.returncode == 0, r.stderr
  seen = {}
  for line in r.stdout.splitlines():
    prefix, _, rest = line.partition(' ')
    seen[prefix] = json.loads(rest)
  assert sorted(seen) == ['[p0]', '[p1]', '[p2]']
  ports = set()
  for i in range(3):
    out = seen[f'[p{i}]']
    assert out['argv'][:7] == ['-m', 'superconsistency', '--workdir=/tmp/x', WIDTHS, QUOTED, '--multihost',
                               out['argv'][6]]
    assert out['argv'][7:] == ['--num_processes=3', f'--process_id={i}']
    ports.add(out['argv'][6])
    assert out['xla'].endswith('--xla_force_host_platform_device_count=2') and out['platforms'] == 'cpu'
  assert len(ports) == 1
  for i in range(3):
    assert f'[p{i}] stderr of {i}' in r.stderr.splitlines()


def test_local_failure_stops_the_others_and_returns_its_code(tmp_path):
  python = fake(tmp_path / 'python', FAKE_PYTHON)
  start = time.time()
  r = run([LOCAL, '--', '--workdir=/tmp/x'], env={'PYTHON': python, 'FAKE_MODE': 'fail', 'PIDDIR': str(tmp_path)})
  assert r.returncode == 3, r.stderr
  assert time.time() - start < 8
  assert 'process 1 exited with code 3' in r.stderr
  assert gone(int((tmp_path / '0').read_text()))   # the sleeping process 0 was killed, not left behind


def test_local_timeout_exits_124_and_kills_everything(tmp_path):
  python = fake(tmp_path / 'python', FAKE_PYTHON)
  start = time.time()
  r = run([LOCAL, '--timeout', '2', '--', '--workdir=/tmp/x'],
          env={'PYTHON': python, 'FAKE_MODE': 'sleep', 'PIDDIR': str(tmp_path)})
  elapsed = time.time() - start
  assert r.returncode == 124, r.stderr
  assert 1.9 < elapsed < 6, elapsed
  assert 'timeout' in r.stderr
  assert gone(int((tmp_path / '0').read_text())) and gone(int((tmp_path / '1').read_text()))


def test_local_forwards_sigterm_so_processes_checkpoint_and_exit_143(tmp_path):
  python = fake(tmp_path / 'python', FAKE_PYTHON)
  proc = subprocess.Popen([LOCAL, '--', '--workdir=/tmp/x'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT,
                          env={**os.environ, 'PYTHON': python, 'FAKE_MODE': 'checkpoint', 'PIDDIR': str(tmp_path)})
  try:
    wait_for([tmp_path / '0', tmp_path / '1'])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
  finally:
    proc.kill()
  assert proc.returncode == 143, err
  assert '[p0] got SIGTERM, checkpoint saved' in out and '[p1] got SIGTERM, checkpoint saved' in out
  assert gone(int((tmp_path / '0').read_text())) and gone(int((tmp_path / '1').read_text()))


# ---- usage errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('cmd, message', [
    ([LOCAL, '--config=configs/quickstart.py'], "unknown option '--config=configs/quickstart.py'"),
    ([LOCAL, '--num_processes', '2'], "missing '--'"),
    ([LOCAL, '--'], 'no run arguments'),
    ([LOCAL, '--num_processes', '0', '--', '--workdir=x'], '--num_processes must be a positive integer'),
    ([LOCAL, '--timeout', 'soon', '--', '--workdir=x'], '--timeout must be'),
    ([LOCAL, '--port'], '--port needs a value'),
    ([SLURM, '--bogus', '--', '--workdir=x'], "unknown option '--bogus'"),
    ([SLURM, '--nodes', '2'], "missing '--'"),
    ([SLURM, '--'], 'no run arguments'),
    ([SLURM, '--nodes', 'two', '--', '--workdir=x'], '--nodes must be a positive integer'),
    ([SLURM, '--time', 'noon', '--', '--workdir=x'], '--time must look like HH:MM:SS'),
    ([TPU, '--zone', 'z-1', '--', '--workdir=x'], '--name NAME is required'),
    ([TPU, '--name', 'n', '--', '--workdir=x'], '--zone ZONE is required'),
    ([TPU, '--name', 'n', '--zone', 'z-1'], "missing '--'"),
    ([TPU, '--name', 'n', '--zone', 'z-1', '--preemptible', '--', '--workdir=x'], "unknown option '--preemptible'"),
    ([TPU, '--name', 'n', '--zone', 'z-1', '--bucket', 'my-bucket', '--', '--workdir=x'], '--bucket must look like'),
    ([TPU, '--name', 'n', '--zone', 'z-1', '--fetch', 'out', '--', '--config=c.py'], '--fetch needs --workdir'),
])
def test_bad_usage_exits_2_with_one_line_naming_the_problem(cmd, message):
  r = run(cmd[:1] + ['--dry-run'] + cmd[1:], env={'GCLOUD': 'false', 'PYTHON': 'false'})
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert r.stdout == ''
  assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


@pytest.mark.parametrize('script', [LOCAL, SLURM, TPU])
def test_help(script):
  r = run([script, '--help'])
  assert r.returncode == 0 and 'Usage: launch/' in r.stdout and '--dry-run' in r.stdout


# ---- slurm.sh -----------------------------------------------------------------------------------------------------------


def directives(script):
  return [line.split(None, 1)[1] for line in script.splitlines() if line.startswith('#SBATCH ')]


def srun_line(script):
  [line] = [line for line in script.splitlines() if line.startswith('srun ')]
  return shlex.split(line)


def test_slurm_dry_run_prints_the_batch_script_and_the_sbatch_command(tmp_path):
  r = run([SLURM, '--nodes', '4', '--gpus_per_node=8', '--partition', 'gpu', '--time', '12:00:00', '--account', 'lab',
           '--job_name', 'qs', '--script_dir', str(tmp_path / 'sl'), '--dry-run', '--',
           '--config=configs/quickstart.py', '--workdir=runs/qs', WIDTHS, QUOTED])
  assert r.returncode == 0, r.stderr
  d = directives(r.stdout)
  for want in ['--nodes=4', '--ntasks-per-node=1', '--gpus-per-node=8', '--partition=gpu', '--time=12:00:00',
               '--account=lab', '--job-name=qs', '--signal=TERM@120', '--requeue', '--open-mode=append',
               f'--output={tmp_path}/sl/qs-%j.out']:
    assert want in d, (want, d)
  assert srun_line(r.stdout) == ['srun', 'python', '-m', 'superconsistency', '--config=configs/quickstart.py',
                                 '--workdir=runs/qs', WIDTHS, QUOTED, '--multihost']
  assert 'scontrol requeue "${SLURM_JOB_ID}"' in r.stdout and 'resumes from' in r.stdout
  sbatch = shlex.split(r.stdout.strip().splitlines()[-1])
  assert sbatch[0] == 'sbatch' and sbatch[1].startswith(f'{tmp_path}/sl/qs-') and sbatch[1].endswith('.sbatch')
  assert not (tmp_path / 'sl').exists()   # a dry run writes nothing


def test_slurm_dry_run_leaves_out_unset_options():
  r = run([SLURM, '--dry-run', '--', '--config=configs/quickstart.py'])
  assert r.returncode == 0, r.stderr
  d = directives(r.stdout)
  assert '--nodes=1' in d and not any(x.startswith(('--partition', '--time', '--account')) for x in d)


def test_slurm_submits_a_script_that_requeues_on_143(tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  log = tmp_path / 'calls.jsonl'
  for name, rc in [('sbatch', '0'), ('srun', 'int(os.environ.get("FAKE_SRUN_RC", "0"))'), ('scontrol', '0')]:
    fake(bin_dir / name, f'import json, os, sys\n'
                         f'open({str(log)!r}, "a").write(json.dumps([{name!r}] + sys.argv[1:]) + "\\n")\n'
                         f'print("Submitted batch job 42") if {name!r} == "sbatch" else None\n'
                         f'sys.exit({rc})\n')
  env = {'PATH': f'{bin_dir}:{os.environ["PATH"]}'}
  r = run([SLURM, '--nodes', '2', '--script_dir', str(tmp_path / 'sl'), '--', '--workdir=runs/qs', WIDTHS], env=env)
  assert r.returncode == 0, r.stderr
  assert 'Submitted batch job 42' in r.stdout
  [call] = [json.loads(line) for line in log.read_text().splitlines()]
  assert call[0] == 'sbatch' and os.path.dirname(call[1]) == str(tmp_path / 'sl') and os.path.exists(call[1])
  script = call[1]
  assert '--nodes=2' in directives(open(script).read())
  log.unlink()
  # The batch script itself, as SLURM would run it: srun exits 143 -> the job requeues itself and exits 143.
  for srun_rc, want in [('143', [['srun', 'python', '-m', 'superconsistency', '--workdir=runs/qs', WIDTHS,
                                  '--multihost'], ['scontrol', 'requeue', '7']]),
                        ('0', [['srun', 'python', '-m', 'superconsistency', '--workdir=runs/qs', WIDTHS,
                                '--multihost']])]:
    r = run(['bash', script], env={**env, 'SLURM_JOB_ID': '7', 'FAKE_SRUN_RC': srun_rc}, cwd=tmp_path)
    assert r.returncode == int(srun_rc), r.stderr
    assert [json.loads(line) for line in log.read_text().splitlines()] == want
    log.unlink()


# ---- tpu_pod.sh ---------------------------------------------------------------------------------------------------------


def commands(text):
  return [shlex.split(line) for line in text.splitlines() if line and not line.startswith('#')]


def ssh_command(cmd):
  return [w for w in cmd if w.startswith('--command=')][0][len('--command='):]


def no_gcloud_env(tmp_path):
  """A gcloud that records being called: a dry run must never call it."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  fake(bin_dir / 'gcloud', f'open({str(tmp_path / "gcloud_called")!r}, "w").write("x")\nraise SystemExit(99)\n')
  return {'PATH': f'{bin_dir}:{os.environ["PATH"]}'}


def test_tpu_dry_run_prints_every_gcloud_command(tmp_path):
  r = run([TPU, '--name', 'sc-v4', '--zone', 'us-central2-b', '--accelerator', 'v4-16', '--spot', '--bucket',
           'gs://my-bucket', '--fetch', str(tmp_path / 'out'), '--dry-run', '--', '--config=configs/quickstart.py',
           '--workdir=/mnt/my-bucket/runs/qs', WIDTHS, QUOTED], env=no_gcloud_env(tmp_path))
  assert r.returncode == 0, r.stderr
  assert not (tmp_path / 'gcloud_called').exists() and not (tmp_path / 'out').exists()
  cmds = commands(r.stdout)
  tpu = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  assert tpu + ['describe', 'sc-v4', '--zone=us-central2-b', '--format=value(state)'] in cmds
  create = tpu + ['create', 'sc-v4', '--zone=us-central2-b', '--accelerator-type=v4-16',
                  '--version=tpu-ubuntu2204-base', '--spot']
  assert [c for c in cmds if c[:5] == tpu + ['create']][0][:len(create)] == create
  assert '# if absent:' in r.stdout
  # this checkout is copied to every worker
  assert [c for c in cmds if c[:5] == tpu + ['scp']][0][-1] == '--worker=all'
  ssh = [c for c in cmds if c[:5] == tpu + ['ssh']]
  assert all(c[5:8] == ['sc-v4', '--zone=us-central2-b', '--worker=all'] for c in ssh)
  assert any('gcsfuse --implicit-dirs my-bucket /mnt/my-bucket' in ssh_command(c) for c in ssh)
  assert any("pip install -q -e \".[test]\" \"jax[tpu]\"" in ssh_command(c) for c in ssh)
  run_cmd = ssh_command(ssh[-1])
  words = shlex.split(run_cmd[run_cmd.index('python -m superconsistency'):])
  assert words == ['python', '-m', 'superconsistency', '--config=configs/quickstart.py',
                   '--workdir=/mnt/my-bucket/runs/qs', WIDTHS, QUOTED, '--multihost']
  assert ['gcloud', 'storage', 'cp', '-r', 'gs://my-bucket/runs/qs', str(tmp_path / 'out')] in cmds


def test_tpu_dry_run_without_spot_or_bucket(tmp_path):
  r = run([TPU, '--name', 'sc', '--zone', 'europe-west4-a', '--repo', 'https://example.com/sc.git', '--fetch', 'out',
           '--dry-run', '--', '--config=configs/quickstart.py', '--workdir', 'runs/qs'], env=no_gcloud_env(tmp_path))
  assert r.returncode == 0, r.stderr
  assert not (tmp_path / 'gcloud_called').exists()
  cmds = commands(r.stdout)
  creates = [c for c in cmds if c[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']]
  assert creates and all('--spot' not in c and '--accelerator-type=v4-32' in c for c in creates)
  assert not any('scp' in c and '--worker=all' in c for c in cmds)   # --repo: cloned, not copied
  assert 'git clone https://example.com/sc.git' in r.stdout
  assert ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', '--recurse', 'sc:superconsistency/runs/qs', 'out',
          '--zone=europe-west4-a', '--worker=0'] in cmds
  assert 'no --bucket' in r.stderr


FAKE_GCLOUD = '''
import json, os, sys
argv = sys.argv[1:]
open(os.environ['GCLOUD_LOG'], 'a').write(json.dumps(argv) + '\\n')
if argv[:4] == ['compute', 'tpus', 'tpu-vm', 'describe']:
  state = os.environ.get('FAKE_STATE', '')
  if not state:
    print('ERROR: NOT_FOUND', file=sys.stderr)
    sys.exit(1)
  print(state)
if argv[:4] == ['compute', 'tpus', 'tpu-vm', 'ssh'] and any('python -m superconsistency' in a for a in argv):
  sys.exit(int(os.environ.get('FAKE_RUN_RC', '0')))
'''


def test_tpu_creates_an_absent_vm_and_reports_preemption(tmp_path):
  log = tmp_path / 'gcloud.jsonl'
  env = {'GCLOUD': fake(tmp_path / 'gcloud', FAKE_GCLOUD), 'GCLOUD_LOG': str(log), 'FAKE_RUN_RC': '143'}
  r = run([TPU, '--name', 'sc', '--zone', 'us-central2-b', '--accelerator', 'v4-8', '--repo', 'https://x/sc.git',
           '--', '--workdir=runs/qs'], env=env)
  assert r.returncode == 143, r.stderr
  assert 'preempted' in r.stderr and 'rerun this same command' in r.stderr
  calls = [json.loads(line)[3] for line in log.read_text().splitlines()]
  assert calls == ['describe', 'create', 'ssh', 'ssh', 'describe']   # install, run, then the state after the failure


def test_tpu_reuses_a_ready_vm_and_fetches_from_the_bucket(tmp_path):
  log = tmp_path / 'gcloud.jsonl'
  env = {'GCLOUD': fake(tmp_path / 'gcloud', FAKE_GCLOUD), 'GCLOUD_LOG': str(log), 'FAKE_STATE': 'READY'}
  r = run([TPU, '--name', 'sc', '--zone', 'us-central2-b', '--repo', 'https://x/sc.git', '--bucket', 'gs://bk',
           '--fetch', str(tmp_path / 'out'), '--', '--workdir=/mnt/bk/qs'], env=env)
  assert r.returncode == 0, r.stderr
  calls = [json.loads(line) for line in log.read_text().splitlines()]
  assert [c[3] if c[0] == 'compute' else c[1] for c in calls] == ['describe', 'ssh', 'ssh', 'ssh', 'cp']
  assert calls[-1] == ['storage', 'cp', '-r', 'gs://bk/qs', str(tmp_path / 'out')]
  assert (tmp_path / 'out').is_dir()
