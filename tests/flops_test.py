"""The FLOP counter on programs whose matrix FLOPs are known by hand, including loops, vmap, gradients, convs."""
import jax
import jax.numpy as jnp

from superconsistency import flops

B, D, N = 16, 12, 8


def _count(f, *args):
  return flops.count(jax.make_jaxpr(f)(*args))


def test_matmul_scan_vmap_and_gradient():
  x, w = jnp.ones((B, D)), jnp.ones((D, N))
  one = 2 * B * D * N
  assert _count(lambda x, w: x @ w, x, w) == (one, True)
  assert _count(lambda x, w: jax.lax.scan(lambda c, _: (c + (x @ w).sum(), None), 0.0, None, length=7)[0], x, w) \
      == (7 * one, True)
  assert _count(lambda x, w: jax.lax.fori_loop(0, 5, lambda i, c: c + (x @ w).sum(), 0.0), x, w) == (5 * one, True)
  # 3 lanes; the gradient in w of a loss of x @ w is the forward product and xᵀ·g (no gradient in x is needed)
  lanes = jnp.ones((3, D, N))
  grad = jax.vmap(jax.grad(lambda w, x: jnp.sum(jnp.tanh(x @ w))), (0, None))
  assert _count(grad, lanes, x) == (3 * 2 * one, True)


def test_cond_counts_its_costliest_branch_and_while_is_a_lower_bound():
  x, w = jnp.ones((B, D)), jnp.ones((D, N))
  one = 2 * B * D * N
  cond = lambda p, x, w: jax.lax.cond(p, lambda: (x @ w).sum() + (x @ w).sum(), lambda: 0.0)
  assert _count(cond, True, x, w) == (2 * one, False)
  loop = lambda n, x, w: jax.lax.while_loop(lambda c: c[0] < n, lambda c: (c[0] + 1, c[1] + (x @ w).sum()),
                                            (0, 0.0))[1]
  assert _count(loop, 4, x, w) == (one, False)


def test_a_skippable_part_counts_exactly_whether_run_or_skipped():
  # lax.cond(on, f, identity, s): a chunk's steps, skipped for the step-0 measurement; vmapped as a sweep runs it
  x, w = jnp.ones((B, D)), jnp.ones((D, N))
  one = 2 * B * D * N
  part = lambda s: s + (x @ (w * s)).sum(0)   # 2·B·D·N FLOPs for each lane's s (N,)
  f = lambda on, s: (jax.lax.cond(on, part, lambda s: s, s) @ jnp.ones((N, 1))).sum()
  s = jnp.ones((3, N))
  run_jaxpr = jax.make_jaxpr(jax.vmap(f, (None, 0)))(True, s)
  tail = 2 * N   # the product after the cond, per lane
  assert flops.count(run_jaxpr) == (3 * (one + tail), True)
  assert flops.count(run_jaxpr, skipped=True) == (3 * tail, True)
  # a cond whose other branch computes something stays the costliest branch, a bound
  g = lambda on, s: jax.lax.cond(on, part, lambda s: s * 2.0, s).sum()
  assert flops.count(jax.make_jaxpr(g)(True, s[0]), skipped=True) == (one, False)


def test_convolution():
  x, k = jnp.ones((2, 9, 9, 3)), jnp.ones((3, 3, 3, 5))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  out = jax.eval_shape(conv, x, k).shape
  assert out == (2, 5, 5, 5)
  assert _count(conv, x, k) == (2 * 2 * 5 * 5 * 5 * (3 * 3 * 3), True)


def test_gradient_of_a_strided_convolution_counts_the_taps_that_meet_its_input():
  """The input gradient of a stride-s convolution is a convolution of an s-dilated input: its shape says s² times
  the forward's FLOPs, but only the undilated entries are multiplied. The count divides by s² (exact away from the
  edges, where padding adds some taps): near the forward's count, far from s² times it."""
  x, k = jnp.ones((2, 34, 34, 3)), jnp.ones((4, 4, 3, 5))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (2, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  forward = _count(conv, x, k).flops
  grad_x = lambda x, k: jax.grad(lambda x: conv(x, k).sum())(x)
  assert 'lhs_dilation=(2, 2)' in str(jax.make_jaxpr(grad_x)(x, k))
  input_gradient = _count(grad_x, x, k).flops - forward   # the jaxpr keeps the forward convolution too
  assert forward <= input_gradient <= 1.25 * forward
