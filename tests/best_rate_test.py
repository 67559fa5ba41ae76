"""best_rate's estimator and transfer rule on synthetic loss-vs-rate curves whose optima are known by construction."""
import math

import numpy as np
import pytest

from superconsistency import best_rate

# loss as a function of u = ln(η/η*): symmetric and skewed shapes, each with its minimum at u = 0 (or found below)
SHAPES = {
    'parabola in raw loss': lambda u: 0.3 + 0.05 * u ** 2,
    'parabola in log loss': lambda u: 0.3 * np.exp(0.15 * u ** 2),
    'steeper towards divergence': lambda u: 0.3 + 0.05 * u ** 2 + 0.02 * u ** 3 * (u > 0),
    'blow-up near divergence': lambda u: 0.3 + 0.04 * u ** 2 + 0.3 * np.exp(2 * (u - 1.5)),
    'flat below the optimum': lambda u: 0.3 + 0.05 * np.where(u < 0, 0.3 * u ** 2, u ** 2),
    'wide bowl': lambda u: 0.05 + 1.0 * (1 - np.exp(-0.1 * u ** 2)),
}
RATIOS = (2.0, 2.5, math.sqrt(10.0))


def _true_log10_min(f):
  u = np.linspace(-3, 3, 600001)
  return u[np.argmin(f(u))] / math.log(10)


@pytest.mark.parametrize('ratio', RATIOS)
@pytest.mark.parametrize('name', sorted(SHAPES))
def test_the_estimate_and_its_interval_hold_the_known_optimum_at_every_grid_offset(name, ratio):
  f = SHAPES[name]
  truth = _true_log10_min(f)
  step = math.log10(ratio)
  worst_raw, worst_gap = 0.0, 0.0
  for offset in np.linspace(0, 1, 21)[:-1]:
    grid = 10 ** ((np.arange(-4, 5) + offset) * step)
    losses = f(np.log(grid))
    e = best_rate.estimate(grid, losses)
    assert e['censored'] is None
    assert e['lo'] <= truth <= e['hi'], (offset, e, truth)
    worst_raw = max(worst_raw, abs(e['log10_lr'] - truth) / step)
    # the other reading (a parabola in log loss) lands inside the same interval
    e_log = best_rate.estimate(grid, np.log(losses))
    worst_gap = max(worst_gap, abs(e_log['log10_lr'] - e['log10_lr']) / step)
  assert worst_raw <= best_rate.ESTIMATOR_ERROR_STEPS
  assert worst_gap <= best_rate.ESTIMATOR_ERROR_STEPS


def test_the_bare_grid_minimum_would_miss_the_optimum_by_more_than_the_stated_error():
  """The interval is the vertex's, not the grid point's: the grid argmin alone errs by up to 0.6 steps here."""
  f = SHAPES['flat below the optimum']
  truth = _true_log10_min(f)
  step = math.log10(2.0)
  worst = max(abs(math.log10(g[np.argmin(f(np.log(g)))]) - truth) / step
              for g in (10 ** ((np.arange(-4, 5) + o) * step) for o in np.linspace(0, 1, 21)[:-1]))
  assert worst > best_rate.ESTIMATOR_ERROR_STEPS


def test_an_optimum_on_the_edge_is_censored_and_a_diverged_neighbour_bounds_it():
  grid = [0.1, 0.2, 0.4, 0.8]
  e = best_rate.estimate(grid, [4.0, 3.0, 2.0, 1.0])
  assert e['censored'] == 'above' and e['hi'] == math.inf and e['lo'] == pytest.approx(math.log10(0.4))
  e = best_rate.estimate(grid, [1.0, 2.0, 3.0, 4.0])
  assert e['censored'] == 'below' and e['lo'] == -math.inf
  # 0.8 diverged: the optimum lies below it, not beyond the grid
  e = best_rate.estimate(grid, [4.0, 3.0, 2.0, math.nan], [False, False, False, True])
  assert e['censored'] is None and e['log10_lr'] == pytest.approx(math.log10(0.4))
  assert (e['lo'], e['hi']) == pytest.approx((math.log10(0.2), math.log10(0.8)))
  # a missing (not diverged) neighbour bounds nothing
  assert best_rate.estimate(grid, [4.0, 3.0, 2.0, math.nan])['censored'] == 'above'


def _row(width, lr, seed, loss, step=10, p='mup', diverged=0):
  return dict(parameterization=p, width=width, depth=3, lr=lr, gamma0=1.0, seed=seed, step=step, train_loss=loss,
              diverged=diverged)


def _rows(optima, grid, p='mup', shape=SHAPES['parabola in raw loss']):
  """optima: {width: {seed: η*}} → rows whose loss at step 10 is `shape` around each η*."""
  return [_row(w, lr, s, float(shape(math.log(lr / opt))), p=p) for w, by_seed in optima.items()
          for s, opt in by_seed.items() for lr in grid]


GRID = [2.0 ** k for k in range(-5, 6)]


