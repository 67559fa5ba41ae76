"""[BN] trained at depth: batch-normalized linear MLPs (input layer, L × [linear → BN], readout; the blocks stacked
and scanned) at L = 100, 500 and 1,000, orthogonal weights against the Gaussian baseline (option `gaussian`).

    python -m superconsistency --config=configs/bn_train.py --workdir=results/bn_train
    python -m superconsistency --config=configs/bn_train.py:gaussian --workdir=results/bn_train_gaussian
    python -m superconsistency --config=configs/bn_train.py:full --workdir=runs/bn_train_full   # GPU/TPU, CIFAR-10

Width 64 = batch 64 (the theory's n = d), linear activation (BN's normalization is the only nonlinearity), no
mean subtraction, standard parameterization, SGD at three rates, 3 seeds, 200 steps on the offline synthetic
CIFAR-shaped images. Every 40 steps the run records, besides the losses, the orthogonality gap of the hidden weights
(‖WᵀW/(tr WᵀW/N) − I‖_F/√N: 0 for an orthogonal matrix, ≈ 1 for a Gaussian one; mean and max over layers) and
log‖∇W1‖, log‖∇W_L‖ (`measure.stacked_weights`). analysis.json `stacked_weights`: per depth at its best rate, the
gap and the gradients over training, and the slopes of log‖∇W1‖ and log(‖∇W1‖/‖∇W_L‖) against depth at every step.
Runtime on a 2-core laptop CPU: about 3 minutes (orthogonal), 1.5 minutes (Gaussian: its deep lanes diverge early).
Expect ([BN]; measured in results/README.md): with orthogonal weights every depth trains (best train loss about 0.06
/ 0.37 / 0.58), the gap stays below 0.03 and log(‖∇W1‖/‖∇W_L‖) does not grow with depth; with Gaussian weights
log‖∇W1‖ grows by about 0.013 per layer and L = 500 and 1,000 diverge at every rate.
"""
import os

from superconsistency.config import from_file, options


def get_config(arg: str = ''):
  opts = options(arg, ('gaussian', 'full'), 'bn_train')
  # bn_mlp_cifar10's network and data (linear activation, no mean subtraction, SP, offline CIFAR-shaped images;
  # with `full`, CIFAR-10 at width = batch = 128 for 2,000 steps)
  c = from_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bn_mlp_cifar10.py'),
                'full' if 'full' in opts else '')
  c.model.weight_init = 'gaussian' if 'gaussian' in opts else 'orthogonal'
  c.depths = (100, 500, 1000)
  c.sweep.lrs.sp = (0.003, 0.01, 0.03)
  c.sweep.seeds = (0, 1, 2)
  c.measure.hessian = False
  c.measure.stacked_weights = True
  if 'full' not in opts:
    c.widths = (64,)
    c.data.batch_size = 64         # batch = width, as the theory assumes
    c.data.num_train = 8192
    c.num_steps = 200
    c.measure_every = 40
  c.measure.loss_batch = c.measure.sharpness_batch = c.data.batch_size   # BN's batch statistics
  return c
