"""From Python, no shell: a user's linen module (linen_mlp.py) through the parameterization, a width sweep under μP
and NTP, and the transfer plot — what a notebook cell sequence would do. Run from the repository root:

    python docs/examples/flax_transfer.py --workdir=runs/flax_transfer            # configs/flax_example.py, ~3 min
    python docs/examples/flax_transfer.py --workdir=runs/flax_quick --quick       # 2 widths, 20 steps, ~1 min

tests/docs_test.py runs the --quick form.
"""
import argparse
import os
import sys

import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # linen_mlp.py, next to this file
import superconsistency as sc  # noqa: E402
from linen_mlp import MLP  # noqa: E402

QUICK = {'widths': (16, 32), 'num_steps': 20, 'sweep.seeds': (0,), 'sweep.extend_rounds': 0,
         'sweep.lrs.mup': (0.5, 1.0, 2.0), 'sweep.lrs.ntk': (2.0, 4.0, 8.0)}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--quick', action='store_true', help='2 widths, 20 steps, 1 seed: checks the path, not science')
  args = parser.parse_args(argv)

  # 1. The module as the instrument sees it: each parameter's layer kind, fan-in and forward multiplier under μP.
  model = sc.flax_model(MLP(width=256), jnp.zeros((2, 40)), sc.Parameterization('mup'), width=256)
  for name, layer in model.layers.items():
    print(f'{name:16s} {layer.kind:8s} fan_in {layer.fan_in:4d}  multiplier {layer.multiplier:.4g}')

  # 2. The width sweep: the same config and path as `python -m superconsistency --config=configs/flax_example.py`.
  summary = sc.run('configs/flax_example.py', args.workdir, QUICK if args.quick else None, overwrite=True)
  print(f'swept in {summary["wall_time_s"]["total"]:.0f} s')

  # 3. Read it back and analyze it: best rate per width with intervals over seeds, drift in decades, verdict.
  run = sc.load(args.workdir)
  for key, t in run.transfer().items():
    best = ', '.join(f'{w}: {lr:.3g}' for w, lr in zip(t['sizes'], t['best_lrs']))
    print(f'{key}: best rate {{{best}}}; drift {t["drift_decades"]:+.2f} decades → {t["verdict"]}')
  print('wrote', run.plot_transfer(os.path.join(args.workdir, 'flax_transfer.png')))
  return 0


if __name__ == '__main__':
  sys.exit(main())
