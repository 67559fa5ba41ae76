"""Quickstart: MLP on MNIST-1D, μP vs NTP, 4 widths (64–512, 8×), 8 (μP) and 9 (NTP)
learning rates, sharpness measured in the loop.

    python -m superconsistency --config=configs/quickstart.py --workdir=runs/quickstart

Runtime: about 2.5 minutes on a 2-core laptop CPU (float32; 148 s measured, compilation included).
Expect: under μP the step-size-weighted sharpness curves of all widths lie on top of each other and the best base
learning rate is the same grid value (±1) at every width (measured: 1.0 at all four); under NTP the curves
separate by width and the best learning rate grows with width (measured: 16, 32, 32, 128).
"""
from superconsistency.config import defaults


def get_config():
  c = defaults(model='mlp')
  c.depths = (3,)
  c.widths = (64, 128, 256, 512)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)   # factor-2 grid
  c.sweep.lrs.ntk = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)  # its optimum grows with N
  c.num_steps = 200
  c.measure_every = 20
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 12
  c.data.batch_size = 64
  return c
