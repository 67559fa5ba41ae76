"""The sweep experiment's config: `defaults(model=..., data=..., optimizer=...)` and `validate`.

A config holds exactly the fields its run reads. The `model`, `data` and `optimizer` blocks are built from the
options that the chosen architecture, data set and optimizer declare (models.model_options, data.data_options,
OPTIMIZER_OPTIONS), so `--config.model.norm=batch` on an MLP is an unknown field, and `validate` refuses a block
that carries another choice's fields. Config files in configs/ start from `defaults(...)` and change a few fields.
The other experiments ('bn_depth', 'toy_chain') own their configs (`defaults()` in bn_experiment.py, toy_chain.py);
experiments.py registers all three.
"""
from __future__ import annotations

import os

import ml_collections

from superconsistency import data as data_lib
from superconsistency import models
from superconsistency import parameterization as pz

SOLVERS = ('lanczos', 'power')
LANE_STEPS = ('num_steps', 'select_step')
PROGRAM_LANES = ('auto', 'vmap', 'unroll', 'map', 'host')
PROGRAM_STEPS = ('auto', 'scan', 'host')
DTYPES = ('float32', 'float64')
SELECT_BY = ('train_loss', 'eval_loss')
OPTIMIZER_OPTIONS = {
    'sgd': dict(momentum=0.0,      # heavy ball; the edge of stability is then 2(1+μ)/η
                warmup_steps=0),   # linear warm-up of the base rate over this many steps
    'adam': dict(b1=0.9, b2=0.999, eps=1e-8, warmup_steps=0),
}
TEXT_DATASETS = ('byte_text', 'wikitext103')
VECTOR_DATASETS = ('mnist1d', 'teacher_student', 'staircase')
# blocks whose keys are names (of parameterizations or optimizers) rather than fields
_NAME_MAPS = ('sweep.lrs', 'plot.trajectory_lrs', 'coord_check.lr', 'model.kwargs')


class ConfigError(ValueError):
  """A config field that cannot run. str() is one line naming the field and what is allowed."""

  def __init__(self, field, message):
    super().__init__(f'config.{field}: {message}')
    self.field = field
    self.message = message


