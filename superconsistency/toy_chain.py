"""[G]'s scalar chain toy model ("experiment 7"): why η_max ∝ γ² for γ ≪ 1, ∝ γ^(2/L) for γ ≫ 1, and t ∝ γ/η.

f(w) = (w1·…·wL − 1)/γ, every w_i = 1 at the start (so f = 0), target y = 1, loss ½(f − y)², plain gradient
descent with step η on the w's, float64 (at γ = 0.01 the cancellation in w1·…·wL − 1 costs two digits, and the
convergence tolerance is far below float32's resolution).

Exact η_max. The minima are ∏w = 1 + γ. GD from the balanced start stays balanced (all w_i equal up to rounding), and
at the balanced minimum w_i = a, a^L = 1 + γ, the residual is zero, so the Hessian is ∇f∇fᵀ with ∂f/∂w_i = a^(L−1)/γ:
one nonzero eigenvalue λ = L·a^(2L−2)/γ² = L(1 + γ)^(2−2/L)/γ², hence
    η_max = 2/λ = 2γ² / (L·(1 + γ)^(2−2/L))   →  2γ²/L (γ ≪ 1),   (2/L)·γ^(2/L) (γ ≫ 1).
Above it the minimum is unstable, so no run can converge there: the largest converging η on a grid lies within one
grid step below η_max unless GD overshoots globally from the start (it does not, see the run's numbers), widened by
the finite run: at η = (1 − δ)·η_max the loss contracts by (1 − 2δ)² per step, so δ < ln(0.5/loss_tol)/(4·num_steps)
cannot reach loss_tol in time (`criterion_resolution`).

Plateau escape. Balanced gradient flow in τ = η·t/γ is da/dτ = (1 − f)·a^(L−1), independent of η and γ except
through f = (a^L − 1)/γ. "Escaped" = loss below half its initial value (½ → ¼, i.e. f > 1 − 1/√2). For γ ≫ 1 the
flow needs τ* ≈ 1/(L − 2) (finite-time blow-up, L ≥ 3) or ≈ ½·ln γ (L = 2), so t ≈ τ*·γ/η. For γ ≪ 1 the model is
lazy (nearly linear): t = O(1) steps at η ∝ η_max, so t·η/γ ∝ γ there. τ* of the flow is computed by quadrature.

toy_chain.csv, one row per run (`COLUMNS`):
  kind            'grid': the η lattice around η_max; 'escape': η = (an escape_fraction)·exact η_max
  depth, gamma, eta, eta_max_exact, eta_over_exact (= eta/eta_max_exact)
  final_loss      loss after num_steps steps (nan if it ever became non-finite)
  diverged        1 if the loss was ever non-finite
  converged       1 if not diverged and final_loss < loss_tol ("stable")
  escape_step     first step t with loss(w_t) < ½·loss(w_0) (w_0 the start); −1 if never within num_steps
The grid lanes sit on one global lattice η = 10^(k/etas_per_decade) (not aligned with the formula), restricted per
(L, γ) to eta_window_decades around the exact η_max to keep the file small; an edge at the window's top is flagged.
Runs are deterministic (no randomness anywhere).
"""
from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from superconsistency import config as config_lib
from superconsistency import results

TARGET = 1.0
INITIAL_LOSS = 0.5 * TARGET ** 2   # f = 0 at w = 1
COLUMNS = ('kind', 'depth', 'gamma', 'eta', 'eta_max_exact', 'eta_over_exact', 'final_loss', 'diverged', 'converged',
           'escape_step')
OUTPUTS = ('toy_chain.csv', 'config.json', 'summary.json')


def defaults():
  """The toy_chain experiment's config: GD on [G]'s scalar chain f = (w1·…·wL − 1)/γ, float64."""
  import ml_collections
  c = ml_collections.ConfigDict()
  c.experiment = 'toy_chain'
  c.dtype = 'float64'              # γ = 0.01 cancels two digits in w1·…·wL − 1; loss_tol lies below float32
  c.toy_chain = dict(
      depths=(2, 3, 4),                # L: number of scalar factors in the chain
      gamma_log10_range=(-2.0, 3.0),   # γ = logspace over this range, both ends included
      gammas_per_decade=2,             # 2: half-decades
      etas_per_decade=100,             # η lattice 10^(k/100): neighbours 2.3% apart (the η_max resolution)
      eta_window_decades=(-1.0, 0.5),  # lattice points run per (L, γ): this many decades around the exact η_max
      num_steps=10000,                 # GD steps per run (also sets how close to η_max "converged" can tell)
      loss_tol=1e-12,                  # "stable" = final loss below this and never non-finite (initial loss 0.5)
      escape_fractions=(0.1, 0.5),     # escape-time runs at these fractions of the exact η_max
      small_gamma_max=0.1,             # slope fit regimes: γ <= this (prediction 2) ...
      large_gamma_min=100.0)           # ... and γ >= this (prediction 2/L); each needs >= 3 γ values
  return c


