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


def test_cpu_convolution_equals_xlas_in_values_gradients_and_hessian_products():
  """models._conv on CPU (XLA's convolution with a slices-matmul input term in its custom JVP) against XLA's own,
  in float64: strides 1-4 (4 > the kernel: windows that do not overlap), odd sizes (SAME padding uneven)."""
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    for h, cin, cout, stride in ((9, 3, 5, 2), (8, 4, 6, 4), (7, 2, 3, 1), (10, 3, 4, 3)):
      x = jnp.asarray(rng.normal(size=(2, h, h + 1, cin)))
      w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)))
      v = jnp.asarray(rng.normal(size=w.shape))
      f = lambda w, x, backend: jnp.sum(jnp.sin(models._conv(w, x, 0.7, stride, backend)))
      np.testing.assert_allclose(models._conv(w, x, 0.7, stride, 'cpu'), models._conv(w, x, 0.7, stride, 'gpu'),
                                 rtol=1e-13, atol=0)
      for arg in (0, 1):   # weights, input
        ours, native = jax.grad(f, arg)(w, x, 'cpu'), jax.grad(f, arg)(w, x, 'gpu')
        np.testing.assert_allclose(ours, native, rtol=1e-12, atol=1e-12)
        assert float(jnp.abs(ours).sum()) > 0
      hvp = lambda backend: jax.jvp(lambda w: jax.grad(f)(w, x, backend), (w,), (v,))[1]
      np.testing.assert_allclose(hvp('cpu'), hvp('gpu'), rtol=1e-12, atol=1e-12)


def test_the_cpu_convolution_has_no_base_dilated_convolution_in_its_input_gradient():
  """What the custom JVP is for: the gradient wrt the input of a strided convolution is a matmul and pads on CPU,
  where XLA's own is a base-dilated (lhs_dilation) convolution."""
  x, w = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 2))
  grad_x = lambda backend: str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(models._conv(w, x, 1.0, 4, backend))))(x))
  assert 'lhs_dilation=(4, 4)' in grad_x('gpu')
  assert 'lhs_dilation=(4, 4)' not in grad_x('cpu') and 'dot_general' in grad_x('cpu')
