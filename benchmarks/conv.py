"""Benchmark: the convolution as strided slices + one matmul (models._conv) against XLA's own convolution.

On XLA's CPU backend the weight gradient of a vmapped convolution (one set of weights per sweep lane) runs as a
grouped convolution, which is slow. models._conv writes the SAME convolution as a matmul over the k·k strided shifts
of the input, whose gradient is a matmul and pads. This measures, side by side in one run, the jitted vmapped
gradient of [SC]'s SimpleConvNet loss (5 lanes, batch 128, 32×32×3 inputs, widths 64 and 256) both ways: median of
5 timed calls after a warm-up, and the max |Δ| between the two gradients.

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


def loss_fn(conv):
  def loss(w0, w1, wr, x, y):
    h = jax.nn.relu(conv(w0, x, 0.2, 2))
    h = models._max_pool(h, 2)
    h = models._max_pool(jax.nn.relu(conv(w1, h, 0.05, 4)), 2)
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
    grads = {}
    seconds = {}
    for name, conv in (('xla', xla_conv), ('slices', models._conv)):
      g = jax.jit(jax.vmap(jax.grad(loss_fn(conv), argnums=(0, 1, 2)), in_axes=(0, 0, 0, None, None)))
      seconds[name] = timed(g, w0, w1, wr, x, y)
      grads[name] = g(w0, w1, wr, x, y)
    diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(grads['xla'], grads['slices']))
    rows.append((width, seconds['xla'], seconds['slices'], diff))
  text = ['# Convolution as slices + matmul vs XLA convolution (vmapped gradient, CPU)', '',
          *machine_table(machine_info()), "",
          f'SimpleConvNet loss gradient, jit(vmap) over {lanes} lanes, batch {batch}, 32×32×3 inputs.', '',
          '| width | XLA conv (s) | slices + matmul (s) | speed-up | max relative |Δ grad| |',
          '|---|---|---|---|---|']
  text += [f'| {w} | {a:.3f} | {b:.3f} | {a / b:.2f}× | {d:.1e} |' for w, a, b, d in rows]
  write_report(args.out, '\n'.join(text) + '\n')


if __name__ == '__main__':
  main()