def eta_max_exact(depth, gamma):
  """2/λ_max of the Hessian at the balanced minimum (module docstring)."""
  return 2.0 * gamma ** 2 / (depth * (1.0 + gamma) ** (2.0 - 2.0 / depth))


def chain_loss(w, depth, gamma):
  """½(f − 1)² with f = (∏_{i<depth} w_i − 1)/γ; w has max-depth entries, the ones past `depth` are inert."""
  product = jnp.prod(jnp.where(jnp.arange(w.shape[0]) < depth, w, 1.0))
  return 0.5 * ((product - 1.0) / gamma - TARGET) ** 2


def _one_run(depth, gamma, eta, num_steps, max_depth):
  """(final loss, ever non-finite, escape step) of GD from w = 1."""
  loss_and_grad = jax.value_and_grad(chain_loss)

  def step(carry, t):
    w, bad, escape = carry
    loss, grad = loss_and_grad(w, depth, gamma)
    escape = jnp.where((escape < 0) & (loss < 0.5 * INITIAL_LOSS), t, escape)
    return (w - eta * grad, bad | ~jnp.isfinite(loss), escape), None

  start = (jnp.ones(max_depth), jnp.array(False), jnp.array(-1))
  (w, bad, escape), _ = jax.lax.scan(step, start, jnp.arange(num_steps))
  final = chain_loss(w, depth, gamma)
  escape = jnp.where((escape < 0) & (final < 0.5 * INITIAL_LOSS), num_steps, escape)
  return final, bad | ~jnp.isfinite(final), escape


def simulate(depths, gammas, etas, num_steps):
  """All runs (one per entry of the equal-length arrays) as one jit(vmap) program in float64; numpy results."""
  with jax.enable_x64(True):
    run = jax.jit(jax.vmap(lambda d, g, e: _one_run(d, g, e, num_steps, int(max(depths)))))
    final, bad, escape = run(jnp.asarray(depths, jnp.int32), jnp.asarray(gammas, jnp.float64),
                             jnp.asarray(etas, jnp.float64))
    return np.asarray(final), np.asarray(bad), np.asarray(escape)


def gamma_grid(tc):
  lo, hi = tc.gamma_log10_range
  return np.logspace(lo, hi, int(round((hi - lo) * tc.gammas_per_decade)) + 1)


def eta_lattice(depth, gamma, tc):
  """The global lattice 10^(k/etas_per_decade) inside eta_window_decades around the exact η_max."""
  center = math.log10(eta_max_exact(depth, gamma))
  lo, hi = tc.eta_window_decades
  k = np.arange(math.floor((center + lo) * tc.etas_per_decade), math.ceil((center + hi) * tc.etas_per_decade) + 1)
  return 10.0 ** (k / tc.etas_per_decade)


def flow_escape_tau(depth, gamma):
  """τ* = η·t/γ at which balanced gradient flow from w = 1 reaches loss ¼: ∫ du / ((1 − f)·a^(L−2)), u = ln a."""
  from scipy import integrate
  u_end = math.log1p(gamma * (1.0 - 2 ** -0.5)) / depth
  integrand = lambda u: 1.0 / ((1.0 - math.expm1(depth * u) / gamma) * math.exp((depth - 2) * u))
  return integrate.quad(integrand, 0.0, u_end, epsabs=0, epsrel=1e-10, limit=200)[0]


def _require(cond, field, message):
  if not cond:
    raise config_lib.ConfigError(field, message)


