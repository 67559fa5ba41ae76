"""The experiments a config can run, registered explicitly, each behind the same small interface:

  defaults()                      its config (config files start from it)
  validate(cfg)                   raises config.ConfigError on the first field that cannot run; fields the experiment
                                  does not read are refused here too
  run(cfg, workdir, overwrite, progress, plots) -> summary     writes the workdir (summary.json last)
  analyze(workdir, plots) -> dict                                 analysis.json (+ figures) from the workdir's files

Adding an experiment: its module with those four functions, and one line in REGISTRY. The CLI, the Python entry
points and `analyze` dispatch through here, so no module is ever looked up by name.
"""
from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple

from superconsistency import bn_experiment
from superconsistency import config as config_lib
from superconsistency import results
from superconsistency import runner
from superconsistency import sweep_analysis
from superconsistency import toy_chain


class Experiment(NamedTuple):
  defaults: Callable
  validate: Callable
  run: Callable
  analyze: Callable
  multihost: bool      # can run as several processes (jax.distributed); the others are one compiled computation


REGISTRY = {
    'sweep': Experiment(config_lib.defaults, config_lib.validate, runner.run, sweep_analysis.analyze_workdir, True),
    'bn_depth': Experiment(bn_experiment.defaults, bn_experiment.validate, bn_experiment.run_experiment,
                           lambda w, plots=True: (bn_experiment.analyze if plots else bn_experiment.measure)(w), False),
    'toy_chain': Experiment(toy_chain.defaults, toy_chain.validate, toy_chain.run_experiment,
                            lambda w, plots=True: (toy_chain.analyze if plots else toy_chain.measure)(w), False),
}


def get(name) -> Experiment:
  if name not in REGISTRY:
    raise config_lib.ConfigError('experiment', f'unknown experiment {name!r}; allowed: {", ".join(REGISTRY)}')
  return REGISTRY[name]


def validate(cfg) -> None:
  """Every check of the config, before any work."""
  exp = get(cfg.get('experiment', 'sweep'))
  if cfg.experiment != 'sweep':   # the sweep checks its fields against the blocks of its model, data and optimizer
    config_lib.check_fields(cfg, exp.defaults(), f'the {cfg.experiment} experiment')
  exp.validate(cfg)


def run(cfg, workdir: str, overwrite: bool = False, progress: bool = True, plots: bool = True) -> dict:
  """Validates, then runs the config's experiment into `workdir` (resuming the sweep from its checkpoints)."""
  import jax
  validate(cfg)
  exp = get(cfg.experiment)
  if not exp.multihost and jax.process_count() > 1:
    raise config_lib.ConfigError('experiment', f'{cfg.experiment!r} is one compiled computation on one process: '
                                 'run it without --multihost')
  if exp.multihost:   # takes the workdir itself, once its inputs are built (and on process 0 only)
    return exp.run(cfg, workdir, overwrite=overwrite, progress=progress, plots=plots)
  config_lib.check_workdir(workdir, overwrite)
  with results.WorkdirLock(workdir):
    return exp.run(cfg, workdir, overwrite=overwrite, progress=progress, plots=plots)


def analyze(workdir: str, plots: bool = True) -> dict:
  """The analysis of a finished run, by the experiment recorded in its config.json; writes analysis.json."""
  with open(os.path.join(workdir, 'config.json')) as f:
    name = json.load(f).get('experiment', 'sweep')
  out = get(name).analyze(workdir, plots=plots)
  out['experiment'] = name
  results.write_json(os.path.join(workdir, 'analysis.json'), results.json_safe(out))
  return out
