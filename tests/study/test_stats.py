"""Intervals over seeds then images, paired differences and Holm, against independent references."""

import numpy as np
import pytest
from scipy import stats as sps

from linrepro.study import stats


def test_holm_matches_the_textbook_example():
    # Holm (1979) style worked example: sorted p 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="1.5"):
        stats.holm([0.1, 1.5])


def test_holm_controls_the_family_wise_error_under_the_null():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(4000, 6))
    rejected_any = np.array([min(stats.holm(row)) <= 0.05 for row in p])
    assert rejected_any.mean() <= 0.05 + 0.01  # Bonferroni-Holm bound


def test_one_seed_interval_is_the_image_bootstrap():
    rng = np.random.default_rng(1)
    x = (rng.uniform(size=400) < 0.7).astype(float)
    r = stats.seed_image_interval([x], n_resamples=4000)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(2))
    assert r["seeds"] == 1 and r["mean"] == pytest.approx(x.mean())
    assert r["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert r["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=0.01)


def test_seed_variation_widens_the_interval():
    rng = np.random.default_rng(3)
    base = rng.uniform(size=300)
    same = [(base < 0.7).astype(float)] * 3  # three seeds that agree image by image
    spread = [(base < q).astype(float) for q in (0.55, 0.7, 0.85)]  # seeds that disagree
    w_same = np.diff([stats.seed_image_interval(same)[k] for k in ("ci_low", "ci_high")])[0]
    w_spread = np.diff([stats.seed_image_interval(spread)[k] for k in ("ci_low", "ci_high")])[0]
    assert w_spread > 1.5 * w_same


def test_paired_difference_finds_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(4)
    n, seeds = 400, 3
    a = [(rng.uniform(size=n) < 0.6).astype(float) for _ in range(seeds)]
    b_better = [np.maximum(x, (rng.uniform(size=n) < 0.2).astype(float)) for x in a]  # +~8 points
    r = stats.paired_difference(a, b_better)
    assert r["diff"] > 0.05 and r["ci_low"] > 0 and r["p_value"] < 0.01
    assert r["t_test_p"] is not None and r["t_test_p"] < 0.05
    null = stats.paired_difference(a, [x.copy() for x in a])
    assert null["diff"] == 0 and null["ci_low"] == null["ci_high"] == 0 and null["p_value"] == 1.0
    # pairing matters: the paired interval is narrower than one built from independent intervals
    ia, ib = stats.seed_image_interval(a), stats.seed_image_interval(b_better)
    assert (r["ci_high"] - r["ci_low"]) < (ia["ci_high"] - ia["ci_low"]) + (ib["ci_high"] - ib["ci_low"])


def test_paired_difference_coverage_on_simulated_models():
    """95% intervals cover the true difference in about 95% of simulated studies."""
    rng = np.random.default_rng(5)
    hits = 0
    trials = 120
    for _ in range(trials):
        p_img = rng.uniform(0.3, 0.9, size=200)  # image difficulty, shared by both methods
        a = [(rng.uniform(size=200) < p_img).astype(float) for _ in range(3)]
        b = [(rng.uniform(size=200) < np.clip(p_img + 0.05, 0, 1)).astype(float) for _ in range(3)]
        true = float(np.mean(np.clip(p_img + 0.05, 0, 1) - p_img))
        r = stats.paired_difference(a, b, n_resamples=500, seed=int(rng.integers(1 << 30)))
        hits += r["ci_low"] <= true <= r["ci_high"]
    assert hits / trials >= 0.85


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="same images"):
        stats.seed_image_interval([[1, 0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"same \(seeds, images\) shape"):
        stats.paired_difference([[1, 0]], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="n_resamples"):
        stats.seed_image_interval([[1, 0]], n_resamples=10)
    with pytest.raises(ValueError, match="NaN"):
        stats.seed_image_interval([[1, float("nan")]])
