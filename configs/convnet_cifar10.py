"""SimpleConvNet ([SC] Figure 1 architecture) on CIFAR-10, μP vs NTP: sharpness and learning-rate transfer in width.

    python -m superconsistency --config=configs/convnet_cifar10.py --workdir=runs/convnet_cifar10

Offline by default: learnable synthetic CIFAR-shaped images (32×32×3, 10 classes) stand in for CIFAR-10. With
CIFAR-10 prepared (README, "Real datasets"), add `--config.data.offline=False`.
Runtime (offline): RUNTIME.
Expect: EXPECT
"""
from superconsistency.config import defaults


def get_config():
  c = defaults()
  c.model.name = 'simple_convnet'
  c.widths = (16, 32, 64)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.1, 0.5, 2.0)
  c.sweep.lrs.ntk = (1.0, 7.0, 60.0)   # from [SC]'s NTP grid {1, 3, 7, 20, 60}
  c.data.name = 'cifar10'
  c.data.offline = True
  c.data.batch_size = 128          # as [SC]
  c.data.num_train = 4096
  c.data.num_eval = 512
  c.data.augment = True
  c.num_steps = 60
  c.measure_every = 20
  c.measure.loss_batch = 512
  c.measure.sharpness_batch = 32   # as [SC]'s Figure 1
  c.measure.num_iters = 10
  c.coord_check.enabled = False   # tests/models_test.py and the quickstart cover it
  return c
