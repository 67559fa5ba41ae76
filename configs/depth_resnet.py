"""[SC] Depth: a residual ConvNet under Depth-μP across 4 depths (L = 3, 6, 12, 24 residual blocks), with one
(k = 1) or two (k = 2) conv layers per block: learning-rate transfer and sharpness across depth. For accelerators
(`full`); the gallery's depth experiment on a laptop CPU is configs/depth_mlp.py.

    python -m superconsistency --config=configs/depth_resnet.py:k1,full --workdir=runs/depth_k1_full   # GPU/TPU
    python -m superconsistency --config=configs/depth_resnet.py:k2,full --workdir=runs/depth_k2_full
    python -m superconsistency --config=configs/depth_resnet.py:k1 --workdir=runs/depth_resnet_k1      # laptop
    python -m superconsistency.analyze runs/depth_k1_full runs/depth_k2_full

The option k1 (default) or k2 picks the layers per block; `full` gives [SC]'s CIFAR-10 setting. Without `full`:
offline synthetic CIFAR-shaped images downsampled to 16×16, SGD with [SC]'s warm-up, width 8, 200 steps, one seed:
328 s (k = 1) and 631 s (k = 2) on a 2-core CPU, where the loss barely leaves ln 10 (best final losses 1.2–2.0
against 2.30) and cannot tell k = 1 from k = 2, which is why the gallery uses the residual MLP. Expect ([SC], at
`full`): with k = 1 the best rate is the same at every depth and the sharpness curves coincide; with k = 2 they do
not.
"""
import numpy as np

from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  opts = options(arg, ('k1', 'k2', 'full'), 'depth_resnet')
  c = defaults(model='resnet', data='cifar10')
  c.model.layers_per_block = 2 if 'k2' in opts else 1
  c.widths = (8,)
  c.depths = (1, 2, 4, 8)          # blocks per stage: L = 3, 6, 12, 24
  c.parameterizations = ('depth_mup',)
  c.param.alpha = 0.5
  c.sweep.lrs.depth_mup = (0.2, 0.4, 0.8, 1.6, 3.2, 6.4)   # 120-step probe: best at 1.6–3.2, so the grid goes higher
  c.data.offline = True
  c.data.image_size = 16
  c.data.batch_size = 64
  c.data.num_train = 4096
  c.data.num_eval = 256
  c.optimizer.warmup_steps = 10
  c.num_steps = 200
  c.measure_every = 20
  c.measure.loss_batch = 256
  c.measure.sharpness_batch = 32
  c.measure.num_iters = 10
  c.coord_check.enabled = False
  if 'full' in opts:               # [SC]'s setting: CIFAR-10 with augmentation, batch 256, 100 warm-up steps
    c.widths = (32,)
    c.depths = (1, 2, 4, 8, 16)
    c.sweep.lrs.depth_mup = tuple(float(v) for v in np.round(np.logspace(-1, 0.1, 10), 6))
    c.data.offline = False
    c.data.image_size = 0
    c.data.num_train = 50000
    c.data.batch_size = 256
    c.data.augment = True
    c.optimizer.warmup_steps = 100
    c.num_steps = 10000
    c.measure_every = 500
    c.measure.sharpness_batch = 256
    c.measure.num_iters = 20
  return c
