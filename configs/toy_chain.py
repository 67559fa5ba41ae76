"""[G]'s scalar chain toy model: largest stable GD step and plateau escape time against γ (toy_chain.py).

    python -m superconsistency --config=configs/toy_chain.py --workdir=results/toy_chain --noprogress

Runtime: about 5 s on a 2-core laptop CPU (3.7 s reported, 5.5 s wall clock with Python start-up; 5 016 GD runs of
10 000 steps in one compiled program, float64).
Expect (measured): for L = 2, 3, 4 and γ = 10^-2 … 10^3 (half-decades) the largest converging η on the 2.3 % lattice
is 0.977–0.998 of the exact 2γ²/(L(1+γ)^(2−2/L)), i.e. within one lattice step below it every time, and nothing above
it converges. Log-log slopes (OLS, 95 % t-interval; in brackets the range the lattice quantization allows):
  γ ≤ 0.1:  L=2 1.96 [1.81, 2.11], L=3 1.95 [1.73, 2.17], L=4 1.94 [1.79, 2.09]  vs 2 (the exact formula's own slope
            over these three γ is 1.963, 1.951, 1.944: the shortfall is finite γ, not noise)
  γ ≥ 100:  L=2 1.000 (lattice ±0.01), L=3 0.670 [0.60, 0.74], L=4 0.500 (lattice ±0.01)  vs 2/L = 1, 0.667, 0.5
  (the t-intervals at L = 2, 4 have zero width because the three lattice points happen to be collinear).
Plateau escape (loss below half its start) at η = 0.1·η_max, γ = 100, 316, 1000: t·η/γ = 1.98, 2.59, 3.20 (L=2, grows
like ½·ln γ), 0.74, 0.83, 0.89 (L=3, → 1), 0.44, 0.47, 0.48 (L=4, → 0.5), within 1–6.5 % of gradient flow's τ*;
at 0.5·η_max the same within 4–33 % (coarser steps). For γ ≤ 0.1 escape takes 1–2 steps (lazy regime, t·η/γ ∝ γ).
"""
from superconsistency.config import options
from superconsistency.toy_chain import defaults


def get_config(arg: str = ''):
  full = 'full' in options(arg, ('full',), 'toy_chain')
  c = defaults()
  c.dtype = 'float64'   # γ = 0.01 cancels two digits in w1·…·wL − 1, and loss_tol = 1e-12 is below float32
  if full:   # γ over ten decades in quarter-decades, L up to 6 (still minutes on a CPU)
    c.toy_chain.depths = (2, 3, 4, 5, 6)
    c.toy_chain.gamma_log10_range = (-5.0, 5.0)
    c.toy_chain.gammas_per_decade = 4
  return c
