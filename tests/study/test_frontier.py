"""The fair-race analysis (linrepro.study.frontier) on synthetic rows with hand-computed answers,
and the image tower's FLOP count against an analytic formula derived here."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from linrepro.study import frontier, seeded, stats

R = 400  # bootstrap resamples: enough for the clear effects built below, and fast


def _correct(acc: float, n: int, shift: int = 0) -> list[int]:
    """n outcomes with round(acc·n) hits, rotated by ``shift`` (which images are hit changes)."""
    k = round(acc * n)
    out = [1] * k + [0] * (n - k)
    shift %= n
    return out[shift:] + out[:shift]


def _row(attention, seed, domain, correct, **cond):
    base = {
        "model": "tiny-S",
        "attention": attention,
        "seed": seed,
        "domain": domain,
        "correct": list(correct),
        "top1": float(np.mean(correct)),
        "chance": 0.1,
        "n": len(correct),
        "lr": 1e-3,
        "epochs": 4,
        "arm": "fine-tuned",
        "resolution": 32,
        "train_s": 10.0,
        "images_per_s": 100.0,
    }
    return {**base, **cond}


# --------------------------------------------------------------------------- bootstrap composition
def test_one_domain_composition_is_stats_two_stage_bootstrap_exactly():
    """With one domain, the mean over domains and its interval are stats.seed_image_interval's,
    and the paired form is stats.paired_difference's (the same draws, by composition)."""
    rng = np.random.default_rng(3)
    a = (rng.random((3, 30)) < 0.5).astype(float)
    b = (rng.random((3, 30)) < 0.7).astype(float)
    rows = [_row("softmax", s, "digits", a[s], lr=1e-3) for s in range(3)]
    rows += [_row("softmax", s, "digits", b[s], lr=3e-3) for s in range(3)]
    out = frontier.choose_lr(rows, n_resamples=R, seed=5)
    t = out["table"].set_index(["lr", "domain"])
    ref = stats.seed_image_interval(b, n_resamples=R, seed=5)
    m = t.loc[(3e-3, frontier.MEAN_OVER_DOMAINS)]
    assert (m["mean"], m.ci_low, m.ci_high) == pytest.approx((ref["mean"], ref["ci_low"], ref["ci_high"]))
    d = t.loc[(3e-3, "digits")]  # the per-domain row is seeded.interval_frame's
    assert (d.ci_low, d.ci_high) == pytest.approx((ref["ci_low"], ref["ci_high"]))
    ru = out["runner_up"]["softmax"]
    pref = stats.paired_difference(a, b, n_resamples=R, seed=5)
    assert (ru["diff"], ru["ci_low"], ru["ci_high"], ru["p"]) == pytest.approx(
        (pref["diff"], pref["ci_low"], pref["ci_high"], pref["p_value"])
    )


# --------------------------------------------------------------------------- 1. learning rate
def _lr_rows():
    """softmax: 3e-4 best (inside the sweep); eq7: 1e-3 best (the largest swept: an edge).
    Domains of 10 and 40 images: at eq7 1e-3 digits 1.0 / shapes 0.0 (mean over domains 0.5,
    pooled 0.2); at 3e-4 0.3 / 0.6 (mean 0.45, pooled 0.54): equal domain weight picks 1e-3."""
    acc = {
        ("softmax", 1e-4): (0.5, 0.5),
        ("softmax", 3e-4): (0.8, 0.7),
        ("softmax", 1e-3): (0.6, 0.4),
        ("eq7", 1e-4): (0.2, 0.2),
        ("eq7", 3e-4): (0.3, 0.6),
        ("eq7", 1e-3): (1.0, 0.0),
    }
    rows = []
    for (att, lr), (a_digits, a_shapes) in acc.items():
        for s in range(3):
            rows.append(_row(att, s, "digits", _correct(a_digits, 10, s), lr=lr))
            rows.append(_row(att, s, "shapes", _correct(a_shapes, 40, s), lr=lr))
    return rows


