"""Lanes leave the compiled batch when they stop mattering (diverged, or past their step budget), the rest are
re-packed into a smaller batch; what each lane recorded up to then is what a run without retiring records. Also:
how a sweep's program is chosen (vmap or unrolled lanes, scanned or host-dispatched steps) and that the choices
compute the same numbers."""
import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import data as data_lib
from superconsistency import distributed
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import results
from superconsistency import lanes
from superconsistency import train
from conftest import ROOT, load_config, shrunk_quickstart


def _setup(c, width=16):
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  model = models.make_model(c.model, data.spec, width, 3, pz.Parameterization('mup'), jnp.float32)
  return data, model


def _budget_config():
  c = shrunk_quickstart()
  c.num_steps, c.measure_every, c.select_step = 9, 3, 3
  c.sweep.lrs.mup = (0.25, 0.5, 1.0, 2.0)
  c.plot.trajectory_lrs.mup, c.plot.trajectory_lrs.ntk = 1.0, 4.0
  return c


def test_lanes_past_their_budget_retire_and_keep_their_rows():
  c = _budget_config()
  data, model = _setup(c)
  hp = train.lane_grid(c.sweep.lrs.mup, (1.0,), (0,), jnp.float32)
  full_sweep = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  _, full, _ = lanes.run_sweep(None, data, c, None, sweep=full_sweep)
  c.sweep.lane_steps = 'select_step'
  budgets = lanes.lane_budgets(c, hp, 'mup')
  assert list(budgets) == [3, 3, 9, 3]   # only the trajectory rate (1.0) trains all 9 steps
  sweep = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  _, retired, diverged = lanes.run_sweep(None, data, c, None, sweep=sweep, budgets=budgets)
  assert list(diverged) == [-1] * 4
  for k in train.METRICS:
    # up to step 3 every lane ran in the same 4-lane program: bit for bit the run without retiring
    np.testing.assert_array_equal(retired[k][:, :2], full[k][:, :2], err_msg=k)
    # after it the sweep lanes recorded nothing; the trajectory lane ran on alone (a 1-lane program: rounding)
    assert np.all(np.isnan(retired[k][[0, 1, 3], 2:])), k
    np.testing.assert_allclose(retired[k][2, 2:], full[k][2, 2:], rtol=1e-4, atol=1e-6, err_msg=k)
  # 4 lanes × 3 steps, then 1 lane × 6 steps
  assert sweep.lane_steps() == lanes.LaneSteps(run=4 * 3 + 1 * 6, saved=4 * 9 - 18)
  assert full_sweep.lane_steps() == lanes.LaneSteps(run=36, saved=0)
  assert ('chunk', 1) in sweep._compiled and ('chunk', 4) in sweep._compiled


def test_a_diverged_lane_retires_and_costs_nothing_after():
  c = shrunk_quickstart()
  c.loss_cap = 50.0
  c.num_steps, c.measure_every = 9, 3
  data, model = _setup(c)
  hp = train.lane_grid((0.25, 1e6, 1.0, 1e7), (1.0,), (0,), jnp.float32)
  mesh = distributed.make_mesh(c.mesh)
  c.sweep.retire_diverged = False
  kept = lanes.compile_sweep(model, data, c, hp, mesh)
  _, m_kept, d_kept = lanes.run_sweep(None, data, c, None, sweep=kept)
  c.sweep.retire_diverged = True
  sweep = lanes.compile_sweep(model, data, c, hp, mesh)
  _, m_ret, d_ret = lanes.run_sweep(None, data, c, None, sweep=sweep)
  assert list(d_ret) == list(d_kept) and 0 <= d_ret[1] < 3 and 0 <= d_ret[3] < 3 and d_ret[0] == d_ret[2] == -1
  # they ran the first chunk, then left (half the batch: re-packed): 4 lanes × 3 steps, then the 2 healthy ones × 6
  assert sweep.lane_steps().run == 4 * 3 + 2 * 6 and kept.lane_steps().run == 4 * 9
  for k in train.METRICS:
    np.testing.assert_array_equal(m_ret[k][:, :2], m_kept[k][:, :2], err_msg=k)
    assert np.all(np.isnan(m_ret[k][[1, 3], 2:])), k
    np.testing.assert_allclose(m_ret[k][[0, 2], 2:], m_kept[k][[0, 2], 2:], rtol=1e-4, atol=1e-6, err_msg=k)


