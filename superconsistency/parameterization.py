"""Parameterizations as a table of exponents: init scale, forward multiplier and learning rates per layer kind.

Every weight is stored raw and the forward pass multiplies it by a constant ("multiplier form", see
docs/parameterizations.md). Each parameterization is one `Row` of `ROWS`: per layer kind, monomials in the fan-in
n, the width N, the number of residual blocks L (with an exponent that may depend on the Depth-μP α) and the
readout strength γ0. The functions below only evaluate those monomials, and `table()` renders them, so adding a
parameterization is adding one row. `python -m superconsistency.parameterization` prints the table.

A `Parameterization` is frozen and hashable so models take it as a static argument; the base learning rate η0
and γ0 are traced numbers that a sweep vmaps over, so they are *not* part of it.

Layer kinds:
  input    first layer, fan-in fixed by the data (D, or C_in·k·k)
  hidden   width-to-width layer that is not inside a residual branch (e.g. a stride-2 conv between stages)
  branch   a layer inside a residual branch  x + β·L^(−α)·F(x)
  readout  last layer, fan-in ∝ width N, output dimension fixed
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from fractions import Fraction

LAYER_KINDS = ('input', 'hidden', 'branch', 'readout')
LR_CONVENTIONS = ('sc', 'g')
OPTIMIZERS = ('sgd', 'adam')
HALF = Fraction(1, 2)


@dataclasses.dataclass(frozen=True)
class Power:
  """The monomial γ0^gamma0 · n^fan_in · N^width · L^(depth + depth_alpha·α), exponents rational."""
  gamma0: Fraction = Fraction(0)
  fan_in: Fraction = Fraction(0)
  width: Fraction = Fraction(0)
  depth: Fraction = Fraction(0)
  depth_alpha: Fraction = Fraction(0)

  def __post_init__(self):
    for f in dataclasses.fields(self):
      object.__setattr__(self, f.name, Fraction(getattr(self, f.name)))

  def times(self, other: 'Power') -> 'Power':
    return Power(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

  def uses(self) -> set:
    used = {f.name for f in dataclasses.fields(self) if getattr(self, f.name)}
    return (used - {'depth_alpha'}) | ({'depth'} if self.depth_alpha else set())


ONE = Power()
# Every model divides its output by γ0 in the forward pass (γ0 is traced, so the model applies it, not
# forward_multiplier); table() shows it in the readout's multiplier.
READOUT_OUTPUT = Power(gamma0=-1)
# Residual branches of a depth-scaled row are multiplied by β·L^(−α).
BRANCH_SCALE = Power(depth_alpha=-1)
# What each column may depend on: the arguments of the function that evaluates it.
COLUMN_SYMBOLS = dict(init={'fan_in'}, forward={'fan_in', 'width'}, sgd={'gamma0', 'width', 'depth'},
                      adam={'gamma0', 'width', 'depth'}, adam_grad={'width'})


def per_kind(every: Power, **overrides: Power) -> dict:
  """{kind: Power}: `every` for each layer kind, except the kinds named in overrides."""
  unknown = set(overrides) - set(LAYER_KINDS)
  if unknown:
    raise ValueError(f'unknown layer kind(s) {sorted(unknown)}; allowed: {", ".join(LAYER_KINDS)}')
  return {k: overrides.get(k, every) for k in LAYER_KINDS}


@dataclasses.dataclass(frozen=True)
class Row:
  """One parameterization. Columns are {kind: Power}:

  init       std of the raw weights at init
  forward    constant the forward pass multiplies the raw weight by (the readout is also divided by γ0)
  sgd, adam  raw learning rate / η0. Their γ0 factors apply in lr_convention 'sc' only; 'g' drops them.
  adam_grad  factor on the gradient before Adam, so that Adam's fixed ε shrinks with width
  mean_field: the μP family (vanishing readout at init; models read it, e.g. attention logits q·k/d).
  depth_scaled: residual branches are multiplied by β·L^(−α) (needs a model with residual branches).
  alpha: a fixed α (e.g. CompleteP's 1); None takes the α of the config (Parameterization.alpha).
  """
  name: str
  mean_field: bool
  init: dict
  forward: dict
  sgd: dict
  adam: dict
  adam_grad: dict
  depth_scaled: bool = False
  alpha: float | None = None

  def __post_init__(self):
    for column, allowed in COLUMN_SYMBOLS.items():
      powers = getattr(self, column)
      if set(powers) != set(LAYER_KINDS):
        raise ValueError(f'row {self.name!r}: column {column} must give every layer kind {LAYER_KINDS}')
      for kind, power in powers.items():
        extra = power.uses() - allowed
        if extra:
          raise ValueError(f'row {self.name!r}: {column}[{kind}] uses {sorted(extra)}; allowed: {sorted(allowed)}')


SP = Row('sp', mean_field=False, init=per_kind(Power(fan_in=-HALF)), forward=per_kind(ONE),
         sgd=per_kind(Power(gamma0=2)), adam=per_kind(ONE), adam_grad=per_kind(ONE))
NTK = Row('ntk', mean_field=False, init=per_kind(ONE), forward=per_kind(Power(fan_in=-HALF)),
          sgd=per_kind(Power(gamma0=2)), adam=per_kind(ONE), adam_grad=per_kind(ONE))
MUP = Row('mup', mean_field=True, init=per_kind(ONE),
          forward=per_kind(Power(fan_in=-HALF), readout=Power(fan_in=-HALF, width=-HALF)),
          sgd=per_kind(Power(gamma0=2, width=1)),
          adam=per_kind(Power(width=-HALF), input=ONE, readout=Power(gamma0=1)),
          adam_grad=per_kind(Power(width=1), hidden=Power(width=Fraction(3, 2)), branch=Power(width=Fraction(3, 2))))
# Depth-μP: only the weights inside residual branches feel β·L^(−α), so only they get a depth factor:
# SGD × L^(2α−1), Adam ÷ L^(1−α).
DEPTH_MUP = dataclasses.replace(
    MUP, name='depth_mup', depth_scaled=True,
    sgd=per_kind(Power(gamma0=2, width=1), branch=Power(gamma0=2, width=1, depth=-1, depth_alpha=2)),
    adam={**MUP.adam, 'branch': Power(width=-HALF, depth=-1, depth_alpha=1)})
# CompleteP (Dey et al. 2025): Depth-μP at α = 1, whatever the config's α.
COMPLETEP = dataclasses.replace(DEPTH_MUP, name='completep', alpha=1.0)

ROWS = (SP, NTK, MUP, DEPTH_MUP, COMPLETEP)
NAMES = tuple(r.name for r in ROWS)
assert len(set(NAMES)) == len(NAMES), NAMES


def row(name: str) -> Row:
  for r in ROWS:   # read at call time, so a test may extend ROWS
    if r.name == name:
      return r
  raise ValueError(f'unknown parameterization {name!r}; allowed: {", ".join(r.name for r in ROWS)}')


@dataclasses.dataclass(frozen=True)
class Parameterization:
  """What a parameterization decides. Hashable: pass it as a static argument.

  name: one of NAMES.
  alpha, beta: residual branches of a depth-scaled row are multiplied by beta * depth**(-alpha). A row that fixes α
    (completep: 1) overrides the alpha given here, so `.alpha` is always the α actually used.
  center: output is f(x; θ) − f(x; θ0), with θ0 the frozen initial parameters ([G]).
  lr_convention: 'sc' — raw SGD rate η0·γ0²·N under μP ([SC]); 'g' — η0·N with no γ0 factor ([G]).
  """
  name: str = 'mup'
  alpha: float = 0.5
  beta: float = 1.0
  center: bool = False
  lr_convention: str = 'sc'

  def __post_init__(self):
    r = row(self.name)
    if self.lr_convention not in LR_CONVENTIONS:
      raise ValueError(f'unknown lr_convention {self.lr_convention!r}; allowed: {", ".join(LR_CONVENTIONS)}')
    if r.alpha is not None:
      object.__setattr__(self, 'alpha', float(r.alpha))

  @property
  def row(self) -> Row:
    return row(self.name)

  @property
  def mean_field(self) -> bool:
    return self.row.mean_field

  @property
  def depth_scaled(self) -> bool:
    """Residual branches are scaled by β·L^(−α): the model must have residual branches."""
    return self.row.depth_scaled


def _power_of(base, e: Fraction):
  """base^e for e > 0, written as the code before the table was (√ by math.sqrt, integer powers by **)."""
  if e == 1:
    return base
  if e == HALF and isinstance(base, (int, float)):
    return math.sqrt(base)
  if e.denominator == 1:
    return base ** int(e)
  return base ** float(e)


def _factors(power: Power, alpha: float, fan_in=1, width=1, depth=1) -> tuple:
  """The monomial's factors after γ0, in the order _evaluate applies them: for n, N and L, (value, True) to
  multiply by, (value, False) to divide by, or None where the exponent is 0. lr_multiplier_lifted lifts the same
  list into a program's inputs."""
  slots = [(_power_of(base, abs(e)), e > 0) if e else None
           for base, e in ((fan_in, power.fan_in), (width, power.width))]
  a, b = power.depth, power.depth_alpha
  if b:   # exponent a + b·α: × L^(a+bα) if that is >= 0 at α = 1/2, else ÷ L^(−a−bα), a float as α is
    up = _up_at_half(a, b)
    slots.append((depth ** ((float(a) + float(b) * alpha) if up else (float(-a) + float(-b) * alpha)), up))
  else:
    slots.append((_power_of(depth, abs(a)), a > 0) if a else None)
  return tuple(slots)


def _evaluate(power: Power, alpha: float, gamma0=1.0, fan_in=1, width=1, depth=1):
  """The monomial's value, left to right over γ0, n, N, L: positive exponents multiply, negative ones divide.

  This order and form (1/√n then ÷√N; γ0² · N; then × L^(2α−1) or ÷ L^(1−α), for every α) reproduce the floats
  of the hand-written rules this table replaced, for traced γ0 too."""
  m = None   # γ0 is returned as given; an integer size alone counts as a float (it was 1.0 * N)
  if power.gamma0:
    m = _power_of(gamma0, power.gamma0) if power.gamma0 > 0 else 1.0 / _power_of(gamma0, -power.gamma0)
  for slot in _factors(power, alpha, fan_in, width, depth):
    if slot is None:
      continue
    f, up = slot
    if m is None:
      m = (float(f) if isinstance(f, int) else f) if up else 1.0 / f
    else:
      m = m * f if up else m / f
  return 1.0 if m is None else m


def _up_at_half(a: Fraction, b: Fraction) -> bool:
  """Whether L^(a + b·α) is written in the numerator (as L^(2α−1)) rather than the denominator (as 1/L^(1−α))."""
  return a + b * HALF >= 0


def _check_kind(kind):
  if kind not in LAYER_KINDS:
    raise ValueError(f'unknown layer kind {kind!r}; allowed: {", ".join(LAYER_KINDS)}')


def init_std(p: Parameterization, kind: str, fan_in: int) -> float:
  """Std of the raw weights (SP stores the scale in the weights; the others draw N(0, 1))."""
  _check_kind(kind)
  return _evaluate(p.row.init[kind], p.alpha, fan_in=fan_in)


def forward_multiplier(p: Parameterization, kind: str, fan_in: int, width: int) -> float:
  """Constant the forward pass multiplies the raw weight by. The readout's further 1/γ0 is applied by the model.

  For the readout, μP adds 1/sqrt(width) on top of NTP's 1/sqrt(fan_in): for an MLP fan_in = N, giving 1/N.
  """
  _check_kind(kind)
  return _evaluate(p.row.forward[kind], p.alpha, fan_in=fan_in, width=width)


def branch_multiplier(p: Parameterization, depth: int) -> float:
  """Multiplier of a residual branch; depth = number of residual blocks L. 1 unless the row is depth-scaled."""
  if p.depth_scaled:
    return p.beta * depth ** (-p.alpha)
  return 1.0


def _rate_power(p: Parameterization, kind: str, optimizer: str) -> Power:
  _check_kind(kind)
  if optimizer not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer {optimizer!r}; allowed: {", ".join(OPTIMIZERS)}')
  power = getattr(p.row, optimizer)[kind]
  return power if p.lr_convention == 'sc' else dataclasses.replace(power, gamma0=0)


def lr_multiplier(p: Parameterization, kind: str, optimizer: str, width: int, depth: int,
                  gamma0: float | object = 1.0):
  """Raw learning rate of a layer = η0 · lr_multiplier(...). gamma0 may be a traced value.

  SGD: μP and Depth-μP γ0²·N ('sc') or N ('g'); NTP and SP γ0² ('sc') or 1. Depth-scaled rows multiply the
       branch layers (only them) by L^(2α−1).
  Adam (a step moves each raw entry by O(η)): μP keeps every layer's feature change O(1) in N with η0 for the
       input, η0/sqrt(N) for hidden and branch layers and η0·γ0 ('sc') for the readout; depth-scaled rows divide
       branch rates by L^(1−α). NTP and SP use η0 everywhere. Verified by coordinate checks.
  """
  return _evaluate(_rate_power(p, kind, optimizer), p.alpha, gamma0=gamma0, width=width, depth=depth)


def lr_multiplier_lifted(p: Parameterization, kind: str, optimizer: str, width: int, depth: int) -> tuple:
  """lr_multiplier's γ0 exponent and its numbers apart from γ0, as a program can take them as inputs:
  (exponent, factors) with lr_from_lifted(γ0, exponent, factors) == lr_multiplier(..., γ0) bit for bit.

  With a γ0 exponent ≠ 0 the factors are (a, b) pairs for n, N and L in the order _evaluate applies them, each
  step m·a/b with the other of the pair 1 (x·1 and x/1 are exact), so every row with the same γ0 exponent computes
  its rate with the same operations; with exponent 0 the multiplier is one number, the only factor."""
  power = _rate_power(p, kind, optimizer)
  if power.gamma0 == 0:
    return Fraction(0), (float(_evaluate(power, p.alpha, width=width, depth=depth)),)
  factors = []
  for slot in _factors(power, p.alpha, width=width, depth=depth):
    f = 1.0 if slot is None else float(slot[0])
    factors += [f, 1.0] if slot is not None and slot[1] else [1.0, f]
  return power.gamma0, tuple(factors)


def lr_from_lifted(gamma0, exponent: Fraction, factors):
  """The learning-rate multiplier from lr_multiplier_lifted's (exponent, factors); factors may be traced."""
  if exponent == 0:
    return factors[0]
  m = _power_of(gamma0, exponent) if exponent > 0 else 1.0 / _power_of(gamma0, -exponent)
  for a, b in zip(factors[::2], factors[1::2]):
    m = m * a / b
  return m


def adam_grad_scale(p: Parameterization, kind: str, width: int) -> float:
  """Factor applied to a layer's gradient before Adam, so that a fixed ε shrinks with width.

  Adam is invariant to rescaling a gradient except through ε; under μP raw gradients are O(1/N) for the input and
  readout and O(N^-1.5) for hidden layers, so multiplying them by N (resp. N^1.5) makes ε act as ε/N (ε/N^1.5).
  """
  _check_kind(kind)
  return _evaluate(p.row.adam_grad[kind], p.alpha, width=width)


# ---- the Markdown table, rendered from the exponents ----
SYMBOLS = dict(gamma0='γ0', fan_in='n', width='N', depth='L')
SUPERSCRIPTS = {2: '²', 3: '³'}


def _alpha_form(a: Fraction, b: Fraction) -> str:
  """'a + b·α' as text, e.g. 2α−1, 1−α, α."""
  alpha = {1: 'α', -1: '−α'}.get(b, f'{b}α'.replace('-', '−'))
  if not a:
    return alpha
  const = str(abs(a))
  return f'{alpha}{"+" if a > 0 else "−"}{const}' if b > 0 else f'{a}{alpha}'.replace('-', '−', 1)


def _factor(symbol: str, e) -> str:
  """symbol^e for e > 0 (a Fraction, or (a, b) for a + b·α)."""
  if isinstance(e, tuple):
    text = _alpha_form(*e)
    return f'{symbol}^{text}' if text == 'α' else f'{symbol}^({text})'
  if e == 1:
    return symbol
  if e == HALF:
    return f'√{symbol}'
  if e.denominator == 1:
    return symbol + SUPERSCRIPTS.get(int(e), f'^{e}')
  return f'{symbol}^({e})'


def render(power: Power, alpha: float | None = None, prefix: str = '') -> str:
  """The monomial as text, e.g. 1/(γ0·√n·√N) or η0·γ0²·N. alpha: substitute a fixed α (else α stays symbolic,
  on the side of the fraction that _evaluate uses)."""
  up, down = [prefix] if prefix else [], []
  for name in ('gamma0', 'fan_in', 'width'):
    e = getattr(power, name)
    if e:
      (up if e > 0 else down).append(_factor(SYMBOLS[name], abs(e)))
  a, b = power.depth, power.depth_alpha
  if b and alpha is not None:
    a, b = a + b * Fraction(alpha), Fraction(0)
  if b:
    positive = _up_at_half(a, b)
    (up if positive else down).append(_factor('L', (a, b) if positive else (-a, -b)))
  elif a:
    (up if a > 0 else down).append(_factor('L', abs(a)))
  num = '·'.join(up) or '1'
  if not down:
    return num
  return f'{num}/{down[0]}' if len(down) == 1 else f'{num}/({"·".join(down)})'


def _rate_cell(power: Power, alpha) -> str:
  sc = render(power, alpha, 'η0')
  if not power.gamma0:
    return sc
  return f'{sc} (sc); {render(dataclasses.replace(power, gamma0=0), alpha, "η0")} (g)'


HEAD = ('parameterization', 'layer', 'raw init std', 'forward multiplier', 'residual branch ×', 'SGD rate',
        'Adam rate', 'Adam gradient scale')


def table(rows=None) -> str:
  """The parameterization table as Markdown (symbolic), one line per parameterization and layer kind, rendered
  from the exponents of `rows` (default: ROWS)."""
  lines = ['| ' + ' | '.join(HEAD) + ' |', '|' + '---|' * len(HEAD)]
  for r in ROWS if rows is None else rows:
    for kind in LAYER_KINDS:
      forward = r.forward[kind].times(READOUT_OUTPUT) if kind == 'readout' else r.forward[kind]
      branch = (render(BRANCH_SCALE, r.alpha, 'β') if r.depth_scaled else '1') if kind == 'branch' else ''
      cells = (r.name, kind, render(r.init[kind]), render(forward), branch, _rate_cell(r.sgd[kind], r.alpha),
               _rate_cell(r.adam[kind], r.alpha), render(r.adam_grad[kind]))
      lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def update_doc(path: str) -> bool:
  """Replaces the table in the Markdown file `path` (the lines from its header row to the first non-table line)
  by table(). Returns whether the file changed."""
  with open(path, encoding='utf-8') as f:
    lines = f.read().split('\n')
  header = '| ' + ' | '.join(HEAD) + ' |'
  if header not in lines:
    raise ValueError(f'{path} holds no parameterization table (no line {header!r})')
  start = end = lines.index(header)
  while end < len(lines) and lines[end].startswith('|'):
    end += 1
  new = lines[:start] + table().split('\n') + lines[end:]
  if new == lines:
    return False
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(new))
  return True


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m superconsistency.parameterization',
      description='Print the parameterization table (Markdown) rendered from the exponents in ROWS; '
                  'docs/parameterizations.md embeds it verbatim.')
  parser.add_argument('--update', metavar='PATH', help='replace the table in this Markdown file instead of printing '
                      'it, e.g. --update docs/parameterizations.md')
  args = parser.parse_args(argv)
  if args.update:
    print(f'{args.update}: ' + ('table updated' if update_doc(args.update) else 'table already current'))
  else:
    print(table())


if __name__ == '__main__':
  main(sys.argv[1:])
