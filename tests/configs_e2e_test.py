"""Every architecture × dataset config runs end to end through the real CLI, shrunk and offline, and writes a
complete workdir whose numbers are finite."""
import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_config

CONFIGS = {   # name: (depths for the shrunk run, extra overrides)
    'convnet_cifar10': ('(1,)', []),
    'resnet_cifar10': ('(1,)', ['--config.model.norm=batch']),
    'vit_tiny_imagenet': ('(1,)', []),
    'vit_imagenet': ('(1,)', []),
    'gpt2_wikitext103': ('(1,)', ['--config.data.seq_len=16', '--config.data.max_bytes=200000']),
    'bn_mlp_cifar10': ('(3,)', []),
}
SHRINK = ['--config.widths=(8,)', '--config.num_steps=4', '--config.measure_every=2',
          '--config.data.num_eval=32', '--config.data.batch_size=16',
          '--config.measure.loss_batch=32', '--config.measure.sharpness_batch=16', '--config.measure.num_iters=4',
          '--config.coord_check.enabled=False', '--config.data.offline=True', '--noprogress']
# The arrays are tiny, so compiling dominates: XLA's CPU backend at optimization level 0 and without its fusion
# emitters compiles 3-4x faster (measured on the GPT config: 26 s -> 7 s); only the generated code differs.
FAST_COMPILE = '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'


# Configs whose model and data path another test runs (compiling dominates these runs, so each costs 10-25 s of
# the suite): the slow run (-m slow) runs them here too.
#   bn_mlp_cifar10    the gallery's bn_train takes the BN-MLP through the CLI (tests/experiments_test.py), and
#                     convnet_cifar10 the CIFAR-shaped stand-in
#   gpt2_wikitext103  the GPT is in tests/transformers_test.py (in-process), the offline byte corpus in
#                     tests/data_test.py, and vit_tiny_imagenet takes a transformer through the CLI
#   resnet_cifar10    the ResNet and its batch norm are in tests/resnet_test.py and tests/models_test.py (in-process);
#                     the CLI path it would add is convnet_cifar10's (the runner does not depend on the model)
#   vit_imagenet      vit_tiny_imagenet's ViT with mean pooling and online data, on a 1,000-class stand-in
RUN_ELSEWHERE = ('bn_mlp_cifar10', 'gpt2_wikitext103', 'resnet_cifar10', 'vit_imagenet')


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.slow) if n in RUN_ELSEWHERE else n
                                  for n in sorted(CONFIGS)])
def test_config_runs_shrunk_and_offline_through_the_cli(name, tmp_path):
  depths, extra = CONFIGS[name]
  workdir = tmp_path / name
  lrs = [f'--config.sweep.lrs.{p}=(0.001,0.01)' for p in ('sp', 'ntk', 'mup', 'depth_mup')]
  env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' ' + FAST_COMPILE).strip())
  if 'num_train' in load_config(name).data:   # text data sets have no training-set size (they walk a corpus)
    extra = extra + ['--config.data.num_train=128']
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', f'--config=configs/{name}.py',
                         f'--workdir={workdir}', f'--config.depths={depths}', *SHRINK, *lrs, *extra,
                         f"--config.parameterizations=('{load_config(name).parameterizations[0]}',)"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / 'metrics.csv') as f:
    rows = list(csv.DictReader(f))
  with open(workdir / 'config.json') as f:
    cfg = json.load(f)
  num_depths = len(depths.strip("()").rstrip(",").split(",")) if name != "convnet_cifar10" else 1
  assert len(rows) == num_depths * 2 * 3   # depths × learning rates × measurements (steps 0, 2, 4)
  for r in rows:
    for col in ('train_loss', 'eval_loss', 'sharpness'):
      assert r[col] not in ('', 'nan') and abs(float(r[col])) < 1e6, (col, r)
  assert cfg['_data']['spec']['name'] != cfg['data']['name']   # the offline stand-in ran, and says so
  assert os.path.getsize(workdir / 'summary.json') > 0


def test_unprepared_dataset_fails_with_the_prepare_command_and_writes_nothing(tmp_path):
  workdir, data_dir = tmp_path / 'w', tmp_path / 'empty_data_dir'
  data_dir.mkdir()
  proc = subprocess.run([sys.executable, '-m', 'superconsistency', '--config=configs/convnet_cifar10.py',
                         f'--workdir={workdir}', '--config.data.offline=False', f'--config.data.data_dir={data_dir}',
                         '--noprogress'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  message = proc.stderr.strip().splitlines()[-1]
  assert message.startswith('error: config.data.name:') and 'python -m superconsistency.prepare cifar10' in message
  assert str(data_dir) in message
  assert not workdir.exists() and list(data_dir.iterdir()) == []
