"""GPT-2-style decoder-only Transformer on WikiText-103 (bytes), Adam, μP vs SP: learning-rate transfer and
sharpness in width.

    python -m superconsistency --config=configs/gpt2_wikitext103.py --workdir=runs/gpt2_wikitext103

Offline by default: a byte-level corpus built from the Python standard library's sources on this machine. With
WikiText-103 prepared by `python -m superconsistency.prepare wikitext103 --manual_dir=DIR`, add
`--config.data.offline=False`.
Runtime (offline): about 9 minutes on a 2-core laptop CPU (517 s measured, sharing the 2 cores with a second run).
Expect: after 60 Adam steps the byte-level loss falls from ln 256 = 5.55 to 3.80 / 3.67 (μP,
widths 32 / 64, best rate 0.03 at both, the top of the grid) and 2.96 / 2.88 (SP, best rate 0.01 at both): the best
rate does not move between these two widths under either; a transfer study needs a wider width range, a grid
that brackets μP's optimum and more steps.
"""
from superconsistency.config import defaults


def get_config():
  c = defaults(model='gpt2', data='wikitext103', optimizer='adam')
  c.model.heads = 4
  c.model.positions = 'learned'
  c.model.tied = False
  c.widths = (32, 64)
  c.depths = (2,)
  c.parameterizations = ('mup', 'sp')
  c.sweep.lrs.mup = (1e-3, 1e-2, 3e-2)
  c.sweep.lrs.sp = (3e-4, 3e-3, 1e-2)
  c.data.offline = True
  c.data.mode = 'online'           # language models see each window once
  c.data.seq_len = 64
  c.data.batch_size = 32
  c.data.num_eval = 64
  c.num_steps = 60
  c.measure_every = 20
  c.measure.loss_batch = 64
  c.measure.sharpness_batch = 16
  c.measure.num_iters = 8
  c.coord_check.enabled = False   # tests/transformers_test.py checks width and depth
  return c
