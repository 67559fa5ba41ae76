"""Quickstart: MLP on MNIST-1D, μP vs NTP, 4 widths (64–512, 8×), 8 (μP) and 9 (NTP) learning rates, 3 seeds,
sharpness measured in the loop.

    python -m superconsistency --config=configs/quickstart.py --workdir=runs/quickstart

Runtime: about 2–3 minutes on a 2-core laptop CPU (float32; 136 s measured from a fresh clone, 19 s of it
compiling, 2026-12-04; 303 s for an earlier version while another run shared the cores).
Expect (best_rate.py's rule, 3 seeds): μP's best rate transfers: drift +0.04 decades from N = 64 to 512, interval
[-0.21, +0.30] inside the tolerance ±0.45; NTP's shifts: +0.80 decades [+0.48, +1.00] (on the machine that made
results/quickstart; another processor rounds differently, and one gave NTP [+0.10, +1.07]: inconclusive). The
step-size-weighted sharpness curves of all widths lie on top of each other under μP (late CV across widths 0.03 in
every seed) and separate under NTP (0.21–0.29).
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
  c.sweep.seeds = (0, 1, 2)        # lanes of the same program: the best rate's interval comes from them
  c.sweep.extend_rounds = 2        # widen a grid where some seed's optimum sits on its edge (best_rate.py)
  return c
