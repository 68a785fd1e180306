"""The declared decision rules, fed synthetic evidence (issue 14's acceptance)."""

import json

import pytest
from test_claims import DERIV, _by_n, _run, _timing

from linrepro.study import claims, rules


@pytest.mark.parametrize(
    ("est", "ci", "band", "verdict"),
    [
        (1.2, (-3.0, 5.4), rules.LA_SLOPE, "inconclusive"),  # an uninformative interval never supports
        (2.05, (1.95, 2.15), rules.SOFTMAX_SLOPE, "supported"),
        (1.0, (0.9, 1.1), rules.SOFTMAX_SLOPE, "contradicted"),  # wholly outside 2 ± 0.25
        (1.8, (1.6, 2.0), rules.SOFTMAX_SLOPE, "inconclusive"),  # straddles the band's edge
        (2.0, (1.75, 2.25), rules.SOFTMAX_SLOPE, "supported"),  # the edges belong to the band
        (2.0, (None, None), rules.SOFTMAX_SLOPE, "inconclusive"),  # no interval, no decision
        (2.0, (float("nan"), 2.1), rules.SOFTMAX_SLOPE, "inconclusive"),
    ],
)
def test_the_rule(est, ci, band, verdict):
    r = rules.decide(est, *ci, band)
    assert r["verdict"] == verdict, r
    assert r["band"] == [band.lo, band.hi] and r["rule"] == rules.RULE
    assert f"[{band.lo:g}, {band.hi:g}]" in r["text"] and verdict in r["text"]
    if verdict == "inconclusive" and ci[0] is not None and ci[1] == ci[1] and ci[0] == ci[0]:
        assert f"{r['width']:.3g}" in r["why"]  # the interval's width is stated


def test_one_seed_caps_a_question_about_models_at_inconclusive():
    tight = rules.decide(0.01, -0.02, 0.04, rules.SAME_EXPONENT, seeds=1, between_models=True)
    assert tight["verdict"] == "inconclusive" and tight["decided_before_cap"] == "supported"
    assert "exploratory" in tight["why"] and "1 seed" in tight["why"]
    assert rules.decide(0.01, -0.02, 0.04, rules.SAME_EXPONENT, seeds=3, between_models=True)["verdict"] == "supported"