def test_choose_lr_picks_the_best_mean_over_domains_and_flags_an_edge():
    out = frontier.choose_lr(_lr_rows(), n_resamples=R)
    assert out["chosen"] == {"softmax": 3e-4, "eq7": 1e-3}
    assert out["edge"] == {"softmax": False, "eq7": True}
    assert "outside" in out["text"]["eq7"] and "outside" not in out["text"]["softmax"]
    assert "mean over domains" in out["rule"] and out["rule"] == frontier.LR_RULE
    t = out["table"].set_index(["attention", "lr", "domain"])
    assert t.loc[("eq7", 1e-3, frontier.MEAN_OVER_DOMAINS), "mean"] == pytest.approx(0.5)  # not pooled 0.2
    assert t.loc[("eq7", 3e-4, frontier.MEAN_OVER_DOMAINS), "mean"] == pytest.approx(0.45)
    assert t.loc[("eq7", 3e-4, "shapes"), "mean"] == pytest.approx(0.6)
    assert (t.seeds == 3).all() and (t.ci_low <= t["mean"] + 1e-12).all() and (t["mean"] <= t.ci_high + 1e-12).all()
    ru = out["runner_up"]
    assert ru["eq7"]["lr"] == 3e-4 and ru["eq7"]["diff"] == pytest.approx(0.05)
    assert ru["softmax"]["lr"] == 1e-4 and ru["softmax"]["diff"] == pytest.approx(0.75 - 0.5)
    assert ru["softmax"]["ci_low"] > 0 and ru["softmax"]["p"] < 0.05


def test_choose_lr_names_a_condition_that_is_not_one():
    rows = _lr_rows()
    rows.append({**rows[0], "epochs": 8})  # the same (attention, lr, seed, domain) at another budget
    with pytest.raises(ValueError, match=r"appears twice.*epochs"):
        frontier.choose_lr(rows, n_resamples=R)
    bad = [r for r in _lr_rows() if not (r["seed"] == 1 and r["domain"] == "shapes" and r["lr"] == 1e-4)]
    with pytest.raises(ValueError, match="seed 1 has no rows for domain"):
        frontier.choose_lr(bad, n_resamples=R)


# --------------------------------------------------------------------------- 2. convergence
BUDGETS = (1, 2, 4, 8)
CURVES = {  # per seed, top-1 at 1, 2, 4, 8 epochs (100 images: exact fractions)
    "softmax": [(0.2, 0.5, 0.8, 0.9), (0.4, 0.6, 0.8, 1.0), (0.95, 0.96, 0.98, 1.0)],
    "eq7": [(0.1, 0.2, 0.4, 0.8), (0.1, 0.3, 0.5, 0.6), (0.1, 0.2, 0.3, 0.4)],
}


def _curve_rows():
    rows = []
    for att, seeds in CURVES.items():
        for s, curve in enumerate(seeds):
            for e, a in zip(BUDGETS, curve, strict=True):
                for dom in ("digits", "shapes"):  # the same curve in both: the mean over domains is it
                    rows.append(_row(att, s, dom, _correct(a, 100, s), epochs=e))
    return rows


def test_convergence_interpolates_in_log_epochs_and_censors():
    # frac 0.9. softmax seed 0: final 0.9, target 0.81 between 4 (0.8) and 8 (0.9): 4·2^0.1;
    # seed 1: target 0.9 between 4 (0.8) and 8 (1.0): 4·2^0.5; seed 2: 0.95 ≥ 0.9 at 1 epoch: censored.
    sm = [4 * 2**0.1, 4 * 2**0.5, 1.0]
    la = [4 * 2**0.8, 4 * 2**0.4, 4 * 2**0.6]  # targets 0.72, 0.54, 0.36
    df = frontier.convergence(_curve_rows(), frac=0.9, n_resamples=R).set_index("attention")
    assert df.loc["softmax", "per_seed"] == pytest.approx(sm)
    assert df.loc["softmax", "mean"] == pytest.approx(np.mean(sm))
    assert df.loc["softmax", "censored"] == 1 and df.loc["eq7", "censored"] == 0
    assert "<= 1" in df.loc["softmax", "text"] and "<=" not in df.loc["eq7", "text"]
    assert df.loc["eq7", "per_seed"] == pytest.approx(la)
    assert df.loc["softmax", "final_epochs"] == 8 and df.loc["softmax", "seeds"] == 3
    p = df.loc["eq7 - softmax"]
    d = np.subtract(la, sm)
    assert p["mean"] == pytest.approx(d.mean()) and p["per_seed"] == pytest.approx(d)
    assert p["t_test_p"] == pytest.approx(stats_t(d)) and p["censored"] == 1
    for r in df.itertuples():
        assert r.ci_low <= r.mean <= r.ci_high


def stats_t(d):
    from scipy import stats as sps

    return float(sps.ttest_1samp(d, 0).pvalue)


def test_convergence_all_censored_and_one_seed_has_no_interval():
    rows = [_row("softmax", 0, "digits", _correct(a, 100), epochs=e) for e, a in zip(BUDGETS, CURVES["softmax"][2])]
    (r,) = frontier.convergence(rows, frac=0.9, n_resamples=R).to_dict("records")
    assert r["mean"] == 1.0 and r["censored"] == 1 and math.isnan(r["ci_low"])
    assert "<= 1 epochs" in r["text"] and "1 seed" in r["text"]
    with pytest.raises(ValueError, match="frac"):
        frontier.convergence(rows, frac=1.5)


