"""Residual ConvNet/ResNet on CIFAR-10 under Depth-μP: learning-rate transfer across depth, k = 1 layer per block.

    python -m superconsistency --config=configs/resnet_cifar10.py --workdir=runs/resnet_cifar10

Offline by default (synthetic CIFAR-shaped images); `--config.data.offline=False` reads CIFAR-10 through TFDS.
`--config.model.layers_per_block=2` gives the k = 2 blocks that [SC] finds do not transfer;
`--config.model.norm=batch` (or `layer`) adds normalization before every activation.
Runtime (offline): about 12 minutes on a 2-core laptop CPU (734 s measured for the two depths while sharing the 2 cores with two other runs; a third depth, L = 12, was still running after 7 more minutes).
Expect: a smoke-scale run: at width 8 and 40 SGD steps the loss stays near ln 10 =
2.30 at both depths (best rate 1.6, the top of the grid: final train loss 2.294 at L = 3, 2.298 at L = 6), with
step-size-weighted sharpness 0.13–0.18, far below 2. tests/resnet_test.py checks what Depth-μP promises at init
and after a few steps (depth coordinate check); the transfer claim needs widths ≥ 16·m and thousands of steps.
"""
from superconsistency.config import defaults


def get_config():
  c = defaults(model='resnet', data='cifar10')
  c.model.layers_per_block = 1
  c.widths = (8,)
  c.depths = (1, 2)                # residual blocks per stage: L = 3, 6 (add 4, 8 for a real depth sweep)
  c.parameterizations = ('depth_mup',)
  c.param.alpha = 0.5
  c.sweep.lrs.depth_mup = (0.1, 0.4, 1.6)
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
