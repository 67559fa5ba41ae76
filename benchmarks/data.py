"""Benchmark: the input pipeline is not the bottleneck of a training step.

Batches are drawn inside the compiled training loop (`Data.plan` once per chunk, `Data.batch` every step). This
measures what that costs, for two cases, each as one jitted chunk of K optimizer steps (`train.make_lane_program`'s
real `step`, SGD, μP, inside a `lax.scan`, the plan computed at the start of the chunk as `train` does it):

  (a) quickstart: MLP on MNIST-1D (depth 3, width 512, batch 64, epoch mode over 4000 examples), one lane and the
      8 vmapped lanes of the quickstart's μP sweep;
  (b) CIFAR-shaped: `simple_convnet` width 64, batch 128, on 50,000 uint8 32×32×3 images (random pixels: content
      does not change the cost) through `data.from_arrays` with augment=True (on-device uint8 → float,
      per-channel normalization, random crop with 4-pixel padding and flip), epoch mode.

Three programs per case, timed side by side in interleaved rounds:
  full         plan + K × (draw batch, step)              what a training chunk does
  precomputed  K × step, scanning over the same K batches  the same steps with the batches already on the
               drawn beforehand by a separate program      device (the cost a host-fed pipeline hides)
  data         plan + K × draw batch, summed to a scalar   the input pipeline alone (the sum keeps XLA from
                                                           dropping the batch; it costs one read of it)
The data share of a step is (full − precomputed)/full, both timed back to back in each round, median over the
rounds (target ≤ 10%); the rounds start their chunk at steps 0, K, 2K, … so epoch boundaries come up as in a run.
The baseline scans over K distinct batches rather than reusing one, so XLA cannot hoist batch-only work out of the
loop. Each program is compiled ahead of time and run once to warm up; the per-step times shown are the minimum
over the rounds (the least disturbed by other processes on a shared machine), with the median alongside.

Command (from the repository root):
    python benchmarks/data.py                          # writes benchmarks/data.md; ~5 min on 2 busy cores
    python benchmarks/data.py --quick --out /tmp/d.md   # smoke test, tiny sizes
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: the package

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402  (benchmarks/machine.py)

from superconsistency import config as C  # noqa: E402
from superconsistency import data as D  # noqa: E402
from superconsistency import models as M  # noqa: E402
from superconsistency import parameterization as pz  # noqa: E402
from superconsistency import train as T  # noqa: E402

FULL = dict(steps=20, rounds=20, conv_rounds=6, mlp_width=512, mlp_lanes=(1, 8), conv_width=64, conv_train=50_000)
QUICK = dict(steps=4, rounds=3, conv_rounds=2, mlp_width=32, mlp_lanes=(1, 2), conv_width=8, conv_train=2_000)


def mlp_case(s, lanes):
  """The quickstart's model and data (configs/quickstart.py), at width 512."""
  c = C.defaults(model='mlp')
  c.data.batch_size, c.measure_every = 64, s['steps']
  data = D.make_data(c.data, c.num_steps, 128, jnp.float32)
  model = M.make_model(c.model, data.spec, s['mlp_width'], 3, pz.Parameterization('mup'), jnp.float32)
  return dict(name=f'(a) MLP, MNIST-1D, width {s["mlp_width"]}, batch 64, {lanes} lane' + 's' * (lanes > 1),
              cfg=c, data=data, model=model, lrs=np.geomspace(0.0625, 8.0, lanes) if lanes > 1 else (1.0,))


def conv_case(s):
  """simple_convnet on CIFAR-shaped uint8 images through from_arrays, augmented."""
  c = C.defaults(model='simple_convnet', data='synthetic_images')
  c.data.batch_size, c.measure_every = 128, s['steps']
  rng = np.random.default_rng(0)
  train_x = rng.integers(0, 256, (s['conv_train'], 32, 32, 3), dtype=np.uint8)
  eval_x = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
  train_y, eval_y = rng.integers(0, 10, s['conv_train']).astype(np.int32), rng.integers(0, 10, 256).astype(np.int32)
  data = D.from_arrays('cifar_shaped_uint8', train_x, train_y, eval_x, eval_y, mode='epoch', batch_size=128,
                       num_steps=c.num_steps, num_measure=128, dtype=jnp.float32, augment=True)
  model = M.make_model(c.model, data.spec, s['conv_width'], 1, pz.Parameterization('mup'), jnp.float32)
  return dict(name=f'(b) simple_convnet, CIFAR-shaped uint8 + augment, width {s["conv_width"]}, batch 128, 1 lane',
              cfg=c, data=data, model=model, lrs=(0.5,), rounds=s['conv_rounds'])


