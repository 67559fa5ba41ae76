"""Config defaults and validation. Experiment files in configs/ start from `defaults()` and change a few fields.

Every field a run reads is here, so a locked config turns a typo in `--config.x=y` into an error.
"""
from __future__ import annotations

import os

import ml_collections

from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz

OPTIMIZERS = ('sgd', 'adam')
SOLVERS = ('lanczos', 'power')
DTYPES = ('float32', 'float64')
SELECT_BY = ('train_loss', 'eval_loss')


RESIDUAL_MODELS = ('res_convnet', 'resnet', 'vit', 'gpt2')
IMAGE_MODELS = ('simple_convnet', 'res_convnet', 'resnet', 'vit')
TEXT_DATASETS = ('byte_text', 'wikitext103')
VECTOR_DATASETS = ('mnist1d', 'teacher_student', 'staircase')


class ConfigError(ValueError):
  """A config field that cannot run. str() is one line naming the field and what is allowed."""

  def __init__(self, field, message):
    super().__init__(f'config.{field}: {message}')
    self.field = field


def defaults() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # 'sweep': train the grid of lanes (everything below). 'bn_depth' and 'toy_chain' are computations of their own
  # ([BN] at init across depth; [G]'s scalar chain), configured by the blocks of those names at the end.
  c.experiment = 'sweep'
  c.seed = 0                       # offset added to every lane seed
  c.dtype = 'float32'              # 'float64' enables jax x64 for the whole run
  c.model = dict(
      name='mlp', activation='relu',
      layers_per_block=1,          # res_convnet / resnet: conv layers per residual block (k)
      norm='none',                 # resnet: 'none' | 'batch' | 'layer' inside each branch (batch statistics: train mode)
      stem='auto',                 # resnet: 'cifar' (3×3/1) | 'imagenet' (3×3/2 + maxpool) | 'auto' (by image size)
      weight_init='orthogonal',    # bn_mlp: 'orthogonal' (Haar) | 'gaussian'
      bn_center=False,             # bn_mlp: subtract the batch mean in BN (the theory of [BN] does not)
      shaping_k=0.0,               # bn_mlp: activation gains α_ℓ = ℓ^(−k); 0 = no shaping
      patch=4, heads=4, mlp_ratio=4,   # vit / gpt2
      pool='cls',                  # vit: 'cls' | 'mean'
      positions='learned',         # gpt2: 'learned' | 'rotary'
      tied=False)                  # gpt2: readout shares the token embedding
  c.widths = (64, 128, 256, 512)
  c.depths = (3,)                  # mlp: weight layers; res_convnet: blocks per stage; simple_convnet: ignored
  c.parameterizations = ('mup', 'ntk')
  c.param = dict(alpha=0.5, beta=1.0, center=False, lr_convention='sc')
  c.loss = 'cross_entropy'         # or 'mse' (one-hot targets, mean over batch × classes)
  c.optimizer = dict(name='sgd', momentum=0.0, b1=0.9, b2=0.999, eps=1e-8, warmup_steps=0)
  # The sweep: every (lr, gamma0, seed) combination is one lane of one vmapped program.
  c.sweep = dict(lrs=dict(sp=(0.1,), ntk=(1.0,), mup=(0.1,), depth_mup=(0.1,)), gamma0s=(1.0,), seeds=(0,))
  c.num_steps = 200
  c.measure_every = 20             # steps per compiled chunk; one measurement at the end of each
  c.measure = dict(
      hessian=True,             # False: no Hessian products at all (sharpness, lr_sharpness are nan): loss curves only
      loss_batch=512, sharpness_batch=256, solver='lanczos', num_iters=20,
      hessian_k=1,              # top-k Hessian eigenvalues (columns hessian_eig_1..k when k > 1)
      gauss_newton=False,       # top-k of G = JᵀH_ℓJ (gn_eig_*) and the top eigenvalue of R = H − G
      ntk_k=0,                  # top-k empirical NTK eigenvalues, raw (ntk_eig_*) and J·D·Jᵀ (ntk_lr_eig_*)
      ntk_batch=32,             # examples in the NTK (its size is ntk_batch × classes)
      trace_samples=0,          # Hutchinson probes for tr(H) (hessian_trace, hessian_trace_se)
      directional=False,        # gᵀHg/‖g‖² along the gradient of the sharpness batch
      density_every=0,          # SLQ spectral density every k-th measurement (density.csv); 0 = never
      density_vectors=4, density_grid=128,
      num_chunks=1)             # split the sharpness batch into chunks whose Hessian products are summed
  c.data = dict(
      name='mnist1d', mode='epoch', batch_size=64, num_train=4000, num_eval=1000, seed=0,
      offline=False,               # True: a TFDS dataset name runs on its offline equivalent (data.OFFLINE_EQUIVALENTS)
      data_dir='',                 # TFDS data_dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      augment=False,               # random crop (4-pixel padding) + horizontal flip, on device (image data)
      image_size=0,                # images: height = width; 0 = the dataset's own (imagenet2012: 224)
      num_classes=0,               # synthetic images: classes; 0 = the preset's (10 CIFAR-shaped, 200 Tiny-ImageNet)
      input_dim=32, output_dim=1, teacher_width=0, label_noise=0.0,   # teacher_student / staircase
      staircase_degree=4,
      seq_len=128,                 # language data: tokens per example
      max_bytes=4 * 2 ** 20)       # byte_text / wikitext103: corpus cap
  c.loss_cap = 1e3                 # a lane whose batch loss exceeds this (or is not finite) is frozen as diverged
  c.select_by = 'train_loss'       # which final loss picks the best learning rate
  c.analysis = dict(small_gamma_max=0.1,    # `analyze` γ–η fits: the small-γ0 regime is γ0 <= this
                    large_gamma_min=10.0)   # ... and the large-γ0 regime (and the τ-collapse curves) γ0 >= this
  # Devices: lanes are spread over the `sweep` axis, each lane's batch over `data` (sweep × data = all devices of
  # all processes; 0 = what the other axis leaves). data > 1 only pays when one lane's model is large.
  c.mesh = dict(sweep=0, data=1)
  # Checkpoints (orbax) in workdir/checkpoints: the whole sweep state, after a chunk, when either interval has
  # passed since the last one (0 = that interval never triggers); SIGTERM always saves. The last `keep` are kept.
  c.checkpoint = dict(every_steps=0, every_minutes=10.0, keep=2,
                      keep_after_finish=False)   # False: remove the checkpoints once summary.json is written
  c.select_step = 0                # the step whose loss picks it (0 = the last); e.g. a sweep read at half the run
  c.coord_check = dict(enabled=True, widths=(128, 256, 512, 1024, 2048), steps=4, seeds=(0, 1, 2), batch=64,
                       lr=dict(sgd=0.05, adam=0.002))
  c.plot = dict(trajectory_lrs=dict(sp=0.0, ntk=0.0, mup=0.0, depth_mup=0.0))  # 0: best lr at the smallest width
  c.bn_depth = dict(  # experiment='bn_depth': [BN]'s BN-MLP at init across depth (bn_experiment.py; c.dtype applies)
      depths=(5, 10, 20, 50, 100, 200, 500, 1000),   # BN blocks L of each network (one compiled program per depth)
      width=32,                        # N, hidden width
      batch_size=0,                    # n, samples in the batch; 0 = width (the theory's n = d)
      input_dim=32,                    # D, features of the random input batch
      num_classes=10,                  # C, readout width; labels are uniform random classes
      loss='cross_entropy',            # 'cross_entropy' | 'mse' (one-hot targets)
      seeds=(0, 1, 2, 3, 4),           # each seed: its own inputs, labels and weights (shared by all variants)
      weight_inits=('orthogonal', 'gaussian'),   # linear-activation variants: weights ...
      inputs=('independent', 'degenerate'),      # ... × inputs (Gaussian batch | rank-deficient batch)
      degenerate_kind='repeated',      # 'repeated': degenerate_rank distinct samples tiled | 'low_rank': a subspace
      degenerate_rank=16,              # rank of the degenerate batch (< batch size)
      shaping_activations=('tanh', 'sin'),   # activation-shaping variants (orthogonal weights, independent inputs)
      shaping_ks=(0.0, 0.4),           # α_ℓ = ℓ^(−k) for those; 0 = no shaping
      bn_center=False,                 # subtract the batch mean in BN (the theory does not)
      gap_layers_per_decade=8,         # isometry gap recorded at block 0 and log-spaced blocks up to max(depths) ...
      gap_fit_blocks=20,               # ... and at this many evenly spaced blocks, which the exp(−ℓ/k) fit uses
      lanes_per_batch=8)               # lanes (variant × seed) vmapped together; bounds memory at large depth
  c.toy_chain = dict(  # experiment='toy_chain': GD on [G]'s scalar chain f = (w1·…·wL − 1)/γ (toy_chain.py)
      depths=(2, 3, 4),                # L: number of scalar factors in the chain
      gamma_log10_range=(-2.0, 3.0),   # γ = logspace over this range, both ends included
      gammas_per_decade=2,             # 2: half-decades
      etas_per_decade=100,             # η lattice 10^(k/100): neighbours 2.3% apart (the η_max resolution)
      eta_window_decades=(-1.0, 0.5),  # lattice points run per (L, γ): this many decades around the exact η_max
      num_steps=10000,                 # GD steps per run (also sets how close to η_max "converged" can tell)
      loss_tol=1e-12,                  # "stable" = final loss below this and never non-finite (initial loss 0.5)
      escape_fractions=(0.1, 0.5),     # escape-time runs at these fractions of the exact η_max
      small_gamma_max=0.1,             # slope fit regimes: γ <= this (prediction 2) ...
      large_gamma_min=100.0)           # ... and γ >= this (prediction 2/L); each needs >= 3 γ values
  return c


