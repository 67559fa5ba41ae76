"""ViT on ImageNet (64×64, `imagenet_resized/64x64`) with Adam, μP vs SP.

    python -m superconsistency --config=configs/vit_imagenet.py --workdir=runs/vit_imagenet

Offline by default: synthetic 64×64×3 images of 1,000 classes. With the dataset prepared, add
`--config.data.offline=False`; for full-resolution ImageNet use `--config.data.name=imagenet2012
--config.data.image_size=224 --config.model.patch=16` (it needs the manual ImageNet tars and a large host memory:
the loader holds the split in memory, so cap it with `--config.data.num_train`).
Runtime (offline): about 9.5 minutes on a 2-core laptop CPU (557 s measured, sharing the 2 cores with a second run).
Expect: a smoke-scale run: after 40 online Adam steps on 1,000 classes the loss has
barely left ln 1000 = 6.91 (μP 6.89 / 6.87 at widths 32 / 64, best rate 0.03, the top of the grid; SP 6.71 / 6.58,
best rate 0.01). The ImageNet claims need the real data and thousands of steps.
"""
import os

from superconsistency.config import from_file


def get_config():
  c = from_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'vit_tiny_imagenet.py'))      # the same ViT, Adam and grids; only the data differ
  c.model.pool = 'mean'
  c.data.name = 'imagenet_resized/64x64'
  c.data.mode = 'online'           # ImageNet-scale runs see each example at most once
  c.data.augment = False
  c.coord_check.enabled = False
  return c
