"""Benchmark: compile time of a deep model's loss gradient, blocks written out layer by layer against stacked
blocks run with lax.scan.

Before the model contract of issue 11, resnet and bn_mlp kept one parameter per block layer and unrolled their
blocks in Python, so XLA compiled one copy of every block; the transformers already scanned, but over weights
stacked inside the forward pass from one parameter per block matrix. Now every stage of blocks is stacked
parameters and one lax.scan. For each (model, depth) this compiles jax.jit(jax.grad(loss)) on a tiny batch, once
with the models of commit BEFORE (read with `git show` into a temporary package) and once with this checkout's,
each in a fresh process (XLA's default flags, nothing cached), and reports the seconds to trace and lower, and to
compile. The tiny shapes make the time almost all compilation; the graph grows with depth only when unrolled.

    python benchmarks/compile_depth.py          # writes benchmarks/compile_depth.md; about 4 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
BEFORE = '6261d82b6ed5e5089e03e0e6ee3bd6c3086b189d'   # the last commit before the redesign: unrolled blocks
OLD_FILES = ('__init__.py', 'parameterization.py', 'models.py', 'transformers.py')
# (model, depth as the builder takes it, the number of blocks that is)
CASES = [('bn_mlp', 30, 30), ('bn_mlp', 100, 100), ('bn_mlp', 300, 300), ('bn_mlp', 1000, 1000),
         ('resnet', 8, 24), ('resnet', 34, 102), ('gpt2', 12, 12), ('gpt2', 48, 48)]
REPEATS = 2   # fresh processes per case and version; the report keeps the fastest (the machine may be shared)


def build(version, name, depth):
  """(model, x, y) of the given version's code (imported from whatever `superconsistency` is on the path)."""
  import jax.numpy as jnp
  import numpy as np
  from superconsistency import models
  from superconsistency import parameterization as pz
  from superconsistency import transformers
  p = pz.Parameterization('mup')
  rng = np.random.default_rng(0)
  if name == 'bn_mlp':
    model = models.bn_mlp(32, 10, 32, depth, p, activation='tanh')
    x = jnp.asarray(rng.normal(size=(16, 32)), jnp.float32)
  elif name == 'resnet':
    if version == 'unrolled':
      model = models.res_convnet((16, 16, 3), 10, 4, depth, 1, p)
    else:
      model = models.resnet((16, 16, 3), 10, 4, depth, p, layers_per_block=1)
    x = jnp.asarray(rng.normal(size=(4, 16, 16, 3)), jnp.float32)
  else:
    model = transformers.gpt2(64, 16, 32, depth, p, heads=4)
    x = jnp.asarray(rng.integers(0, 64, (2, 16)), jnp.int32)
    return model, x, jnp.asarray(rng.integers(0, 64, (2, 16)), jnp.int32)
  return model, x, jnp.asarray(rng.integers(0, 10, x.shape[0]), jnp.int32)


def measure(version, name, depth):
  """Seconds to trace + lower, and to compile, jit(grad(loss)) of one (model, depth); run in a fresh process."""
  import jax
  from superconsistency import models
  model, x, y = build(version, name, depth)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))   # shapes only: init is not what is measured
  grad = jax.jit(jax.grad(lambda p, x, y: models.cross_entropy(model.apply(p, x), y)))
  start = time.perf_counter()
  lowered = grad.lower(params, x, y)
  traced = time.perf_counter()
  lowered.compile()
  done = time.perf_counter()
  return dict(lower_s=traced - start, compile_s=done - traced, num_params=len(params))


def old_package(tmp):
  """The models of commit BEFORE as a package `superconsistency` under tmp."""
  pkg = os.path.join(tmp, 'superconsistency')
  os.makedirs(pkg)
  for f in OLD_FILES:
    text = subprocess.run(['git', 'show', f'{BEFORE}:superconsistency/{f}'], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    with open(os.path.join(pkg, f), 'w') as out:
      out.write(text)
  return tmp


def total(r):
  return r['lower_s'] + r['compile_s']


def run_one(path, version, name, depth):
  env = dict(os.environ, PYTHONPATH=path)
  env.pop('XLA_FLAGS', None)   # XLA's default optimization level: what a user's run compiles with
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker', version, name, str(depth)],
                        env=env, capture_output=True, text=True, timeout=600, cwd=path)
  if proc.returncode != 0:
    raise RuntimeError(f'{version} {name} {depth} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--worker', nargs=3, metavar=('VERSION', 'MODEL', 'DEPTH'), help=argparse.SUPPRESS)
  parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'compile_depth.md'))
  args = parser.parse_args()
  if args.worker:
    version, name, depth = args.worker
    print(json.dumps(measure(version, name, int(depth))))
    return
  from machine import machine_info, machine_table, write_report
  info = machine_info()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    old = old_package(tmp)
    for name, depth, blocks in CASES:
      before = min((run_one(old, 'unrolled', name, depth) for _ in range(REPEATS)), key=total)
      after = min((run_one(ROOT, 'scanned', name, depth) for _ in range(REPEATS)), key=total)
      rows.append((name, blocks, before, after))
      print(name, depth, before, after, file=sys.stderr, flush=True)
  lines = ['# Compile time at depth: blocks unrolled (before) against stacked blocks under lax.scan (now)', '']
  lines += machine_table(info) + ['']
  lines += [f'jax.jit(jax.grad(cross-entropy loss)) of the μP model on a tiny batch, compiled in a fresh process with '
            f"XLA's default flags. Before: the models of commit {BEFORE[:7]} (resnet and bn_mlp unrolled, one "
            'parameter per block layer; gpt2 already scanned, over weights stacked inside the forward pass). '
            f'Seconds to trace + lower, and to compile (the faster of {REPEATS} fresh processes each); '
            'ratio = before / now of the sum.', '',
            '| model | blocks | params before / now | before: lower + compile (s) | now: lower + compile (s) | ratio |',
            '|---|---|---|---|---|---|']
  for name, blocks, b, a in rows:
    lines.append(f'| {name} | {blocks} | {b["num_params"]} / {a["num_params"]} | '
                 f'{b["lower_s"]:.1f} + {b["compile_s"]:.1f} | {a["lower_s"]:.1f} + {a["compile_s"]:.1f} | '
                 f'{total(b) / total(a):.1f}× |')
  lines += ['', "Blocks: bn_mlp's [linear → BN → tanh] blocks; resnet's residual blocks over its three stages (8 or "
            "34 per stage, one conv each); gpt2's transformer blocks. Shapes: bn_mlp width 32, batch 16; resnet "
            'width 4 (stages of 4/8/16 channels), 16×16×3 images, batch 4; gpt2 width 32, 4 heads, 16 tokens, '
            'vocabulary 64, batch 2.', '']
  write_report(args.out, '\n'.join(lines))


if __name__ == '__main__':
  main()