def from_file(path: str, arg: str = ''):
  """`get_config(arg)` of a config file: how one config derives from another, and how tests load configs."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def options(arg: str, allowed, config_name: str) -> set:
  """The words of `--config=configs/NAME.py:a,b` (e.g. `full`), each checked against `allowed`."""
  words = {w.strip() for w in (arg or '').split(',') if w.strip()}
  unknown = sorted(words - set(allowed))
  if unknown:
    raise ValueError(f'configs/{config_name}.py: unknown option {", ".join(unknown)}; allowed: {", ".join(allowed)} '
                     f'(comma-separated after the file name, e.g. configs/{config_name}.py:{allowed[0]})')
  return words


def _require(cond, field, message):
  if not cond:
    raise ConfigError(field, message)


EXPERIMENTS = ('sweep', 'bn_depth', 'toy_chain')


def validate(c) -> None:
  """Raises ConfigError on the first field that cannot run."""
  _require(c.experiment in EXPERIMENTS, 'experiment',
           f'unknown experiment {c.experiment!r}; allowed: {", ".join(EXPERIMENTS)}')
  _require(c.dtype in DTYPES, 'dtype', f'{c.dtype!r} is not allowed; allowed: {", ".join(DTYPES)}')
  _require(c.model.name in models.ARCHITECTURES, 'model.name',
           f'unknown model {c.model.name!r}; allowed: {", ".join(models.ARCHITECTURES)}')
  _require(c.model.activation in models.ACTIVATIONS, 'model.activation',
           f'unknown activation {c.model.activation!r}; allowed: {", ".join(models.ACTIVATIONS)}')
  _require(len(c.widths) > 0, 'widths', 'is empty; give at least one width, e.g. (64, 128)')
  for w in c.widths:
    _require(isinstance(w, int) and w >= 1, 'widths', f'{w!r} is not a positive integer width')
  _require(len(c.depths) > 0, 'depths', 'is empty; give at least one depth')
  for d in c.depths:
    _require(isinstance(d, int) and d >= 1, 'depths', f'{d!r} is not a positive integer depth')
    if c.model.name == 'mlp':
      _require(d >= 2, 'depths', f'mlp depth counts weight layers and must be >= 2, got {d}')
  _require(c.model.layers_per_block >= 1, 'model.layers_per_block', 'must be >= 1')
  _require(len(c.parameterizations) > 0, 'parameterizations', f'is empty; allowed: {", ".join(pz.NAMES)}')
  for p in c.parameterizations:
    _require(p in pz.NAMES, 'parameterizations', f'unknown parameterization {p!r}; allowed: {", ".join(pz.NAMES)}')
    if p == 'depth_mup':
      _require(c.model.name in RESIDUAL_MODELS, 'parameterizations',
               f'depth_mup needs a model with residual branches ({", ".join(RESIDUAL_MODELS)}), not {c.model.name!r}')
    lrs = c.sweep.lrs[p]
    _require(len(lrs) > 0, f'sweep.lrs.{p}', 'is empty; give at least one learning rate')
    for lr in lrs:
      _require(lr > 0, f'sweep.lrs.{p}', f'learning rates must be > 0, got {lr!r}')
  _require(c.param.lr_convention in pz.LR_CONVENTIONS, 'param.lr_convention',
           f'{c.param.lr_convention!r} is not allowed; allowed: {", ".join(pz.LR_CONVENTIONS)}')
  _require(c.param.alpha >= 0, 'param.alpha', 'must be >= 0')
  _require(c.loss in models.LOSSES, 'loss', f'unknown loss {c.loss!r}; allowed: {", ".join(models.LOSSES)}')
  _require(c.optimizer.name in OPTIMIZERS, 'optimizer.name',
           f'unknown optimizer {c.optimizer.name!r}; allowed: {", ".join(OPTIMIZERS)}')
  _require(0 <= c.optimizer.momentum < 1, 'optimizer.momentum', 'must be in [0, 1)')
  _require(c.optimizer.warmup_steps >= 0, 'optimizer.warmup_steps', 'must be >= 0')
  _require(len(c.sweep.gamma0s) > 0, 'sweep.gamma0s', 'is empty; give at least one gamma0, e.g. (1.0,)')
  for g in c.sweep.gamma0s:
    _require(g > 0, 'sweep.gamma0s', f'gamma0 must be > 0, got {g!r}')
  _require(len(c.sweep.seeds) > 0, 'sweep.seeds', 'is empty; give at least one seed, e.g. (0,)')
  _require(c.num_steps >= 1, 'num_steps', 'must be >= 1')
  _require(c.measure_every >= 1, 'measure_every', 'must be >= 1')
  _require(c.num_steps % c.measure_every == 0, 'num_steps',
           f'{c.num_steps} is not a multiple of measure_every={c.measure_every}')
  m = c.measure
  _require(m.solver in SOLVERS, 'measure.solver', f'unknown solver {m.solver!r}; allowed: {", ".join(SOLVERS)}')
  _require(m.num_iters >= 1, 'measure.num_iters', 'must be >= 1')
  _require(m.loss_batch >= 1 and m.sharpness_batch >= 1, 'measure', 'loss_batch and sharpness_batch must be >= 1')
  _require(m.hessian_k >= 1, 'measure.hessian_k', 'must be >= 1')
  _require(m.hessian_k == 1 or m.solver == 'lanczos', 'measure.hessian_k',
           'top-k with k > 1 needs measure.solver=lanczos (power iteration gives the top eigenvalue)')
  _require(m.hessian or not (m.gauss_newton or m.ntk_k or m.trace_samples or m.directional or m.density_every),
           'measure.hessian', 'is False, so turn off the other spectra too (gauss_newton, ntk_k, trace_samples, '
           'directional, density_every)')
  _require(m.hessian_k <= m.num_iters, 'measure.hessian_k', f'cannot exceed measure.num_iters={m.num_iters}')
  _require(m.ntk_k >= 0 and m.trace_samples >= 0 and m.density_every >= 0, 'measure',
           'ntk_k, trace_samples and density_every must be >= 0')
  _require(m.trace_samples != 1, 'measure.trace_samples', 'needs >= 2 probes for a standard error')
  _require(m.ntk_k == 0 or m.ntk_batch >= 1, 'measure.ntk_batch', 'must be >= 1')
  _require(m.num_chunks >= 1 and m.sharpness_batch % m.num_chunks == 0, 'measure.num_chunks',
           f'must divide measure.sharpness_batch={m.sharpness_batch} into equal chunks')
  _require(m.density_vectors >= 1 and m.density_grid >= 2, 'measure', 'density_vectors >= 1 and density_grid >= 2')
  d = c.data
  names = data_lib.all_dataset_names()
  _require(d.name in names, 'data.name', f'unknown dataset {d.name!r}; allowed: {", ".join(names)}')
  _require(d.mode in data_lib.MODES, 'data.mode', f'unknown mode {d.mode!r}; allowed: {", ".join(data_lib.MODES)}')
  _require(d.batch_size >= 1, 'data.batch_size', 'must be >= 1')
  text = d.name in TEXT_DATASETS
  if d.mode == 'epoch' and not text:
    _require(d.num_train >= d.batch_size, 'data.num_train',
             f'{d.num_train} training examples cannot fill one batch of {d.batch_size}')
    _require(d.num_train >= max(m.loss_batch, m.sharpness_batch, m.ntk_batch if m.ntk_k else 0), 'data.num_train',
             'must be >= measure.loss_batch, sharpness_batch and ntk_batch (they are drawn from the training set)')
  _require(d.num_eval >= 1, 'data.num_eval', 'must be >= 1')
  images = tuple(n for n in names if n not in TEXT_DATASETS + VECTOR_DATASETS)
  if c.model.name in IMAGE_MODELS:
    _require(d.name in images, 'data.name', f'{c.model.name} needs image data; allowed: {", ".join(images)}')
  _require(text or c.model.name != 'gpt2', 'data.name', f'gpt2 needs token data; allowed: {", ".join(TEXT_DATASETS)}')
  _require(not text or c.model.name == 'gpt2', 'model.name', f'{d.name} is token data: use model.name=gpt2')
  if d.name in ('teacher_student', 'staircase'):
    _require(c.loss == 'mse', 'loss', f'{d.name} has real-valued targets: use loss=mse')
  _require(c.data.get('seq_len', 128) >= 1, 'data.seq_len', 'must be >= 1')
  _require(c.select_by in SELECT_BY, 'select_by', f'{c.select_by!r} is not allowed; allowed: {", ".join(SELECT_BY)}')
  _require(c.loss_cap > 0, 'loss_cap', 'must be > 0')
  _require(c.select_step >= 0 and c.select_step <= c.num_steps and c.select_step % c.measure_every == 0,
           'select_step', f'must be 0 (the last step) or a measured step in 1..num_steps={c.num_steps}, '
           f'a multiple of measure_every={c.measure_every}; got {c.select_step}')
  _require(c.mesh.sweep >= 0 and c.mesh.data >= 0 and (c.mesh.sweep or c.mesh.data), 'mesh',
           'sweep and data are device counts >= 0, not both 0 (0 = the devices the other axis leaves)')
  ck = c.checkpoint
  _require(ck.every_steps >= 0 and ck.every_minutes >= 0, 'checkpoint', 'every_steps and every_minutes must be >= 0')
  _require(ck.every_steps % c.measure_every == 0, 'checkpoint.every_steps',
           f'{ck.every_steps} is not a multiple of measure_every={c.measure_every} (checkpoints fall between chunks)')
  _require(ck.keep >= 1, 'checkpoint.keep', 'must be >= 1 (the fallback after a corrupt checkpoint needs 2)')
  cc = c.coord_check
  if cc.enabled:
    _require(len(cc.widths) >= 2, 'coord_check.widths', 'needs at least two widths to fit a slope')
    _require(cc.steps >= 1, 'coord_check.steps', 'must be >= 1')


def check_workdir(workdir: str, overwrite: bool) -> None:
  """Fails before any work if the workdir is finished (unless overwrite) or cannot be written.

  Proves writability by creating the directory and a probe file; removes what it created if that fails.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError('workdir', f'{workdir} exists and is not a directory')
  if os.path.exists(os.path.join(workdir, 'summary.json')) and not overwrite:
    raise ConfigError('workdir', f'{workdir} holds a finished run; pass --overwrite to replace it or choose another')
  existed = os.path.isdir(workdir)
  probe = os.path.join(workdir, '.write_probe')
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, 'w') as f:
      f.write('ok')
    os.remove(probe)
  except OSError as e:
    if not existed and os.path.isdir(workdir):
      os.rmdir(workdir)
    raise ConfigError('workdir', f'{workdir} cannot be written ({e.strerror or e})') from None