def test_resume_from_a_retired_batch_equals_the_uninterrupted_run():
  c = _budget_config()
  data, model = _setup(c)
  hp = train.lane_grid(c.sweep.lrs.mup, (1.0,), (0,), jnp.float32)
  c.sweep.lane_steps = 'select_step'
  budgets = lanes.lane_budgets(c, hp, 'mup')
  sweep = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  saved = {}

  def keep(done, state, buffers, retired):
    if done == 2:
      saved['at'] = (jax_copy(state), {k: v.copy() for k, v in buffers.items()}, done, retired)
  _, whole, d_whole = lanes.run_sweep(None, data, c, None, sweep=sweep, after_chunk=keep, budgets=budgets)
  state, buffers, done, retired = saved['at']
  assert retired.live == [2] and int(state.step.shape[0]) == 1   # re-packed to the trajectory lane alone
  _, resumed, d_resumed = lanes.run_sweep(None, data, c, None, sweep=sweep, budgets=budgets,
                                          resume=(state, buffers, done, retired))
  assert list(d_resumed) == list(d_whole)
  for k in train.METRICS:
    np.testing.assert_array_equal(resumed[k], whole[k], err_msg=k)


def jax_copy(tree):
  import jax
  return jax.tree.map(lambda a: np.asarray(a).copy(), tree)


def test_select_step_budget_needs_a_trajectory_rate_and_a_select_step():
  from superconsistency import config as config_lib
  c = _budget_config()
  c.sweep.lane_steps = 'select_step'
  config_lib.validate(c)
  c.plot.trajectory_lrs.mup = 0.0
  with pytest.raises(config_lib.ConfigError, match='plot.trajectory_lrs.mup'):
    config_lib.validate(c)
  c = _budget_config()
  c.sweep.lane_steps, c.select_step = 'select_step', 0
  with pytest.raises(config_lib.ConfigError, match='sweep.lane_steps'):
    config_lib.validate(c)
  c.sweep.lane_steps = 'half'
  with pytest.raises(config_lib.ConfigError, match='sweep.lane_steps'):
    config_lib.validate(c)


ARGS = ['--config=configs/quickstart.py', '--config.widths=(8,)', '--config.parameterizations=("mup",)',
        '--config.sweep.lrs.mup=(0.25,0.5,1.0)', '--config.num_steps=9', '--config.measure_every=3',
        '--config.select_step=3', '--config.plot.trajectory_lrs.mup=1.0',
        '--config.measure.loss_batch=64', '--config.measure.sharpness_batch=32', '--config.measure.num_iters=8',
        '--config.data.num_train=256', '--config.data.num_eval=64', '--config.data.batch_size=16',
        '--config.coord_check.enabled=False', '--config.checkpoint.every_steps=3', '--config.sweep.seeds=(0,)',
        '--config.sweep.extend_rounds=0', '--progress=false']