def test_bands_are_declared_and_checked():
    with pytest.raises(ValueError, match="lo < hi"):
        rules.Band("x", 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown basis 'vibes'"):
        rules.check_basis("vibes")
    assert set(rules.BANDS) >= {"softmax_slope", "la_slope", "speedup_4m", "same_exponent", "same_accuracy"}


def test_the_ledger_applies_the_rule_to_synthetic_timing(tmp_path):
    _run(tmp_path, "cpu", "01_kernel_derivation", DERIV)
    _run(tmp_path, "cpu", "02_attention_timing", _timing(1.2, (-3.0, 5.4), 2.05, (1.95, 2.15)))
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert v[2]["verdict"] == v[5]["verdict"] == "inconclusive"
    assert "width 8.40" in v[2]["evidence"] and v[2]["rule"]["band"] == [0.75, 1.25]
    assert v[1]["verdict"] == v[6]["verdict"] == "supported"
    # CPU-only evidence is never the paper's setup
    assert v[1]["basis"] == v[2]["basis"] == "proxy"
    # claims sharing one measurement share a group and count once
    s = claims.summary(claims.evaluate(tmp_path, ("cpu",)))
    assert v[1]["group"] == v[6]["group"] and v[2]["group"] == v[5]["group"]
    groups = s["measurements"]["groups"]
    assert sorted(groups[v[1]["group"]]["claims"]) == [1, 6]
    assert s["measurements"]["counts"]["supported"] == 1  # 1 and 6, one measurement
    assert "decided by a measurement on the paper's setup" in s["headline"]


def test_softmax_against_a_band_it_misses_is_contradicted(tmp_path):
    _run(tmp_path, "cpu", "02_attention_timing", _timing(1.0, (0.9, 1.1), 1.0, (0.9, 1.1)))
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert v[1]["verdict"] == "contradicted" and v[1]["basis"] == "proxy"
    assert v[2]["verdict"] == "supported"


def test_only_an_h200_at_the_papers_shape_is_the_paper_setup(tmp_path):
    t = _timing(1.0, (0.95, 1.05), 2.0, (1.95, 2.05), device_cuda={"name": "NVIDIA H200"})
    t["config"] = {"batch": 4, "heads": 8, "head_dim": 64, "dtype": "bfloat16"}
    _run(tmp_path, "h200", "02_attention_timing", t, reference=True)
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert v[1]["basis"] == "paper setup" and v[1]["verdict"] == "supported"
    t["config"]["dtype"] = "float32"  # an H200, but not the paper's dtype: a proxy
    (tmp_path / "reference/h200/02_attention_timing/20260101-000000-aaaaaa/results.json").write_text(json.dumps(t))
    assert _by_n(claims.evaluate(tmp_path, ("cpu",)))[1]["basis"] == "proxy"
    assert not rules.is_paper_setup({"device": {"cpu": "AMD EPYC", "cuda": None}}, t["config"])


def test_missing_evidence_is_not_testable_with_the_path(tmp_path):
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    for n in (1, 2, 14, 15, 16, 17):
        assert v[n]["verdict"] == "not testable here", v[n]
    assert str(tmp_path / "cpu" / "02_attention_timing") in v[1]["evidence"]
    assert str(tmp_path / "reference" / "cpu" / "01_kernel_derivation") in v[15]["evidence"]


def test_construction_and_configuration_are_labelled(tmp_path):
    deriv = json.loads(json.dumps(DERIV))
    deriv["needle_max_weight_loglog_slope"]["eq7 s=1/N"] = -1.0
    deriv["flop_crossover_N"], deriv["flop_ratio_at_4M"] = 67, 65536.0
    _run(tmp_path, "cpu", "01_kernel_derivation", deriv)
    _run(tmp_path, "cpu", "02_attention_timing", _timing(1.0, (0.9, 1.1), 2.0, (1.9, 2.1)))
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    for n in (14, 15, 16, 17):
        assert v[n]["basis"] == "by construction", v[n]
    assert "s ≤ ½" in v[17]["evidence"] and "Cauchy" in v[15]["evidence"]
    assert "N^-1.00 under eq7 with s = 1/N" in v[16]["evidence"] and "circular" in v[16]["evidence"]
    assert "not by timing" in v[14]["evidence"]
    for n in (3, 4, 8, 9, 10, 11, 12, 13):
        assert v[n]["basis"] == "configuration" and v[n]["verdict"] == "not testable here", v[n]
    assert "Fastmax" in v[4]["evidence"] and "integer" in v[4]["evidence"]
    s = claims.summary(list(v.values()))
    assert s["by_basis"]["by construction"]["supported"] == 4
    assert "4 are true by construction" in s["headline"] and "8 are what linrepro's configuration sets" in s["headline"]


def test_findings_with_one_seed_are_exploratory(tmp_path):
    fits = {
        "digits": {
            "fits": {
                "softmax": {"b": 0.3, "b_lo": 0.28, "b_hi": 0.32, "x": [1, 2, 3]},
                "eq7": {"b": 0.31, "b_lo": 0.29, "b_hi": 0.33, "x": [1, 2, 3]},
            },
            "differences": {
                "eq7": {
                    "diff": 0.01,
                    "diff_lo": -0.02,
                    "diff_hi": 0.04,
                    "intervals_overlap": True,
                    "diff_interval_contains_0": True,
                }
            },
        }
    }
    train = _run(tmp_path, "cpu", "03_clip_training", {"digits_top1": {"tiny-S/eq7": 0.9}})
    (train / "params.yaml").write_text("seed: 0\n")
    _run(tmp_path, "cpu", "05_scaling_laws", {"fits": fits})
    (row,) = [r for r in claims.findings(tmp_path, ("cpu",)) if "(05)" in r["topic"]]
    assert row["verdict"] == "inconclusive" and "exploratory" in row["text"] and row["basis"] == "proxy"
    (train / "params.yaml").write_text("seeds: [0, 1, 2]\n")
    (row,) = [r for r in claims.findings(tmp_path, ("cpu",)) if "(05)" in r["topic"]]
    assert row["verdict"] == "supported"


def test_claims_8_and_13_cite_notebook_08(tmp_path):
    _run(tmp_path, "cpu", "01_kernel_derivation", DERIV)
    variants = ("softmax", "eq4", "eq7 s=0.5", "eq7 s=1/N", "released")
    h = {
        k: dict.fromkeys(variants, 0.0)
        for k in (
            "uses_projections",
            "trainable_params",
            "text_future_share",
            "vision_token_share",
            "vision_score_min",
            "vision_score_max",
            "vision_dot_min",
            "vision_dot_max",
            "vision_min_query_norm",
            "norm_slope",
        )
    }
    h["vision_score_max"]["released"], h["text_future_share"]["released"] = 2.0, 0.27
    h["uses_projections"]["released"], h["trainable_params"]["released"] = False, 0
    h["trainable_params"]["eq7 s=1/N"] = 9408
    acc = {"status": "not run", "reason": "no 03 run trained released", "rows": []}
    d = _run(tmp_path, "cpu", "08_paper_vs_released_code", {"headline": h, "accuracy": acc})
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert "weights up to 2.00" in v[13]["evidence"] and "27% of later text tokens" in v[13]["evidence"]
    assert "no 03 run trained released" in v[13]["evidence"] and v[13]["link"].startswith("cpu/08_")
    assert (
        "9408 attention parameters" not in v[8]["evidence"] and "0 attention parameters are trained" in v[8]["evidence"]
    )
    found = claims.findings(tmp_path, ("cpu",))
    assert any("(08)" in r["topic"] and r["link"].startswith("cpu/08_") for r in found)
    acc.update(
        status="ok",
        rows=[{"domain": "digits", "contrast": "released − eq7", "diff": -0.1, "ci_low": -0.2, "ci_high": 0.0}],
    )
    (d / "results.json").write_text(json.dumps({"headline": h, "accuracy": acc}))
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert "digits released − eq7 -0.100 [-0.200, +0.000]" in v[13]["evidence"]
    acc["rows"] = [{"model": "tiny-B", "domain": "shapes", "baseline": "softmax", "diff": 0.05, "ci_low": None}]
    acc["status"] = "measured"  # notebook 08's own word
    (d / "results.json").write_text(json.dumps({"headline": h, "accuracy": acc}))
    assert "tiny-B shapes released − softmax +0.050" in _by_n(claims.evaluate(tmp_path, ("cpu",)))[13]["evidence"]