def test_convergence_refuses_a_budget_evaluated_on_other_domains():
    rows = [r for r in _curve_rows() if not (r["epochs"] == 8 and r["domain"] == "shapes")]
    with pytest.raises(ValueError, match="same domains"):
        frontier.convergence(rows, frac=0.9, n_resamples=R)


def test_epoch_accuracy_is_the_mean_over_seeds_per_budget():
    acc = frontier.epoch_accuracy(_curve_rows(), n_resamples=R).set_index(["attention", "epochs"])
    assert acc.loc[("eq7", 8), "mean"] == pytest.approx(np.mean([0.8, 0.6, 0.4]))
    assert acc.loc[("softmax", 1), "mean"] == pytest.approx(np.mean([0.2, 0.4, 0.95]))
    fig = frontier.fig_convergence(acc.reset_index())
    assert fig.layout.xaxis.type == "log" and {t.name for t in fig.data} == {"softmax", "eq7"}


# --------------------------------------------------------------------------- 3. equal budget
def _budget_rows():
    """3 seeds, budgets 1, 2, 4; softmax takes 10 s per epoch, LA 6 s per epoch."""
    sm = [(0.30, 0.50, 0.70), (0.40, 0.50, 0.60), (0.20, 0.40, 0.80)]
    la = [(0.20, 0.60, 0.80), (0.30, 0.50, 0.70), (0.30, 0.50, 0.90)]
    rows = []
    for att, curves, per_epoch in (("softmax", sm, 10.0), ("eq7", la, 6.0)):
        for s, curve in enumerate(curves):
            for e, a in zip((1, 2, 4), curve, strict=True):
                rows.append(_row(att, s, "digits", _correct(a, 100, s), epochs=e, train_s=per_epoch * e))
    return rows, sm, la


def test_equal_budget_at_equal_steps_and_equal_wall_clock():
    rows, sm, la = _budget_rows()
    df = frontier.equal_budget(rows, n_resamples=R)
    steps = df[df.comparison == "equal steps"].set_index("epochs")
    for i, e in enumerate((1, 2, 4)):
        assert steps.loc[e, "diff"] == pytest.approx(np.mean([la[s][i] - sm[s][i] for s in range(3)]))
        assert steps.loc[e, "interval"] == "seeds, then images"
    wall = df[df.comparison == "equal wall-clock"].set_index("epochs")
    w = math.log(10 / 6) / math.log(2)  # softmax's 10 s lies between LA's 6 s and 12 s, in log time
    exp1 = [la[s][0] + w * (la[s][1] - la[s][0]) - sm[s][0] for s in range(3)]
    assert wall.loc[1, "diff"] == pytest.approx(np.mean(exp1))
    assert wall.loc[1, "per_seed"] == pytest.approx(exp1)
    assert wall.loc[1, "la_epochs"] == pytest.approx(10 / 6)  # LA's epochs at 10 s (log-log interpolation)
    exp2 = [la[s][1] + w * (la[s][2] - la[s][1]) - sm[s][1] for s in range(3)]  # 20 s between 12 s and 24 s
    assert wall.loc[2, "diff"] == pytest.approx(np.mean(exp2))
    assert math.isnan(wall.loc[4, "diff"]) and "outside" in wall.loc[4, "note"]  # 40 s > LA's 24 s
    assert wall.loc[1, "train_s"] == pytest.approx(10.0) and wall.loc[1, "interval"] == "seeds"
    assert (df.clock.str.contains("train_s")).all()


def test_equal_budget_refuses_a_run_with_two_clocks():
    rows, _, _ = _budget_rows()
    rows += [{**r, "domain": "shapes"} for r in rows]  # every run evaluated on a second domain ...
    rows[-1] = {**rows[-1], "train_s": 99.0}  # ... one of whose rows carries another clock
    with pytest.raises(ValueError, match="train_s"):
        frontier.equal_budget(rows, n_resamples=R)


