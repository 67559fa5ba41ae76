"""superconsistency: sharpness, NTK spectra and learning-rate transfer across width, depth and γ, in JAX.

The Python API (docs/api.md), imported on first use so that `import superconsistency` stays light:
  run(config, workdir, overrides)   a config into a workdir, as `python -m superconsistency` does
  load(workdir)                     a workdir back: rows, config, summary and the analysis functions
  flax_model(module, x, param, width, depth)   a Flax linen or NNX module as the project's model
  Parameterization(name, ...)       sp, ntk, mup, depth_mup, completep
"""
__version__ = '0.1.0'

_EXPORTS = {'run': 'api', 'load': 'api', 'Run': 'api', 'flax_model': 'flax_bridge',
            'Parameterization': 'parameterization'}


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module superconsistency has no attribute {name!r}')
  import importlib
  return getattr(importlib.import_module(f'superconsistency.{_EXPORTS[name]}'), name)


def __dir__():
  return sorted(list(globals()) + list(_EXPORTS))
