"""Notebook 08's measurements (linrepro.study.released) give what the math of each variant says."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from linrepro.study import released as rs


@pytest.fixture(scope="module")
def table():
    rows = rs.property_table(24, 3, 12, [16, 64, 256], seed=0, eq7_scales=(0.5, "1/N"))
    return {r["variant"]: r for r in rows}


def test_property_table_rows(table):
    assert list(table) == ["softmax", "eq4", "eq7 s=0.5", "eq7 s=1/N", "released"]
    rel = table["released"]
    # the released code uses no projection, trains none of them, and ignores the causal mask
    assert rel["uses_projections"] is False and rel["trainable_params"] == 0
    assert all(
        table[v]["uses_projections"] and table[v]["trainable_params"] == 4 * 24 * 24 + 4 * 24
        for v in table
        if v != "released"
    )
    # 12 tokens, 3 heads by plain reshape: runs of 4 tokens; later tokens in the run: 3·(3+2+1) of 66 pairs
    assert rel["text_future_share"] == pytest.approx(18 / 66)
    assert rel["vision_token_share"] == pytest.approx(1 / 3)
    for v in ("softmax", "eq4", "eq7 s=0.5", "eq7 s=1/N"):
        assert table[v]["text_future_share"] == 0.0 and table[v]["vision_token_share"] == 1.0
    # scores: released's 1 + q·k reaches 2 (the largest-norm row with itself); |q·k| ≤ 1; rows not unit
    assert rel["vision_score_max"] == pytest.approx(2.0, abs=1e-12) and rel["vision_dot_max"] == pytest.approx(1.0)
    assert rel["vision_dot_min"] >= -1 and rel["vision_min_query_norm"] < 1
    assert 0 <= table["eq7 s=0.5"]["vision_score_min"] and table["eq7 s=0.5"]["vision_score_max"] <= 1
    assert table["eq4"]["vision_min_query_norm"] == pytest.approx(1.0)
    # output norm: grows about linearly for released and eq7 s=½, flat for eq7 s=1/N, eq4 and softmax
    assert 0.75 < rel["norm_slope"] < 1.1 and 0.75 < table["eq7 s=0.5"]["norm_slope"] < 1.1
    for v in ("eq7 s=1/N", "eq4", "softmax"):
        assert abs(table[v]["norm_slope"]) < 0.15


def test_headline_keys_cite_the_table(table):
    h = rs.headline(list(table.values()))
    assert h["text_future_share"]["released"] == table["released"]["text_future_share"] > 0
    assert h["vision_score_max"]["eq7 s=0.5"] == table["eq7 s=0.5"]["vision_score_max"]
    assert set(h["norm_slope"]) == set(table)


def test_locality_reads_the_jacobian_support():
    n = 4
    sup = torch.zeros(n, 2, n, 2, dtype=torch.bool)
    for i in range(n):
        sup[i, :, : i + 1, :] = True  # causal
    assert rs.locality(sup) == {
        "token_share": 10 / 16,
        "future_share": 0.0,
        "tokens_per_row_min": 1,
        "tokens_per_row_max": 4,
    }
    sup[0, 0, 3, 1] = True  # one later dependence
    assert rs.locality(sup)["future_share"] == pytest.approx(1 / 6)


def test_uses_projections_is_measured():
    mods = rs.build_modules(8, 2, backend="reference")
    x = rs.tokens(1, 5, 8)
    assert rs.uses_projections(mods["eq7 s=0.5"], x) and not rs.uses_projections(mods["released"], x)


def test_speed_rows_are_measured_side_by_side():
    rows = rs.speed([32, 64], batch=2, width=16, heads=2, modes=("fwd", "fwd+bwd"), runs=2, budget_s=2.0)
    df = pd.DataFrame(rows)
    assert set(df.variant) == {"eq4", "eq7 s=0.5", "released"}
    assert len(df) == 3 * 2 * 2 and (df.ms > 0).all() and (df.calls >= 1).all()
    eq7 = df[df.variant == "eq7 s=0.5"]
    assert (eq7.vs_eq7 == 1.0).all()
    with pytest.raises(ValueError, match="modes"):
        rs.speed([32], modes=("bwd",))


def _trained(seed, top1s, attentions=("softmax", "eq7", "released"), hits=None):
    hits = hits or {}
    return {
        "dataset": {"seed": seed},
        "summaries": [
            {
                "model": "tiny-S",
                "attention": a,
                "zero_shot": [{"domain": "digits", "top1": t, "n": 200, **({"correct": hits[a]} if a in hits else {})}],
            }
            for a, t in zip(attentions, top1s, strict=True)
        ],
    }


def test_compare_one_seed_is_exploratory_with_image_intervals():
    df = rs.accuracy_frame([_trained(0, [0.9, 0.8, 0.5])])
    r = rs.compare(df)
    assert r["status"] == "measured"
    by = {x["baseline"]: x for x in r["rows"]}
    assert by["eq7"]["diff"] == pytest.approx(-0.3) and by["softmax"]["diff"] == pytest.approx(-0.4)
    assert (
        by["eq7"]["basis"] == "exploratory, one seed"
        and by["eq7"]["ci_low"] is None
        and by["eq7"]["p_paired_t"] is None
    )
    lo, hi = by["eq7"]["released_images_ci"]
    assert lo < 0.5 < hi and hi - lo == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 200), abs=0.01)


def test_compare_three_seeds_pairs_them():
    from scipy import stats

    tops = {0: [0.9, 0.80, 0.50], 1: [0.9, 0.82, 0.55], 2: [0.9, 0.78, 0.58]}
    df = rs.accuracy_frame([_trained(s, t) for s, t in tops.items()])
    row = next(x for x in rs.compare(df)["rows"] if x["baseline"] == "eq7")
    d = [t[2] - t[1] for t in tops.values()]
    assert row["seeds"] == 3 and row["basis"] == "paired over 3 seeds"
    assert row["diff"] == pytest.approx(sum(d) / 3)
    half = stats.t.ppf(0.975, 2) * stats.tstd(d) / math.sqrt(3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((row["diff"] - half, row["diff"] + half))
    assert row["p_paired_t"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


def test_compare_without_released_is_not_run_and_duplicates_are_refused():
    df = rs.accuracy_frame([_trained(0, [0.9, 0.8], ("softmax", "eq7"))])
    r = rs.compare(df)
    assert r["status"] == "not run" and "'released'" in r["reason"] and r["rows"] == []
    with pytest.raises(ValueError, match="one 03_clip_training run per seed"):
        rs.accuracy_frame([_trained(0, [0.9, 0.8, 0.5]), _trained(0, [0.9, 0.8, 0.5])])


def test_compare_one_seed_pairs_the_images_when_hits_are_recorded():
    from scipy import stats

    rng = np.random.default_rng(0)
    eq7 = (rng.random(200) < 0.8).astype(int)
    rel = eq7.copy()
    flip = rng.choice(200, 40, replace=False)
    rel[flip[:30]] = 0  # 30 images only eq7 gets right, 10 only released does
    rel[flip[30:]] = 1 - rel[flip[30:]]
    only_eq7, only_rel = int(((eq7 == 1) & (rel == 0)).sum()), int(((eq7 == 0) & (rel == 1)).sum())
    tr = _trained(0, [0.9, eq7.mean(), rel.mean()], hits={"eq7": eq7.tolist(), "released": rel.tolist()})
    row = next(x for x in rs.compare(rs.accuracy_frame([tr]))["rows"] if x["baseline"] == "eq7")
    d = rel - eq7
    half = stats.t.ppf(0.975, 199) * d.std(ddof=1) / np.sqrt(200)
    assert row["n_images"] == 200 and row["basis"] == "exploratory, one seed"
    assert (row["images_ci_low"], row["images_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["p_mcnemar"] == pytest.approx(stats.binomtest(only_rel, only_rel + only_eq7).pvalue)
    assert row["p_mcnemar"] < 0.05
    soft = next(x for x in rs.compare(rs.accuracy_frame([tr]))["rows"] if x["baseline"] == "softmax")
    assert "p_mcnemar" not in soft  # softmax recorded no hits: no paired test over images
