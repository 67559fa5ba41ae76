"""The Python entry points, for notebooks: `run` a config into a workdir and `load` a workdir back.

    import superconsistency as sc
    summary = sc.run('configs/flax_example.py', 'runs/flax_example', overrides={'sweep.seeds': (0,)})
    r = sc.load('runs/flax_example')
    r.transfer()['mup/depth=1']['best_lrs']      # the analysis functions, on the loaded run
    r.to_pandas()                                # metrics as a DataFrame (needs pandas; r.rows otherwise)

`run` is the CLI's path (`python -m superconsistency`): the same validation, the same experiments.run, the same
resume from checkpoints and refusal of a finished workdir (overwrite=True replaces it), and the same persistent
compilation cache (compile_cache=False turns it off). A config is a file spec as on the command line
('configs/NAME.py' or 'configs/NAME.py:option') or a ConfigDict; overrides are {'dotted.field': value}, checked
like `--config.dotted.field=value` (an unknown field is an error that names it).
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np


def _set_field(cfg, dotted: str, value) -> None:
  from superconsistency import config as config_lib
  block, parts = cfg, dotted.split('.')
  for i, part in enumerate(parts):
    if not hasattr(block, 'keys') or part not in block:
      where = '.'.join(parts[:i]) or 'the config'
      have = ', '.join(sorted(block.keys())) if hasattr(block, 'keys') else '(not a block)'
      raise config_lib.ConfigError(dotted, f'unknown field: {where} has no field {part!r} (it has: {have})')
    if i < len(parts) - 1:
      block = block[part]
  block[parts[-1]] = value


def config(spec, overrides: dict | None = None):
  """A config from a file spec ('configs/NAME.py[:options]') or a ConfigDict (copied), with overrides applied."""
  import ml_collections
  from superconsistency import config as config_lib
  if isinstance(spec, ml_collections.ConfigDict):
    cfg = ml_collections.ConfigDict(spec.to_dict())
  else:
    path, _, arg = str(spec).partition(':')
    if not os.path.exists(path):
      raise config_lib.ConfigError('config', f'no config file {path!r} (from {os.getcwd()})')
    cfg = config_lib.from_file(path, arg)
  for dotted, value in (overrides or {}).items():
    _set_field(cfg, dotted, value)
  return cfg


def run(spec, workdir: str, overrides: dict | None = None, *, overwrite: bool = False, progress: bool = False,
        plots: bool = True, compile_cache: bool = True) -> dict:
  """Runs a config into `workdir` exactly as the CLI does and returns its summary (summary.json's dict)."""
  from superconsistency import compile_cache as cache_lib
  from superconsistency import experiments
  import jax
  cfg = config(spec, overrides)
  if compile_cache:
    cache_lib.enable(None)
  x64 = jax.config.jax_enable_x64
  try:
    return experiments.run(cfg, workdir, overwrite=overwrite, progress=progress, plots=plots)
  finally:
    # a float64 config switches JAX's x64 mode for the run; a notebook's later cells keep the mode they had
    jax.config.update('jax_enable_x64', x64)


class Run(NamedTuple):
  """A finished (or checkpointed) run read back from its workdir.

  rows: metrics.csv as a list of dicts, one per (lane, measured step) — the tidy form: every column of the file
    (parameterization, width, depth, lr, gamma0, seed, step, train_loss, sharpness, lr_sharpness, ...), numbers
    parsed. config: config.json (the resolved config). summary: summary.json ({} while unfinished).
  """
  workdir: str
  config: dict
  rows: list
  summary: dict

  def column(self, name: str) -> np.ndarray:
    """One column of the rows as an array (strings stay strings)."""
    if self.rows and name not in self.rows[0]:
      raise KeyError(f'metrics.csv has no column {name!r}; it has: {", ".join(self.rows[0])}')
    return np.asarray([r[name] for r in self.rows])

  def to_pandas(self):
    """The rows as a pandas DataFrame (pandas is not a dependency of the project: install it to use this)."""
    try:
      import pandas as pd
    except ImportError as e:
      raise ImportError('Run.to_pandas needs pandas (pip install pandas); Run.rows holds the same table as '
                        'dicts') from e
    return pd.DataFrame(self.rows)

  def transfer(self, select_by: str | None = None, select_step: int | None = None) -> dict:
    """best_rate.transfer on this run: per parameterization and fixed size, the best rate at each size with
    intervals over seeds, its drift in decades and the verdict (transfers / shifts / censored / inconclusive)."""
    from superconsistency import best_rate
    a = self.config.get('analysis', {})
    return best_rate.transfer(self.rows, select_by or self.config['select_by'],
                              self.config.get('select_step', 0) if select_step is None else select_step,
                              a.get('transfer_tolerance_exponent', best_rate.TRANSFER_TOLERANCE_EXPONENT))

  def consistency(self) -> dict:
    """sweep_analysis.consistency: the CV across sizes of η·λ_max (and the other measured spectra) per step."""
    from superconsistency import sweep_analysis
    return sweep_analysis.consistency(self.rows, self.config, self.summary)

  def gamma_eta(self) -> dict:
    """gamma_analysis.plane: [G]'s γ0–η0 plane and its scaling fits (a sweep over γ0)."""
    from superconsistency import gamma_analysis
    return gamma_analysis.plane(self.rows, self.config)

  def plot_transfer(self, path: str) -> str:
    """Loss against base rate, one curve per size, with each size's best rate and interval (plot.plot_transfer)."""
    from superconsistency import plot
    plot.plot_transfer(self.rows, self.config['select_by'], path, self.config.get('select_step', 0))
    return path

  def analyze(self, plots: bool = True) -> dict:
    """Every analysis that applies, written to analysis.json (and figures) as `python -m superconsistency.analyze`."""
    from superconsistency import experiments
    return experiments.analyze(self.workdir, plots=plots)


def load(workdir: str) -> Run:
  """Reads a workdir written by `run` or the CLI (a sweep: config.json and metrics.csv)."""
  from superconsistency import results
  paths = {name: os.path.join(workdir, name) for name in ('config.json', 'metrics.csv', 'summary.json')}
  paths['metrics.csv'] = results.csv_path(paths['metrics.csv'])
  for name in ('config.json', 'metrics.csv'):
    if not os.path.exists(paths[name]):
      raise FileNotFoundError(f'{workdir} has no {name}: not a sweep workdir written by superconsistency.run or '
                              'python -m superconsistency')
  with open(paths['config.json']) as f:
    cfg = json.load(f)
  summary = {}
  if os.path.exists(paths['summary.json']):
    with open(paths['summary.json']) as f:
      summary = json.load(f)
  return Run(workdir, cfg, results.read_csv(paths['metrics.csv']), summary)
