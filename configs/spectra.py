"""Spectra over training: MLP on MNIST-1D, μP vs NTP, 4 widths; Hessian top-3, Gauss-Newton split, NTK, trace,
directional sharpness, feature movement and the SLQ density, all measured inside the compiled sweep.

    python -m superconsistency --config=configs/spectra.py --workdir=runs/spectra

Runtime: about 4 minutes on a 2-core laptop CPU (float32).
Expect ([SC] §NTK vs Hessian): under μP the learning-rate-weighted NTK top eigenvalue and the step-size-weighted
sharpness follow one curve across widths; the Gauss-Newton part carries most of λ_max (gn share near 1 late in
training); the residual R = H − G is small. Under NTP the weighted quantities separate by width.
"""
from superconsistency.config import defaults


def get_config():
  c = defaults()
  c.widths = (64, 128, 256, 512)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.5, 1.0, 2.0)
  c.sweep.lrs.ntk = (8.0, 16.0, 32.0)
  c.num_steps = 200
  c.measure_every = 20
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 20
  c.measure.hessian_k = 3
  c.measure.gauss_newton = True
  c.measure.ntk_k = 3
  c.measure.ntk_batch = 32          # NTK of 32 examples × 10 classes = 320 × 320
  c.measure.trace_samples = 16
  c.measure.directional = True
  c.measure.density_every = 5       # SLQ density at steps 0, 100, 200
  c.plot.trajectory_lrs.mup = 1.0
  c.plot.trajectory_lrs.ntk = 16.0
  c.coord_check.enabled = False
  return c
