"""Floating-point operations of a traced program, counted from its jaxpr: the matrix products (dot_general) and
convolutions, 2 FLOPs per multiply-add, which is what a matmul peak is quoted in. XLA's own cost analysis counts a
loop's body once; here a `scan` counts length × its body, a `cond` its costliest branch, and a `while` loop (trip
count unknown when traced) its body once, which makes the count a lower bound (`exact=False`).

One kind of `cond` is counted exactly: a skippable part, `lax.cond(on, f, lambda x: x, x)`, whose other branch
passes its operands through (no equations). It counts f, or nothing with `skipped=True` (the count of a call
that skips it): a sweep's chunk skips its steps to take the step-0 measurement."""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.extend


class Count(NamedTuple):
  flops: float
  exact: bool


def _dot_flops(eqn) -> float:
  (lhs_contract, _), (lhs_batch, _) = eqn.params['dimension_numbers']
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  out = eqn.outvars[0].aval.shape
  contracted = math.prod(lhs[d] for d in lhs_contract)
  return 2.0 * math.prod(out) * contracted


def _conv_flops(eqn) -> float:
  """2 × outputs × (window × input features). An input dilated by s (the input gradient of a stride-s convolution)
  puts s − 1 zeros between its entries, so only 1/s of a window's taps per axis meet an entry: those are counted."""
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  spec = eqn.params['dimension_numbers'].rhs_spec   # (out feature, in feature, spatial...)
  per_output = math.prod(rhs[d] for d in spec[1:])
  dilated = math.prod(eqn.params.get('lhs_dilation') or (1,))
  return 2.0 * math.prod(out) * per_output / dilated


def _sub_jaxprs(value):
  if isinstance(value, jax.extend.core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jax.extend.core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def _passes_through(branch) -> bool:
  jaxpr = getattr(branch, 'jaxpr', branch)
  return not jaxpr.eqns and all(any(v is i for i in jaxpr.invars) for v in jaxpr.outvars)


def count(jaxpr, skipped: bool = False) -> Count:
  """FLOPs of a (closed) jaxpr, as defined in the module docstring."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total, exact = 0.0, True
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'scan':
      body = count(eqn.params['jaxpr'], skipped)
      total, exact = total + eqn.params['length'] * body.flops, exact and body.exact
    elif name == 'cond' and len(eqn.params['branches']) == 2 and _passes_through(eqn.params['branches'][0]):
      part = count(eqn.params['branches'][1], skipped)
      total, exact = total + (0.0 if skipped else part.flops), exact and part.exact
    elif name == 'cond':
      branches = [count(b, skipped) for b in eqn.params['branches']]
      total += max(b.flops for b in branches)
      exact = exact and all(b.exact for b in branches) and len({b.flops for b in branches}) == 1
    elif name == 'while':
      body = count(eqn.params['body_jaxpr'], skipped)
      total += body.flops + count(eqn.params['cond_jaxpr'], skipped).flops
      exact = exact and body.flops == 0
    else:
      for value in eqn.params.values():
        for sub in _sub_jaxprs(value):
          inner = count(sub, skipped)
          total, exact = total + inner.flops, exact and inner.exact
  return Count(total, exact)