def defaults(model: str = 'mlp', data: str = 'mnist1d', optimizer: str = 'sgd') -> ml_collections.ConfigDict:
  """The sweep experiment: every (parameterization, depth, width) is one compiled program whose lanes are the
  (learning rate, γ0, seed) combinations of `sweep`."""
  c = ml_collections.ConfigDict()
  c.experiment = 'sweep'
  c.seed = 0                       # offset added to every lane seed
  c.dtype = 'float32'              # 'float64' enables jax x64 for the whole run
  c.model = dict(name=model, **models.model_options(model))
  c.widths = (64, 128, 256, 512)
  c.depths = (3,)                  # what the model calls depth (mlp: weight layers; resnet: blocks per stage; ...)
  c.parameterizations = ('mup', 'ntk')
  c.param = dict(alpha=0.5,        # depth_mup's α (branches × β·L^(−α)); completep fixes α = 1
                 beta=1.0, center=False, lr_convention='sc')
  c.loss = 'cross_entropy'         # or 'mse' (one-hot targets, mean over batch × classes)
  c.optimizer = dict(name=optimizer, **OPTIMIZER_OPTIONS[optimizer])
  c.sweep = dict(lrs={p: (1.0,) if p == 'ntk' else (0.1,) for p in pz.NAMES}, gamma0s=(1.0,), seeds=(0,),
                 # each lane's steps: 'num_steps' (all), or 'select_step': lanes at plot.trajectory_lrs run num_steps,
                 # the others stop at select_step (the step their loss is read at), as a separate sweep would
                 lane_steps='num_steps',
                 retire_diverged=True,   # a diverged lane leaves the batch at the next chunk (its rows are the same)
                 # grid extension: after the sweep, where some seed's best rate is censored (on the grid's edge,
                 # not at a diverged rate), run `extend_points` more rates beyond that edge as new lanes, appended
                 # to metrics.csv; at most `extend_rounds` times (best_rate.censored_sides, runner.extend_grid)
                 extend_rounds=0, extend_points=2)
  c.num_steps = 200
  c.measure_every = 20             # steps per compiled chunk; one measurement at the end of each
  c.measure = dict(
      hessian=True,             # False: no Hessian products at all (sharpness, lr_sharpness are nan): loss curves only
      loss_batch=512, sharpness_batch=256, solver='lanczos', num_iters=20,
      warm_start=False,         # lanczos: start each λ_max solve from the last one's top-k Ritz vectors
      hessian_k=1,              # top-k Hessian eigenvalues (columns hessian_eig_1..k when k > 1)
      gauss_newton=False,       # top-k of G = JᵀH_ℓJ (gn_eig_*) and the top eigenvalue of R = H − G
      ntk_k=0,                  # top-k empirical NTK eigenvalues, raw (ntk_eig_*) and J·D·Jᵀ (ntk_lr_eig_*)
      ntk_batch=32,             # examples in the NTK (its size is ntk_batch × classes)
      trace_samples=0,          # Hutchinson probes for tr(H) (hessian_trace, hessian_trace_se)
      directional=False,        # gᵀHg/‖g‖² along the gradient of the sharpness batch
      stacked_weights=False,    # bn_mlp: orthogonality gap of the hidden weights, log‖∇W1‖ and log‖∇W_L‖ ([BN])
      density_every=0,          # SLQ spectral density every k-th measurement (density.csv); 0 = never
      density_vectors=4, density_grid=128,
      microbatches=1)           # split the sharpness batch into micro-batches whose Hessian products are summed
  c.data = dict(name=data, **data_lib.data_options(data))
  c.loss_cap = 1e3                 # a lane whose batch loss exceeds this (or is not finite) is frozen as diverged
  c.select_by = 'train_loss'       # which loss picks the best learning rate (best_rate.py)
  c.select_step = 0                # the step whose loss picks it (0 = the last); e.g. a sweep read at half the run
  c.analysis = dict(transfer_tolerance_exponent=0.5,  # best_rate.classify: 'transfers' when the best rate's drift
                    # stays inside ±this × log10(size ratio) decades: closer to size^0 than to size^1
                    small_gamma_max=0.1,    # `analyze` γ–η fits: the small-γ0 regime is γ0 <= this
                    large_gamma_min=10.0)   # ... and the large-γ0 regime (and the τ-collapse curves) γ0 >= this
  # Devices: lanes are spread over the `sweep` axis, each lane's batch over `data` (sweep × data = all devices of
  # all processes; 0 = what the other axis leaves). data > 1 only pays when one lane's model is large.
  c.mesh = dict(sweep=0, data=1)
  # Checkpoints (orbax) in workdir/checkpoints: the whole sweep state, after a chunk, when either interval has
  # passed since the last one (0 = that interval never triggers); SIGTERM always saves. The last `keep` are kept.
  c.checkpoint = dict(every_steps=0, every_minutes=10.0, keep=2,
                      keep_after_finish=False)   # False: remove the checkpoints once summary.json is written
  c.coord_check = dict(enabled=True, widths=(128, 256, 512, 1024, 2048), steps=4, seeds=(0, 1, 2), batch=64,
                       lr=dict(sgd=0.05, adam=0.002))
  c.plot = dict(trajectory_lrs={p: 0.0 for p in pz.NAMES})  # 0: the best grid rate at the smallest width
  # How lanes and steps become a program (lanes.ProgramChoice): lanes 'vmap', 'unroll', 'map' (a device loop over
  # lanes) or 'host' (one lane's program called per lane), steps 'scan' (a device loop) or 'host' (a compiled step per
  # optimizer step); 'auto' runs lanes and steps from the host for convolutional models on CPU (benchmarks/conv.md),
  # and vmaps and scans otherwise
  # microbatches: the training batch split into this many equal micro-batches whose gradients a device loop sums
  # (models with independent examples only); 0 = auto: split on CPU for convolutional models whose activations
  # would not fit the caches (lanes.choose_microbatches), 1 elsewhere
  # pad_to_share: a group of vmapped lanes pads to the lane count of a group at the same width and depth with at
  # most this fraction more lanes, when their programs are then one (μP and NTP: the numbers are inputs), and runs
  # its compiled programs instead of compiling its own (runner._Sweeps.lanes_to_share); 0: never pad
  c.program = dict(lanes='auto', steps='auto', microbatches=0, pad_to_share=0.25)
  return c


