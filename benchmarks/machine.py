"""What a benchmark report says about the machine it ran on (shared by the benchmark scripts), and the machine's
float32 matmul peak under XLA, against which every run's FLOP/s is a utilization.

    python benchmarks/machine.py      # writes benchmarks/machine.md; about half a minute
"""
import os
import sys
import platform
import statistics
import time

import jax
import jax.numpy as jnp


def machine_info():
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return [
      ('jax / jaxlib', f'{jax.__version__} / {__import__("jaxlib").__version__}'),
      ('backend', jax.default_backend()),
      ('devices', ', '.join(f'{d.device_kind} ({d.platform}:{d.id})' for d in jax.devices())),
      ('cpu count (os / usable)', f'{os.cpu_count()} / {usable}'),
      ('load average at start (1 / 5 / 15 min)', ' / '.join(f'{x:.2f}' for x in os.getloadavg())),
      ('processor', platform.processor() or platform.machine()),
      ('python', platform.python_version()),
      ('XLA_FLAGS', os.environ.get('XLA_FLAGS', '(unset)')),
  ]


def write_report(path, text):
  """Writes the Markdown report (creating its folder) and prints it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  print(text)
  print(f'wrote {path}', file=sys.stderr)


def machine_table(info):
  """The machine section of a report, as Markdown lines."""
  return ['## Machine', '', '| | |', '|---|---|'] + [f'| {k} | {v} |' for k, v in info]


def matmul_peak(sizes=(512, 1024, 2048), repeats=5):
  """{n: float32 GFLOP/s of a jitted n×n @ n×n} (median of `repeats` timed calls after a warm-up) and the best."""
  rates = {}
  for n in sizes:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(f(a, b))
      times.append(time.perf_counter() - t)
    rates[n] = 2 * n ** 3 / statistics.median(times) / 1e9
  return rates, max(rates.values())


def main():
  rates, peak = matmul_peak()
  text = ['# The machine and its float32 matmul peak under XLA', '', *machine_table(machine_info()), '',
          '| n (n×n @ n×n, float32, jitted) | GFLOP/s (median of 5) |', '|---|---|']
  text += [f'| {n} | {r:.1f} |' for n, r in rates.items()]
  text += ['', f'Peak: **{peak:.1f} GFLOP/s**. A run\'s utilization is its `summary.json` `flops.per_second_run` '
           'over this peak.']
  write_report(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'machine.md'), '\n'.join(text) + '\n')


if __name__ == '__main__':
  main()
