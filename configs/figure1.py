"""[SC] Figure 1: SimpleConvNet under μP and NTP: sharpness and loss over training across widths, and the
learning-rate sweeps. Experiment 1 of the results gallery (results/README.md).

    python -m superconsistency --config=configs/figure1.py --workdir=results/figure1
    python -m superconsistency.analyze results/figure1
    python -m superconsistency --config=configs/figure1.py:full --workdir=runs/figure1_full   # GPU/TPU scale

The default matches the authors' pure-JAX reproduction script, so the two can be compared: widths 16/64/256,
batch 128, 256 SGD steps, 9 evenly spaced measurements (every 32 steps, step 0 included) of 8 warm-started power
iterations on 32 samples, loss on 512 samples; sweeps over μP base rates {0.1, 0.2, 0.5, 1, 2} and NTP rates
{1, 3, 7, 20, 60} read after 128 steps (`select_step`); trajectories at μP 0.5 and NTP 7. All rates are lanes of one
sweep; at step 128 the sweep lanes retire (`sweep.lane_steps='select_step'`) and the trajectory lane
runs on alone to 256, so a sweep lane is exactly a 128-step sweep run. On CPU (`program`: auto) one lane's programs
are compiled once and called lane by lane from the host, the steps dispatched from the host, and each step runs in micro-batches (of 64, 32 and 8
examples at widths 16, 64 and 256) whose activations stay in the CPU's caches
(docs/design.md, benchmarks/figure1.md).
Offline (the default) the data are learnable synthetic CIFAR-shaped images (32×32×3, 10 classes); with CIFAR-10
prepared through TFDS add `--config.data.offline=False`. `:full` gives widths 64/256/1024 and 19,550 steps
(measurements every 1,955 steps) on CIFAR-10.

Runtime: see results/README.md (measured on this 2-core CPU). Expect ([SC]): under μP the step-size-weighted
sharpness rises to a width-independent level near 2 and the best rate is the same at every width; under NTP the
sharpness differs across widths and the best rate moves.
"""
from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'figure1')
  c = defaults(model='simple_convnet', data='cifar10')
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.1, 0.2, 0.5, 1.0, 2.0)
  c.sweep.lrs.ntk = (1.0, 3.0, 7.0, 20.0, 60.0)
  c.plot.trajectory_lrs.mup = 0.5
  c.plot.trajectory_lrs.ntk = 7.0
  c.data.offline = True
  c.data.batch_size = 128
  c.data.num_train = 8192
  c.data.num_eval = 512
  c.measure.loss_batch = 512
  c.measure.sharpness_batch = 32
  c.measure.solver = 'power'       # warm-started from the previous measurement's vector, as the authors' script
  c.measure.num_iters = 8
  c.coord_check.enabled = False
  c.sweep.lane_steps = 'select_step'   # as the authors' procedure: sweep lanes stop at select_step (128)
  c.sweep.seeds = (0, 1, 2)        # the best rate's interval comes from them (benchmarks/figure1.py times one)
  c.sweep.extend_rounds = 2        # μP's best rate sat on the top of this grid at every width: widen it
  c.data.noise = 3.0               # offline images 3× noisier than the template: not solved by step 128 (best_rate)
  if not full:
    c.widths = (16, 64, 256)
    c.num_steps = 256
    c.measure_every = 32
    c.select_step = 128
  else:
    c.widths = (64, 256, 1024)
    c.data.offline = False
    c.data.num_train = 50000
    c.num_steps = 19550
    c.measure_every = 1955
    c.select_step = 0
    c.sweep.lane_steps = 'num_steps'   # every rate trains the whole run, read at its end
  return c
