"""[G] The γ–η phase plane: a centered MLP on MNIST-1D trained by online SGD (every example seen once), MSE on
one-hot targets. Experiment 6 of the results gallery. Three entries, each one command:

    python -m superconsistency --config=configs/gamma_eta.py --workdir=results/gamma_eta             # the plane
    python -m superconsistency --config=configs/gamma_eta.py:long --workdir=results/gamma_eta_long   # plateaus
    python -m superconsistency --config=configs/gamma_eta.py:ce --workdir=results/gamma_eta_ce       # cross-entropy
    python -m superconsistency --config=configs/gamma_eta.py:full --workdir=runs/gamma_eta_full      # GPU/TPU

- default, the plane: L = 2, 3, 4, 5 weight layers, width 128, 3 seeds, 400 steps of batch 32; η0 at quarter
  decades from 1e-6 to 1e5 (45 rates) at every γ0; γ0 at half decades from 1e-3 to 3.16 and at quarter decades
  from 10 to 1000 (9 values in the large-γ0 regime). analysis.json `gamma_eta`: η* and the largest stable η0 per
  seed, their slopes against γ0 in both regimes with intervals that include the grid's quantisation, and the
  slopes again with the regime boundaries moved.
- `long`: L = 3, 2,000 steps, the loss every 25 steps, γ0 from 0.1 to 1000, η0 at quarter decades from 0.01 to
  1e4. analysis.json `plateaus`: plateau lengths against γ0/η0, the collapse of the curves in τ = η0·t/γ0 against
  a permutation null, and where the best online loss sits after 2,000 steps.
- `ce`: cross-entropy, L = 3, 2,000 steps, no loss cap (a lane diverges only when its loss is not finite, as in
  [G]'s code), γ0 at half decades from 1e-3 to 1e3; λ_max of the Hessian measured every 500 steps, so the
  analysis reports λ_max at η* against γ0.

[G]'s conventions: the output is (g(θ) − g(θ0))/γ0 with g the μP network, the raw SGD rate is η0·N
(`param.lr_convention='g'`), float64 throughout (small γ0 needs it). Every (η0, γ0, seed) is one lane of one
vmapped program per depth; a lane whose loss is not finite is frozen, marked and retired.
Runtime on a 2-core laptop CPU: the plane 29 min (L = 5 alone 10), `long` 13 min, `ce` 18 min.
Expect ([G]): η* ∝ γ0² for γ0 ≪ 1 (∝ γ0 with cross-entropy) and ∝ γ0^(2/L) for γ0 ≫ 1; at large γ0 a plateau
whose length grows like γ0/η0, so that early loss curves coincide against τ = η0·t/γ0. Measured here
(results/README.md): the stability edge follows γ0^(2/L) at every L, η* for L ≤ 4; the small-γ0 slope is ~2 with
MSE and with cross-entropy; plateau lengths scale as (γ0/η0)^0.62, not 1.
"""
import numpy as np

from superconsistency.config import defaults, options


def _grid(lo, hi, per_decade):
  """Powers of ten from 10^lo to 10^hi, `per_decade` to a decade, rounded so that shared values compare equal."""
  return tuple(float(v) for v in np.round(np.logspace(lo, hi, round((hi - lo) * per_decade) + 1), 12))


def get_config(arg: str = ''):
  opts = options(arg, ('long', 'ce', 'full'), 'gamma_eta')
  c = defaults(model='mlp', data='mnist1d')
  c.dtype = 'float64'
  c.model.activation = 'relu'
  c.widths = (128,)
  c.depths = (2, 3, 4, 5)
  c.parameterizations = ('mup',)
  c.param.center = True
  c.param.lr_convention = 'g'
  c.loss = 'mse'
  c.sweep.gamma0s = _grid(-3, 0.5, 2) + _grid(1, 3, 4)    # half decades to 3.16, quarter decades 10 … 1000
  c.sweep.lrs.mup = _grid(-6, 5, 4)
  c.sweep.seeds = (0, 1, 2)
  c.data.mode = 'online'
  c.data.batch_size = 32
  c.data.num_eval = 500
  c.num_steps = 400
  c.measure_every = 100            # the plane reads the last loss only; 5 measurements keep metrics.csv small
  c.measure.hessian = False
  c.measure.loss_batch = 512
  c.measure.sharpness_batch = 1
  c.loss_cap = float('inf')        # diverged = a non-finite loss, as in [G]'s code; a finite blow-up counts as
                                   # unstable in the analysis (its last loss is above its first)
  c.coord_check.enabled = False
  if 'long' in opts:
    c.depths = (3,)
    c.sweep.gamma0s = _grid(-1, 0.5, 2) + _grid(1, 3, 3)     # 0.1 … 3.16, then third decades 10 … 1000
    c.sweep.lrs.mup = _grid(-2, 4, 4)
    c.num_steps = 2000
    c.measure_every = 25
    c.measure.loss_batch = 256
  if 'ce' in opts:
    c.loss = 'cross_entropy'
    c.depths = (3,)
    c.sweep.gamma0s = _grid(-3, 3, 2)
    c.sweep.lrs.mup = _grid(-5.5, 4, 4)
    c.num_steps = 2000
    c.measure_every = 500
    c.measure.hessian = True       # λ_max(H) at the end of every chunk, so at η* after 2,000 steps
    c.measure.sharpness_batch = 128
    c.measure.num_iters = 10
  if 'full' in opts:               # [G]'s scale: width ~1000, γ0 over 1e-5 … 1e5, quarter-decade η0 grid
    c.widths = (1024,)
    c.sweep.gamma0s = _grid(-5, 5, 2)
    c.sweep.lrs.mup = _grid(-12, 6, 4)
    c.data.batch_size = 64
    c.num_steps = 5000
    c.measure_every = 50
    c.measure.loss_batch = 1000
  return c