def validate(cfg):
  tc, req = cfg.toy_chain, _require
  req(cfg.dtype == 'float64', 'dtype', 'toy_chain needs float64 (loss_tol lies below float32 resolution)')
  req(len(tc.depths) > 0 and all(isinstance(d, int) and d >= 1 for d in tc.depths), 'toy_chain.depths',
      f'needs positive integer chain lengths, got {tc.depths!r}')
  req(len(tc.gamma_log10_range) == 2 and tc.gamma_log10_range[0] <= tc.gamma_log10_range[1],
      'toy_chain.gamma_log10_range', f'needs (low, high) with low <= high, got {tc.gamma_log10_range!r}')
  req(tc.gammas_per_decade >= 1, 'toy_chain.gammas_per_decade', 'must be >= 1')
  req(isinstance(tc.etas_per_decade, int) and tc.etas_per_decade >= 1, 'toy_chain.etas_per_decade',
      f'must be an integer >= 1, got {tc.etas_per_decade!r}')
  req(len(tc.eta_window_decades) == 2 and tc.eta_window_decades[0] < 0 < tc.eta_window_decades[1],
      'toy_chain.eta_window_decades', f'needs (below, above) with below < 0 < above, got {tc.eta_window_decades!r}')
  req(tc.num_steps >= 1, 'toy_chain.num_steps', 'must be >= 1')
  req(0 < tc.loss_tol < 0.5 * INITIAL_LOSS, 'toy_chain.loss_tol',
      f'must be in (0, {0.5 * INITIAL_LOSS}): the initial loss is {INITIAL_LOSS}')
  req(len(tc.escape_fractions) > 0 and all(0 < f < 1 for f in tc.escape_fractions), 'toy_chain.escape_fractions',
      f'needs fractions of eta_max in (0, 1), got {tc.escape_fractions!r}')
  gammas = gamma_grid(tc)
  for name, n in (('small_gamma_max', np.sum(gammas <= tc.small_gamma_max)),
                  ('large_gamma_min', np.sum(gammas >= tc.large_gamma_min))):
    req(n >= 3, f'toy_chain.{name}', f'leaves {n} gammas in its regime; a slope with a 95% interval needs >= 3')


def run_experiment(cfg, workdir, overwrite=False, progress=True, plots=True) -> dict:
  """Runs the grid and the escape runs, writes config.json, toy_chain.csv, figures and summary.json (last).
  `progress` is accepted for the runner's interface; the whole computation takes about a second."""
  start = time.time()   # experiments.run validated the config and checked the workdir
  results.start_workdir(workdir, tuple(OUTPUTS) + ('analysis_toy_chain*.png', 'analysis.json'), cfg.to_dict())
  tc = cfg.toy_chain
  lanes = []   # (kind, depth, gamma, eta)
  for depth in tc.depths:
    for gamma in gamma_grid(tc):
      lanes += [('grid', depth, gamma, eta) for eta in eta_lattice(depth, gamma, tc)]
      lanes += [('escape', depth, gamma, f * eta_max_exact(depth, gamma)) for f in tc.escape_fractions]
  _, depths, gammas, etas = zip(*lanes)
  final, bad, escape = simulate(depths, gammas, etas, tc.num_steps)
  rows = []
  for i, (kind, depth, gamma, eta) in enumerate(lanes):
    exact = eta_max_exact(depth, gamma)
    rows.append(dict(kind=kind, depth=depth, gamma=float(gamma), eta=float(eta), eta_max_exact=exact,
                     eta_over_exact=float(eta) / exact, final_loss=float('nan') if bad[i] else float(final[i]),
                     diverged=int(bad[i]), converged=int(not bad[i] and final[i] < tc.loss_tol),
                     escape_step=int(escape[i])))
  results.MetricsWriter(workdir, COLUMNS, 'toy_chain.csv').write(rows)
  summary = analyze(workdir) if plots else measure(workdir)
  summary['wall_time_s'] = dict(total=round(time.time() - start, 2))
  results.write_json(os.path.join(workdir, 'summary.json'), results.json_safe(summary))   # last: marks the run finished
  return summary


def _load(workdir):
  with open(os.path.join(workdir, 'config.json')) as f:
    cfg = json.load(f)['toy_chain']
  return cfg, results.read_csv(os.path.join(workdir, 'toy_chain.csv'))


def fit_slope(x, y, level=0.95, quantum=0.0) -> dict:
  """`fits.linear_fit`, plus, with quantum > 0 (y measured as the largest lattice point below an edge, so the true
  y lies in [y, y + quantum)), the range of slopes the true edges allow: the t-interval alone can be of zero width
  when the lattice points happen to be collinear."""
  from superconsistency.fits import linear_fit
  x = np.asarray(x, float)
  fit = linear_fit(x, y, level)
  dx = x - x.mean()
  fit['grid_interval'] = [float(fit['slope'] + quantum * dx[dx < 0].sum() / (dx @ dx)),
                          float(fit['slope'] + quantum * dx[dx > 0].sum() / (dx @ dx))]
  return fit


