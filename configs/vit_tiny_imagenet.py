"""ViT on Tiny-ImageNet with Adam, μP vs SP: learning-rate transfer in width.

    python -m superconsistency --config=configs/vit_tiny_imagenet.py --workdir=runs/vit_tiny_imagenet

Offline by default: synthetic 64×64×3 images of 200 classes. With Tiny-ImageNet prepared by
`python -m superconsistency.prepare tiny_imagenet --manual_dir=DIR`, add `--config.data.offline=False`.
Runtime (offline): about 4.5 minutes on a 2-core laptop CPU (276 s measured, sharing the 2 cores with a second run).
Expect: at this laptop scale (40 Adam steps, 200 classes) the networks
barely leave chance level (ln 200 = 5.30): final train loss 5.22 / 5.24 for μP at widths 32 / 64 (best rate 0.03
at both widths, the top of the grid: extend the grid upwards for a transfer study) and 4.61 / 4.82 for SP (best
rate 0.01 at both). It is a smoke-scale run of the real model; the transfer claim needs num_steps in the
thousands and the real data.
"""
from superconsistency.config import defaults


def get_config():
  c = defaults(model='vit', data='tiny_imagenet', optimizer='adam')
  c.model.patch = 8                # 64×64 → 8×8 = 64 tokens
  c.model.heads = 4
  c.model.pool = 'cls'
  c.widths = (32, 64)
  c.depths = (2,)
  c.parameterizations = ('mup', 'sp')
  c.sweep.lrs.mup = (1e-3, 1e-2, 3e-2)
  c.sweep.lrs.sp = (3e-4, 3e-3, 1e-2)
  c.data.offline = True
  c.data.batch_size = 64
  c.data.num_train = 4096
  c.data.num_eval = 256
  c.data.augment = True
  c.num_steps = 40
  c.measure_every = 20
  c.measure.loss_batch = 256
  c.measure.sharpness_batch = 32
  c.measure.num_iters = 8
  c.coord_check.enabled = False   # tests/transformers_test.py checks width and depth
  return c
