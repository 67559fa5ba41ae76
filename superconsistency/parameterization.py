"""Parameterizations as data: init scale, forward multiplier and learning-rate multiplier per layer kind.

Every weight is stored raw and the forward pass multiplies it by a constant ("multiplier form", SCIENCE.md §1).
A `Parameterization` is frozen and hashable so models take it as a static argument; the base learning rate η0
and the readout strength γ0 are traced numbers that a sweep vmaps over, so they are *not* part of it.

Layer kinds:
  input    first layer, fan-in fixed by the data (D, or C_in·k·k)
  hidden   width-to-width layer that is not a residual branch
  branch   a layer inside a residual branch  x + β·L^(−α)·F(x)
  readout  last layer, fan-in ∝ width N, output dimension fixed
"""
from __future__ import annotations

import dataclasses
import math

NAMES = ('sp', 'ntk', 'mup', 'depth_mup')
LAYER_KINDS = ('input', 'hidden', 'branch', 'readout')
LR_CONVENTIONS = ('sc', 'g')


@dataclasses.dataclass(frozen=True)
class Parameterization:
  """What a parameterization decides. Hashable: pass it as a static argument.

  name: one of NAMES.
  alpha, beta: residual branches are multiplied by beta * depth**(-alpha) (alpha=1/2 is Depth-μP).
  center: output is f(x; θ) − f(x; θ0), with θ0 the frozen initial parameters ([G]).
  lr_convention: 'sc' — raw SGD rate η0·γ0²·N under μP ([SC]); 'g' — η0·N with no γ0² factor ([G]).
  """
  name: str = 'mup'
  alpha: float = 0.5
  beta: float = 1.0
  center: bool = False
  lr_convention: str = 'sc'

  def __post_init__(self):
    if self.name not in NAMES:
      raise ValueError(f'unknown parameterization {self.name!r}; allowed: {", ".join(NAMES)}')
    if self.lr_convention not in LR_CONVENTIONS:
      raise ValueError(f'unknown lr_convention {self.lr_convention!r}; allowed: {", ".join(LR_CONVENTIONS)}')

  @property
  def mean_field(self) -> bool:
    return self.name in ('mup', 'depth_mup')


def init_std(p: Parameterization, kind: str, fan_in: int) -> float:
  """Std of the raw weights. SP stores the scale in the weights; the others draw N(0, 1)."""
  _check_kind(kind)
  return 1.0 / math.sqrt(fan_in) if p.name == 'sp' else 1.0


def forward_multiplier(p: Parameterization, kind: str, fan_in: int, width: int) -> float:
  """Constant the forward pass multiplies the raw weight by (the readout is also divided by γ0, in the model).

  For the readout, μP adds 1/sqrt(width) on top of NTP's 1/sqrt(fan_in): for an MLP fan_in = N, giving 1/N.
  """
  _check_kind(kind)
  if p.name == 'sp':
    return 1.0
  m = 1.0 / math.sqrt(fan_in)
  if kind == 'readout' and p.mean_field:
    m /= math.sqrt(width)
  return m


def branch_multiplier(p: Parameterization, depth: int) -> float:
  """Multiplier of a residual branch; depth = number of residual blocks L. Only depth_mup scales with depth."""
  if p.name == 'depth_mup':
    return p.beta * depth ** (-p.alpha)
  return 1.0


def lr_multiplier(p: Parameterization, kind: str, optimizer: str, width: int, depth: int,
                  gamma0: float | object = 1.0):
  """Raw learning rate of a layer = η0 · lr_multiplier(...). gamma0 may be a traced value.

  SGD: the whole network shares one rate. μP/Depth-μP: γ0²·N ('sc') or N ('g'); NTP and SP: γ0² ('sc') or 1.
       Depth-μP multiplies by L^(2α−1) (1 at α = 1/2).
  Adam (an Adam step moves each raw entry by O(η)): μP keeps every layer's feature change O(1) in N with
       η0 for the input layer, η0/sqrt(N) for hidden and branch layers and η0·γ0 ('sc') for the readout;
       Depth-μP divides branch rates by L^(1−α). NTP and SP use η0 everywhere. Verified by coordinate checks.
  """
  _check_kind(kind)
  gamma_sq = gamma0 ** 2 if p.lr_convention == 'sc' else 1.0
  if optimizer == 'sgd':
    m = gamma_sq * (width if p.mean_field else 1.0)
    if p.name == 'depth_mup':
      m = m * depth ** (2 * p.alpha - 1)
    return m
  if optimizer == 'adam':
    if not p.mean_field:
      return 1.0
    if kind == 'input':
      return 1.0
    if kind == 'readout':
      return gamma0 if p.lr_convention == 'sc' else 1.0
    m = 1.0 / math.sqrt(width)
    if kind == 'branch' and p.name == 'depth_mup':
      m /= depth ** (1 - p.alpha)
    return m
  raise ValueError(f'unknown optimizer {optimizer!r}; allowed: sgd, adam')


def adam_grad_scale(p: Parameterization, kind: str, width: int) -> float:
  """Factor applied to a layer's gradient before Adam, so that a fixed ε shrinks with width.

  Adam is invariant to rescaling a gradient except through ε; under μP raw gradients are O(1/N) for the input and
  readout and O(N^-1.5) for hidden layers, so multiplying them by N (resp. N^1.5) makes ε act as ε/N (ε/N^1.5).
  """
  _check_kind(kind)
  if not p.mean_field:
    return 1.0
  return width ** 1.5 if kind in ('hidden', 'branch') else float(width)


def _check_kind(kind):
  if kind not in LAYER_KINDS:
    raise ValueError(f'unknown layer kind {kind!r}; allowed: {", ".join(LAYER_KINDS)}')


def table(width: str = 'N', depth: str = 'L') -> str:
  """The parameterization table as Markdown, for the README (symbolic)."""
  rows = [
      ('sp', 'N(0,1/n)', '1', '1/γ0', 'γ0²·η0 (sc) / η0 (g)', 'η0', 'η0', 'η0'),
      ('ntk', 'N(0,1)', '1/√n', '1/(γ0√n)', 'γ0²·η0 (sc) / η0 (g)', 'η0', 'η0', 'η0'),
      ('mup', 'N(0,1)', '1/√n', '1/(γ0·√n·√N)', 'γ0²·N·η0 (sc) / N·η0 (g)', 'η0', 'η0/√N', 'γ0·η0 (sc) / η0 (g)'),
      ('depth_mup', 'N(0,1)', '1/√n; branch ×β·L^-α', '1/(γ0·√n·√N)', 'as mup × L^(2α−1)', 'η0',
       'η0/√N; branch ÷L^(1−α)', 'γ0·η0 (sc) / η0 (g)'),
  ]
  head = ('parameterization', 'raw init', 'multiplier (input, hidden)', 'readout multiplier', 'SGD rate (all layers)',
          'Adam: input', 'Adam: hidden', 'Adam: readout')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)
