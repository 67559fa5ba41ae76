"""[G] The γ–η phase plane: a centered MLP on MNIST-1D trained by online SGD (every example seen once), MSE on
one-hot targets, L = 2, 3, 4 weight layers, γ0 from 1e-3 to 1e3 and η0 from 1e-6 to 1e5, both in half-decades, 400 steps of batch 32. Experiment 6
of the results gallery.

    python -m superconsistency --config=configs/gamma_eta.py --workdir=results/gamma_eta
    python -m superconsistency --config=configs/gamma_eta.py:ce --workdir=results/gamma_eta_ce
    python -m superconsistency.analyze results/gamma_eta results/gamma_eta_ce
    python -m superconsistency --config=configs/gamma_eta.py:full --workdir=runs/gamma_eta_full   # GPU/TPU

[G]'s conventions: the output is (g(θ) − g(θ0))/γ0 with g the μP network, the raw SGD rate is η0·N
(`param.lr_convention='g'`), float64 throughout (small γ0 needs it). Every (η0, γ0) pair is one lane of one
vmapped program per depth; a lane that diverges is frozen and marked. No Hessian products: loss curves only.
The option `ce` trains with cross-entropy instead (one depth, L = 3); `full` is [G]'s scale. Runtime and measured result: results/README.md.
Expect ([G]): η* ∝ γ0² for γ0 ≪ 1 (∝ γ0 with cross-entropy) and ∝ γ0^(2/L) for γ0 ≫ 1; long plateaus and then drops at
large γ0; early loss curves at large γ0 coincide against τ = η0·t/γ0.
"""
import numpy as np

from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  opts = options(arg, ('ce', 'full'), 'gamma_eta')
  c = defaults(model='mlp', data='mnist1d')
  c.dtype = 'float64'
  c.model.activation = 'relu'
  c.widths = (128,)
  c.depths = (2, 3, 4)
  c.parameterizations = ('mup',)
  c.param.center = True
  c.param.lr_convention = 'g'
  c.loss = 'mse'
  c.sweep.gamma0s = tuple(float(g) for g in np.round(np.logspace(-3, 3, 13), 6))   # half-decades
  c.sweep.lrs.mup = tuple(float(v) for v in np.round(np.logspace(-6, 5, 23), 10))
  c.data.mode = 'online'
  c.data.batch_size = 32
  c.data.num_eval = 500
  c.num_steps = 400
  c.measure_every = 25             # 17 measurements: the committed metrics.csv stays under 2 MB
  c.measure.hessian = False
  c.measure.loss_batch = 256
  c.measure.sharpness_batch = 1
  c.loss_cap = 1e2
  c.coord_check.enabled = False
  if 'ce' in opts:
    c.loss = 'cross_entropy'
    c.depths = (3,)
  if 'full' in opts:               # [G]'s scale: width ~1000, γ0 over 1e-5 … 1e5, quarter-decade η0 grid
    c.widths = (1024,)
    c.sweep.gamma0s = tuple(float(g) for g in np.round(np.logspace(-5, 5, 21), 8))
    c.sweep.lrs.mup = tuple(float(v) for v in np.round(np.logspace(-12, 6, 73), 14))
    c.data.batch_size = 64
    c.num_steps = 5000
    c.measure_every = 50
    c.measure.loss_batch = 1000
  return c