def measure(workdir) -> dict:
  """The numbers, from config.json and toy_chain.csv only."""
  tc, rows = _load(workdir)
  step = 10 ** (1 / tc['etas_per_decade'])   # lattice ratio between neighbours
  # At η = (1 − δ)·η_max the loss contracts by (1 − 2δ)² per step, so runs with δ below this still sit above
  # loss_tol after num_steps steps: the criterion resolves the edge to within a factor (1 − δ_T) on top of the grid.
  delta_t = math.log(INITIAL_LOSS / tc['loss_tol']) / (4 * tc['num_steps'])
  out = dict(grid_ratio=step, criterion_resolution=delta_t, eta_table={}, slopes={}, escape={}, num_steps=tc['num_steps'], target=TARGET,
             loss_tol=tc['loss_tol'], escape_criterion='first step with loss < half the initial loss (0.5 -> 0.25)')
  for depth in tc['depths']:
    grid = [r for r in rows if r['kind'] == 'grid' and r['depth'] == depth]
    table = []
    for gamma in sorted({r['gamma'] for r in grid}):
      runs = sorted((r for r in grid if r['gamma'] == gamma), key=lambda r: r['eta'])
      ok = [r['eta'] for r in runs if r['converged']]
      emp = max(ok) if ok else float('nan')
      exact = runs[0]['eta_max_exact']
      table.append(dict(gamma=gamma, eta_max_empirical=emp, eta_max_exact=exact, ratio=emp / exact,
                        within_resolution=bool(exact * (1 - delta_t) / step < emp <= exact * (1 + 1e-12)),
                        at_window_top=bool(ok and emp == runs[-1]['eta']),
                        converged_below_edge=f'{sum(int(r["converged"]) for r in runs if r["eta"] <= emp)}/'
                                             f'{sum(r["eta"] <= emp for r in runs)}',
                        diverged_above_edge=f'{sum(r["diverged"] for r in runs if r["eta"] > emp)}/'
                                            f'{sum(r["eta"] > emp for r in runs)}'))
    out['eta_table'][str(depth)] = table
    g = np.array([t['gamma'] for t in table])
    emp, exact = np.array([t['eta_max_empirical'] for t in table]), np.array([t['eta_max_exact'] for t in table])
    out['slopes'][str(depth)] = {}
    for regime, sel, prediction in (('small_gamma', g <= tc['small_gamma_max'], 2.0),
                                    ('large_gamma', g >= tc['large_gamma_min'], 2.0 / depth)):
      fit = (fit_slope(np.log10(g[sel]), np.log10(emp[sel]), quantum=math.log10(step / (1 - delta_t)))
             if np.isfinite(emp[sel]).all() else {})
      out['slopes'][str(depth)][regime] = dict(
          fit, gammas=g[sel].tolist(), prediction_asymptotic=prediction,
          exact_formula_slope_same_gammas=float(np.polyfit(np.log10(g[sel]), np.log10(exact[sel]), 1)[0]))
    esc = sorted((r for r in rows if r['kind'] == 'escape' and r['depth'] == depth),
                 key=lambda r: (round(r['eta_over_exact'], 9), r['gamma']))
    out['escape'][str(depth)] = [dict(
        gamma=r['gamma'], eta_fraction=round(r['eta_over_exact'], 9), eta=r['eta'], steps=int(r['escape_step']),
        t_eta_over_gamma=r['escape_step'] * r['eta'] / r['gamma'] if r['escape_step'] >= 0 else float('nan'),
        flow_tau=flow_escape_tau(depth, r['gamma'])) for r in esc]
    large = [e for e in out['escape'][str(depth)] if e['gamma'] >= tc['large_gamma_min']]
    out['escape'][f'{depth}_large_gamma'] = [dict(
        eta_fraction=frac, gammas=[e['gamma'] for e in large if e['eta_fraction'] == frac], t_eta_over_gamma=[e['t_eta_over_gamma'] for e in large if e['eta_fraction'] == frac],
        measured_over_flow=[e['t_eta_over_gamma'] / e['flow_tau'] for e in large if e['eta_fraction'] == frac],
        flow_limit=1.0 / (depth - 2) if depth > 2 else 'none: grows like ln(gamma)/2 (L=2), gamma (L=1)')
        for frac in sorted({e['eta_fraction'] for e in large})]
  out['all_within_resolution'] = all(t['within_resolution'] for v in out['eta_table'].values() for t in v)
  return out


