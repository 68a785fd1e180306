"""Seed-level tables (linrepro.study.seeded) against hand-computed values, and the seed helpers of
the training grid."""

import numpy as np
import pytest

from linrepro.study import seeded
from linrepro.study.experiments import run_name, training_seeds


def _rows(att, per_seed, domain="digits", model="tiny-S"):
    return [
        {"model": model, "attention": att, "seed": s, "domain": domain, "correct": list(c)}
        for s, c in enumerate(per_seed)
    ]


def test_interval_frame_means_over_seeds_and_counts_them():
    a = [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]  # per-seed means 0.5, 0.75, 1.0
    df = seeded.interval_frame(_rows("softmax", a), n_resamples=500)
    (r,) = df.to_dict("records")
    assert r["mean"] == pytest.approx(0.75) and r["seeds"] == 3 and r["n_images"] == 4
    assert r["per_seed"] == pytest.approx([0.5, 0.75, 1.0])
    assert r["ci_low"] <= 0.75 <= r["ci_high"] and r["ci_low"] >= 0 and r["ci_high"] <= 1
    # every outcome equal: no variation anywhere, a zero-width interval
    (c,) = seeded.interval_frame(_rows("softmax", [[1] * 5] * 3), n_resamples=200).to_dict("records")
    assert (c["mean"], c["ci_low"], c["ci_high"]) == (1.0, 1.0, 1.0)


def test_interval_frame_refuses_a_seed_twice_and_missing_outcomes():
    rows = _rows("softmax", [[1, 0]]) * 2
    with pytest.raises(ValueError, match="seed 0 twice"):
        seeded.interval_frame(rows, n_resamples=200)
    with pytest.raises(ValueError, match="no per-image 'correct'"):
        seeded.interval_frame([{"model": "m", "attention": "softmax", "seed": 0, "domain": "d"}], n_resamples=200)


def test_paired_frame_is_b_minus_a_on_common_seeds_with_holm_across_cells():
    sm = _rows("softmax", [[1, 1, 1, 0]] * 3) + _rows("softmax", [[1, 0, 0, 0]] * 3, domain="shapes")
    la = _rows("eq7", [[1, 1, 0, 0]] * 3) + _rows("eq7", [[1, 0, 0, 0]] * 2, domain="shapes")
    df = seeded.paired_frame(sm + la, n_resamples=500).set_index("domain")
    assert df.loc["digits", "diff"] == pytest.approx(0.5 - 0.75)
    assert df.loc["digits", "seeds"] == 3 and df.loc["shapes", "seeds"] == 2  # only the seeds both have
    assert df.loc["shapes", "diff"] == 0 and df.loc["shapes", "p_value"] == 1.0
    p = df.p_value.to_numpy()
    order = np.argsort(p)
    expected = np.minimum(1, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    assert df.p_holm.to_numpy()[order] == pytest.approx(expected)
    assert (df.ci_low <= df["diff"]).all() and (df["diff"] <= df.ci_high).all()


def test_wide_table_cells_carry_interval_and_seed_count():
    df = seeded.interval_frame(_rows("softmax", [[1, 0]] * 3) + _rows("eq7", [[1, 1]] * 3), n_resamples=200)
    wide = seeded.wide_table(df, ("model", "attention"), "domain")
    assert list(wide.index.get_level_values("attention")) == ["softmax", "eq7"]  # softmax first
    assert wide.loc[("tiny-S", "eq7"), "digits"] == "1.00 [1.0, 1.0] ×3"
    assert seeded.cell_text(0.012, -0.01, 0.03, signed=True).startswith("+0.012")


def test_training_seeds_and_run_names():
    assert training_seeds([], 4) == [4] and training_seeds([0, 1, 2], 9) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"\[1\]"):
        training_seeds([0, 1, 1], 0)
    with pytest.raises(ValueError, match="-1"):
        training_seeds([0, -1], 0)
    assert run_name("tiny-B", "eq7", 0, 1) == "tiny-B-eq7"  # one seed: the names of older runs
    assert run_name("tiny-B", "eq7", 2, 3) == "tiny-B-eq7-seed2"
    assert run_name("tiny-B", "eq7", 2, 3, "-s0.5") == "tiny-B-eq7-s0.5-seed2"
