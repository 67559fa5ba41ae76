"""[SC] The quickstart's MLP on MNIST-1D trained with Adam: learning-rate transfer and Adam's preconditioned
sharpness λ_max(P⁻¹H) against its threshold (2 + 2β1)/(1 − β1) = 38 (in units of 1/η). Experiment 2 of the
results gallery, beside the quickstart (the same story with SGD).

    python -m superconsistency --config=configs/mlp_adam.py --workdir=results/mlp_adam
    python -m superconsistency.analyze results/mlp_adam
    python -m superconsistency --config=configs/mlp_adam.py:full --workdir=runs/mlp_adam_full   # GPU/TPU scale

Adam under μP follows the rules in README.md (hidden layers η0/√N, ε scaled with width). Runtime and the measured
result: results/README.md. Expect ([SC], [Cohen et al.]): the preconditioned sharpness rises to its threshold and
stays there at every width under μP; μP's best rate transfers across widths, NTP's does not.
"""
import os

from superconsistency.config import from_file, options, set_optimizer


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'mlp_adam')
  c = from_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'quickstart.py'))
  set_optimizer(c, 'adam')
  c.optimizer.eps = 1e-8
  c.sweep.lrs.mup = (0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048)   # factor-2 grids, widened
  # twice: each earlier run had μP's best rate on the grid's top
  c.sweep.lrs.ntk = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
  c.measure.num_iters = 20         # Adam's preconditioned spectrum needs more Lanczos steps than SGD's
  c.coord_check.enabled = False    # the quickstart and tests/coord_check_test.py check Adam's μP rules
  if full:                         # GPU/TPU scale: 32× the width range, 10× the steps, 3 seeds
    c.widths = (128, 256, 512, 1024, 2048, 4096)
    c.data.num_train = 10000
    c.num_steps = 2000
    c.measure_every = 100
    c.sweep.seeds = (0, 1, 2)
  return c
