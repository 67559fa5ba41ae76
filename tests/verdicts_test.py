"""The gallery's verdicts: each rule on analysis dicts whose answer is known, and the committed summary table equal
to the one generated from the committed analysis files (so the README's numbers cannot drift from them)."""
import pytest

from conftest import ROOT
from superconsistency import verdicts


def _transfer(drift, lo, hi, censored=(None, None)):
  return dict(parameterization='mup', size_axis='width', sizes=[64, 512], best_lrs=[1.0, 10 ** drift], seeds=[0, 1, 2],
              drift_decades=drift, drift_interval_decades=[lo, hi], censored=list(censored),
              tolerance_decades=0.3)


@pytest.mark.parametrize('entry, expect, verdict', [
    (_transfer(0.05, -0.1, 0.2), 'transfers', 'agrees'),
    (_transfer(0.05, -0.1, 0.2), 'shifts', 'disagrees'),
    (_transfer(0.9, 0.6, 1.2), 'shifts', 'agrees'),
    (_transfer(0.9, 0.6, 1.2), 'transfers', 'disagrees'),
    (_transfer(0.2, -0.1, 0.5), 'transfers', 'inconclusive'),
    (_transfer(0.0, -0.1, 'inf', censored=(None, 'above')), 'transfers', 'censored'),   # as json_safe writes inf
])
def test_transfer_claims_follow_best_rate_classify(entry, expect, verdict):
  measured, got = verdicts.transfer('mup', expect)(dict(transfer={'mup/depth=3': entry}))
  assert got == verdict
  assert f'{entry["drift_decades"]:+.2f}' in measured


def test_a_size_that_trains_at_no_rate_is_judged_over_the_sizes_that_do():
  entry = dict(_transfer(float('nan'), None, None), sizes=[2, 8, 32], best_lrs=[1.0, 0.1, float('nan')],
               censored=[None, None, None])
  assert verdicts.transfer('mup', 'shifts')(dict(transfer={'mup/width=64': entry}))[1] == 'inconclusive'
  entry['over_trained_sizes'] = dict(sizes=[2, 8], untrained_sizes=[32], drift_decades=-1.0,
                                     drift_interval_decades=[-1.3, -0.7], censored=[None, None],
                                     tolerance_decades=0.3)
  measured, got = verdicts.transfer_where_trained('mup', 'shifts')(dict(transfer={'mup/width=64': entry}))
  assert got == 'agrees' and '-1.00' in measured and 'no rate trains at width 32' in measured
  entry['over_trained_sizes'].update(drift_interval_decades=[-0.2, 0.1])
  assert verdicts.transfer_where_trained('mup', 'shifts')(dict(transfer={'mup/width=64': entry}))[1] == 'disagrees'
  # every size trains: the plain transfer rule
  del entry['over_trained_sizes']
  assert verdicts.transfer_where_trained('mup', 'shifts')(dict(transfer={'mup/width=64': entry}))[1] == 'inconclusive'


