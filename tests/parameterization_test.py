"""The table of exponents against an independently written set of formulas (float64), the CompleteP row, the
branch-only Depth-μP SGD factor, and the generated Markdown table (every row and kind; a new row is one row; the
doc embeds it verbatim)."""
import dataclasses
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from superconsistency import parameterization as pz

MEAN_FIELD = ('mup', 'depth_mup', 'completep')
DEPTH_SCALED = ('depth_mup', 'completep')


def reference(name, kind, fan_in, width, depth, gamma0, alpha, beta, convention):
  """The rules as a researcher would write them down, in float64: {quantity: value}."""
  n, N, L = np.float64(fan_in), np.float64(width), np.float64(depth)
  if name == 'completep':
    alpha = 1.0
  mean_field, scaled, in_branch = name in MEAN_FIELD, name in DEPTH_SCALED, kind == 'branch'
  g_rate = gamma0 ** 2 if convention == 'sc' else 1.0
  out = dict(init=n ** -0.5 if name == 'sp' else 1.0, branch=beta * L ** -alpha if scaled else 1.0)
  if name == 'sp':
    out['forward'] = 1.0
  else:
    out['forward'] = n ** -0.5 * (N ** -0.5 if mean_field and kind == 'readout' else 1.0)
  out['sgd'] = g_rate * (N if mean_field else 1.0) * (L ** (2 * alpha - 1) if scaled and in_branch else 1.0)
  if not mean_field or kind == 'input':
    out['adam'] = 1.0
  elif kind == 'readout':
    out['adam'] = gamma0 if convention == 'sc' else 1.0
  else:
    out['adam'] = N ** -0.5 * (L ** (alpha - 1) if scaled and in_branch else 1.0)
  out['grad'] = (N ** 1.5 if kind in ('hidden', 'branch') else N) if mean_field else 1.0
  return out


def computed(p, kind, fan_in, width, depth, gamma0):
  return dict(init=pz.init_std(p, kind, fan_in), forward=pz.forward_multiplier(p, kind, fan_in, width),
              branch=pz.branch_multiplier(p, depth), sgd=pz.lr_multiplier(p, kind, 'sgd', width, depth, gamma0),
              adam=pz.lr_multiplier(p, kind, 'adam', width, depth, gamma0), grad=pz.adam_grad_scale(p, kind, width))


@pytest.mark.parametrize('name', pz.NAMES)
def test_every_function_matches_the_independent_formulas(name):
  grid = itertools.product(pz.LAYER_KINDS, (1, 27, 64, 288), (8, 64, 100, 1024), (1, 3, 24, 96), (0.1, 1.0, 3.7),
                           (0.5, 0.25, 1.0), pz.LR_CONVENTIONS)
  checked = 0
  for kind, fan_in, width, depth, gamma0, alpha, convention in grid:
    p = pz.Parameterization(name, alpha=alpha, beta=1.5, lr_convention=convention)
    want = reference(name, kind, fan_in, width, depth, gamma0, alpha, 1.5, convention)
    got = computed(p, kind, fan_in, width, depth, gamma0)
    for q in want:
      np.testing.assert_allclose(got[q], want[q], rtol=1e-13, err_msg=str((name, q, kind, fan_in, width, depth,
                                                                            gamma0, alpha, convention)))
      checked += 1
  assert checked == 6 * 4 * 4 ** 3 * 3 * 3 * 2


@pytest.mark.parametrize('convention', pz.LR_CONVENTIONS)
def test_rates_with_a_traced_gamma0(convention):
  """γ0 is a traced lane value in a sweep: the rates come out of jit equal to the formulas."""
  gammas = np.array([0.01, 0.5, 1.0, 2.0, 30.0])
  with jax.enable_x64(True):
    for name, kind, optimizer in itertools.product(pz.NAMES, pz.LAYER_KINDS, ('sgd', 'adam')):
      p = pz.Parameterization(name, lr_convention=convention)
      rate = jax.jit(jax.vmap(lambda g: jnp.asarray(pz.lr_multiplier(p, kind, optimizer, 64, 12, g), jnp.float64)))
      want = [reference(name, kind, 1, 64, 12, g, 0.5, 1.0, convention)[optimizer] for g in gammas]
      np.testing.assert_allclose(rate(jnp.asarray(gammas)), want, rtol=1e-13, err_msg=str((name, kind, optimizer)))


