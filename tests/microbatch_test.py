"""A step over micro-batches (program.microbatches) is the whole-batch step to float rounding; 'auto' splits only
where it was measured to pay (convolutional models on CPU whose activations overflow the caches); models with batch
statistics refuse it. Host lanes (program.lanes='host': one lane's programs called lane by lane) compute what the
other program choices compute, compile each program once, and retire lanes without compiling again."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superconsistency import config as config_lib
from superconsistency import data as data_lib
from superconsistency import distributed
from superconsistency import lanes
from superconsistency import models
from superconsistency import parameterization as pz
from superconsistency import train
from conftest import load_config, shrunk_quickstart


def _figure1(width, dtype=jnp.float32, batch=16):
  c = load_config('figure1')
  c.data.num_train, c.data.num_eval, c.measure.loss_batch = 256, 64, 64
  c.data.batch_size, c.measure.sharpness_batch = batch, 16
  c.dtype = jnp.dtype(dtype).name
  data = data_lib.make_data(c.data, 8, 64, dtype)
  model = models.make_model(c.model, data.spec, width, 1, pz.Parameterization('mup'), dtype)
  return c, data, model


def _three_steps(model, data, c, microbatches, lr=0.5):
  program = train.make_lane_program(model, data, c, microbatches=microbatches)
  hp = jax.tree.map(lambda a: a[0], train.lane_grid((lr,), (1.0,), (0,), jnp.dtype(c.dtype)))
  state, step = jax.jit(program.init)(hp), jax.jit(program.step)
  for _ in range(3):
    state = step(state, hp, data.arrays)
  return state


@pytest.mark.parametrize('name', ['figure1', 'quickstart'])
def test_micro_batched_steps_equal_whole_batch_steps_in_float64(name):
  with jax.enable_x64(True):
    if name == 'figure1':
      c, data, model = _figure1(8, jnp.float64)
    else:
      c = shrunk_quickstart()
      c.dtype = 'float64'
      data = data_lib.make_data(c.data, c.num_steps, c.measure.loss_batch, jnp.float64)
      model = models.make_model(c.model, data.spec, 16, 3, pz.Parameterization('mup'), jnp.float64)
    whole, split = _three_steps(model, data, c, 1), _three_steps(model, data, c, 4)
    moved = 0.0
    for n, w in whole.params.items():
      np.testing.assert_allclose(split.params[n], w, rtol=1e-12, atol=1e-14, err_msg=n)
      moved = max(moved, float(jnp.abs(w - whole.params0[n]).max()))
    assert moved > 1e-3   # the steps really moved the weights (the comparison can fail)
    np.testing.assert_allclose(float(split.loss_sum), float(whole.loss_sum), rtol=1e-12)


def test_micro_batches_trace_the_convolutions_as_matmuls_on_cpu():
  c, data, model = _figure1(8)
  params = model.init(jax.random.PRNGKey(0))
  x = data.arrays['eval_x'][:4]
  jaxpr = lambda: str(jax.make_jaxpr(lambda p: model.apply(p, x))(params))
  assert 'conv_general_dilated' in jaxpr()
  with models.device_loop():
    assert 'conv_general_dilated' not in jaxpr()
    in_loop = model.apply(params, x)
  np.testing.assert_allclose(in_loop, model.apply(params, x), rtol=1e-5, atol=1e-6)


def test_auto_micro_batches_split_where_the_working_set_overflows_the_caches_only():
  mesh = distributed.make_mesh(load_config('figure1').mesh)
  for width, batch in ((256, 128), (64, 128), (16, 128), (256, 16)):
    c, data, model = _figure1(width, batch=batch)
    choice = lanes.choose_program(model, data, c, mesh)
    per_example = lanes.working_set_bytes(model, data)
    # conv_0's output plus the larger patch matrix (conv_0's: 16×16 positions × 3·3·3; conv_1's: 2×2 × 3·3·width)
    assert per_example == (16 * 16 * width + max(16 * 16 * 27, 2 * 2 * 9 * width)) * 4
    m = choice.microbatches
    assert batch % m == 0 and batch // m * per_example <= lanes.MICROBATCH_BYTES
    # the fewest that fit: one micro-batch fewer (the next divisor down) would not
    fewer = [k for k in range(1, m) if batch % k == 0]
    assert not fewer or batch // fewer[-1] * per_example > lanes.MICROBATCH_BYTES
    assert (m > 1) == (batch * per_example > lanes.MICROBATCH_BYTES), (width, batch, m)
  # an MLP (no convolutions) stays whole under auto; a number in the config is applied
  q = shrunk_quickstart()
  q_data = data_lib.make_data(q.data, q.num_steps, q.measure.loss_batch, jnp.float32)
  mlp = models.make_model(q.model, q_data.spec, 16, 3, pz.Parameterization('mup'), jnp.float32)
  assert lanes.choose_program(mlp, q_data, q, mesh).microbatches == 1
  q.program.microbatches = 2
  assert lanes.choose_program(mlp, q_data, q, mesh).microbatches == 2


def test_micro_batches_are_refused_for_batch_statistics_and_for_uneven_splits():
  c = load_config('bn_train')
  c.widths, c.depths = (16,), (4,)
  c.data.batch_size = 16
  c.program.microbatches = 2
  data = data_lib.make_data(c.data, 4, c.measure.loss_batch, jnp.float32)
  bn = models.make_model(c.model, data.spec, 16, 4, pz.Parameterization(c.parameterizations[0]), jnp.float32)
  assert not bn.per_example
  with pytest.raises(ValueError, match='microbatches=2.*independent'):
    lanes.choose_program(bn, data, c, distributed.make_mesh(c.mesh))
  f = load_config('figure1')
  f.program.microbatches = 3   # batch 128
  with pytest.raises(config_lib.ConfigError, match='program.microbatches.*divides data.batch_size'):
    config_lib.validate(f)


def test_host_lanes_retire_without_compiling_again_and_keep_the_remaining_lane_bit_for_bit():
  c, data, model = _figure1(8)
  c.num_steps, c.measure_every, c.select_step = 6, 2, 2
  c.program.lanes, c.program.steps = 'host', 'host'
  hp = train.lane_grid((0.1, 0.5, 2.0), (1.0,), (0,), jnp.float32)
  mesh = distributed.make_mesh(c.mesh)
  full_sweep = lanes.compile_sweep(model, data, c, hp, mesh)
  _, full, _ = lanes.run_sweep(None, data, c, None, sweep=full_sweep)
  sweep = lanes.compile_sweep(model, data, c, hp, mesh)
  budgets = np.array([2, 6, 2])
  _, retired, _ = lanes.run_sweep(None, data, c, None, sweep=sweep, budgets=budgets)
  for k in train.METRICS:
    np.testing.assert_array_equal(retired[k][1], full[k][1], err_msg=k)   # the same program: bit for bit
    np.testing.assert_array_equal(retired[k][[0, 2], :2], full[k][[0, 2], :2], err_msg=k)
    assert np.all(np.isnan(retired[k][[0, 2], 2:])), k
  assert sweep.lane_steps() == lanes.LaneSteps(run=3 * 2 + 1 * 4, saved=3 * 6 - 10)
  programs = sweep._single   # init, plan, step, measure: each compiled once, called per lane
  assert sorted(programs) == ['init', 'measure', 'plan', 'step']
  assert all(p.compiled is not None for p in programs.values())
  # per lane: init; a plan and 2 steps per chunk; a measurement at the start and after each chunk
  assert {n: p.calls for n, p in programs.items()} == dict(init=3, plan=3 + 1 + 1, step=3 * 2 + 4,
                                                            measure=3 + 3 + 1 + 1)
  assert not np.allclose(full['train_loss'][0], full['train_loss'][2])


def test_host_lanes_refuse_a_multi_device_sweep_axis():
  c, data, model = _figure1(8)
  c.program.lanes = 'host'

  class Mesh:   # what choose_program reads of a mesh
    shape = {'sweep': 2, 'data': 1}
  with pytest.raises(ValueError, match="program.lanes='host'.*sweep axis"):
    lanes.choose_program(model, data, c, Mesh())


def test_a_micro_batched_programs_measurement_uses_the_same_matmul_convolutions_and_values_in_float64():
  """The measurement of a micro-batched program is traced like its micro-batches (models.device_loop): no XLA
  convolution left on CPU, and the same loss, sharpness and eval metrics as the whole-batch program's."""
  with jax.enable_x64(True):
    c, data, model = _figure1(8, jnp.float64)
    state = _three_steps(model, data, c, 1)
    hp = jax.tree.map(lambda a: a[0], train.lane_grid((0.5,), (1.0,), (0,), jnp.float64))
    got = {}
    for m in (1, 4):
      measure = train.make_lane_program(model, data, c, microbatches=m).measure
      jaxpr = str(jax.make_jaxpr(measure)(state, hp, data.arrays, 0))
      assert ('conv_general_dilated' in jaxpr) == (m == 1 or jax.default_backend() != 'cpu'), m
      got[m] = jax.jit(measure)(state, hp, data.arrays, 0)[1]
  assert float(got[1]['sharpness']) > 0
  for name, value in got[1].items():
    np.testing.assert_allclose(got[4][name], value, rtol=1e-10, atol=1e-14, err_msg=name)
