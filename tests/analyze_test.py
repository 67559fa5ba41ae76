"""The analysis module on rows whose answers are known by construction, checked against independent computations."""
import math

import numpy as np
import pytest

from superconsistency import best_rate
from superconsistency import fits
from superconsistency import sweep_analysis as analyze


def _row(p='mup', width=64, depth=3, lr=1.0, gamma0=1.0, seed=0, step=0, loss=1.0, diverged=0, **extra):
  r = dict(parameterization=p, width=width, depth=depth, optimizer='sgd', lr_convention='sc', lr=lr, gamma0=gamma0,
           seed=seed, step=step, train_loss=loss, eval_loss=loss, sharpness=1.0, lr_sharpness=lr, diverged=diverged,
           diverged_step=-1)
  r.update(extra)
  return r


CFG = dict(select_by='train_loss', select_step=0, loss='mse', sweep=dict(lrs={'mup': [1.0]}),
           plot=dict(trajectory_lrs={'mup': 0.0}), analysis=dict(small_gamma_max=0.1, large_gamma_min=10.0))


def test_linear_fit_interval_matches_scipy_linregress():
  from scipy import stats
  rng = np.random.default_rng(0)
  x = np.linspace(0, 3, 9)
  y = 1.7 * x + 0.3 + rng.normal(scale=0.2, size=x.size)
  fit = fits.linear_fit(x, y)
  ref = stats.linregress(x, y)
  half = stats.t.ppf(0.975, x.size - 2) * ref.stderr
  assert fit['slope'] == pytest.approx(ref.slope, rel=1e-10)
  assert fit['ci95'] == pytest.approx([ref.slope - half, ref.slope + half], rel=1e-10)


def test_interpolated_argmin_recovers_a_parabola_vertex_and_flags_edges():
  xs = np.log([0.1, 0.2, 0.5, 1.0, 2.0])
  vertex = math.log(0.37)
  x_best, index, edge = fits.interpolated_argmin(xs, (xs - vertex) ** 2)
  assert x_best == pytest.approx(vertex, abs=1e-9) and not edge
  assert 1 < index < 2   # between 0.2 and 0.5 on the grid
  assert fits.interpolated_argmin(xs, xs)[2]                          # minimum at the grid's edge
  assert fits.interpolated_argmin(xs, [np.nan] * 5) is None


def test_transfer_finds_each_size_best_rate_the_shift_and_the_penalty():
  grid = [2.0 ** k for k in range(-4, 5)]
  best = {64: 0.25, 128: 0.5, 256: 1.0}    # NTP-like: the optimum doubles with the width
  rows = []
  for width, lr_star in best.items():
    for lr in grid:
      for step in (0, 10):
        loss = 1.0 + (step / 10) * (math.log(lr / lr_star) ** 2 - 0.5)
        rows.append(_row(width=width, lr=lr, step=step, loss=loss))
  out = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
  assert out['best_lrs'] == pytest.approx([best[w] for w in (64, 128, 256)], rel=1e-6)
  assert out['shift_grid_steps'] == pytest.approx(2.0)
  assert out['shift_decades'] == pytest.approx(math.log10(4.0), rel=1e-6)
  assert out['drift_decades'] == pytest.approx(math.log10(4.0), rel=1e-6)
  # the smallest width's best rate (0.25) used at width 256, against its own optimum: (ln 4)² higher
  assert out['penalty_at_largest'] == pytest.approx(math.log(4.0) ** 2, rel=1e-9)


def test_transfer_counts_a_diverged_rate_as_an_infinite_penalty():
  rows = [_row(width=w, lr=lr, step=s, loss=(2.0 if s == 0 else 1.0 + abs(math.log(lr / (0.5 if w == 64 else 0.125)))),
               diverged=int(w == 128 and lr == 0.5 and s > 0))
          for w in (64, 128) for lr in (0.125, 0.25, 0.5) for s in (0, 10)]
  out = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
  assert out['penalty_at_largest'] == math.inf


