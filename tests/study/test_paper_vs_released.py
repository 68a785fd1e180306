"""Notebook 08's measurements (linrepro.study.released) give what the math of each variant says."""

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


def _summary(model, attention, seed, hits, score_scale="1/N"):
    """One 03 summary with per-image hits per domain: ``hits`` = {domain: [0/1, ...]}."""
    return {
        "model": model,
        "attention": attention,
        "seed": seed,
        "score_scale": score_scale,
        "checkpoint": f"runs/{model}-{attention}-seed{seed}/checkpoints/epoch_1.pt",
        "zero_shot": [
            {"domain": d, "top1": float(np.mean(h)), "n": len(h), "chance": 0.1, "correct": list(h)}
            for d, h in hits.items()
        ],
    }


def _hits(rng, p, n=40):
    return (rng.random(n) < p).astype(int).tolist()


def _study(seeds=(0, 1, 2), released_p=0.5, n=40):
    """A fake multi-seed 03 result: tiny-S and tiny-B × softmax/eq7 in the grid; extra runs: an eq7
    score-scale ablation at tiny-S (must be skipped) and released at tiny-S only."""
    rng = np.random.default_rng(1)
    grid, extra = [], []
    for seed in seeds:
        for model in ("tiny-S", "tiny-B"):
            for att, p in (("softmax", 0.9), ("eq7", 0.8)):
                grid.append(_summary(model, att, seed, {"digits": _hits(rng, p, n), "shapes": _hits(rng, p, n)}))
        extra.append(
            _summary("tiny-S", "eq7", seed, {"digits": [0] * n, "shapes": [0] * n}, score_scale=0.5)
        )  # an ablation: would drag eq7 to 0 if it were mixed in
        extra.append(
            _summary(
                "tiny-S", "released", seed, {"digits": _hits(rng, released_p, n), "shapes": _hits(rng, released_p, n)}
            )
        )
    return {"dataset": {"seed": 0}, "seeds": list(seeds), "summaries": grid, "extra_summaries": extra}


def _by(hits_rows, model, att, domain):
    return {
        r["seed"]: r["correct"] for r in hits_rows if (r["model"], r["attention"], r["domain"]) == (model, att, domain)
    }


def test_training_rows_add_released_and_skip_score_scale_ablations():
    rows = rs.training_rows([_study()])
    assert {(r["model"], r["attention"]) for r in rows} == {
        ("tiny-S", "softmax"),
        ("tiny-S", "eq7"),
        ("tiny-B", "softmax"),
        ("tiny-B", "eq7"),
        ("tiny-S", "released"),
    }
    eq7 = _by(rows, "tiny-S", "eq7", "digits")
    assert sorted(eq7) == [0, 1, 2] and all(sum(h) > 0 for h in eq7.values())  # the grid's, not the ablation's zeros


def test_compare_pairs_by_seed_and_image_with_holm_across_the_table():
    from linrepro.study import stats

    trained = _study()
    rows = rs.training_rows([trained])
    r = rs.compare(rows, n_resamples=400)
    assert r["status"] == "measured" and r["seeds"] == 3
    assert {x["model"] for x in r["rows"]} == {"tiny-S"}  # released only at tiny-S: no tiny-B contrast
    assert {(x["domain"], x["baseline"]) for x in r["rows"]} == {
        ("digits", "eq7"),
        ("shapes", "eq7"),
        ("digits", "softmax"),
        ("shapes", "softmax"),
    }
    for x in r["rows"]:
        rel = _by(rows, "tiny-S", "released", x["domain"])
        base = _by(rows, "tiny-S", x["baseline"], x["domain"])
        hand = np.mean([np.mean(rel[s]) - np.mean(base[s]) for s in (0, 1, 2)])  # mean over seeds of per-seed diffs
        assert x["diff"] == pytest.approx(hand) and x["ci_low"] <= x["diff"] <= x["ci_high"]
        assert x["released"] - x[x["baseline"]] == pytest.approx(hand)
        assert x["seeds"] == 3 and x["n_images"] == 40 and x["contrast"] == f"released − {x['baseline']}"
        assert x["basis"].startswith("paired over 3 seeds")
    # Holm over all four cells together (both baselines), not per baseline
    assert [x["p_holm"] for x in r["rows"]] == pytest.approx(stats.holm([x["p_value"] for x in r["rows"]]))
    # released ≈ 0.5 against 0.8/0.9 on 40 images × 3 seeds: wholly below the ±0.05 band
    assert {x["verdict"] for x in r["rows"]} == {"contradicted"}
    # the accuracy cells: tiny-S only, every attention, means over seeds
    cells = {(c["attention"], c["domain"]): c for c in r["cells"]}
    assert set(cells) == {(a, d) for a in ("softmax", "eq7", "released") for d in ("digits", "shapes")}
    rel = _by(rows, "tiny-S", "released", "digits")
    assert cells[("released", "digits")]["mean"] == pytest.approx(np.mean([np.mean(h) for h in rel.values()]))
    assert cells[("released", "digits")]["seeds"] == 3