def test_completep_is_depth_mup_at_alpha_one_whatever_alpha_is_given():
  complete = pz.Parameterization('completep', alpha=0.5, beta=2.0)
  assert complete.alpha == 1.0 and complete.depth_scaled and complete.mean_field
  assert complete == pz.Parameterization('completep', alpha=0.3, beta=2.0)   # one α, one hash for jit
  depth_mup = pz.Parameterization('depth_mup', alpha=1.0, beta=2.0)
  for kind, width, depth in itertools.product(pz.LAYER_KINDS, (8, 256), (2, 24)):
    c, d = computed(complete, kind, width, width, depth, 1.7), computed(depth_mup, kind, width, width, depth, 1.7)
    assert c == d, (kind, width, depth, c, d)
  assert pz.branch_multiplier(complete, 24) == pytest.approx(2.0 / 24)
  assert pz.lr_multiplier(complete, 'branch', 'sgd', 8, 24) == pytest.approx(8 * 24)   # SGD branch × L
  assert pz.lr_multiplier(complete, 'branch', 'adam', 8, 24) == pytest.approx(8 ** -0.5)   # Adam: L^(α−1) = 1


def test_depth_scaled_only_for_rows_that_scale_branches():
  assert {n for n in pz.NAMES if pz.Parameterization(n).depth_scaled} == set(DEPTH_SCALED)
  for name in pz.NAMES:
    if name not in DEPTH_SCALED:
      assert pz.branch_multiplier(pz.Parameterization(name, alpha=0.7, beta=3.0), 24) == 1.0


@pytest.mark.parametrize('name, alpha', [('depth_mup', 0.75), ('depth_mup', 0.3), ('completep', 1.0)])
def test_depth_factor_of_sgd_is_on_branch_layers_only(name, alpha):
  """Only weights inside residual branches feel β·L^(−α), so only they get L^(2α−1) (Adam: L^(α−1)); input,
  readout and the hidden layers outside branches (a resnet's stride-2 convs) keep μP's rate at every depth."""
  p, mup = pz.Parameterization(name, alpha=alpha), pz.Parameterization('mup')
  for depth in (1, 3, 24):
    for kind in ('input', 'hidden', 'readout'):
      for optimizer in ('sgd', 'adam'):
        assert pz.lr_multiplier(p, kind, optimizer, 64, depth, 2.0) == pz.lr_multiplier(mup, kind, optimizer, 64,
                                                                                         depth, 2.0)
    sgd = pz.lr_multiplier(p, 'branch', 'sgd', 64, depth, 2.0) / pz.lr_multiplier(mup, 'branch', 'sgd', 64, depth, 2.0)
    adam = pz.lr_multiplier(p, 'branch', 'adam', 64, depth, 2.0) / pz.lr_multiplier(mup, 'branch', 'adam', 64, depth)
    assert sgd == pytest.approx(depth ** (2 * alpha - 1)) and adam == pytest.approx(depth ** (alpha - 1))


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match='allowed'):
    pz.Parameterization('umup')
  with pytest.raises(ValueError, match='allowed'):
    pz.Parameterization('mup', lr_convention='x')
  p = pz.Parameterization('mup')
  with pytest.raises(ValueError, match='allowed'):
    pz.init_std(p, 'embedding', 3)
  with pytest.raises(ValueError, match='allowed'):
    pz.lr_multiplier(p, 'hidden', 'lion', 8, 1)


