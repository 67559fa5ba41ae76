"""Edge of stability under full-batch GD: μP holds η0·λ_max at 2 at every width, NTP does not ([SC], Cohen et al.).

    python -m superconsistency --config=configs/edge_of_stability.py --workdir=runs/edge_of_stability
    python -m superconsistency.analyze runs/edge_of_stability
    python -m superconsistency --config=configs/edge_of_stability.py:full --workdir=runs/eos_full   # GPU/TPU
    python -m superconsistency --config=configs/edge_of_stability.py:adam --workdir=runs/eos_adam   # full-batch Adam

A 3-layer ReLU MLP on 512 MNIST-1D examples, trained by plain gradient descent: the batch is the whole training
set (batch_size = num_train = 512, so every step is one epoch and sees all 512 examples). The loss is MSE on
one-hot targets, because under cross-entropy the sharpness falls once the data are fit. train_loss and the
sharpness are measured on the same 512 examples (loss_batch = sharpness_batch = num_train; in epoch mode the
measurement set is the first training examples), so `sharpness` is λ_max of the Hessian of the full-batch training
loss, and `lr_sharpness` = η·λ_max, whose edge of stability is 2. One rate each: μP η0 = 4 (step-0
lr_sharpness about 0.2, far below the edge) and NTP η0 = 32 (step-0 lr_sharpness 1.2 to 2.0, already near the
edge); widths 64–512 (8×), seeds 0, 1, 2, 2000 steps with a measurement every 50 (20 Lanczos iterations), plus the
top NTK eigenvalue on 32 examples (ntk_eig_1 raw, ntk_lr_eig_1 rate-weighted).

Runtime: 272 s and 415 s (4.5–7 min) in two runs on this 2-core CPU, compile cache cold, each with other work
sharing the CPU (the second is the gallery's, results/edge_of_stability).

What we measured (window = steps 1000–2000, 21 measurements; for each lane the median of lr_sharpness over the
window, then min/median/max over the 3 seeds):
  μP   N=64 2.111/2.116/2.122  N=128 2.106/2.110/2.134  N=256 2.101/2.101/2.115  N=512 2.084/2.087/2.095
  NTP  N=64 1.963/1.972/1.993  N=128 1.850/1.985/1.988  N=256 1.710/1.774/1.776  N=512 1.402/1.577/1.655
Under μP, lr_sharpness goes above 1.8 at step 300–500 for all 12 lanes. It then oscillates slightly above 2
(2.03–2.24 across the window, and 81–100% of a lane's window points lie in [1.8, 2.2]), as Cohen et al. report
for GD. The per-width medians have a coefficient of variation across widths of 0.5%. `analyze` reports a late-mean
CV of 0.012 for η·λ_max(H). Under NTP, progressive sharpening weakens as the width grows, so the curves separate:
N=64 and 128 reach 2, but N=256 and 512 do not; at N=512 no window point of any seed reaches 1.8 (the window
maximum is 1.73). The per-width medians have a CV of 9%, and `analyze` reports 0.097. Final train_loss: μP 7e-3 (N=64)
to 3e-4 (N=512); NTP 1.4e-2 to 1.3e-3. The NTK's rate-weighted top eigenvalue grows about 15× under μP
(ntk_lr_eig_1 37→535 at N=64, 29→444 at N=512: the kernel moves) but only about 1.25× under NTP (296→370,
229→285: it is nearly lazy). The raw ntk_eig_1 of μP scales as 1/N by construction (0.145 at N=64, 0.014 at
N=512 at step 0), so compare the rate-weighted column across widths.
Band to state: the window median of μP lr_sharpness lies in [2.05, 2.15] for every width and seed (inside
[1.8, 2.2]); NTP's lies below 1.8 at N=256 and 512 for every seed.

`:full`: widths 128–4096, 4000 steps, a measurement every 100 steps. It was not run on an accelerator. A CPU check of
its horizon (4000 steps, seed 0, widths 64/512/1024, 6 min) gives window (steps 2000–4000) medians of μP 2.11, 2.03,
2.03 and NTP 2.03, 1.82, 1.52: μP keeps the edge to the end, while NTP at N=512 creeps just above 1.8 by step 2700
and at N=1024 levels off near 1.5.

`:adam`: the same full-batch setup (same data, MSE loss, widths 64–512, seeds 0–2), but trained with Adam (β1 = 0.9,
β2 = 0.999, ε = 1e-8; μP's Adam rules as in docs/parameterizations.md, so hidden layers get η0/√N). This is Cohen et
al.'s (2022) adaptive edge of stability. The quantity is `adam_sharpness` = λ_max(D^½HD^½), where D = η/(√v̂ + ε) is
Adam's per-parameter step. The rate is already in D, so the column is compared directly with
`adam_sharpness_threshold` = (2+2β1)/(1−β1) = 38. One rate, η0 = 0.1, for both μP and NTP. 600 steps, a measurement
every 30 steps, 20 Lanczos iterations (30 gave the same values to within 0.1), and no NTK measurement.
  python -m superconsistency --config=configs/edge_of_stability.py:adam --workdir=runs/eos_adam
Runtime: 476 s on this 2-core CPU while another job kept the load average near 4 (results/edge_of_stability_adam
is that run).
What we measured (window = steps 300–600, 11 measurements; for each lane the median of adam_sharpness over the
window, then min/median/max over the 3 seeds):
  μP   N=64 37.2/37.4/37.5  N=128 38.1/38.2/38.2  N=256 37.6/37.8/38.1  N=512 37.4/38.2/38.2
  NTP  N=64 36.7/37.3/38.0  N=128 36.5/37.2/37.2  N=256 35.7/37.5/38.4  N=512 37.0/37.0/37.5
Under μP, adam_sharpness climbs past 0.8·38 by step 60–90 in all 12 lanes. It then oscillates around the threshold:
every window point lies between 35.7 and 39.2. The per-width medians vary by 0.9% (CV) across widths. Final
train_loss: 7e-4 at N=64, and 4e-6 to 4e-4 at N=128–512. At this rate NTP reaches the adaptive edge too (by step
60–120, with window points between 31.6 and 41.1 and a CV of 0.4%), unlike NTP under GD. That fits Adam: each entry
moves by about η whatever the width, so NTP with Adam at a fixed η0 is not lazy. Its feature_movement at step 600
grows with width (seed 0: 4.4 at N=64, 8.4 at N=512), while μP's stays at 4.0–4.3 at every width. The raw λ_max(H)
sharpens too (for seed 0, μP's ends 50–65× above its step-0 value; how much of the rise in adam_sharpness comes from
H and how much from the preconditioner was not separated). So with Adam the parameterizations differ in how far the
features move and in the loss (NTP ends at 8e-4 to 5e-3), not in whether they reach the edge. Smaller rates need more
steps. Over 1000 steps, μP η0 = 0.03 reached the edge by step ~400 (N=64) and ~250 (N=512), while η0 = 0.01 was still
at 19 (N=64) and 25 (N=512) at step 1000. In a 600-step run, NTP η0 = 0.03 reached it by step ~300–330. `:adam,full`
runs the `:full` widths and horizon with Adam. It has not been run.
"""
from superconsistency.config import defaults, options, set_optimizer