def test_identical_outcomes_give_a_zero_difference_with_a_zero_interval():
    trained = _study()
    for s in trained["extra_summaries"]:
        if s["attention"] == "released":
            twin = next(
                g
                for g in trained["summaries"]
                if (g["model"], g["attention"], g["seed"]) == ("tiny-S", "eq7", s["seed"])
            )
            s["zero_shot"] = [dict(z) for z in twin["zero_shot"]]
    row = next(x for x in rs.compare(rs.training_rows([trained]), n_resamples=200)["rows"] if x["baseline"] == "eq7")
    assert (row["diff"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0)
    assert row["verdict"] == "supported"  # inside ±0.05, three seeds


def test_one_seed_is_exploratory_and_capped():
    r = rs.compare(rs.training_rows([_study(seeds=(0,), n=200)]), n_resamples=200)
    assert r["seeds"] == 1
    for x in r["rows"]:
        assert x["seeds"] == 1 and "exploratory" in x["basis"]
        assert x["verdict"] == "inconclusive" and x["rule"]["decided_before_cap"] == "contradicted"
    text = rs.takeaway({"headline": _HEADLINE, "accuracy": r})
    assert "one seed: exploratory" in text


_HEADLINE = {
    k: {"released": v}
    for k, v in {
        "text_future_share": 0.3,
        "vision_token_share": 0.3,
        "vision_score_max": 2.0,
        "norm_slope": 1.0,
    }.items()
}


def test_older_input_one_run_per_seed_still_works_and_duplicates_are_refused():
    runs = []
    for seed in (0, 1, 2):
        t = _study(seeds=(seed,))
        for s in t["summaries"] + t["extra_summaries"]:
            del s["seed"]  # an older run: the seed is its dataset's
        t["dataset"] = {"seed": seed}
        runs.append(t)
    r = rs.compare(rs.training_rows(runs), n_resamples=200)
    assert r["seeds"] == 3 and all(x["seeds"] == 3 for x in r["rows"])
    with pytest.raises(ValueError, match="seed 0 twice"):
        rs.compare(rs.training_rows([_study(), _study()]), n_resamples=200)


def test_compare_without_released_or_without_hits_is_not_run():
    t = _study()
    t["extra_summaries"] = []
    r = rs.compare(rs.training_rows([t]))
    assert r["status"] == "not run" and "'released'" in r["reason"] and r["rows"] == []
    t = _study()
    del t["summaries"][0]["zero_shot"][0]["correct"]
    r = rs.compare(rs.training_rows([t]))
    assert r["status"] == "not run" and "per-image outcomes" in r["reason"] and "tiny-S/softmax seed 0" in r["reason"]


def test_load_accuracy_reads_one_multi_seed_run(tmp_path):
    import json

    d = tmp_path / "03_clip_training" / "20260101-000000-aaaaaa"
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"status": "ok", "notebook": "03_clip_training"}))
    (d / "results.json").write_text(json.dumps(_study()))
    acc = rs.load_accuracy([d], n_resamples=200)
    assert acc["status"] == "measured" and acc["sources"] == [str(d)] and len(acc["rows"]) == 4
    with pytest.raises(FileNotFoundError, match="no results.json"):
        rs.load_accuracy([tmp_path / "nowhere"])
