"""Benchmark: [SC]'s SimpleConvNet gradient with XLA's convolution and pooling against a convolution written as
strided slices + one matmul and models.max_pool (a reshape + max on CPU), in all four pairings.

On XLA's CPU backend the gradient of `reduce_window` max-pooling is a select-and-scatter, and the weight gradient of
a vmapped convolution (one set of weights per sweep lane) a grouped convolution: both were suspected slow. The
slices convolution writes the SAME convolution as a matmul over the k·k strided shifts of the input (its gradient
is a matmul and pads); models.max_pool writes the pooling as a reshape and a max reduction. This measures, side by
side in one run, the jitted vmapped gradient of the loss (5 lanes, batch 128, 32×32×3 inputs, widths 64 and 256)
in the four pairings: median of 5 timed calls after a warm-up, the cost of the gradient relative to the forward
pass (loss alone) of the same pairing, and the max |Δ| against the all-XLA gradient. It decided models.py's
choice: XLA's convolution with the reshape pool.

    python benchmarks/conv.py                  # writes benchmarks/conv.md; about a minute on 2 cores
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from machine import machine_info, machine_table, write_report  # noqa: E402

from superconsistency import models  # noqa: E402


def xla_conv(w, x, mult, stride):
  return mult * jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def slices_conv(w, x, mult, stride):
  """SAME-padded k×k convolution as one matmul over the k·k strided shifts of the input (im2col by slicing): equal
  to lax.conv_general_dilated with SAME padding; its gradient is a matmul and strided pads. (models.py used it
  until this benchmark showed XLA's own convolution faster once the pooling's gradient was fixed.)"""
  kh, kw, cin, cout = w.shape
  h, wd = x.shape[1], x.shape[2]
  oh, ow = -(-h // stride), -(-wd // stride)
  ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
  x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  shifts = [jax.lax.slice(x, (0, i, j, 0), (x.shape[0], i + (oh - 1) * stride + 1, j + (ow - 1) * stride + 1, cin),
                          (1, stride, stride, 1)) for i in range(kh) for j in range(kw)]
  patches_BxHxWxK = jnp.concatenate(shifts, axis=-1) if len(shifts) > 1 else shifts[0]
  return mult * (patches_BxHxWxK @ w.reshape(kh * kw * cin, cout))


def native_pool(x, size):
  return models.max_pool(x, size, backend='native')   # reduce_window, as on GPU/TPU


def loss_fn(conv, pool):
  def loss(w0, w1, wr, x, y):
    h = jax.nn.relu(conv(w0, x, 0.2, 2))
    h = pool(h, 2)
    h = pool(jax.nn.relu(conv(w1, h, 0.05, 4)), 2)
    logits = h.reshape(h.shape[0], -1) @ wr
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, -1))
  return loss


def timed(fn, *args, repeats=5):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'conv.md'))
  parser.add_argument('--widths', default='64,256')
  args = parser.parse_args()
  lanes, batch = 5, 128
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)), jnp.float32)
  y = jax.nn.one_hot(rng.integers(0, 10, batch), 10)
  rows = []
  for width in (int(w) for w in args.widths.split(',')):
    w0 = jnp.asarray(rng.normal(size=(lanes, 3, 3, 3, width)), jnp.float32)
    w1 = jnp.asarray(rng.normal(size=(lanes, 3, 3, width, width)), jnp.float32)
    wr = jnp.asarray(rng.normal(size=(lanes, width, 10)), jnp.float32) / width
    grads, seconds, ratio = {}, {}, {}
    for name, conv, pool in (('xla', xla_conv, native_pool), ('slices', slices_conv, native_pool),
                             ('xla+pool', xla_conv, models.max_pool), ('slices+pool', slices_conv, models.max_pool)):
      loss = loss_fn(conv, pool)
      g = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, 0, 0, None, None)))
      f = jax.jit(jax.vmap(loss, in_axes=(0, 0, 0, None, None)))
      seconds[name] = timed(g, w0, w1, wr, x, y)
      ratio[name] = seconds[name] / timed(f, w0, w1, wr, x, y)
      grads[name] = g(w0, w1, wr, x, y)
    diff = {n: max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(grads['xla'], grads[n]))
            for n in ('slices', 'xla+pool', 'slices+pool')}
    rows.append((width, seconds, ratio, diff))
  text = ['# SimpleConvNet gradient: XLA convolution and pooling vs slices + matmul and reshape + max (CPU)', '',
          *machine_table(machine_info()), "",
          f'SimpleConvNet loss gradient, jit(vmap) over {lanes} lanes, batch {batch}, 32×32×3 inputs. "grad/fwd": '
          'the gradient\'s time over the forward pass\'s, same variant.', '',
          '| width | XLA conv, XLA pool (s) | slices, XLA pool (s) | XLA conv, reshape pool (s) | slices, reshape pool '
          '(s) | grad/fwd (same order) | max relative |Δ grad| vs the first |',
          '|---|---|---|---|---|---|---|']
  for w, t, r, d in rows:
    names = ('xla', 'slices', 'xla+pool', 'slices+pool')
    text.append(f'| {w} | ' + ' | '.join(f'{t[n]:.3f}' for n in names) + ' | '
                + ' / '.join(f'{r[n]:.1f}' for n in names) + ' | '
                + ' / '.join(f'{d[n]:.1e}' for n in names[1:]) + ' |')
  text += ['', 'models.py uses XLA\'s convolution and, on CPU, the reshape pool (the third column of times).']
  write_report(args.out, '\n'.join(text) + '\n')


if __name__ == '__main__':
  main()
