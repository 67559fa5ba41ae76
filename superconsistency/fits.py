"""The two estimators every number in the gallery rests on: an OLS slope with its interval, and the minimum of a
curve sampled on a (log) grid. Plain numpy/scipy, no JAX."""
from __future__ import annotations

import math

import numpy as np


def linear_fit(x, y, level=0.95) -> dict:
  """OLS y = intercept + slope·x with a two-sided t-interval on the slope (n − 2 degrees of freedom); a nan interval
  below 3 points. Every slope with an interval in the gallery comes from here."""
  from scipy import stats
  x, y = np.asarray(x, float), np.asarray(y, float)
  nan = float('nan')
  if len(x) < 2 or np.ptp(x) == 0:
    return dict(slope=nan, ci95=[nan, nan], intercept=nan, n=len(x))
  slope, intercept = np.polyfit(x, y, 1)
  if len(x) < 3:
    return dict(slope=float(slope), ci95=[nan, nan], intercept=float(intercept), n=len(x))
  resid = y - (slope * x + intercept)
  se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(((x - x.mean()) ** 2).sum()))
  half = float(stats.t.ppf(0.5 + level / 2, len(x) - 2)) * se
  return dict(slope=float(slope), ci95=[float(slope - half), float(slope + half)], intercept=float(intercept),
              n=len(x))


def interpolated_argmin(xs, ys):
  """(x at the minimum, fractional grid index, at_edge): a parabola through the grid minimum and its neighbours,
  its vertex clipped to their span; the grid point itself where the minimum sits on the grid's edge or next to a
  missing value. xs ascending (log learning rates), ys nan where missing. None if nothing is finite."""
  ys = np.asarray(ys, float)
  if not np.isfinite(ys).any():
    return None
  i = int(np.nanargmin(ys))
  if i == 0 or i == len(xs) - 1 or not (np.isfinite(ys[i - 1]) and np.isfinite(ys[i + 1])):
    return float(xs[i]), float(i), True
  x3, y3 = np.asarray(xs[i - 1:i + 2], float), ys[i - 1:i + 2]
  a, b, _ = np.polyfit(x3, y3, 2)
  x_best = float(np.clip(-b / (2 * a), x3[0], x3[2])) if a > 0 else float(x3[1])
  return x_best, float(np.interp(x_best, xs, np.arange(len(xs)))), False
