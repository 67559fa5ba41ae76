"""The real entry point on a shrunk quickstart: files, columns, bad input, overwrite protection, redraw."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SHRINK = ['--config.widths=(8,16)', '--config.sweep.lrs.mup=(0.25,1.0,1e6)', '--config.sweep.lrs.ntk=(1.0,4.0)',
          '--config.num_steps=6', '--config.measure_every=3', '--config.measure.loss_batch=64',
          '--config.measure.sharpness_batch=32', '--config.measure.num_iters=8', '--config.data.num_train=256',
          '--config.data.num_eval=64', '--config.data.batch_size=16', '--config.coord_check.widths=(8,16)',
          '--config.coord_check.seeds=(0,)', '--config.coord_check.steps=1', '--config.coord_check.batch=16',
          '--config.loss_cap=50.0', '--config.sweep.seeds=(0,)', '--config.sweep.extend_rounds=0', '--noprogress']


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/quickstart.py', *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run') / 'quick')
  proc = _cli(f'--workdir={workdir}', *SHRINK)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_cli_writes_complete_workdir(finished_run):
  workdir, proc = finished_run
  for name in ('config.json', 'metrics.csv', 'summary.json', 'coord_check.csv', 'coord_check_slopes.csv',
               'sharpness.png', 'transfer.png', 'coord_check.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, 'metrics.csv')) as f:
    rows = list(csv.DictReader(f))
  required = {'parameterization', 'width', 'depth', 'optimizer', 'lr', 'gamma0', 'seed', 'step', 'train_loss',
              'eval_loss', 'sharpness', 'lr_sharpness', 'diverged'}
  assert required <= set(rows[0])
  # 2 widths × (3 mup + 2 ntk lanes) × 3 measurements (steps 0, 3, 6)
  assert len(rows) == 2 * 5 * 3
  assert {r['step'] for r in rows} == {'0', '3', '6'}
  huge = [r for r in rows if r['parameterization'] == 'mup' and float(r['lr']) == 1e6]
  assert huge and all(r['diverged'] == '1' for r in huge if r['step'] == '6')
  assert all(r['diverged'] == '0' for r in rows if float(r['lr']) != 1e6)
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  best = {(g['parameterization'], g['width']): g for g in summary['groups']}
  assert best[('mup', 8)]['best_lr'] in (0.25, 1.0)   # a diverged rate is never best
  assert 1e6 in best[('mup', 8)]['diverged_lrs']
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['widths'] == [8, 16]


def test_refuses_to_overwrite_finished_run_and_redraws_plots(finished_run):
  workdir, _ = finished_run
  before = open(os.path.join(workdir, 'metrics.csv')).read()
  proc = _cli(f'--workdir={workdir}', *SHRINK)
  assert proc.returncode == 2 and 'finished run' in proc.stderr and '--overwrite' in proc.stderr
  assert open(os.path.join(workdir, 'metrics.csv')).read() == before
  os.remove(os.path.join(workdir, 'transfer.png'))
  redraw = subprocess.run([sys.executable, '-m', 'superconsistency.plot', workdir], cwd=ROOT, capture_output=True,
                          text=True)
  assert redraw.returncode == 0, redraw.stderr
  assert os.path.getsize(os.path.join(workdir, 'transfer.png')) > 0


BAD_INPUT = [
    ('--config.widthz=(8,)', 'widthz'),
    ('--config.parameterizations=("mup","bogus")', 'parameterizations'),
    ('--config.widths=()', 'widths'),
    ('--config.sweep.lrs.mup=()', 'sweep.lrs.mup'),
    ('--config.model.name=transformer', 'model.name'),
    ('--config.num_steps=7', 'num_steps'),
    ('--config.data.name=imagenet', 'data.name'),
    # fields the chosen model, data set or experiment does not read are not in the config at all
    ('--config.model.norm=batch', 'model.norm'),
    ('--config.data.teacher_width=0', 'data.teacher_width'),
    ('--config.bn_depth.width=0', 'bn_depth'),
    ('--config.optimizer.b1=0.5', 'optimizer.b1'),
    # switching a block's choice without its options (the block still carries the old choice's fields)
    ('--config.data.name=teacher_student', 'data.'),
    ('--config.model.name=resnet', 'model.'),
    # malformed values that used to pass validation and fail after the sweep
    ('--config.coord_check.widths=(64,-8)', 'coord_check.widths'),
    ('--config.coord_check.seeds=()', 'coord_check.seeds'),
    ('--config.measure.microbatches=3', 'measure.microbatches'),
    # a config file that does not exist (given in place of the quickstart's)
    ('--config=configs/nope.py', 'nope.py'),
]


@pytest.fixture(scope='module')
def refusals(tmp_path_factory):
  """Every BAD_INPUT case through the entry point's `main`, in one process (tests/cli_cases.py): each is refused
  before anything runs, so a process each would mostly time JAX's import.
  test_unwritable_workdir_is_refused_by_a_real_process checks that a refusal's code 2 is the process's exit code."""
  root = tmp_path_factory.mktemp('never')
  cases = [([] if override.startswith('--config=') else ['--config=configs/quickstart.py']) +
           [f'--workdir={root / str(i)}', override, '--noprogress'] for i, (override, _) in enumerate(BAD_INPUT)]
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'cli_cases.py')], input=json.dumps(cases),
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root, json.loads(proc.stdout)


@pytest.mark.parametrize('index', range(len(BAD_INPUT)), ids=[o for o, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(refusals, index):
  root, results = refusals
  field, result = BAD_INPUT[index][1], results[index]
  assert result['rc'] == 2
  lines = result['stderr'].strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error:') and field in lines[0], result['stderr']
  assert not (root / str(index)).exists()


def test_unwritable_workdir_is_refused_by_a_real_process(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  proc = _cli(f'--workdir={blocker}/sub', '--noprogress')   # a process of its own: the exit code is the process's
  assert proc.returncode == 2 and 'workdir' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
