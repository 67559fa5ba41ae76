"""Residual ConvNet/ResNet on CIFAR-10 under Depth-μP: learning-rate transfer across depth, k = 1 layer per block.

    python -m superconsistency --config=configs/resnet_cifar10.py --workdir=runs/resnet_cifar10

Offline by default (synthetic CIFAR-shaped images); `--config.data.offline=False` reads CIFAR-10 through TFDS.
`--config.model.layers_per_block=2` gives the k = 2 blocks that [SC] finds do not transfer;
`--config.model.norm=batch` (or `layer`) adds normalization inside the branches.
Runtime (offline): RUNTIME.
Expect: EXPECT
"""
from superconsistency.config import defaults


def get_config():
  c = defaults()
  c.model.name = 'resnet'
  c.model.layers_per_block = 1
  c.widths = (8,)
  c.depths = (1, 2, 4)             # residual blocks per stage: L = 3, 6, 12
  c.parameterizations = ('depth_mup',)
  c.param.alpha = 0.5
  c.sweep.lrs.depth_mup = (0.1, 0.4, 1.6)
  c.data.name = 'cifar10'
  c.data.offline = True
  c.data.batch_size = 64
  c.data.num_train = 4096
  c.data.num_eval = 256
  c.data.augment = True
  c.optimizer.warmup_steps = 10    # [SC] warms up (100 steps at full scale)
  c.num_steps = 40
  c.measure_every = 20
  c.measure.loss_batch = 256
  c.measure.sharpness_batch = 32
  c.measure.num_iters = 10
  c.coord_check.enabled = False    # width is fixed here; tests/resnet_test.py checks width and depth
  return c
