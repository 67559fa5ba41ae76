import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name):
  """A config from configs/ — tests shrink these rather than inventing their own."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def shrunk_quickstart():
  c = load_config('quickstart')
  c.widths = (8, 16)
  c.sweep.lrs.mup = (0.25, 1.0)
  c.sweep.lrs.ntk = (1.0, 4.0)
  c.num_steps = 6
  c.measure_every = 3
  c.measure.loss_batch = 64
  c.measure.sharpness_batch = 32
  c.measure.num_iters = 8
  c.data.num_train = 256
  c.data.num_eval = 64
  c.data.batch_size = 16
  c.coord_check.widths = (8, 16)
  c.coord_check.seeds = (0,)
  c.coord_check.steps = 1
  c.coord_check.batch = 16
  return c


@pytest.fixture
def small_config():
  return shrunk_quickstart()
