"""Notebook 09's training stages (linrepro.study.race): what they refuse before training anything,
and the settings check that keeps a finished run from being reused under other settings."""

import json

import pytest

from linrepro.study import experiments as ex
from linrepro.study import race

FIT = {"eval_split": "tune", "resolution": 32}
VAL = {"eval_split": "val", "resolution": 32}


def test_the_sweep_is_judged_on_tune_never_on_val(tmp_path):
    with pytest.raises(ValueError, match="tune split.*'val'"):
        race.lr_sweep("tiny-XS", ["softmax"], [1e-3], VAL, tmp_path, seeds=[0], epochs=1)


@pytest.mark.parametrize(
    "lrs, match",
    [([], "must not be empty"), ([1e-3, -1.0], r"positive numbers, got \[-1.0\]"), ([1e-3, 1e-3], "twice")],
)
def test_bad_learning_rates_are_named(tmp_path, lrs, match):
    with pytest.raises(ValueError, match=match):
        race.lr_sweep("tiny-XS", ["softmax"], lrs, FIT, tmp_path, seeds=[0], epochs=1)


def test_mixed_training_needs_data_at_the_largest_side(tmp_path):
    with pytest.raises(ValueError, match="largest side 64"):
        race.epoch_sweep(
            "tiny-XS", {"softmax": 1e-3}, [1], VAL, tmp_path, seeds=[0], mixed_resolutions=[32, 64], mixed_dataset=VAL
        )
    with pytest.raises(ValueError, match="epochs must be positive integers"):
        race.epoch_sweep("tiny-XS", {"softmax": 1e-3}, [1.5], VAL, tmp_path, seeds=[0])


def test_rows_carry_the_training_condition():
    s = {
        "model": "m",
        "attention": "eq7",
        "seed": 1,
        "lr": 0.002,
        "epochs": 7,
        "train_s": 10.0,
        "images_per_s": 5.0,
        "zero_shot": [{"domain": "digits", "correct": [1, 0], "top1": 0.5}],
    }
    (r,) = race.rows([s], arm="interpolated")
    assert (r["lr"], r["epochs"], r["train_s"], r["arm"], r["seed"], r["correct"]) == (
        0.002,
        7,
        10.0,
        "interpolated",
        1,
        [1, 0],
    )


def test_a_finished_run_is_not_reused_under_other_settings(tmp_path):
    run = tmp_path / "tiny-XS-eq7"
    run.mkdir()
    done = {
        "model": "tiny-XS",
        "attention": "eq7",
        "epochs": 2,
        "lr": 0.001,
        "batch_size": 32,
        "seed": 0,
        "zero_shot": [],
    }
    (run / "summary.json").write_text(json.dumps(done))
    kw = dict(epochs=2, batch_size=32, warmup=1, seed=0, name="tiny-XS-eq7")
    assert ex.train_and_evaluate("tiny-XS", "eq7", {}, tmp_path, lr=0.001, **kw)["lr"] == 0.001  # same: reused
    with pytest.raises(RuntimeError, match=r"lr: 0.001 there, 0.004 asked"):
        ex.train_and_evaluate("tiny-XS", "eq7", {}, tmp_path, lr=0.004, **kw)


def test_per_attention_learning_rates_in_the_grid_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"\['eq4'\]"):
        ex.train_grid(["tiny-XS"], ["softmax", "eq7"], {}, tmp_path, lrs={"eq4": 0.002}, epochs=1, lr=0.001, warmup=1)
    with pytest.raises(ValueError, match="positive numbers"):
        ex.train_grid(["tiny-XS"], ["softmax", "eq7"], {}, tmp_path, lrs={"eq7": 0}, epochs=1, lr=0.001, warmup=1)


