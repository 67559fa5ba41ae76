"""[G]'s analyses (gamma_analysis.py) on rows whose answers are known by construction."""
import itertools
import math

import numpy as np
import pytest

from superconsistency import gamma_analysis as ga
from superconsistency import verdicts

CFG = dict(loss='mse', analysis=dict(small_gamma_max=0.1, large_gamma_min=10.0))


def _row(lr, gamma0, seed, step, loss, diverged=0, depth=3, sharpness=1.0, lr_sharpness=1.0):
  return dict(parameterization='mup', width=128, depth=depth, lr=lr, gamma0=gamma0, seed=seed, step=step,
              train_loss=loss, sharpness=sharpness, lr_sharpness=lr_sharpness, diverged=diverged)


def _plane_rows(eta_star, gammas, lrs, seeds=(0, 1, 2), edge_factor=3.0):
  """A bowl in log η0 around eta_star(γ0, seed); rates above edge_factor·η* diverge and leave no last row."""
  rows = []
  for g, lr, s in itertools.product(gammas, lrs, seeds):
    star = eta_star(g, s)
    unstable = lr > edge_factor * star
    rows.append(_row(lr, g, s, 0, 1.0))
    if unstable:
      rows.append(_row(lr, g, s, 10, math.nan, diverged=1))
      continue
    rows.append(_row(lr, g, s, 40, 1.0 - 0.5 * math.exp(-math.log(lr / star) ** 2), sharpness=2.0 / star,
                     lr_sharpness=2.0 * lr / star))
  return rows


def test_quantised_interval_holds_the_slope_that_quantisation_hides():
  # η* = γ^0.4 read on a quarter-decade grid: the grid values sit on a staircase whose OLS line is off the truth
  # by more than its own t-interval, while the interval that draws each point inside its cell still holds 0.4
  x = np.linspace(1, 3, 9)
  grid = np.round(0.4 * x * 4) / 4
  fit = ga.quantised_fit(x, grid, grid - 0.125, grid + 0.125)
  assert fit['ci95'][0] <= 0.4 <= fit['ci95'][1]
  lo, hi = fit['slope_range_within_cells']
  assert lo < fit['slope'] < hi and lo <= 0.4 <= hi
  # exact points: the interval shrinks to what the cells allow, around the true slope
  exact = ga.quantised_fit(x, 2 * x, 2 * x - 1e-6, 2 * x + 1e-6)
  assert exact['slope'] == pytest.approx(2.0) and exact['ci95'][1] - exact['ci95'][0] < 1e-3


def test_plane_recovers_both_regimes_and_the_edge_per_seed():
  gammas = [10.0 ** k for k in np.arange(-3, 3.01, 0.5)]
  lrs = [10.0 ** k for k in np.arange(-9, 5.01, 0.25)]
  # η* = γ² below γ = 1 and γ^(2/3) above, a seed-dependent factor: the slopes the analysis must recover
  eta_star = lambda g, s: (g ** 2 if g < 1 else g ** (2 / 3)) * 10 ** (0.05 * s)
  out = ga.plane(_plane_rows(eta_star, gammas, lrs), CFG)['mup/depth=3/width=128']
  f = out['fits']
  assert f['eta_star_small']['slope'] == pytest.approx(2.0, abs=0.05)
  assert f['eta_star_large']['slope'] == pytest.approx(2 / 3, abs=0.1)
  assert f['eta_star_large']['ci95'][0] <= 2 / 3 <= f['eta_star_large']['ci95'][1]
  assert f['eta_edge_small']['slope'] == pytest.approx(2.0, abs=0.05)
  assert f['eta_star_small']['n'] == 3 * 5          # 3 seeds × γ0 = 1e-3 … 0.1
  for s in (0, 1, 2):    # the largest stable rate is the last grid point below 3·η*
    for g, eta_max in zip(gammas, out['eta_max_by_seed'][str(s)]):
      assert eta_max == max(lr for lr in lrs if lr <= 3 * eta_star(g, s))
  # η* (the nearest grid rate) is 1–2 quarter-decade steps below the edge here (3× = 0.48 decades)
  assert 0.25 <= out['eta_star_at_edge']['large']['median_gap_decades'] <= 0.5
  assert [b['small_gamma_max'] for b in out['boundaries']['small']] == pytest.approx([0.0316, 0.1, 0.316], rel=0.01)
  # λ_max at η* was made 2/η*: its slope is minus η*'s
  assert out['sharpness_fits']['sharpness_small']['slope'] == pytest.approx(-2.0, abs=0.1)
  assert out['sharpness_fits']['lr_sharpness_small']['slope'] == pytest.approx(0.0, abs=0.1)   # η*·2/η*
  assert out['best_cell']['final_loss'] == pytest.approx(0.5, abs=0.01)


def test_hitting_time_interpolates_in_log_time():
  steps = np.array([0.0, 10.0, 100.0])
  loss = np.array([1.0, 0.9, 0.5])
  assert ga.hitting_time(steps, loss, 0.7) == pytest.approx(10 ** 1.5)
  assert ga.hitting_time(steps, loss, 0.95) == 10.0        # before the first measurement: resolved to ≤ 10
  assert math.isnan(ga.hitting_time(steps, loss, 0.4))
  assert ga.hitting_time(steps, loss, 1.0) == 0.0