def set_model(c, name: str, **options) -> None:
  """Replaces `c.model` by model `name` with its declared options (defaults, then `options`)."""
  _set_block(c, 'model', dict(name=name, **models.model_options(name)), options)


def set_data(c, name: str, **options) -> None:
  """Replaces `c.data` by data set `name` with its declared options (defaults, then `options`)."""
  _set_block(c, 'data', dict(name=name, **data_lib.data_options(name)), options)


def set_optimizer(c, name: str, **options) -> None:
  """Replaces `c.optimizer` by optimizer `name` with its options (defaults, then `options`)."""
  _set_block(c, 'optimizer', dict(name=name, **OPTIMIZER_OPTIONS[name]), options)


def _set_block(c, block, fields, options):
  unknown = sorted(set(options) - set(fields))
  if unknown:
    raise ConfigError(f'{block}.{unknown[0]}', f'is not an option of {fields["name"]!r}; its options: '
                      f'{", ".join(sorted(k for k in fields if k != "name"))}')
  fields.update(options)
  locked = c.is_locked
  c.unlock()
  c[block] = ml_collections.ConfigDict(fields)
  if locked:
    c.lock()


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


def require(cond, field, message):
  if not cond:
    raise ConfigError(field, message)


def check_fields(c, schema, reason: str, prefix: str = '', name_maps=()) -> None:
  """Refuses a field of `c` that `schema` (the defaults of what was chosen) lacks, and a missing one. `name_maps`:
  dotted names of blocks keyed by names rather than fields (not checked here)."""
  have, want = set(c.keys()), set(schema.keys())
  for key in sorted(have - want):
    require(False, prefix + key, f'is not read by {reason}; remove it')
  for key in sorted(want - have):
    require(False, prefix + key, f'is missing (expected by {reason})')
  for key in sorted(have):
    if prefix + key in name_maps:
      continue
    sub, ref = c[key], schema[key]
    if isinstance(ref, (dict, ml_collections.ConfigDict)):
      require(isinstance(sub, (dict, ml_collections.ConfigDict)), prefix + key, 'must be a block of fields')
      check_fields(sub, ref, reason, prefix + key + '.', name_maps)


def _positive_ints(values, field, minimum=1, what='value'):
  require(len(values) > 0, field, f'is empty; give at least one {what}')
  for v in values:
    require(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, field,
            f'{v!r} is not an integer >= {minimum}')


def _check_flax_model(c) -> None:
  """model.name = 'flax': the module can be imported, and several depths need the argument that takes them."""
  from superconsistency import flax_bridge
  require(bool(c.model.module), 'model.module', "is empty: name your Flax module, 'package.module:ClassName' or "
          "'path/to/file.py:ClassName'")
  try:
    flax_bridge.import_module_class(c.model.module)
  except ValueError as e:
    raise ConfigError('model.module', str(e).split(': ', 1)[-1]) from None
  require(len(c.depths) == 1 or bool(c.model.depth_arg), 'model.depth_arg',
          f'is empty, but depths = {tuple(c.depths)}: name the constructor argument that takes the depth')


