"""[SC] NTK against Hessian: the top eigenvalues of the learning-rate-weighted NTK J·D·Jᵀ, the Gauss-Newton part G
of the Hessian and the rest R = H − G over training, across widths, μP vs NTP. Experiment 4 of the results gallery.

    python -m superconsistency --config=configs/ntk_hessian.py --workdir=results/ntk_hessian
    python -m superconsistency.analyze results/ntk_hessian
    python -m superconsistency --config=configs/ntk_hessian.py:full --workdir=runs/ntk_hessian_full   # GPU/TPU

The quickstart's MLP on MNIST-1D at its trajectory rates (μP 1.0, NTP 16: the best rates at width 64), 5 widths.
Runtime and measured result: results/README.md. Expect ([SC]): under μP the sharpness is carried by G and is the
same at every width, while the NTK's top eigenvalue keeps changing with width (finite-width effects accumulate in
the kernel but not in the Hessian); under NTP neither is consistent across widths.
"""
from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'ntk_hessian')
  c = defaults(model='mlp')
  c.depths = (3,)
  c.widths = (64, 128, 256, 512, 1024)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (1.0,)
  c.sweep.lrs.ntk = (16.0,)
  c.sweep.seeds = (0, 1)
  c.num_steps = 200
  c.measure_every = 20
  c.data.batch_size = 64
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 16
  c.measure.hessian_k = 2
  c.measure.gauss_newton = True
  c.measure.ntk_k = 4
  c.measure.ntk_batch = 32          # a 320 × 320 kernel
  c.coord_check.enabled = False
  if full:                          # GPU/TPU scale
    c.widths = (128, 256, 512, 1024, 2048, 4096)
    c.num_steps = 2000
    c.measure_every = 100
    c.measure.num_iters = 30
    c.measure.ntk_batch = 64
    c.sweep.seeds = (0, 1, 2)
  return c