def programs(case, k):
  """The three compiled chunk functions (full, precomputed, data) of one case, vmapped over its lanes."""
  data, model, cfg = case['data'], case['model'], case['cfg']
  hp = T.lane_grid(case['lrs'], (1.0,), (0,), jnp.float32)
  program = T.make_lane_program(model, data, cfg)
  state = jax.jit(jax.vmap(program.init))(hp)
  # the K batches the first chunk draws (every lane has seed 0, so one data key), materialized outside the chunk
  key = state.data_key[0]
  plan = jax.jit(data.plan, static_argnums=3)(data.arrays, key, 0, k)
  batches = jax.jit(jax.vmap(lambda step, p: data.batch(data.arrays, key, step, p)))(jnp.arange(k), plan)
  # a Data whose "plan" is the batches themselves: the step's batch is just read
  given = data._replace(batch=lambda arrays, key, step, batch_t: batch_t)
  given_program = T.make_lane_program(model, given, cfg)

  def full(state, hp, arrays):
    plan = data.plan(arrays, state.data_key, state.step, k)
    return jax.lax.scan(lambda s, p: (program.step(s, hp, arrays, p), None), state, plan)[0]

  def precomputed(state, hp, arrays):
    return jax.lax.scan(lambda s, b: (given_program.step(s, hp, arrays, b), None), state, arrays['batches'])[0]

  def data_only(state, hp, arrays):
    del hp
    plan = data.plan(arrays, state.data_key, state.step, k)

    def draw(total, step_and_plan):
      x, y = data.batch(arrays, state.data_key, *step_and_plan)
      return total + jnp.sum(x) + jnp.sum(y), None
    return jax.lax.scan(draw, jnp.zeros(()), (state.step + jnp.arange(k), plan))[0]

  out = {}
  for name, fn, arrays in (('full', full, data.arrays), ('precomputed', precomputed, {'batches': batches}),
                           ('data', data_only, data.arrays)):
    compiled = jax.jit(jax.vmap(fn, in_axes=(0, 0, None))).lower(state, hp, arrays).compile()
    out[name] = (compiled, arrays)
  return out, state, hp


def time_case(case, s, log):
  k, rounds = s['steps'], case.get('rounds', s['rounds'])
  t0 = time.perf_counter()
  progs, state, hp = programs(case, k)
  compile_s = time.perf_counter() - t0
  for fn, arrays in progs.values():   # warm-up
    jax.block_until_ready(fn(state, hp, arrays))
  # round r times the chunk starting at step r·K, so chunks that cross an epoch boundary (two shuffles) come up
  # as often as in a run
  states = [state.replace(step=jnp.full_like(state.step, r * k)) for r in range(rounds)]
  times = {name: [] for name in progs}
  for r in range(rounds):             # interleaved: a burst of outside load hits the three programs alike
    for name, (fn, arrays) in progs.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(states[r], hp, arrays))
      times[name].append((time.perf_counter() - t) / k)
  full, pre, data = (np.array(times[n]) for n in ('full', 'precomputed', 'data'))
  result = dict(name=case['name'], compile_s=compile_s, times=times,
                data_share=float(np.median((full - pre) / full)), data_only_share=float(np.median(data / full)),
                params=sum(int(np.prod(p.shape)) for p in
                           jax.tree.leaves(jax.eval_shape(case['model'].init, jax.random.PRNGKey(0)))))
  log(f'{case["name"]}: ' + ', '.join(f'{n} {min(v) * 1e3:.3f} ms' for n, v in times.items()) +
      f'; data {100 * result["data_share"]:.1f}% (paired), data only {100 * result["data_only_share"]:.1f}%')
  return result


def ms(t):
  return f'{t * 1e3:.3f} ms'


def report(quick, s, info, results, total):
  L = ['# Input-pipeline benchmark' + (' (--quick: tiny sizes, numbers not meaningful)' if quick else ''), '',
       'Produced by `python benchmarks/data.py' + (' --quick' if quick else '') + f'` in {total:.1f} s.', '']
  L += machine_table(info)
  L += ['', '## Time per training step', '',
        f'One jitted chunk of {s["steps"]} SGD steps (μP) in a `lax.scan`, timed in {s["rounds"]} interleaved '
        f'rounds ({s["conv_rounds"]} for the conv net). **full**: batches drawn inside the chunk (plan + batch); '
        '**precomputed**: the same steps, scanning over batches drawn beforehand; **data only**: just drawing the '
        'batches. Times per step: the minimum over the rounds (median in brackets); with several lanes, per step of '
        'all lanes together. **data % of step** is the median over rounds of (full − precomputed)/full, each round '
        'timing both back to back; **data only %** the median of data only/full.', '',
        '| case | params / lane | full step | precomputed-batch step | **data % of step** | data only '
        '| data only % of step |', '|---|---|---|---|---|---|---|']
  for r in results:
    t = r['times']
    cell = lambda n: f'{ms(min(t[n]))} ({ms(statistics.median(t[n]))})'
    L.append(f'| {r["name"]} | {r["params"]:,} | {cell("full")} | {cell("precomputed")} | '
             f'**{100 * r["data_share"]:.1f}%** | {cell("data")} | {100 * r["data_only_share"]:.1f}% |')
  L += ['', 'Target: data ≤ 10% of the step. The difference full − precomputed is of two noisy timings (it can '
        'come out slightly negative when the pipeline costs less than the noise); "data only" measures the pipeline '
        'directly, plus one reduction over each batch. Most of it is the epoch shuffle (`jax.random.permutation` '
        'of the training set, once per epoch a chunk touches); the per-step gather, uint8 conversion, '
        'normalization and crop/flip are small beside a training step. The machine was shared with other jobs (see the '
        'load average), which is why medians exceed minima; the per-round pairing reduces its effect on the '
        'shares.', '']
  return '\n'.join(L) + '\n'


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--quick', action='store_true', help='tiny sizes for a smoke test')
  ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data.md'))
  args = ap.parse_args(argv)
  s = QUICK if args.quick else FULL
  info = machine_info()
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  t0 = time.perf_counter()
  cases = [mlp_case(s, lanes) for lanes in s['mlp_lanes']] + [conv_case(s)]
  results = [time_case(case, s, log) for case in cases]
  write_report(args.out, report(args.quick, s, info, results, time.perf_counter() - t0))


if __name__ == '__main__':
  main()
