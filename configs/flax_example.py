"""Your own Flax module in the instrument: a linen MLP with biases (docs/examples/linen_mlp.py, written with no
knowledge of this project) on MNIST-1D under μP and NTP, widths 32–256 (8×), 3 seeds, sharpness in the loop. Run
from the repository root (the module path is relative to it):

    python -m superconsistency --config=configs/flax_example.py --workdir=runs/flax_example

Runtime on a 2-core laptop CPU: 142 s with μP's programs already in the compilation cache, about 3.5 minutes cold
(219 s measured for a run that also extended NTP's grid); docs/examples/flax_transfer.py runs it from Python.
Expect (best_rate.py's rule, tolerance ±0.45 decades): μP's best rate transfers (1.06 → 1.4, drift +0.12 decades
[-0.10, +0.35]), and so does NTP's here (5.75 → 7.11, +0.16 [-0.10, +0.34]): the trained biases cap NTP's stable
rate at every width. Without biases the same module's NTP rate grows 16.6 → 94 (+0.75 [+0.20, +1.02]).
results/README.md, experiment 10.
"""
from superconsistency.config import defaults, set_model


def get_config():
  c = defaults(model='flax')
  set_model(c, 'flax', module='docs/examples/linen_mlp.py:MLP', kwargs={'hidden_layers': 2}, width_arg='width')
  c.depths = (1,)
  c.widths = (32, 64, 128, 256)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)   # factor 2
  c.sweep.lrs.ntk = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)   # where NTP's best rate grows with the width
  c.sweep.seeds = (0, 1, 2)
  c.sweep.extend_rounds = 2
  c.num_steps = 200
  c.measure_every = 20
  c.data.batch_size = 64
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 12
  c.coord_check.enabled = False
  return c