def validate(c) -> None:
  """Raises ConfigError on the first field that cannot run, before any work (sweep experiment)."""
  for block, known in (('model', models.ARCHITECTURES), ('data', data_lib.all_dataset_names()),
                       ('optimizer', tuple(OPTIMIZER_OPTIONS))):
    name = c[block].get('name') if isinstance(c.get(block), (dict, ml_collections.ConfigDict)) else None
    require(name in known, f'{block}.name', f'unknown {block} {name!r}; allowed: {", ".join(known)}')
  schema = defaults(c.model.name, c.data.name, c.optimizer.name)
  check_fields(c, schema, f'the sweep experiment with model {c.model.name!r}, data {c.data.name!r} and optimizer '
               f'{c.optimizer.name!r}', name_maps=_NAME_MAPS)
  require(c.dtype in DTYPES, 'dtype', f'{c.dtype!r} is not allowed; allowed: {", ".join(DTYPES)}')
  if 'activation' in c.model:
    require(c.model.activation in models.ACTIVATIONS, 'model.activation',
            f'unknown activation {c.model.activation!r}; allowed: {", ".join(models.ACTIVATIONS)}')
  if c.model.name == 'flax':
    _check_flax_model(c)
  _positive_ints(c.widths, 'widths', what='width, e.g. (64, 128)')
  _positive_ints(c.depths, 'depths', what='depth')   # each model checks its own minimum when it is built
  require(len(c.parameterizations) > 0, 'parameterizations', f'is empty; allowed: {", ".join(pz.NAMES)}')
  for p in c.parameterizations:
    require(p in pz.NAMES, 'parameterizations', f'unknown parameterization {p!r}; allowed: {", ".join(pz.NAMES)}')
    require(p in c.sweep.lrs, f'sweep.lrs.{p}', 'is missing: give the learning rates of every parameterization run')
    lrs = c.sweep.lrs[p]
    require(len(lrs) > 0, f'sweep.lrs.{p}', 'is empty; give at least one learning rate')
    for lr in lrs:
      require(isinstance(lr, (int, float)) and lr > 0, f'sweep.lrs.{p}', f'learning rates must be > 0, got {lr!r}')
  for block, names in (('sweep.lrs', c.sweep.lrs), ('plot.trajectory_lrs', c.plot.trajectory_lrs)):
    for key in names:
      require(key in pz.NAMES, f'{block}.{key}', f'is not a parameterization; allowed: {", ".join(pz.NAMES)}')
  require(c.param.lr_convention in pz.LR_CONVENTIONS, 'param.lr_convention',
          f'{c.param.lr_convention!r} is not allowed; allowed: {", ".join(pz.LR_CONVENTIONS)}')
  require(c.param.alpha >= 0, 'param.alpha', 'must be >= 0')
  require(c.loss in models.LOSSES, 'loss', f'unknown loss {c.loss!r}; allowed: {", ".join(models.LOSSES)}')
  o = c.optimizer
  require(0 <= o.get('momentum', 0.0) < 1, 'optimizer.momentum', 'must be in [0, 1)')
  require(isinstance(o.warmup_steps, int) and o.warmup_steps >= 0, 'optimizer.warmup_steps', 'must be an integer >= 0')
  require(len(c.sweep.gamma0s) > 0, 'sweep.gamma0s', 'is empty; give at least one gamma0, e.g. (1.0,)')
  for g in c.sweep.gamma0s:
    require(isinstance(g, (int, float)) and g > 0, 'sweep.gamma0s', f'gamma0 must be > 0, got {g!r}')
  _positive_ints(c.sweep.seeds, 'sweep.seeds', minimum=0, what='seed, e.g. (0,)')
  require(isinstance(c.num_steps, int) and c.num_steps >= 1, 'num_steps', 'must be an integer >= 1')
  require(isinstance(c.measure_every, int) and c.measure_every >= 1, 'measure_every', 'must be an integer >= 1')
  require(c.num_steps % c.measure_every == 0, 'num_steps',
          f'{c.num_steps} is not a multiple of measure_every={c.measure_every}')
  _validate_measure(c)
  _validate_data(c)
  require(c.select_by in SELECT_BY, 'select_by', f'{c.select_by!r} is not allowed; allowed: {", ".join(SELECT_BY)}')
  require(c.loss_cap > 0, 'loss_cap', 'must be > 0')
  require(c.select_step >= 0 and c.select_step <= c.num_steps and c.select_step % c.measure_every == 0,
          'select_step', f'must be 0 (the last step) or a measured step in 1..num_steps={c.num_steps}, '
          f'a multiple of measure_every={c.measure_every}; got {c.select_step}')
  _validate_lanes(c)
  require(c.mesh.sweep >= 0 and c.mesh.data >= 0 and (c.mesh.sweep or c.mesh.data), 'mesh',
          'sweep and data are device counts >= 0, not both 0 (0 = the devices the other axis leaves)')
  ck = c.checkpoint
  require(ck.every_steps >= 0 and ck.every_minutes >= 0, 'checkpoint', 'every_steps and every_minutes must be >= 0')
  require(ck.every_steps % c.measure_every == 0, 'checkpoint.every_steps',
          f'{ck.every_steps} is not a multiple of measure_every={c.measure_every} (checkpoints fall between chunks)')
  require(ck.keep >= 1, 'checkpoint.keep', 'must be >= 1 (the fallback after a corrupt checkpoint needs 2)')
  cc = c.coord_check
  if cc.enabled:
    _positive_ints(cc.widths, 'coord_check.widths', what='width')
    require(len(set(cc.widths)) >= 2, 'coord_check.widths', 'needs at least two distinct widths to fit a slope')
    require(isinstance(cc.steps, int) and cc.steps >= 1, 'coord_check.steps', 'must be an integer >= 1')
    _positive_ints(cc.seeds, 'coord_check.seeds', minimum=0, what='seed')
    require(isinstance(cc.batch, int) and cc.batch >= 1, 'coord_check.batch', 'must be an integer >= 1')
    require(c.optimizer.name in cc.lr and cc.lr[c.optimizer.name] > 0, f'coord_check.lr.{c.optimizer.name}',
            'must be a learning rate > 0 for the configured optimizer')