def _curve_rows(shape, gammas, lrs, seeds=(0, 1), steps=range(0, 2001, 20)):
  rows = []
  for g, lr, s in itertools.product(gammas, lrs, seeds):
    for t in steps:
      rows.append(_row(lr, g, s, t, shape(t, lr, g)))
  return rows


def test_curves_that_are_functions_of_tau_collapse_and_plateaus_scale_like_gamma_over_eta():
  gammas, lrs = [10.0, 31.6, 100.0, 316.0], [3.0, 10.0, 30.0]
  plateau = lambda t, lr, g: 0.1 * (0.2 + 0.8 / (1 + (lr * t / g / 5.0) ** 3))
  out = ga.plateaus(_curve_rows(plateau, gammas, lrs), CFG)['mup/depth=3/width=128']
  c = out['collapse']
  assert c['spread_tau'] < 0.05 * c['spread_t'] and c['p_value'] < 0.01
  assert c['exponent']['slope'] == pytest.approx(1.0, abs=0.05)   # interpolation between measurements
  # each curve's clock off by its own few percent (seeds): the exponent's interval then holds 1, and the rule agrees
  jitter = {k: math.exp(0.1 * z) for k, z in zip(itertools.product(gammas, lrs, (0, 1)),
                                                   np.random.default_rng(0).normal(size=24))}
  noisy = lambda t, lr, g, s: plateau(t * jitter[g, lr, s], lr, g)
  rows = [_row(lr, g, s, t, noisy(t, lr, g, s)) for g, lr, s in itertools.product(gammas, lrs, (0, 1))
          for t in range(0, 2001, 20)]
  noisy_out = ga.plateaus(rows, CFG)['mup/depth=3/width=128']
  lo, hi = noisy_out['collapse']['exponent']['ci95']
  assert lo <= 1 <= hi
  assert out['plateau_vs_ratio']['slope'] == pytest.approx(1.0, abs=0.05)
  two = out['plateau_vs_gamma_and_lr']
  assert two['gamma0'] == pytest.approx(1.0, abs=0.05) and two['lr'] == pytest.approx(-1.0, abs=0.05)
  assert verdicts.collapse(dict(plateaus={'k': noisy_out}))[1] == 'agrees'


def test_curves_that_depend_on_the_rate_alone_do_not_collapse_in_tau():
  gammas, lrs = [10.0, 31.6, 100.0, 316.0], [0.3, 1.0, 3.0]
  rate_only = lambda t, lr, g: 0.1 * (0.2 + 0.8 / (1 + (lr * t / 50.0) ** 3))
  out = ga.plateaus(_curve_rows(rate_only, gammas, lrs), CFG)['mup/depth=3/width=128']
  c = out['collapse']
  assert c['spread_rate_only'] < 0.05 * c['spread_t']
  # dividing by the curve's own γ0 is no better than by another's: the permutation null cannot reject
  assert c['spread_tau'] > c['spread_t'] and c['p_value'] > 0.2
  assert verdicts.collapse(dict(plateaus={'k': out}))[1] == 'disagrees'
  assert out['plateau_vs_gamma_and_lr']['gamma0'] == pytest.approx(0.0, abs=0.05)


def test_best_loss_compares_large_and_small_gamma_per_seed():
  gammas, lrs = [1.0, 10.0, 100.0], [1.0, 10.0]
  final = lambda t, lr, g: 0.1 if t == 0 else (0.05 if g >= 10 else 0.07) + 0.001 * lr
  out = ga.plateaus(_curve_rows(final, gammas, lrs), CFG)['mup/depth=3/width=128']
  by = out['best_loss']['by_seed']
  assert [b['large'] for b in by] == pytest.approx([0.051, 0.051]) and by[0]['small'] == pytest.approx(0.071)
  assert verdicts.best_at_large_gamma(dict(plateaus={'k': out}))[1] == 'agrees'


def test_plateau_rule_asks_the_interval_to_hold_one():
  d = lambda lo, hi: {'k': dict(depth=3, plateau_censored=0, collapse={}, plateau_vs_ratio=dict(
      slope=(lo + hi) / 2, ci95=[lo, hi], n=9), plateau_vs_gamma_and_lr=dict(gamma0=1.0, lr=-1.0))}
  assert verdicts.plateau_scaling(dict(plateaus=d(0.8, 1.1)))[1] == 'agrees'
  assert verdicts.plateau_scaling(dict(plateaus=d(0.3, 0.6)))[1] == 'disagrees'


def test_plateaus_are_skipped_for_sparsely_measured_curves():
  rows = _curve_rows(lambda t, lr, g: 1.0 / (1 + t), [10.0, 100.0], [1.0], steps=(0, 100, 200))
  (out,) = ga.plateaus(rows, CFG).values()
  assert 'skipped' in out and verdicts.collapse(dict(plateaus={'k': out}))[1] == 'inconclusive'