def analyze(workdir) -> dict:
  """measure(workdir) plus the figures analysis_toy_chain.png and analysis_toy_chain_stability.png."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  numbers = measure(workdir)
  tc, rows = _load(workdir)
  colors = dict(zip(tc['depths'], plt.cm.viridis(np.linspace(0, 0.85, len(tc['depths'])))))
  fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 5))
  for depth, color in colors.items():
    table = numbers['eta_table'][str(depth)]
    g = np.array([t['gamma'] for t in table])
    fine = np.logspace(np.log10(g[0]), np.log10(g[-1]), 200)
    fit_s, fit_l = (numbers['slopes'][str(depth)][k]['slope'] for k in ('small_gamma', 'large_gamma'))
    a.plot(g, [t['eta_max_empirical'] for t in table], 'o', color=color,
           label=f'L={depth} largest converging η (slopes {fit_s:.2f}, {fit_l:.2f})')
    a.plot(fine, eta_max_exact(depth, fine), '-', color=color, lw=1, label=f'L={depth} exact 2/λ_max')
    small, large = fine[fine <= 3], fine[fine >= 0.3]   # each asymptote drawn only near its own regime
    a.plot(small, 2 * small ** 2 / depth, ':', color=color, lw=1)
    a.plot(large, 2 / depth * large ** (2 / depth), '--', color=color, lw=1)
    b.plot(g, [t['ratio'] for t in table], 'o-', color=color, label=f'L={depth}')
    for frac, marker in zip(sorted({e['eta_fraction'] for e in numbers['escape'][str(depth)]}), 'sD^v'):
      esc = [e for e in numbers['escape'][str(depth)] if e['eta_fraction'] == frac]
      c.plot([e['gamma'] for e in esc], [e['t_eta_over_gamma'] for e in esc], marker, color=color, mfc='none',
             label=f'L={depth}, η = {frac:g}·η_max')
    c.plot(g, [flow_escape_tau(depth, x) for x in g], '-', color=color, lw=1, label=f'L={depth} gradient flow τ*')
  a.plot([], [], 'k:', label='2γ²/L (γ ≪ 1)')
  a.plot([], [], 'k--', label='(2/L)·γ^(2/L) (γ ≫ 1)')
  b.axhspan((1 - numbers['criterion_resolution']) / numbers['grid_ratio'], 1, color='0.85',
            label='resolution: one grid step (+ finite-T band) below exact')
  b.axhline(1, color='k', lw=0.8)
  for ax, title, ylabel in ((a, 'largest stable GD step on the scalar chain', 'η_max'),
                            (b, 'empirical / exact η_max', 'ratio'),
                            (c, 'plateau escape (loss < ½ initial) in τ = η·t/γ', 't·η/γ')):
    ax.set(xscale='log', xlabel='γ', ylabel=ylabel, title=title)
    ax.legend(fontsize=7)
  a.set_yscale('log')
  c.set_yscale('log')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, 'analysis_toy_chain.png'), dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(tc['depths']), figsize=(5 * len(tc['depths']), 4.2), squeeze=False, sharey=True)
  for ax, depth in zip(axes[0], tc['depths']):
    grid = [r for r in rows if r['kind'] == 'grid' and r['depth'] == depth]
    for label, color, pick in (('converged', 'tab:green', lambda r: r['converged']),
                               ('finite, not converged', 'tab:orange', lambda r: not r['converged'] and not r['diverged']),
                               ('diverged (non-finite)', 'tab:red', lambda r: r['diverged'])):
      sel = [r for r in grid if pick(r)]
      ax.scatter([r['gamma'] for r in sel], [r['eta_over_exact'] for r in sel], s=4, marker='s', color=color,
                 label=label)
    ax.axhline(1, color='k', lw=0.8, label='exact η_max')
    ax.set(xscale='log', yscale='log', xlabel='γ', title=f'L={depth}: GD outcome after {tc["num_steps"]} steps')
  axes[0][0].set_ylabel('η / exact η_max')
  fig.legend(*axes[0][0].get_legend_handles_labels(), loc='lower center', ncol=4, markerscale=3)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(os.path.join(workdir, 'analysis_toy_chain_stability.png'), dpi=110)
  plt.close(fig)
  return numbers