def _validate_lanes(c):
  s = c.sweep
  require(s.lane_steps in LANE_STEPS, 'sweep.lane_steps',
          f'{s.lane_steps!r} is not allowed; allowed: {", ".join(LANE_STEPS)}')
  require(isinstance(s.retire_diverged, bool), 'sweep.retire_diverged', 'must be True or False')
  require(isinstance(s.extend_rounds, int) and s.extend_rounds >= 0, 'sweep.extend_rounds',
          f'must be an integer >= 0 (0: no grid extension), got {s.extend_rounds!r}')
  require(isinstance(s.extend_points, int) and s.extend_points >= 1, 'sweep.extend_points',
          f'must be an integer >= 1, got {s.extend_points!r}')
  if s.extend_rounds:
    short = [p for p in c.parameterizations if len(s.lrs[p]) < 2]
    require(not short, 'sweep.extend_rounds', f'extends a learning-rate grid, but {", ".join(short)} sweep(s) one '
            'rate: give at least two in sweep.lrs, or set extend_rounds=0')
  require(c.analysis.transfer_tolerance_exponent > 0, 'analysis.transfer_tolerance_exponent', 'must be > 0')
  if s.lane_steps == 'select_step':
    require(0 < c.select_step, 'sweep.lane_steps',
            "'select_step' stops the sweep lanes at select_step, but select_step is 0 (the last step): set "
            'select_step, or use lane_steps=num_steps')
    for p in c.parameterizations:
      require(c.plot.trajectory_lrs.get(p, 0.0) > 0, f'plot.trajectory_lrs.{p}',
              "is 0 (chosen after the run), but sweep.lane_steps='select_step' must know before the run which "
              'lanes train to num_steps: give the trajectory rate')
  require(c.program.lanes in PROGRAM_LANES, 'program.lanes',
          f'{c.program.lanes!r} is not allowed; allowed: {", ".join(PROGRAM_LANES)}')
  require(c.program.steps in PROGRAM_STEPS, 'program.steps',
          f'{c.program.steps!r} is not allowed; allowed: {", ".join(PROGRAM_STEPS)}')
  require(0 <= c.program.pad_to_share <= 1, 'program.pad_to_share',
          f'{c.program.pad_to_share}: give a fraction of a group\'s lanes between 0 (never pad) and 1')
  micro = c.program.microbatches
  require(micro == 0 or (micro >= 1 and c.data.batch_size % micro == 0), 'program.microbatches',
          f'{micro}: give 0 (auto) or a number >= 1 that divides data.batch_size ({c.data.batch_size})')


