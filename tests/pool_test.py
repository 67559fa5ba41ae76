"""models.max_pool on CPU (reshape + max) against XLA's reduce_window pooling: the same values and, in float64 on
inputs without ties, the same gradients; a ragged edge is dropped the same way."""
import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import models


def test_reshape_pool_equals_reduce_window_in_values_and_gradients():
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 9, 10, 4)))   # 9×10: a ragged edge in both axes
    w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 5, 4)))
    f = lambda x, backend: jnp.sum(w * jnp.tanh(models.max_pool(x, 2, backend)))
    ours, native = models.max_pool(x, 2, 'cpu'), models.max_pool(x, 2, 'native')
    assert ours.shape == native.shape == (3, 4, 5, 4)
    np.testing.assert_array_equal(ours, native)
    np.testing.assert_allclose(jax.grad(f)(x, 'cpu'), jax.grad(f)(x, 'native'), rtol=1e-14, atol=0)
    assert float(jnp.abs(jax.grad(f)(x, 'cpu')).sum()) > 0


def test_the_cpu_backend_takes_the_reshape_and_others_reduce_window():
  x = jnp.ones((1, 4, 4, 1))
  cpu = str(jax.make_jaxpr(lambda x: models.max_pool(x, 2, 'cpu'))(x))
  gpu = str(jax.make_jaxpr(lambda x: models.max_pool(x, 2, 'gpu'))(x))
  assert 'reduce_max' in cpu and 'reduce_window' not in cpu
  assert 'reduce_window_max' in gpu