def test_the_grid_trains_each_attention_at_its_own_rate(tmp_path):
    for att, lr in (("softmax", 0.001), ("eq7", 0.004)):  # finished runs at each attention's rate
        run = tmp_path / f"tiny-XS-{att}"
        run.mkdir()
        done = {
            "model": "tiny-XS",
            "attention": att,
            "epochs": 1,
            "lr": lr,
            "batch_size": 64,
            "seed": 0,
            "train_s": 1.0,
        }
        (run / "summary.json").write_text(json.dumps({**done, "zero_shot": []}))
    got = ex.train_grid(
        ["tiny-XS"],
        ["softmax", "eq7"],
        {},
        tmp_path,
        lrs={"eq7": 0.004},
        epochs=1,
        lr=0.001,
        warmup=1,
        log=lambda *_: None,
    )
    assert [s["lr"] for s in got] == [0.001, 0.004]  # reused: asked with the same rate each
    with pytest.raises(RuntimeError, match="lr: 0.004 there, 0.001 asked"):  # without lrs, eq7 would be asked 0.001
        ex.train_grid(["tiny-XS"], ["softmax", "eq7"], {}, tmp_path, epochs=1, lr=0.001, warmup=1, log=lambda *_: None)


def test_highest_resolution_contrasts_take_each_arms_own_highest_side():
    import pandas as pd

    c = pd.DataFrame(
        [
            {"arm": "interpolated", "resolution": 32, "domain": "d", "diff": 0.0},
            {"arm": "interpolated", "resolution": 96, "domain": "d", "diff": -0.1},
            {"arm": "mixed", "resolution": 64, "domain": "d", "diff": 0.05},
            {"arm": "mixed", "resolution": 32, "domain": "d", "diff": 0.01},
        ]
    )
    top = race.highest_resolution_contrasts(c)
    assert sorted(zip(top.arm, top.resolution, top["diff"])) == [("interpolated", 96, -0.1), ("mixed", 64, 0.05)]


def test_the_grid_note_compares_rates_and_says_when_they_differ():
    grid = {"lrs": {"softmax": 0.002, "eq7": 0.002}, "source": "params/study/03_clip_training.yaml"}
    assert race.grid_lr_note(grid, {"softmax": 0.002, "eq7": 0.002}).startswith("03's grid trains every method")
    note = race.grid_lr_note(grid, {"softmax": 0.002, "eq7": 0.004})
    assert "does not train every method" in note and "eq7: grid 0.002, chosen 0.004 (differs)" in note
    assert "nothing to compare" in race.grid_lr_note(None, {"softmax": 0.002})


def test_jsonable_turns_frames_and_nan_into_plain_json():
    import numpy as np
    import pandas as pd

    got = race.jsonable(
        {"t": pd.DataFrame({"a": [1.0, np.nan], "b": [np.int64(2), np.int64(3)]}), "x": np.float64(np.inf)}
    )
    assert got == {"t": [{"a": 1.0, "b": 2}, {"a": None, "b": 3}], "x": None}
    json.dumps(got, allow_nan=False)


def test_training_time_counts_every_logged_step_once_even_after_a_resume(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "steps.jsonl").write_text(
        "".join(json.dumps({"step": i, "batch_time": 0.5, "loss": 1.0}) + "\n" for i in range(6))
    )
    s = {
        "run_dir": str(run),
        "train_s": 1.0,
        "zero_shot": [{"domain": "d", "correct": [1]}],
        "model": "m",
        "attention": "eq7",
    }
    assert race.training_seconds(s) == 3.0  # 6 steps x 0.5 s, not the last execution's 1.0 s
    assert race.rows([s])[0]["train_s"] == 3.0
    assert race.training_seconds({"run_dir": str(tmp_path / "none")}) is None
    assert race.rows([{**s, "run_dir": str(tmp_path / "none")}])[0]["train_s"] == 1.0


def test_the_takeaway_says_exploratory_below_three_seeds():
    import pandas as pd

    conv = pd.DataFrame({"text": ["softmax: 3 epochs"]})
    empty = pd.DataFrame(columns=["comparison", "epochs"])
    top = pd.DataFrame(columns=["arm", "resolution", "domain", "diff", "ci_low", "ci_high", "seeds", "p_holm"])
    one = race.takeaway({"text": {"softmax": "lr 0.001"}}, conv, empty, top, {"overall": "x"}, n_seeds=1)
    assert one.startswith("**Exploratory: 1 training seed.**") and "lr 0.001" in one
    assert "Exploratory" not in race.takeaway({"text": "lr"}, conv, empty, top, {"overall": "x"}, n_seeds=3)
