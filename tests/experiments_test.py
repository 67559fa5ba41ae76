"""Every experiment of the results gallery runs shrunk for a few steps through the real CLI, and the analysis command's
entry point turns its output into analysis.json and figures (toy_chain and bn_depth have their own test files)."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_config

SMALL = ['--config.num_steps=4', '--config.measure_every=2', '--config.data.num_eval=32',
         '--config.measure.loss_batch=32', '--config.measure.sharpness_batch=16', '--noprogress']
ONE_SEED = ['--config.sweep.seeds=(0,)', '--config.sweep.extend_rounds=0']   # seeds and grid extension: resume_test
IMAGES = ['--config.data.num_train=64', '--config.data.batch_size=16', '--config.data.image_size=8',
          '--config.measure.num_iters=3']
# name: (config argument, overrides, analyses that must come out)
EXPERIMENTS = {
    'figure1': ('', IMAGES[:2] + IMAGES[3:] + ['--config.widths=(4,8)', '--config.select_step=2',
                              "--config.sweep.lrs.mup=(0.5,1.0)", "--config.sweep.lrs.ntk=(3.0,7.0)"] + ONE_SEED,
                ('transfer', 'consistency')),
    'mlp_adam': ('', ['--config.widths=(8,16)', '--config.data.num_train=64', '--config.data.batch_size=16',
                      '--config.measure.num_iters=4', "--config.sweep.lrs.mup=(0.004,0.016)",
                      "--config.sweep.lrs.ntk=(0.001,0.004)"] + ONE_SEED, ('transfer', 'consistency')),
    'edge_of_stability': ('', ['--config.widths=(8,16)', '--config.data.num_train=64', '--config.data.batch_size=64',
                               '--config.measure.num_iters=4', '--config.measure.ntk_batch=4', '--config.sweep.seeds=(0,)'],
                          ('consistency',)),
    'depth_resnet': ('k2', IMAGES + ['--config.depths=(1,2)', "--config.sweep.lrs.depth_mup=(0.4,1.6)"],
                     ('transfer', 'consistency')),
    'depth_mlp': ('k2', ['--config.depths=(2,4)', '--config.data.num_train=64', '--config.data.batch_size=16',
                         '--config.measure.num_iters=3', "--config.sweep.lrs.depth_mup=(0.5,2.0)"] + ONE_SEED,
                  ('transfer', 'consistency')),
    'ntk_hessian': ('', ['--config.widths=(8,16)', '--config.data.num_train=64', '--config.data.batch_size=16',
                         '--config.measure.num_iters=4', '--config.measure.ntk_batch=4', '--config.measure.ntk_k=2',
                         '--config.sweep.seeds=(0,)'], ('consistency',)),
    'linear_two_layer': ('', ['--config.widths=(8,16)', '--config.data.num_train=64', '--config.data.batch_size=64',
                              '--config.measure.num_iters=4', '--config.sweep.seeds=(0,)'], ('consistency',)),
    'gamma_eta': ('long', ['--config.depths=(2,)', '--config.widths=(16,)', '--config.data.batch_size=8',
                           '--config.num_steps=20', '--config.sweep.seeds=(0,1)',   # 11 measurements: plateaus
                           "--config.sweep.gamma0s=(0.01,0.1,10.0,100.0)",
                           "--config.sweep.lrs.mup=(0.0001,0.01,1.0,100.0)"], ('gamma_eta', 'plateaus')),
    'bn_train': ('', ['--config.depths=(2,3)', '--config.widths=(8,)', '--config.data.num_train=64',
                      '--config.data.batch_size=8', '--config.data.image_size=8', '--config.measure.loss_batch=8',
                      "--config.sweep.lrs.sp=(0.01,0.03)", '--config.sweep.seeds=(0,)'],
                 ('transfer', 'stacked_weights')),
    'bn_mlp_cifar10': ('', ['--config.depths=(2,3)', '--config.widths=(16,)', '--config.data.num_train=64',
                            '--config.data.batch_size=16', '--config.measure.num_iters=3',
                            "--config.sweep.lrs.sp=(0.01,0.1)"], ('transfer', 'consistency')),
    'gpt2_transfer': ('', ['--config.widths=(8,16)', '--config.depths=(1,)', '--config.data.seq_len=8', '--config.data.batch_size=4',
                           '--config.data.max_bytes=100000', '--config.measure.num_iters=3',
                           "--config.sweep.lrs.mup=(0.003,0.03)", "--config.sweep.lrs.sp=(0.001,0.01)"] + ONE_SEED,
                      ('transfer', 'consistency')),
}


def _finite_numbers(x):
  """Every number in a nested structure (json's null stands for nan)."""
  if isinstance(x, dict):
    return [v for value in x.values() for v in _finite_numbers(value)]
  if isinstance(x, list):
    return [v for value in x for v in _finite_numbers(value)]
  return [x] if isinstance(x, (int, float)) and not isinstance(x, bool) else []


# Experiments whose model, data and analyses another default test already takes through the CLI (compiling and
# tracing dominate these runs, 18-35 s each here): the slow run (-m slow) runs them too.
#   depth_resnet    depth_mlp runs the depth-axis transfer analysis; the ResNet itself is in resnet_test.py and
#                   models_test.py (in-process), the CIFAR-shaped stand-in in configs_e2e_test.py's convnet_cifar10
#   gpt2_transfer   the GPT is in transformers_test.py (in-process), the offline byte corpus in data_test.py, and
#                   configs_e2e_test.py's vit_tiny_imagenet takes a transformer through the CLI; transfer and
#                   consistency come out of figure1 and mlp_adam
#   ntk_hessian     edge_of_stability's run measures the NTK and linear_two_layer's the Gauss-Newton part in the
#                   loop; spectra_engine_test.py checks their top-k against eigh
#   bn_mlp_cifar10  bn_train runs the BN-MLP through the CLI with its own analysis
RUN_ELSEWHERE = ('depth_resnet', 'gpt2_transfer', 'ntk_hessian', 'bn_mlp_cifar10')


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in RUN_ELSEWHERE else n
                                  for n in sorted(EXPERIMENTS)])
