"""SimpleConvNet ([SC] Figure 1 architecture) on CIFAR-10, μP vs NTP: sharpness and learning-rate transfer in width.

    python -m superconsistency --config=configs/convnet_cifar10.py --workdir=runs/convnet_cifar10

Offline by default: learnable synthetic CIFAR-shaped images (32×32×3, 10 classes) stand in for CIFAR-10. With
CIFAR-10 prepared (README, "Real datasets"), add `--config.data.offline=False`.
Runtime (offline): about 11 minutes on a 2-core laptop CPU (640 s measured, sharing the 2 cores with a second run).
Expect: after 60 SGD steps μP's best base rate is 2.0 at widths 16, 32 and 64 (the top of the
grid; final train loss 1.54 / 1.72 / 1.36) and NTP's is 7 at all three (loss 0.96 / 0.73 / 0.64): neither moves over
this 4× width range at this length. μP's step-size-weighted sharpness at rate 2.0 ends at 4.3–8.6, above 2 (edge of
stability). [SC]'s claims need the `full` scale of issue 5 (widths 64–1024, ~20k steps).
"""
from superconsistency.config import defaults


def get_config():
  c = defaults(model='simple_convnet', data='cifar10')
  c.widths = (16, 32, 64)
  c.parameterizations = ('mup', 'ntk')
  c.sweep.lrs.mup = (0.1, 0.5, 2.0)
  c.sweep.lrs.ntk = (1.0, 7.0, 60.0)   # from [SC]'s NTP grid {1, 3, 7, 20, 60}
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