# --------------------------------------------------------------------------- 4. image costs
def _analytic_flops(cfg: dict, resolution: int, attention: str) -> tuple[int, int]:
    """Matrix-product FLOPs (2 per multiply-add) of one image through an open_clip ViT image tower:
    patch embedding, per layer q/k/v, output projection, MLP and attention, and the final projection.
    Attention per head of width Dh over N tokens: softmax QKᵀ and PV, 2·2·N²·Dh; LA K̂ᵀV and Q̂S,
    2·2·N·Dh·Dh (eq7 has no denominator; norms and sums are not matrix products)."""
    v = cfg["vision_cfg"]
    w, layers, p = v["width"], v["layers"], v["patch_size"]
    heads, dh = w // v["head_width"], v["head_width"]
    mlp = int(w * v.get("mlp_ratio", 4.0))
    grid = (resolution // p) ** 2
    n = grid + 1
    patch = 2 * (3 * p * p) * w * grid
    per_layer = 2 * n * w * 3 * w + 2 * n * w * w + 2 * (2 * n * w * mlp)
    att = heads * (4 * n * n * dh if attention == "softmax" else 4 * n * dh * dh)
    final = 2 * w * cfg["embed_dim"]
    return patch + layers * (per_layer + att) + final, layers * att


@pytest.fixture
def one_thread():
    """One torch thread while timing throughput: on a shared, loaded CPU a thread pool waiting for
    its second core makes a millisecond forward take seconds."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(name, attention, resolution):
    from linrepro import clip

    return clip.create_model_and_transforms(name, attention, force_image_size=resolution)[0].eval()


def _config(name):
    from linrepro import clip

    return json.loads((clip.CONFIG_DIR / f"{name}.json").read_text())


def test_image_costs_count_matches_the_analytic_formula(one_thread):
    cfg = _config("tiny-XS")
    df = frontier.image_costs(lambda a, r: _model("tiny-XS", a, r), [32, 64], batch=2, runs=1)
    df = df.set_index(["attention", "resolution"])
    for (att, res), r in df.iterrows():
        total, att_flops = _analytic_flops(cfg, res, att)
        assert r.flops_per_image == pytest.approx(total, rel=0.01), (att, res)
        assert r.attention_flops_per_image == pytest.approx(att_flops, rel=0.01), (att, res)
        assert r.tokens == (res // 8) ** 2 + 1 and r.images_per_s > 0
    # LA's attention grows linearly in tokens, softmax's quadratically
    ratio = df.loc[("softmax", 64), "tokens"] / df.loc[("softmax", 32), "tokens"]
    la = df.loc[("eq7", 64), "attention_flops_per_image"] / df.loc[("eq7", 32), "attention_flops_per_image"]
    sm = df.loc[("softmax", 64), "attention_flops_per_image"] / df.loc[("softmax", 32), "attention_flops_per_image"]
    assert la == pytest.approx(ratio) and sm == pytest.approx(ratio**2)


@pytest.mark.parametrize("attention", ["softmax", "eq7"])
def test_flop_count_with_two_heads_counts_every_product_and_restores_the_model(attention, one_thread):
    """tiny-S has 2 heads: nn.MultiheadAttention's fused eval fast path would hide its projections
    and attention from the counter. LA is counted in the factorised form ("auto" would run the N×N
    form at these lengths on CPU), and the model keeps its own backend."""
    from linrepro import clip

    model = _model("tiny-S", attention, 32)
    c = frontier.count_image_flops(model, 32)
    total, att_flops = _analytic_flops(_config("tiny-S"), 32, attention)
    assert c["flops_per_image"] == pytest.approx(total, rel=0.01)
    assert c["attention_flops_per_image"] == pytest.approx(att_flops, rel=0.01)
    assert {m.backend for m in model.modules() if isinstance(m, clip.LinearMultiheadAttention)} <= {"auto"}
    assert not model.training


# --------------------------------------------------------------------------- 5. Pareto
def test_pareto_keeps_the_non_dominated_points_per_domain():
    pts = pd.DataFrame(
        [
            ("d1", "a", 1.0, 0.5),
            ("d1", "b", 2.0, 0.4),  # dominated by a (cheaper and better)
            ("d1", "c", 2.0, 0.7),
            ("d1", "d", 3.0, 0.7),  # dominated by c (same accuracy, dearer)
            ("d1", "e", 4.0, 0.9),
            ("d1", "f", 4.0, 0.9),  # a tie with e: neither dominates
            ("d2", "b", 2.0, 0.4),  # alone in its domain
        ],
        columns=["domain", "attention", "cost", "acc"],
    )
    front = frontier.pareto(pts)
    assert sorted(zip(front.domain, front.attention)) == [
        ("d1", "a"),
        ("d1", "c"),
        ("d1", "e"),
        ("d1", "f"),
        ("d2", "b"),
    ]
    assert "dominated" in frontier.PARETO_RULE


# --------------------------------------------------------------------------- 6. decision
COSTS = pd.DataFrame(
    [("softmax", 32, 90.0, 50.0), ("softmax", 64, 400.0, 10.0), ("eq7", 32, 95.0, 45.0), ("eq7", 64, 200.0, 30.0)],
    columns=["attention", "resolution", "flops_per_image", "images_per_s"],
)


def _decision_rows(effects: dict, seeds: int = 3, n: int = 200):
    """effects: domain → (softmax fine-tuned@32, eq7@32, eq7@64) accuracies; softmax interpolated@32
    is 0.1 worse than fine-tuned (never the best), softmax@64 costs more than any LA condition."""
    rows = []
    for dom, (sm, la32, la64) in effects.items():
        for s in range(seeds):
            k = s - 1  # seeds differ by ±1%
            for att, arm, res, a in (
                ("softmax", "fine-tuned", 32, sm),
                ("softmax", "interpolated", 32, sm - 0.1),
                ("softmax", "fine-tuned", 64, 0.99),
                ("eq7", "fine-tuned", 32, la32),
                ("eq7", "fine-tuned", 64, la64),
            ):
                rows.append(_row(att, s, dom, _correct(a + 0.01 * k, n, 7 * s), arm=arm, resolution=res))
    return rows


def test_frontier_decision_yes_no_and_inconclusive():
    rows = _decision_rows({"gain": (0.5, 0.5, 0.8), "loss": (0.7, 0.6, 0.5), "unclear": (0.5, 0.5, 0.51)})
    out = frontier.frontier_decision(rows, COSTS, n_resamples=R)
    d = out["domains"]
    assert d["gain"]["verdict"] == "LA buys accuracy at equal compute"
    assert d["loss"]["verdict"] == "no LA gain at equal compute"
    assert d["unclear"]["verdict"] == "inconclusive"
    assert all(v["basis"] == "proxy" for v in d.values())
    g = d["gain"]
    assert (g["la_point"]["resolution"], g["softmax_point"]["resolution"]) == (64, 32)
    assert g["softmax_point"]["arm"] == "fine-tuned"  # the best softmax condition as cheap
    assert g["diff"] == pytest.approx(0.3) and g["ci_low"] > 0 and g["p_holm"] < 0.05
    assert "seed only" in g["text"]
    cmp = out["comparisons"]
    same = cmp[(cmp.domain == "gain") & (cmp.la_resolution == 32)].iloc[0]
    assert same.pairing == "seed and image" and same.softmax_resolution == 32
    assert (cmp.groupby("domain").size() == 2).all()  # eq7@32 and eq7@64 each against softmax@32
    assert "1 of 3" in out["overall"] and out["rule"] == frontier.DECISION_RULE


def test_frontier_decision_caps_fewer_than_three_seeds_and_needs_costs():
    rows = _decision_rows({"gain": (0.5, 0.5, 0.8)}, seeds=2)
    g = frontier.frontier_decision(rows, COSTS, n_resamples=R)["domains"]["gain"]
    assert g["verdict"] == "inconclusive" and "exploratory" in g["text"]
    with pytest.raises(ValueError, match=r"eq7.*64"):
        frontier.frontier_decision(rows, COSTS[COSTS.resolution == 32], n_resamples=R)


def test_frontier_decision_with_throughput_as_cost_uses_seconds_per_image():
    rows = _decision_rows({"gain": (0.5, 0.5, 0.8)})
    out = frontier.frontier_decision(rows, COSTS, cost="images_per_s", n_resamples=R)
    cmp = out["comparisons"]  # eq7@64 at 1/30 s per image affords softmax@32 (1/50 s) only
    assert set(cmp.softmax_resolution) == {32} and out["cost"] == "s_per_image"


# --------------------------------------------------------------------------- 7. contrasts, figure
def test_arm_contrasts_and_frontier_figure():
    rows = _decision_rows({"gain": (0.5, 0.5, 0.8), "loss": (0.7, 0.6, 0.5)})
    con = frontier.arm_contrasts(rows, n_resamples=R)
    ref = seeded.paired_frame(rows, by=("arm", "resolution", "domain"), n_resamples=R)
    assert con["diff"].tolist() == pytest.approx(ref["diff"].tolist()) and "p_holm" in con
    c = con.set_index(["domain", "arm", "resolution"])
    assert c.loc[("gain", "fine-tuned", 64), "diff"] == pytest.approx(0.8 - 0.99)
    pts = frontier.frontier_points(rows, COSTS, n_resamples=R)
    assert {"cost", "acc", "ci_low", "ci_high"} <= set(pts.columns)
    fig = frontier.fig_frontier(pts, frontier.pareto(pts))
    assert fig.layout.xaxis.type == "log"
    assert sum(t.name == "Pareto frontier" for t in fig.data) == 2  # one line per domain