def test_cli_budget_run_writes_rows_to_each_budget_and_resumes_after_a_kill(tmp_path):
  """Through the CLI: rows stop at each lane's budget; summary.json counts the lane-steps; a run killed after the
  batch was re-packed resumes from that checkpoint to the same metrics.csv, byte for byte."""
  def run(workdir, fault=''):
    env = dict(os.environ, **({'FAULT': fault} if fault else {}))
    entry = [os.path.join(ROOT, 'tests', 'faulty_run.py')] if fault else ['-m', 'superconsistency']
    return subprocess.run([sys.executable, *entry, *ARGS, '--config.sweep.lane_steps=select_step',
                           f'--workdir={workdir}'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  whole = tmp_path / 'whole'
  r = run(whole)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = results.read_csv(str(whole / 'metrics.csv'))
  last = {lr: max(row['step'] for row in rows if row['lr'] == lr) for lr in (0.25, 0.5, 1.0)}
  assert last == {0.25: 3, 0.5: 3, 1.0: 9}
  import json
  summary = json.loads((whole / "summary.json").read_text())
  assert summary['lane_steps'] == {'run': 3 * 3 + 1 * 6, 'saved': 3 * 9 - 15}
  assert summary['programs'][0]['lanes'] == 'vmap' and summary['programs'][0]['steps'] == 'scan'
  assert summary['programs'][0]['lane_group'] == 0   # a small MLP: every lane's Krylov basis fits one group
  killed = tmp_path / 'killed'
  r = run(killed, 'chunk:3')   # after the 2nd chunk: the checkpoint after the 1st holds the re-packed batch
  assert r.returncode == -9, r.stderr[-2000:]
  r = run(killed)
  assert r.returncode == 0 and 'resuming' in r.stderr, r.stderr[-2000:]
  with open(whole / 'metrics.csv', 'rb') as a, open(killed / 'metrics.csv', 'rb') as b:
    assert a.read() == b.read()


def test_auto_program_runs_lanes_and_steps_from_the_host_for_loop_free_convolutional_models_on_cpu_only():
  c = load_config('figure1')
  c.data.num_train, c.data.num_eval, c.measure.loss_batch = 256, 64, 64
  data = data_lib.make_data(c.data, 8, 64, jnp.float32)
  mesh = distributed.make_mesh(c.mesh)
  conv = models.make_model(c.model, data.spec, 4, 1, pz.Parameterization('mup'), jnp.float32)
  assert lanes.uses_convolutions(conv, data)
  assert lanes.choose_program(conv, data, c, mesh)[:2] == ('host', 'host')
  q = shrunk_quickstart()
  q_data, mlp = _setup(q)
  assert not lanes.uses_convolutions(mlp, q_data)
  assert lanes.choose_program(mlp, q_data, q, mesh)[:2] == ('vmap', 'scan')
  c.program.lanes, c.program.steps = 'vmap', 'scan'
  assert lanes.choose_program(conv, data, c, mesh)[:2] == ('vmap', 'scan')
  # a resnet scans its blocks: its convolutions are in a device loop anyway, so it keeps vmap + scan
  r = load_config('depth_resnet')
  r.data.num_train, r.data.num_eval = 256, 64
  r_data = data_lib.make_data(r.data, 8, 64, jnp.float32)
  resnet = models.make_model(r.model, r_data.spec, 4, 2, pz.Parameterization('depth_mup'), jnp.float32)
  assert lanes.uses_convolutions(resnet, r_data) and 'scan' in lanes.model_primitives(resnet, r_data)
  assert lanes.choose_program(resnet, r_data, r, mesh)[:2] == ('vmap', 'scan')


# Every lanes choice and every steps choice at least once in the default run (each variant compiles a program of
# its own, ~5 s here); the slow run adds the two remaining pairs.
PROGRAM_CHOICES = [('unroll', 'host'), ('map', 'scan'), ('host', 'host'),
                   pytest.param(('vmap', 'host'), marks=pytest.mark.slow),
                   pytest.param(('host', 'scan'), marks=pytest.mark.slow)]


@functools.lru_cache(maxsize=None)   # the reference runs once per test process
def _figure1_lanes_under(how, steps):
  c = load_config('figure1')
  c.data.num_train, c.data.num_eval = 512, 64
  c.measure.loss_batch, c.measure.sharpness_batch, c.data.batch_size = 64, 16, 16
  c.num_steps, c.measure_every = 6, 3
  c.program.lanes, c.program.steps = how, steps
  data = data_lib.make_data(c.data, c.num_steps, 64, jnp.float32)
  model = models.make_model(c.model, data.spec, 8, 1, pz.Parameterization('mup'), jnp.float32)
  hp = train.lane_grid((0.1, 0.5, 2.0), (1.0,), (0,), jnp.float32)
  mesh = distributed.make_mesh(c.mesh)
  return lanes.run_sweep(None, data, c, None, sweep=lanes.compile_sweep(model, data, c, hp, mesh))[1]


@pytest.mark.parametrize('choice', PROGRAM_CHOICES, ids=lambda c: '-'.join(c))
def test_unrolled_host_stepped_lanes_equal_vmapped_scanned_lanes(choice):
  """The same lanes under a program choice and under vmapped lanes with scanned steps: equal to float32 rounding
  (other compiled programs)."""
  ref, got = _figure1_lanes_under('vmap', 'scan'), _figure1_lanes_under(*choice)
  assert np.all(np.isfinite(ref['sharpness'])) and ref['train_loss'][0, -1] != ref['train_loss'][2, -1]
  for k in train.METRICS:
    np.testing.assert_allclose(got[k], ref[k], rtol=2e-4, atol=1e-6, err_msg=f'{choice} {k}')


def test_lanes_in_groups_equal_all_lanes_at_once(monkeypatch):
  """lanes.choose_lane_group: on one CPU device a vmapped sweep runs over groups of lanes whose Krylov bases fit
  LANE_GROUP_BYTES, in a device loop over the groups; the rows are those of the ungrouped program."""
  c = shrunk_quickstart()
  c.num_steps, c.measure_every = 4, 2
  data, model = _setup(c)
  hp = train.lane_grid((0.25, 0.5, 1.0, 1.5, 2.0, 4.0), (1.0,), (0,), jnp.float32)
  mesh = distributed.make_mesh(c.mesh)
  n_params = sum(int(np.prod(w.shape)) for w in jax.tree.leaves(jax.eval_shape(model.init, jax.random.PRNGKey(0))))
  basis_bytes = (c.measure.num_iters + 1) * n_params * 4
  monkeypatch.setattr(lanes, 'LANE_GROUP_BYTES', 2 * basis_bytes + 1)
  grouped = lanes.compile_sweep(model, data, c, hp, mesh)
  assert grouped.choice.lane_group == 2 and grouped.lane_group == 2
  monkeypatch.setattr(lanes, 'LANE_GROUP_BYTES', 10 * basis_bytes)
  whole = lanes.compile_sweep(model, data, c, hp, mesh)
  assert whole.choice.lane_group == 10 and whole.lane_group == 0   # 10 ≥ the 6 lanes: one vmap
  _, got, _ = lanes.run_sweep(None, data, c, None, sweep=grouped)
  _, ref, _ = lanes.run_sweep(None, data, c, None, sweep=whole)
  assert np.all(np.isfinite(ref['sharpness'])) and ref['train_loss'][0, -1] != ref['train_loss'][4, -1]
  for k in train.METRICS:
    np.testing.assert_allclose(got[k], ref[k], rtol=2e-5, atol=1e-7, err_msg=k)
  monkeypatch.setattr(lanes, 'LANE_GROUP_BYTES', 1)
  assert lanes.choose_lane_group(model, c, on_cpu=True, one_device=True) == 1
  # equal groups (lax.map with a remainder would compile the program twice): the largest divisor within the limit
  assert [lanes.group_size(n, 4) for n in (4, 3, 8, 6, 7, 12)] == [None, None, 4, 3, 1, 4]
  assert lanes.choose_lane_group(model, c, on_cpu=False, one_device=True) == 0   # GPU/TPU: all lanes at once
  assert lanes.choose_lane_group(model, c, on_cpu=True, one_device=False) == 0   # lanes sharded over devices


def test_lanes_of_one_seed_share_their_shuffle_and_every_lane_gets_its_own_plan():
  """shared_plans computes a plan once per distinct (data key, step) and hands each lane exactly the plan it would
  compute alone: with the sweep's bound, with a bound too small (the fallback) and with lanes at other steps."""
  c = shrunk_quickstart()
  data, model = _setup(c)
  program = train.make_lane_program(model, data, c)
  hp = train.lane_grid((0.25, 0.5, 1.0), (1.0,), (0, 1), jnp.float32)   # 6 lanes, 2 seeds
  state = jax.vmap(program.init)(hp)
  # lanes 4 and 5 further on (another epoch): same seeds as others, other plans
  state = state.replace(step=state.step.at[4:].set(c.measure_every * 7))
  own = jax.vmap(program.plan, in_axes=(0, None))(state, data.arrays)
  assert not np.array_equal(own[0], own[1]) and not np.array_equal(own[0], own[4])   # seeds and epochs differ
  for distinct in (lanes.distinct_shuffles(hp) + 2, lanes.distinct_shuffles(hp), 1, 6):
    shared = jax.jit(lambda s: lanes.shared_plans(program.plan, s, data.arrays, distinct))(state)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b, err_msg=f'distinct={distinct}'), shared, own)
  assert lanes.distinct_shuffles(hp) == 2