def test_seeds_give_a_median_and_an_interval_and_the_drift_pairs_each_seed_with_itself():
  optima = {64: {0: 0.9, 1: 1.0, 2: 1.3}, 512: {0: 1.1, 1: 1.2, 2: 1.5}}   # each seed drifts up by 0.06–0.09 decades
  t = best_rate.transfer(_rows(optima, GRID), 'train_loss', 0)['mup/depth=3']
  assert t['seeds'] == [0, 1, 2] and t['sizes'] == [64, 512] and t['drift_paired_by_seed']
  for w, (lo, hi), med in zip((64, 512), t['best_lr_intervals'], t['best_lrs']):
    assert med == pytest.approx(np.median(list(optima[w].values())), rel=1e-6)
    assert lo <= min(optima[w].values()) and max(optima[w].values()) <= hi
  diffs = [math.log10(optima[512][s] / optima[64][s]) for s in range(3)]
  assert t['drift_decades'] == pytest.approx(np.median(diffs), abs=1e-6)
  lo, hi = t['drift_interval_decades']
  assert lo <= min(diffs) and max(diffs) <= hi
  # the pairs' spread (0.03 decades) plus the grid error at both ends, not the seeds' spread at each size (0.16)
  step = math.log10(2.0)
  assert hi - lo == pytest.approx(max(diffs) - min(diffs) + 4 * best_rate.ESTIMATOR_ERROR_STEPS * step, abs=1e-6)
  assert t['tolerance_decades'] == pytest.approx(0.5 * math.log10(8))
  assert t['verdict'] == 'transfers' and t['censored'] == [None, None]


def test_without_shared_seeds_the_drift_takes_every_pair():
  optima = {64: {0: 0.9, 1: 1.3}, 512: {2: 1.1, 3: 1.2}}
  t = best_rate.transfer(_rows(optima, GRID), 'train_loss', 0)['mup/depth=3']
  assert not t['drift_paired_by_seed']
  diffs = [math.log10(b / a) for a in optima[64].values() for b in optima[512].values()]
  assert t['drift_decades'] == pytest.approx(np.median(diffs), abs=1e-6)
  assert t['drift_interval_decades'][0] <= min(diffs) and max(diffs) <= t['drift_interval_decades'][1]


def test_a_rate_that_grows_with_width_shifts_and_a_wide_seed_spread_is_inconclusive():
  ntp = {64: {s: 0.25 for s in range(3)}, 512: {s: 2.0 for s in range(3)}}   # ∝ width: 0.9 decades
  assert best_rate.transfer(_rows(ntp, GRID), 'train_loss', 0)['mup/depth=3']['verdict'] == 'shifts'
  noisy = {64: {0: 1.0, 1: 1.0}, 512: {0: 1.0, 1: 4.0}}   # one seed stays, the other moves 0.6 decades
  assert best_rate.transfer(_rows(noisy, GRID), 'train_loss', 0)['mup/depth=3']['verdict'] == 'inconclusive'


def test_a_censored_size_makes_the_transfer_censored_and_asks_for_rates_above():
  optima = {64: {0: 1.0, 1: 1.0}, 512: {0: 1.0, 1: 100.0}}   # seed 1 of width 512 beyond the grid's top (32)
  rows = _rows(optima, GRID)
  t = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
  assert t['censored'] == [None, 'above'] and t['verdict'] == 'censored'
  assert t['best_lr_intervals'][1][1] == math.inf
  assert best_rate.censored_sides(rows, 'train_loss', 0) == {'mup': ['above']}
  assert best_rate.extension_rates(GRID, ['above'], 2) == pytest.approx([64.0, 128.0])
  assert best_rate.extension_rates([0.1, 0.3, 1.0], ['below', 'above'], 1) == pytest.approx([0.1 / 3, 10 / 3])
  # once the grid reaches past it, nothing is censored
  wider = GRID + [64.0, 128.0, 256.0, 512.0]
  assert best_rate.censored_sides(_rows(optima, wider), 'train_loss', 0) == {}


def test_the_penalty_is_per_seed_at_the_smallest_sizes_best_grid_rate():
  optima = {64: {0: 1.0, 1: 1.0}, 512: {0: 4.0, 1: 8.0}}
  t = best_rate.transfer(_rows(optima, GRID), 'train_loss', 0)['mup/depth=3']
  assert t['penalty_rate'] == 1.0
  expected = sorted(0.05 * math.log(1.0 / o) ** 2 for o in optima[512].values())
  assert sorted(t['penalty_by_seed'].values()) == pytest.approx(expected)
  assert t['penalty_interval'] == pytest.approx(expected)


def test_sizes_that_train_at_no_rate_leave_a_verdict_over_the_sizes_that_do():
  """μP without branch scaling overflows at large depth: every rate diverges there. The main drift has no end
  point (inconclusive); `over_trained_sizes` gives the drift up to the largest size that trains, by the same rule."""
  optima = {64: {0: 2.0, 1: 2.2}, 128: {0: 0.5, 1: 0.55}, 256: {0: 0.12, 1: 0.13}}   # falls 1.2 decades
  rows = _rows(optima, GRID) + [_row(512, lr, s, float('nan'), diverged=1) for s in (0, 1) for lr in GRID]
  t = best_rate.transfer(rows, 'train_loss', 0)['mup/depth=3']
  assert t['sizes'] == [64, 128, 256, 512] and math.isnan(t['best_lrs'][-1]) and t['verdict'] == 'inconclusive'
  part = t['over_trained_sizes']
  assert part['sizes'] == [64, 128, 256] and part['untrained_sizes'] == [512]
  assert part['drift_decades'] == pytest.approx(math.log10(0.12 / 2.0), abs=0.02)
  assert part['tolerance_decades'] == pytest.approx(0.5 * math.log10(4))
  assert part['verdict'] == 'shifts'
  # every size trains: no such block
  assert 'over_trained_sizes' not in best_rate.transfer(_rows(optima, GRID), 'train_loss', 0)['mup/depth=3']