def test_consistency_is_the_coefficient_of_variation_across_sizes():
  rows = []
  values = {64: [0.1, 1.0, 1.9], 128: [0.1, 1.2, 2.0], 256: [0.1, 1.4, 2.1]}
  for width, vs in values.items():
    for step, v in zip((0, 10, 20), vs):
      rows.append(_row(width=width, lr=1.0, step=step, lr_sharpness=v, sharpness=v))
  summary = dict(groups=[dict(parameterization='mup', width=64, depth=3, best_grid_lr=1.0)])
  q = analyze.consistency(rows, CFG, summary)['mup']['quantities']['lr_sharpness']
  for j, step in enumerate((0, 10, 20)):
    v = np.array([values[w][j] for w in (64, 128, 256)])
    assert q['cv'][j] == pytest.approx(np.std(v) / np.mean(v), abs=1e-12)
  assert q['cv_late_mean'] == pytest.approx(np.mean(q['cv'][1:]))


def test_consistency_finds_the_trajectory_rate_read_back_in_float32():
  """metrics.csv holds the run's dtype: 0.064 comes back as 0.06400000303983688 and must still be found."""
  lr32 = float(np.float32(0.064))
  rows = [_row(width=w, lr=lr32, step=s, lr_sharpness=v, sharpness=v)
          for w, v in ((64, 1.0), (128, 1.5)) for s in (0, 10)]
  cfg = dict(CFG, sweep=dict(lrs={'mup': [0.064]}), plot=dict(trajectory_lrs={'mup': 0.064}))
  q = analyze.consistency(rows, cfg, dict(groups=[]))['mup']['quantities']['lr_sharpness']
  assert q['cv'][-1] == pytest.approx(np.std([1.0, 1.5]) / 1.25)


def test_shift_in_decades_does_not_depend_on_the_grid_ratio_but_grid_steps_do():
  """The same optima (0.1 at width 64, 1.0 at width 128) on a factor-2 grid and on a factor-√10 grid: one decade
  on both, but 3.3 against 2 grid steps; and the summary's per-model best rate is the analysis's."""
  shifts = {}
  for ratio in (2.0, math.sqrt(10.0)):
    grid = [0.01 * ratio ** k for k in range(int(math.log(1000) / math.log(ratio)) + 1)]
    rows = [_row(width=w, lr=lr, step=s, loss=1.0 + (s / 10) * (math.log(lr / best) ** 2 - 0.5))
            for w, best in ((64, 0.1), (128, 1.0)) for lr in grid for s in (0, 10)]
    out = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
    per_model = {g['width']: g for g in best_rate.per_model(rows)}
    assert [per_model[w]['best_lr'] for w in (64, 128)] == pytest.approx(out['best_lrs'], rel=1e-12)
    assert [per_model[w]['best_lr_median'] for w in (64, 128)] == pytest.approx(out['best_lrs'], rel=1e-12)
    shifts[ratio] = out
  for out in shifts.values():
    assert out['best_lrs'] == pytest.approx([0.1, 1.0], rel=1e-6)
    assert out['shift_decades'] == pytest.approx(1.0, rel=1e-6)
  assert shifts[2.0]['shift_grid_steps'] == pytest.approx(math.log(10) / math.log(2), rel=1e-6)
  assert shifts[math.sqrt(10.0)]['shift_grid_steps'] == pytest.approx(2.0, rel=1e-6)


def test_a_best_rate_on_the_grid_edge_is_flagged():
  rows = [_row(width=w, lr=lr, step=s, loss=1.0 + (s / 10) * lr) for w in (64, 128) for lr in (0.1, 0.2, 0.4)
          for s in (0, 10)]
  out = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
  assert out['best_at_grid_edge'] == [True, True] and out['best_lrs'] == pytest.approx([0.1, 0.1])
  assert out['censored'] == ['below', 'below'] and out['verdict'] == 'censored'
  assert 'censored below' in best_rate.describe('mup/depth=3', out)