def test_experiment_runs_shrunk_and_the_analysis_reads_its_files(name, tmp_path):
  arg, overrides, analyses = EXPERIMENTS[name]
  workdir = tmp_path / name
  config = f'--config=configs/{name}.py' + (f':{arg}' if arg else '')
  first = load_config(name, arg).parameterizations[0]   # one parameterization: compiling dominates the shrunk runs
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', config, f'--workdir={workdir}', *SMALL,
                         *overrides, f"--config.parameterizations=('{first}',)"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # the analysis command's own entry point, in this process (a second Python process would cost its imports, and
  # test_analyze_refuses_an_unfinished_workdir and the toy_chain and bn_depth tests start it as a command)
  from superconsistency import analyze
  assert analyze.main(['analyze', str(workdir)]) == 0
  with open(workdir / 'analysis.json') as f:
    out = json.load(f)
  if name in ('depth_resnet', 'depth_mlp'):   # metrics.csv records the configured depth and the L of the branches
    with open(workdir / 'metrics.csv') as f:
      pairs = {(int(r['depth']), int(r['depth_L'])) for r in csv.DictReader(f)}
    # resnet: three stages of `depth` residual blocks each; res_mlp: `depth` blocks
    assert pairs == ({(1, 3), (2, 6)} if name == 'depth_resnet' else {(2, 2), (4, 4)})
  for key in analyses:
    assert out.get(key), (key, sorted(out))
    assert os.path.getsize(workdir / f'analysis_{key}.png') > 10_000
    assert _finite_numbers(out[key]), key
  with open(workdir / 'summary.json') as f:
    programs = json.load(f)['programs']
  for prog in programs:   # the measurement's share of each group's chunks: by FLOPs always, by time where separable
    assert 0 < prog['measure_fraction_flops'] < 1, prog
    if (prog['lanes'], prog['steps']) == ('host', 'host'):
      assert 0 < prog['measure_fraction_time'] < 1, prog
    else:
      assert 'measure_fraction_time' not in prog, prog
  assert any('measure_fraction_time' in prog for prog in programs) == (name == 'figure1')
  if 'transfer' in analyses:
    for t in out['transfer'].values():
      assert len(t['best_lrs']) == 2 and t['shift_grid_steps'] is not None
  if 'gamma_eta' in analyses:
    (g,) = out['gamma_eta'].values()
    assert len(g['eta_star']) == 4 and len(g['lr_grid']) == 4 and g['seeds'] == [0, 1]
    (pl,) = out['plateaus'].values()
    assert 'collapse' in pl and 'best_loss' in pl
  if 'stacked_weights' in analyses:
    (sw,) = out['stacked_weights'].values()
    assert sorted(sw['by_depth']) == ['2', '3'] and sw['grad_slope_by_step'][0]['step'] == 0
    assert all(v['orthogonality_gap'][0] < 1e-5 for v in sw['by_depth'].values())   # orthogonal at init


def test_analyze_refuses_an_unfinished_workdir(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'superconsistency.analyze', str(tmp_path)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert 'no summary.json' in proc.stderr and str(tmp_path) in proc.stderr


def test_gallery_dry_run_lists_every_entry_with_a_config_that_exists():
  from superconsistency import gallery
  proc = subprocess.run([sys.executable, '-m', 'superconsistency.gallery', '--dry_run'], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) == 2 * len(gallery.ENTRIES)
  for name, spec, _ in gallery.ENTRIES:
    assert os.path.exists(os.path.join(ROOT, spec.split(':')[0])), spec
    assert f'--config={spec} --workdir=results/{name}' in proc.stdout
    assert f'superconsistency.analyze results/{name}' in proc.stdout
  bad = subprocess.run([sys.executable, '-m', 'superconsistency.gallery', '--only=nope'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and 'nope' in bad.stderr


@pytest.mark.parametrize('name', sorted(EXPERIMENTS) + ['toy_chain', 'bn_depth'])
def test_full_scale_switch_gives_a_valid_larger_config(name):
  from superconsistency import experiments
  laptop, full = load_config(name), load_config(name, 'full')
  experiments.validate(full)
  if full.experiment == 'sweep':
    assert max(full.widths) > max(laptop.widths) or full.num_steps > laptop.num_steps
  with pytest.raises(ValueError, match='unknown option'):
    load_config(name, 'fulll')


def test_an_unknown_config_option_exits_2_with_one_line(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/figure1.py:fulll',
                         f'--workdir={tmp_path / "w"}'], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert 'unknown option fulll' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / 'w').exists()
