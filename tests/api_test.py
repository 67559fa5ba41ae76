"""The Python API's checks: configs from file specs with overrides (an unknown field named, like the CLI's), the
finished-workdir refusal, and `load` on the committed quickstart: the same best rates as its analysis.json, and
the columns as arrays. (tests/flax_bridge_test.py runs `superconsistency.run` end to end; tests/docs_test.py runs
the example script that uses all of it.)"""
import json
import math
import os
import shutil

import pytest

import superconsistency as sc
from superconsistency import api
from superconsistency import config as config_lib
from conftest import ROOT


def test_a_config_from_a_file_spec_with_overrides():
  cfg = api.config(os.path.join(ROOT, 'configs/depth_mlp.py:k2'), {'widths': (8,), 'sweep.seeds': (0,)})
  assert cfg.model.layers_per_block == 2 and tuple(cfg.widths) == (8,) and tuple(cfg.sweep.seeds) == (0,)
  with pytest.raises(config_lib.ConfigError, match=r"config.sweep.seed: unknown field: sweep has no field 'seed'"):
    api.config(os.path.join(ROOT, 'configs/quickstart.py'), {'sweep.seed': (0,)})
  with pytest.raises(config_lib.ConfigError, match='no config file'):
    api.config('configs/nowhere.py')
  with pytest.raises(ValueError, match='unknown option'):
    api.config(os.path.join(ROOT, 'configs/depth_mlp.py:k3'))


def test_run_refuses_a_finished_workdir_and_a_bad_field_before_any_work(tmp_path):
  finished = tmp_path / 'finished'
  finished.mkdir()
  (finished / 'summary.json').write_text('{}')
  spec = os.path.join(ROOT, 'configs/quickstart.py')
  with pytest.raises(config_lib.ConfigError, match='holds a finished run'):
    sc.run(spec, str(finished), compile_cache=False)
  with pytest.raises(config_lib.ConfigError, match='config.loss'):
    sc.run(spec, str(tmp_path / 'bad'), {'loss': 'hinge'}, compile_cache=False)
  assert not (tmp_path / 'bad').exists()


def test_load_gives_the_rows_and_the_analyses_of_a_workdir(tmp_path):
  workdir = tmp_path / 'quickstart'
  shutil.copytree(os.path.join(ROOT, 'results', 'quickstart'), workdir)
  r = sc.load(str(workdir))
  with open(workdir / 'analysis.json') as f:
    committed = json.load(f)['transfer']
  got = r.transfer()
  assert set(got) == set(committed)
  for key in got:
    for a, b in zip(got[key]['best_lrs'], committed[key]['best_lrs']):
      assert a == pytest.approx(b, rel=1e-12)
  loss = r.column('train_loss')
  assert loss.shape == (len(r.rows),) and math.isfinite(float(loss[0]))
  assert set(r.column('parameterization')) == {'mup', 'ntk'} and r.summary and r.config['model']['name'] == 'mlp'
  assert 'mup' in r.consistency()
  with pytest.raises(KeyError, match="no column 'sharpnes'"):
    r.column('sharpnes')
  try:
    import pandas  # noqa: F401
  except ImportError:
    with pytest.raises(ImportError, match='pip install pandas'):
      r.to_pandas()
  else:
    assert len(r.to_pandas()) == len(r.rows)
  with pytest.raises(FileNotFoundError, match='no config.json'):
    sc.load(str(tmp_path))


def test_a_compacted_workdir_reads_the_same(tmp_path):
  """results.compact (the gallery's large CSVs as .xz): load, read_csv and the analysis see the same rows."""
  from superconsistency import results
  workdir = tmp_path / 'quickstart'
  shutil.copytree(os.path.join(ROOT, 'results', 'quickstart'), workdir)
  before = results.read_csv(str(workdir / 'metrics.csv'))
  assert results.compact(str(workdir), limit=10**9) == []
  assert 'metrics.csv' in results.compact(str(workdir), limit=0)   # every CSV over the limit
  assert not (workdir / 'metrics.csv').exists() and (workdir / 'metrics.csv.xz').exists()
  got = results.read_csv(workdir / 'metrics.csv')   # a Path, as the distributed tests pass it
  assert [repr(r) for r in got] == [repr(r) for r in before]   # repr: nan compares equal to nan
  assert len(sc.load(str(workdir)).rows) == len(before)


def test_run_leaves_jax_s_x64_mode_as_it_found_it(tmp_path):
  """A float64 config switches x64 on for its run (runner.plan); in a notebook or a test process the mode must come
  back, or every later computation silently runs in float64 (this leaked into other tests once)."""
  import jax
  from conftest import shrunk_quickstart
  cfg = shrunk_quickstart()
  cfg.dtype, cfg.widths, cfg.parameterizations, cfg.num_steps = 'float64', (8,), ('mup',), 3
  cfg.coord_check.enabled = False
  assert not jax.config.jax_enable_x64
  sc.run(cfg, str(tmp_path / 'f64'), plots=False, compile_cache=False)
  assert not jax.config.jax_enable_x64
  with open(tmp_path / 'f64' / 'config.json') as f:
    assert json.load(f)['dtype'] == 'float64'