def get_config(arg: str = ''):
  words = options(arg, ('full', 'adam'), 'edge_of_stability')
  full, adam = 'full' in words, 'adam' in words
  c = defaults(model='mlp')
  c.depths = (3,)
  c.widths = (64, 128, 256, 512)
  c.parameterizations = ('mup', 'ntk')
  c.loss = 'mse'                      # cross-entropy's sharpness decays once the data are fit
  c.sweep.lrs.mup = (4.0,)
  c.sweep.lrs.ntk = (32.0,)
  c.plot.trajectory_lrs.mup = 4.0
  c.plot.trajectory_lrs.ntk = 32.0
  c.sweep.seeds = (0, 1, 2)
  c.data.num_train = 512              # full batch: one step = one epoch over the whole fixed training set
  c.data.batch_size = 512
  c.measure.loss_batch = 512          # = the training set: train_loss is the full-batch loss ...
  c.measure.sharpness_batch = 512     # ... and sharpness the top eigenvalue of its Hessian
  c.measure.num_iters = 20
  c.measure.ntk_k = 1
  c.measure.ntk_batch = 32            # a 320 × 320 kernel
  c.num_steps = 2000
  c.measure_every = 50
  c.loss_cap = 1e4
  c.coord_check.enabled = False
  if adam:                            # full-batch Adam: λ_max(P⁻¹H) against (2+2β1)/(1−β1) = 38
    set_optimizer(c, 'adam')          # β1 = 0.9, β2 = 0.999; μP hidden rates η0/√N (docs/parameterizations.md)
    c.optimizer.eps = 1e-8
    c.sweep.lrs.mup = (0.1,)          # reaches 38 by step ~100 at every width; η0 = 0.01 is still at 19-25 at 1000
    c.sweep.lrs.ntk = (0.1,)
    c.plot.trajectory_lrs.mup = 0.1
    c.plot.trajectory_lrs.ntk = 0.1
    c.num_steps = 600
    c.measure_every = 30
    c.measure.num_iters = 20          # 30 iterations give the same adam_sharpness to ±0.1
    c.measure.ntk_k = 0               # saves time; the GD run covers the NTK
  if full:                            # GPU/TPU scale
    c.widths = (128, 256, 512, 1024, 2048, 4096)
    c.num_steps = 4000
    c.measure_every = 100
  return c
