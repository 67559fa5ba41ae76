"""Vmapped lanes equal lanes run alone; a diverging lane is frozen, marked, and changes nobody else."""
import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import data as data_lib
from superconsistency import distributed
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import lanes
from superconsistency import train
from conftest import shrunk_quickstart


def _setup(c, p_name='mup', width=16):
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  model = models.make_model(c.model, data.spec, width, 3, pz.Parameterization(p_name), jnp.float32)
  return data, model


def test_vmapped_lane_equals_lane_alone():
  c = shrunk_quickstart()
  data, model = _setup(c)
  lrs, seeds = (0.25, 1.0), (0, 1)
  hp = train.lane_grid(lrs, (1.0,), seeds, jnp.float32)
  steps, metrics, diverged = lanes.run_sweep(model, data, c, hp)
  assert metrics['train_loss'].shape == (4, c.num_steps // c.measure_every + 1)
  assert np.all(diverged == -1)
  for lane in (0, 3):
    alone, div = train.run_lane(model, data, c, float(hp.lr[lane]), 1.0, int(hp.seed[lane]))
    assert div == -1
    for k in train.METRICS:
      np.testing.assert_allclose(metrics[k][lane], alone[k], rtol=2e-5, atol=1e-6, err_msg=k)
  # different seeds and rates really give different numbers (the comparison above can fail)
  assert not np.allclose(metrics['train_loss'][0], metrics['train_loss'][3])


def test_step_0_measurement_is_the_chunk_program_with_its_steps_skipped():
  """Batched lanes with scanned steps take the step-0 measurement with the chunk program (its steps skipped), so
  the measurement is compiled once: the same numbers and FLOPs as the measurement's own program, the state as it
  was, and no measure program compiled by a sweep."""
  c = shrunk_quickstart()
  data, model = _setup(c)
  hp = train.lane_grid((0.25, 1.0), (1.0,), (0,), jnp.float32)
  sweep = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  assert (sweep.choice.lanes, sweep.choice.steps) == ('vmap', 'scan')
  state0 = sweep.init(sweep.hp)
  before = jax.device_get(state0)
  ref_state, ref = jax.device_get(sweep.measure(state0, sweep.hp, sweep.arrays, 0))
  state, first = jax.device_get(sweep.first_measurement(state0))   # donates state0
  assert set(first) == set(ref)
  for k in ref:
    np.testing.assert_allclose(first[k], ref[k], rtol=1e-6, atol=1e-7, err_msg=k)
  assert np.all(state.step == 0)
  for name in before.params:
    np.testing.assert_array_equal(state.params[name], before.params[name])
  np.testing.assert_allclose(state.power_vec, ref_state.power_vec, rtol=1e-6, atol=1e-7)
  chunk = sweep.program('chunk')
  assert chunk.flops_skipped == sweep.measure.flops   # the count and whether it is exact (Lanczos' conds: not)
  assert chunk.flops.flops > chunk.flops_skipped.flops   # the steps count when they run
  # a sweep run compiles init and the chunk only
  fresh = lanes.compile_sweep(model, data, c, hp, distributed.make_mesh(c.mesh))
  lanes.run_sweep(model, data, c, hp, sweep=fresh)
  assert sorted(name for name, _ in fresh._compiled) == ['chunk', 'init']
  done = fresh.flops_done()
  chunks = c.num_steps // c.measure_every
  assert done.flops == (fresh.init.flops.flops + chunks * fresh.program('chunk').flops.flops
                        + fresh.program('chunk').flops_skipped.flops)


def test_diverging_lane_is_frozen_marked_and_isolated():
  c = shrunk_quickstart()
  c.loss_cap = 50.0
  c.sweep.retire_diverged = False   # kept in the batch, frozen (lane_retirement_test.py covers retiring it)
  data, model = _setup(c)
  # same lane count in both sweeps, so the same compiled program: healthy lanes must agree bit for bit
  healthy = train.lane_grid((0.25, 0.5, 1.0), (1.0,), (0,), jnp.float32)
  with_bad = train.lane_grid((0.25, 1e6, 1.0), (1.0,), (0,), jnp.float32)
  _, m_ok, d_ok = lanes.run_sweep(model, data, c, healthy)
  _, m_bad, d_bad = lanes.run_sweep(model, data, c, with_bad)
  assert list(d_ok) == [-1, -1, -1]
  assert d_bad[0] == -1 and d_bad[2] == -1
  assert 0 <= d_bad[1] < c.num_steps
  for k in train.METRICS:
    np.testing.assert_array_equal(m_bad[k][[0, 2]], m_ok[k][[0, 2]], err_msg=k)
  # the frozen lane keeps finite parameters: its measured loss stays finite
  assert np.all(np.isfinite(m_bad['train_loss'][1]))


def test_same_config_and_seed_give_same_numbers():
  c = shrunk_quickstart()
  data, model = _setup(c, 'ntk')
  hp = train.lane_grid((1.0, 4.0), (1.0,), (0,), jnp.float32)
  _, a, _ = lanes.run_sweep(model, data, c, hp)
  data2, model2 = _setup(c, 'ntk')
  _, b, _ = lanes.run_sweep(model2, data2, c, hp)
  for k in train.METRICS:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_epoch_stream_covers_every_example_once_per_epoch_and_online_never_repeats():
  c = shrunk_quickstart()
  c.data.num_train, c.data.batch_size = 64, 16
  data = data_lib.make_data(c.data, 8, 16, jnp.float32)
  import jax
  key = jax.random.PRNGKey(0)
  plan = data.plan(data.arrays, key, 0, 4)
  xs = np.concatenate([np.asarray(data.batch(data.arrays, key, s, plan[s])[0]) for s in range(4)])
  # a plan made from a later first step agrees with the one made from step 0
  np.testing.assert_array_equal(data.plan(data.arrays, key, 2, 5)[:2], plan[2:4])
  train_x = np.asarray(data.arrays['train_x'])
  idx = [int(np.argmin(np.abs(train_x - x).sum(1))) for x in xs]
  assert sorted(idx) == list(range(64))
  c.data.mode = 'online'
  online = data_lib.make_data(c.data, 8, 16, jnp.float32)
  xs = np.concatenate([np.asarray(online.batch(online.arrays, key, s, None)[0]) for s in range(8)])
  assert len({x.tobytes() for x in xs}) == 8 * 16
  held_out = {x.tobytes() for x in np.asarray(online.arrays['measure_x'])}
  assert not held_out & {x.tobytes() for x in xs}


def test_centered_output_starts_at_zero_and_still_trains():
  """[G]'s centering f − f0: at init the output is exactly 0, so the MSE on one-hot targets is 1/C."""
  c = shrunk_quickstart()
  c.loss = 'mse'
  data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float32)
  model = models.make_model(c.model, data.spec, 16, 3, pz.Parameterization('mup', center=True, lr_convention='g'),
                            jnp.float32)
  _, metrics, diverged = lanes.run_sweep(model, data, c, train.lane_grid((0.5,), (10.0,), (0,), jnp.float32))
  assert diverged[0] == -1
  np.testing.assert_allclose(metrics['eval_loss'][0, 0], 0.1, rtol=1e-6)
  assert metrics['train_loss'][0, -1] < 0.1