def _validate_measure(c):
  m = c.measure
  require(m.solver in SOLVERS, 'measure.solver', f'unknown solver {m.solver!r}; allowed: {", ".join(SOLVERS)}')
  require(m.num_iters >= 1, 'measure.num_iters', 'must be >= 1')
  require(isinstance(m.warm_start, bool), 'measure.warm_start', f'must be True or False, got {m.warm_start!r}')
  require(not m.warm_start or (m.solver == 'lanczos' and m.hessian), 'measure.warm_start',
          'warm-starts the Lanczos λ_max solve, so it needs measure.solver=lanczos and measure.hessian=True '
          '(power iteration always warm-starts)')
  require(m.loss_batch >= 1 and m.sharpness_batch >= 1, 'measure', 'loss_batch and sharpness_batch must be >= 1')
  require(m.hessian_k >= 1, 'measure.hessian_k', 'must be >= 1')
  require(m.hessian_k == 1 or m.solver == 'lanczos', 'measure.hessian_k',
          'top-k with k > 1 needs measure.solver=lanczos (power iteration gives the top eigenvalue)')
  require(m.hessian or not (m.gauss_newton or m.ntk_k or m.trace_samples or m.directional or m.density_every),
          'measure.hessian', 'is False, so turn off the other spectra too (gauss_newton, ntk_k, trace_samples, '
          'directional, density_every)')
  require(m.hessian_k <= m.num_iters, 'measure.hessian_k', f'cannot exceed measure.num_iters={m.num_iters}')
  require(m.ntk_k >= 0 and m.trace_samples >= 0 and m.density_every >= 0, 'measure',
          'ntk_k, trace_samples and density_every must be >= 0')
  require(m.trace_samples != 1, 'measure.trace_samples', 'needs >= 2 probes for a standard error')
  require(not m.stacked_weights or c.model.name == 'bn_mlp', 'measure.stacked_weights',
          f'reads the stacked hidden weights of bn_mlp; model {c.model.name!r} has none (set it False)')
  require(m.ntk_k == 0 or m.ntk_batch >= 1, 'measure.ntk_batch', 'must be >= 1')
  require(m.microbatches >= 1 and m.sharpness_batch % m.microbatches == 0, 'measure.microbatches',
          f'must divide measure.sharpness_batch={m.sharpness_batch} into equal micro-batches')
  require(m.density_vectors >= 1 and m.density_grid >= 2, 'measure', 'density_vectors >= 1 and density_grid >= 2')


def _validate_data(c):
  d, m = c.data, c.measure
  require(d.mode in data_lib.MODES, 'data.mode', f'unknown mode {d.mode!r}; allowed: {", ".join(data_lib.MODES)}')
  require(d.batch_size >= 1, 'data.batch_size', 'must be >= 1')
  text = d.name in TEXT_DATASETS
  if d.mode == 'epoch' and not text:
    require(d.num_train >= d.batch_size, 'data.num_train',
            f'{d.num_train} training examples cannot fill one batch of {d.batch_size}')
    require(d.num_train >= max(m.loss_batch, m.sharpness_batch, m.ntk_batch if m.ntk_k else 0,
                               c.coord_check.batch if c.coord_check.enabled else 0), 'data.num_train',
            'must be >= measure.loss_batch, sharpness_batch, ntk_batch and coord_check.batch (they are drawn from '
            'the training set)')
  require(d.num_eval >= 1, 'data.num_eval', 'must be >= 1')
  images = tuple(n for n in data_lib.all_dataset_names() if n not in TEXT_DATASETS + VECTOR_DATASETS)
  inputs = models.model_inputs(c.model.name)
  if inputs == 'images':
    require(d.name in images, 'data.name', f'{c.model.name} needs image data; allowed: {", ".join(images)}')
  require(text or inputs != 'tokens', 'data.name',
          f'{c.model.name} needs token data; allowed: {", ".join(TEXT_DATASETS)}')
  token_models = [m for m in models.ARCHITECTURES if models.model_inputs(m) == 'tokens']
  require(not text or inputs == 'tokens', 'model.name',
          f'{d.name} is token data: use a token model ({", ".join(token_models)})')
  if d.name in ('teacher_student', 'staircase'):
    require(c.loss == 'mse', 'loss', f'{d.name} has real-valued targets: use loss=mse')
  if 'seq_len' in d:
    require(d.seq_len >= 1, 'data.seq_len', 'must be >= 1')


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
