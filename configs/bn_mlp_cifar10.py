"""The batch-normalized MLP of [BN] on CIFAR-10: orthogonal weights, trained at several depths.

    python -m superconsistency --config=configs/bn_mlp_cifar10.py --workdir=runs/bn_mlp_cifar10
    python -m superconsistency --config=configs/bn_mlp_cifar10.py:full --workdir=runs/bn_mlp_full   # GPU/TPU

Offline by default (synthetic CIFAR-shaped images, flattened); `--config.data.offline=False` reads CIFAR-10.
`--config.model.weight_init=gaussian` gives the Gaussian baseline; `--config.model.activation=tanh
--config.model.shaping_k=0.4` the shaped nonlinearity.
Runtime (offline): about 3 minutes on a 2-core laptop CPU (175 s measured, sharing the 2 cores with a second run).
Expect: both depths train with orthogonal weights and batch norm: at depth 10 and 50 the best
rate is 0.1 (final train loss 0.024 and 0.023, eval accuracy 0.996 on the synthetic task); the largest rate, 1.0,
is worse at depth 50 (loss 12.0) than at depth 10 (0.76). tests/bn_mlp_test.py checks the [BN] gradient result at
init (orthogonal: log‖∇W1‖ flat over depths 10–200; Gaussian: grows).
"""
from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'bn_mlp_cifar10')
  c = defaults(model='bn_mlp', data='cifar10')
  c.model.activation = 'linear'    # the theory's setting; BN's normalization is the only nonlinearity
  c.model.weight_init = 'orthogonal'
  c.model.bn_center = False
  c.widths = (128,)
  c.depths = (10, 50, 100)    # [linear → BN → act] blocks
  c.parameterizations = ('sp',)
  c.sweep.lrs.sp = (0.01, 0.1, 1.0)
  c.data.offline = True
  c.data.batch_size = 128          # batch = width, as the theory assumes
  c.data.num_train = 4096
  c.data.num_eval = 256
  c.num_steps = 40
  c.measure_every = 20
  c.measure.loss_batch = 128       # BN uses batch statistics: measure on batches of the training size
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 8
  c.coord_check.enabled = False    # a fixed width; tests/bn_mlp_test.py checks the depth behaviour at init
  if full:                         # [BN]'s depths on CIFAR-10 (GPU/TPU; the blocks are scanned, so depth costs no compile time)
    c.depths = (100, 200, 500)
    c.sweep.lrs.sp = (0.003, 0.01, 0.03, 0.1, 0.3)
    c.data.offline = False
    c.data.num_train = 50000
    c.data.num_eval = 1000
    c.num_steps = 2000
    c.measure_every = 200
  return c