def _consistency(p, name, by_seed, medians=None, threshold=None):
  vals = list(by_seed.values())
  return {p: dict(quantities={name: dict(label=name, cv_late_mean=sum(vals) / len(vals),
                                         cv_late_median=sorted(vals)[len(vals) // 2],
                                         cv_late_median_by_seed=by_seed, cv_late_interval=[min(vals), max(vals)],
                                         late_median_by_size_seed=medians or {}, threshold=threshold)})}


def test_consistency_needs_every_seed_on_the_same_side_of_the_threshold():
  judge = verdicts.consistent('mup', 'lr_sharpness', True)
  assert judge(dict(consistency=_consistency('mup', 'lr_sharpness', {'0': 0.03, '1': 0.05, '2': 0.08})))[1] == 'agrees'
  assert judge(dict(consistency=_consistency('mup', 'lr_sharpness', {'0': 0.03, '1': 0.15})))[1] == 'inconclusive'
  assert judge(dict(consistency=_consistency('mup', 'lr_sharpness', {'0': 0.3, '1': 0.25})))[1] == 'disagrees'
  assert verdicts.consistent('mup', 'lr_sharpness', False)(
      dict(consistency=_consistency('mup', 'lr_sharpness', {'0': 0.3, '1': 0.25})))[1] == 'agrees'
  assert judge(dict(consistency={}))[1] == 'inconclusive'


def test_edge_of_stability_is_held_only_when_every_size_and_seed_sits_in_the_band():
  held = {'64x3': {'0': 1.95, '1': 2.05}, '512x3': {'0': 2.1, '1': 2.0}}
  a = dict(consistency=_consistency('mup', 'lr_sharpness', {'0': 0.02}, held))
  assert verdicts.edge_of_stability('mup', True)(a)[1] == 'agrees'
  lazy = {'64x3': {'0': 1.95}, '512x3': {'0': 0.6}}
  a = dict(consistency=_consistency('ntk', 'lr_sharpness', {'0': 0.5}, lazy))
  assert verdicts.edge_of_stability('ntk', False)(a)[1] == 'agrees'
  assert verdicts.edge_of_stability('ntk', True)(a)[1] == 'disagrees'


def test_adam_threshold_reached_not_reached_or_in_between():
  judge = verdicts.adam_edge('mup')
  make = lambda meds: dict(consistency=_consistency('mup', 'adam_sharpness', {'0': 0.1},
                                                    {'64x3': {str(i): m for i, m in enumerate(meds)}}, 38.0))
  assert judge(make([36.0, 40.0]))[1] == 'agrees'
  assert judge(make([2.2, 2.8]))[1] == 'disagrees'
  assert judge(make([2.2, 36.0]))[1] == 'inconclusive'


def test_slopes_agree_when_the_interval_holds_the_prediction():
  g = lambda lo, hi: {'mup/depth=3/width=128': dict(fits=dict(eta_star_small=dict(slope=2.0, ci95=[lo, hi])),
                                                    prediction_small=2.0)}
  judge = verdicts.slope(lambda k: True, 'eta_star_small', 'prediction_small', 'small')
  assert judge(dict(gamma_eta=g(1.8, 2.2)))[1] == 'agrees'
  assert judge(dict(gamma_eta=g(2.1, 2.5)))[1] == 'disagrees'
  assert judge(dict(gamma_eta=g(None, None)))[1] == 'inconclusive'


def test_gradient_growth_rule():
  a = lambda lo, hi: dict(gradient={'v': dict(slope_per_layer=dict(slope=(lo + hi) / 2, ci95=[lo, hi]))})
  assert verdicts.bn_gradient('v', True)(a(-2e-3, -1e-3))[1] == 'agrees'      # slowly shrinking: bounded
  assert verdicts.bn_gradient('v', True)(a(0.018, 0.02))[1] == 'disagrees'
  assert verdicts.bn_gradient('v', False)(a(0.018, 0.02))[1] == 'agrees'
  assert verdicts.bn_gradient('v', True)(a(0.0, 0.002))[1] == 'inconclusive'


def test_the_committed_summary_table_is_the_generated_one():
  import os
  assert verdicts.main([os.path.join(ROOT, 'results'), '--check']) == 0


def test_a_readme_without_the_block_is_refused(tmp_path):
  (tmp_path / 'README.md').write_text('# no table here\n')
  assert verdicts.main([str(tmp_path), '--check']) == 2


def test_the_kernel_moves_or_stays():
  def a(p, growth_small, growth_large):
    q = dict(label='ntk', late_median_by_size_seed={'64x3': {'0': growth_small}, '512x3': {'0': growth_large}},
             first_by_size_seed={'64x3': {'0': 1.0}, '512x3': {'0': 1.0}})
    return dict(consistency={p: dict(quantities={'ntk_lr_eig_1': q})})
  assert verdicts.kernel_moves('mup', True)(a('mup', 15.0, 14.0))[1] == 'agrees'
  assert verdicts.kernel_moves('ntk', False)(a('ntk', 1.3, 1.2))[1] == 'agrees'
  assert verdicts.kernel_moves('ntk', False)(a('ntk', 3.0, 1.2))[1] == 'agrees'     # lazy at the largest width
  assert verdicts.kernel_moves('mup', True)(a('mup', 3.0, 1.2))[1] == 'disagrees'
  assert verdicts.kernel_moves('mup', True)(dict(consistency={}))[1] == 'inconclusive'


def test_bn_training_rules_read_the_stacked_weights_analysis():
  def sw(gap_end, slope_ci, deep_lr=0.01, deep_loss=0.5):
    fit = lambda: dict(slope=sum(slope_ci) / 2, ci95=list(slope_ci))
    depth = lambda lr, loss: dict(best_lr=lr, final_train_loss=loss, diverged_lrs=[] if lr else [0.01, 0.03],
                                  orthogonality_gap=[0.0, gap_end], orthogonality_gap_max=[0.0, 2 * gap_end])
    return dict(stacked_weights={'sp/width=64': dict(
        by_depth={'100': depth(0.01, 0.1), '1000': depth(deep_lr, deep_loss)},
        grad_slope_by_step=[dict(step=s, w1=fit(), ratio=fit()) for s in (0, 200)],
        grad_slope_at_init=dict(w1=fit(), ratio=fit()))})
  assert verdicts.stays_orthogonal(sw(0.1, (0, 1)))[1] == 'agrees'
  assert verdicts.stays_orthogonal(sw(0.6, (0, 1)))[1] == 'disagrees'
  assert verdicts.stays_orthogonal({})[1] == 'inconclusive'
  assert verdicts.grad_in_training(sw(0.1, (-1e-4, 1e-4)))[1] == 'agrees'
  assert verdicts.grad_in_training(sw(0.1, (0.01, 0.02)))[1] == 'disagrees'
  assert verdicts.grad_at_init_grows(sw(0.1, (0.01, 0.02)))[1] == 'agrees'
  assert verdicts.grad_at_init_grows(sw(0.1, (-1e-4, 1e-4)))[1] == 'disagrees'
  assert verdicts.fails_at_depth(sw(0.1, (0, 1), deep_lr=None))[1] == 'agrees'      # every rate diverged
  assert verdicts.fails_at_depth(sw(0.1, (0, 1), deep_loss=2.0))[1] == 'agrees'     # above ln 10 / 2
  assert verdicts.fails_at_depth(sw(0.1, (0, 1)))[1] == 'disagrees'
