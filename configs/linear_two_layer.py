"""[SC] Two-layer linear network, MSE, random data in 100 dimensions: the Gauss-Newton part G and the rest R of the
Hessian over training across widths, μP vs NTP. Experiment 5 of the results gallery.

    python -m superconsistency --config=configs/linear_two_layer.py --workdir=results/linear_two_layer
    python -m superconsistency.analyze results/linear_two_layer
    python -m superconsistency --config=configs/linear_two_layer.py:full --workdir=runs/linear_full   # GPU/TPU

f(x) = W2·W1·x with x ~ N(0, I_100) and targets from a fixed random teacher (`teacher_student`, unit variance).
Runtime and measured result: results/README.md. Expect ([SC]): under μP the sharpness is carried by G and
follows one curve at every width; under NTP the sharpening slows down as the width grows.
"""
from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'linear_two_layer')
  c = defaults(model='mlp', data='teacher_student')
  c.model.activation = 'linear'
  c.depths = (2,)
  c.widths = (64, 128, 256, 512, 1024, 2048)
  c.parameterizations = ('mup', 'ntk')
  c.loss = 'mse'
  c.sweep.lrs.mup = (0.5,)
  c.sweep.lrs.ntk = (0.5,)
  c.sweep.seeds = (0, 1)
  c.data.input_dim = 100
  c.data.output_dim = 1
  c.data.num_train = 1024
  c.data.batch_size = 1024          # full batch: gradient descent, as the theory
  c.num_steps = 300
  c.measure_every = 20
  c.measure.loss_batch = 1024
  c.measure.sharpness_batch = 1024
  c.measure.num_iters = 12
  c.measure.gauss_newton = True
  c.coord_check.enabled = False
  if full:                          # GPU/TPU scale
    c.widths = (256, 512, 1024, 2048, 4096, 8192)
    c.num_steps = 2000
    c.measure_every = 100
    c.sweep.seeds = (0, 1, 2)
  return c
