"""The notebook-01 computations give the values the math says they must."""

import pytest

from linrepro.study import derivation as dv


def test_eq6_counterexample():
    c = dv.eq6_counterexample()
    assert c["weights"] == pytest.approx([1.0, 0.0, 0.0], abs=1e-12)
    assert c["bound_violated"]


def test_eq4_mean_weight_is_one_over_n_and_eq7_scores_do_not_decay():
    rows = dv.score_decay([16, 256], d=16, kinds=("random",), n_queries=8)
    for r in rows:
        if r["method"] in ("eq4", "softmax"):
            assert r["mean_weight"] == pytest.approx(1 / r["N"], rel=1e-9)
    eq7 = [r["mean_weight"] for r in rows if r["method"] == "eq7"]
    assert abs(eq7[0] - eq7[1]) < 0.05  # around s = 0.5 at every N


def test_norm_growth_slopes():
    rows = dv.eq7_norm_growth([64, 256, 1024, 4096], d=16)
    eq7 = [r for r in rows if r["variant"] == "eq7"]
    eq4 = [r for r in rows if r["variant"] == "eq4"]
    assert 0.35 < dv.loglog_slope([r["N"] for r in eq7], [r["mean_out_norm"] for r in eq7]) < 0.65
    assert dv.loglog_slope([r["N"] for r in eq4], [r["mean_out_norm"] for r in eq4]) < 0
    per_len = [r for r in rows if r["variant"] == "eq7 s=1/N"]
    assert dv.loglog_slope([r["N"] for r in per_len], [r["mean_out_norm"] for r in per_len]) < 0


def test_flops_cross_near_head_dim():
    assert dv.flop_crossover(64) in range(60, 80)
    r = dv.flop_counts([4096], 64)[0]
    assert r["softmax"] / r["linear"] == pytest.approx(4096 / 64, rel=0.1)


def test_factorisation_table_and_ranges():
    rows = dv.factorisation_errors([5, 33], [8])
    assert len(rows) == 2 * 2 * 2 * 2 and max(r["max_rel_err"] for r in rows) < 1e-10
    rng = dv.dot_product_range(64, 8)
    assert rng["within_[-1,1]"] and rng["max"] == pytest.approx(1.0) and rng["min"] == pytest.approx(-1.0)
    props = dv.weight_properties(32, 8)
    for tag in ("causal", "noncausal"):
        assert props[tag]["eq4_min_weight"] >= 0 and props[tag]["eq4_max_abs_rowsum_minus_1"] < 1e-12
        assert props[tag]["eq7_min_score"] >= 0 and props[tag]["eq7_max_score"] <= 1 + 1e-12
    with pytest.raises(ValueError, match="'bogus'"):
        dv.structured_inputs(4, 4, "bogus", None)