def test_a_row_using_a_symbol_its_function_cannot_supply_is_refused():
  with pytest.raises(ValueError, match='forward'):   # forward_multiplier is not given the depth
    dataclasses.replace(pz.MUP, name='bad', forward=pz.per_kind(pz.Power(fan_in=-0.5, depth=-1)))
  with pytest.raises(ValueError, match='sgd'):       # rates are not given the fan-in
    dataclasses.replace(pz.MUP, name='bad', sgd=pz.per_kind(pz.Power(gamma0=2, width=1, fan_in=-1)))
  with pytest.raises(ValueError, match='layer kind'):
    pz.per_kind(pz.ONE, embedding=pz.ONE)


def _table_cells(text):
  rows = [line.strip('|').split('|') for line in text.splitlines()[2:]]
  return [[c.strip() for c in r] for r in rows]


def test_table_has_one_line_per_row_and_kind_rendered_from_the_exponents():
  cells = _table_cells(pz.table())
  assert [(c[0], c[1]) for c in cells] == list(itertools.product(pz.NAMES, pz.LAYER_KINDS))
  line = {(c[0], c[1]): c for c in cells}
  head = dict(zip(pz.HEAD, range(len(pz.HEAD))))
  assert line['mup', 'readout'][head['forward multiplier']] == '1/(γ0·√n·√N)'
  assert line['depth_mup', 'branch'][head['residual branch ×']] == 'β/L^α'
  assert line['completep', 'branch'][head['residual branch ×']] == 'β/L'   # α = 1 substituted
  assert 'L^(2α−1)' in line['depth_mup', 'branch'][head['SGD rate']]
  assert 'L' not in line['depth_mup', 'input'][head['SGD rate']]   # the factor is on branch layers only


def test_one_added_row_is_a_new_parameterization_everywhere(monkeypatch):
  """Adding a parameterization is one row: it appears in table() and every function evaluates it."""
  row = dataclasses.replace(pz.MUP, name='mup_root_depth',
                            sgd=pz.per_kind(pz.Power(gamma0=2, width=1, depth=-pz.HALF)))
  cells = _table_cells(pz.table(pz.ROWS + (row,)))
  assert [c[1] for c in cells if c[0] == 'mup_root_depth'] == list(pz.LAYER_KINDS)
  assert all(c[5] == 'η0·γ0²·N/√L (sc); η0·N/√L (g)' for c in cells if c[0] == 'mup_root_depth')
  assert 'mup_root_depth' not in pz.table()
  monkeypatch.setattr(pz, 'ROWS', pz.ROWS + (row,))
  p = pz.Parameterization('mup_root_depth')
  assert pz.lr_multiplier(p, 'hidden', 'sgd', 64, 16, 2.0) == pytest.approx(4 * 64 / 4)
  assert pz.forward_multiplier(p, 'readout', 64, 64) == pz.forward_multiplier(pz.Parameterization(), 'readout', 64, 64)


def test_the_doc_embeds_the_generated_table_verbatim():
  with open(os.path.join(ROOT, 'docs', 'parameterizations.md'), encoding='utf-8') as f:
    doc = f.read()
  assert pz.table() in doc
  assert 'python -m superconsistency.parameterization' in doc


def test_main_prints_the_table_and_answers_help(capsys):
  pz.main([])
  assert capsys.readouterr().out.strip() == pz.table()
  with pytest.raises(SystemExit) as exit_info:
    pz.main(['--help'])
  assert exit_info.value.code == 0 and 'usage' in capsys.readouterr().out.lower()


def test_update_rewrites_a_stale_table_in_place(tmp_path):
  with open(os.path.join(ROOT, 'docs', 'parameterizations.md'), encoding='utf-8') as f:
    doc = f.read()
  stale = doc.replace('| mup | readout |', '| mup | readout | (hand-edited) |', 1).replace(
      pz.table().splitlines()[-1] + '\n', '', 1)   # one line edited, one dropped
  assert pz.table() not in stale
  path = tmp_path / 'page.md'
  path.write_text(stale, encoding='utf-8')
  assert pz.main(['--update', str(path)]) is None and path.read_text(encoding='utf-8') == doc
  assert not pz.update_doc(str(path))
  path.write_text('# no table\n', encoding='utf-8')
  with pytest.raises(ValueError, match='no parameterization table'):
    pz.update_doc(str(path))
