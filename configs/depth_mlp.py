"""[SC] Depth on a CPU: a residual MLP (width 64) on MNIST-1D under Depth-μP and under μP without branch scaling,
L = 2 … 64 residual blocks, one (k = 1) or two (k = 2) layers per block, 3 seeds. Does the best rate transfer across
depth for k = 1 and not for k = 2? The sharpness across depth beside it. Experiment 3 of the results gallery.

    python -m superconsistency --config=configs/depth_mlp.py:k1 --workdir=results/depth_mlp_k1
    python -m superconsistency --config=configs/depth_mlp.py:k2 --workdir=results/depth_mlp_k2
    python -m superconsistency --config=configs/depth_mlp.py:k1,full --workdir=runs/depth_mlp_k1_full   # GPU/TPU

Runtime on a 2-core laptop CPU: k1 about 13 minutes cold (604 s measured with its programs already compiled),
k2 about 20 minutes (1,212 s, 247 s of it compiling).
Expect (best_rate.py's rule, 3 seeds, tolerance ±0.75 decades over L = 2–64): Depth-μP with k = 1 transfers
(best rate 2.55 → 2.39, drift +0.00 decades [-0.21, +0.26]); with k = 2 it transfers too at this scale (drift
-0.20 [-0.67, +0.39]), which does not reproduce [SC]'s k = 2 claim; μP without branch scaling shifts by -2.97
(k1) and -1.84 (k2) decades over L = 2–32, and at L = 64 no rate trains. results/README.md, experiment 3.
"""
from superconsistency.config import defaults, options


def get_config(arg: str = ''):
  opts = options(arg, ('k1', 'k2', 'full'), 'depth_mlp')
  c = defaults(model='res_mlp')
  c.model.layers_per_block = 2 if 'k2' in opts else 1
  c.widths = (64,)
  c.depths = (2, 4, 8, 16, 32, 64)   # residual blocks L
  c.parameterizations = ('depth_mup', 'mup')
  c.param.alpha = 0.5
  c.sweep.lrs.depth_mup = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)    # factor 2; 16 diverges at every depth
  c.sweep.lrs.mup = (0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0)   # its best rate falls with depth
  c.sweep.seeds = (0, 1, 2)
  c.sweep.extend_rounds = 4         # μP's best rate falls by decades with depth: its grid extends downwards
  c.num_steps = 200
  c.measure_every = 20
  c.data.batch_size = 64
  c.measure.sharpness_batch = 128
  c.measure.num_iters = 12
  c.coord_check.enabled = False
  if 'full' in opts:               # wider and deeper, longer: for a GPU
    c.widths = (256,)
    c.depths = (2, 4, 8, 16, 32, 64, 128)
    c.num_steps = 2000
    c.measure_every = 100
    c.measure.sharpness_batch = 256
    c.measure.num_iters = 20
  return c
