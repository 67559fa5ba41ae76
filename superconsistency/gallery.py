"""Regenerates the laptop-scale results gallery (results/README.md): every experiment, then its analysis.

    python -m superconsistency.gallery                       # all of them, into results/ (replacing what is there)
    python -m superconsistency.gallery --only=figure1,toy_chain
    python -m superconsistency.gallery --dry_run             # print the commands
    python -m superconsistency.gallery --help

Each experiment runs in its own process through the ordinary CLI (a float64 experiment switches JAX's x64 mode for
its whole process), so a gallery entry is exactly the command a user would type. `python -m
superconsistency.analyze` alone redraws every figure from the committed files without training anything. At the
end the summary table of results/README.md is regenerated from the analysis files (superconsistency/verdicts.py).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from superconsistency import results

# (workdir name under results/, config spec, experiment number in results/README.md)
ENTRIES = (
    ('figure1', 'configs/figure1.py', 1),
    ('quickstart', 'configs/quickstart.py', 2),
    ('mlp_adam', 'configs/mlp_adam.py', 2),
    ('edge_of_stability', 'configs/edge_of_stability.py', 2),
    ('edge_of_stability_adam', 'configs/edge_of_stability.py:adam', 2),
    ('depth_mlp_k1', 'configs/depth_mlp.py:k1', 3),
    ('depth_mlp_k2', 'configs/depth_mlp.py:k2', 3),
    ('ntk_hessian', 'configs/ntk_hessian.py', 4),
    ('linear_two_layer', 'configs/linear_two_layer.py', 5),
    ('gamma_eta', 'configs/gamma_eta.py', 6),
    ('gamma_eta_long', 'configs/gamma_eta.py:long', 6),
    ('gamma_eta_ce', 'configs/gamma_eta.py:ce', 6),
    ('toy_chain', 'configs/toy_chain.py', 7),
    ('bn_depth', 'configs/bn_depth.py', 8),
    ('bn_mlp_cifar10', 'configs/bn_mlp_cifar10.py', 8),
    ('bn_train', 'configs/bn_train.py', 8),
    ('bn_train_gaussian', 'configs/bn_train.py:gaussian', 8),
    ('gpt2_transfer', 'configs/gpt2_transfer.py', 9),
    ('flax_example', 'configs/flax_example.py', 10),
)


def _parser():
  p = argparse.ArgumentParser(prog='python -m superconsistency.gallery',
                              description='Rerun the results gallery: train every entry, then analyze it.')
  p.add_argument('--only', default=[], type=lambda s: [n for n in s.split(',') if n],
                 help='comma-separated workdir names to (re)run; default all: ' + ', '.join(e[0] for e in ENTRIES))
  p.add_argument('--results', default='results', help='directory that holds one workdir per entry')
  p.add_argument('--dry_run', action='store_true', help='print the commands and run nothing')
  return p


def commands(names, results_dir):
  """The two commands (train, analyze) of each named entry, in gallery order."""
  unknown = sorted(set(names) - {e[0] for e in ENTRIES})
  if unknown:
    raise ValueError(f'unknown gallery entries {unknown}; known: {", ".join(e[0] for e in ENTRIES)}')
  out = []
  for name, spec, _ in ENTRIES:
    if names and name not in names:
      continue
    workdir = os.path.join(results_dir, name)
    out.append((name, [sys.executable, '-m', 'superconsistency', f'--config={spec}', f'--workdir={workdir}',
                       '--overwrite', '--noprogress'],
                [sys.executable, '-m', 'superconsistency.analyze', workdir]))
  return out


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  try:
    todo = commands(args.only, args.results)
  except ValueError as e:
    print(f'error: --only: {e}', file=sys.stderr)
    return 2
  start = time.time()
  for name, train_cmd, analyze_cmd in todo:
    if args.dry_run:
      print('python ' + ' '.join(train_cmd[1:]) + '\npython ' + ' '.join(analyze_cmd[1:]))
      continue
    t0 = time.time()
    for cmd in (train_cmd, analyze_cmd):
      if subprocess.run(cmd).returncode != 0:
        print(f'error: gallery entry {name} failed: {" ".join(cmd[1:])}', file=sys.stderr)
        return 1
    compacted = results.compact(os.path.join(args.results, name))   # committed results stay small
    print(f'gallery: {name} done in {time.time() - t0:.0f} s' + (f'; compressed {", ".join(compacted)} to .xz'
                                                                if compacted else ''), flush=True)
  if not args.dry_run:
    print(f'gallery: {len(todo)} entries in {time.time() - start:.0f} s')
    if os.path.exists(os.path.join(args.results, 'README.md')):
      from superconsistency import verdicts
      return verdicts.main([args.results])   # the summary table, from the analysis files just written
  return 0


if __name__ == '__main__':
  sys.exit(main())
