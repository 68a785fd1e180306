"""Evaluation sets, resolution changes and scaling fits (issue 6)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from linrepro.clip import zeroshot
from linrepro.study import scaling

ROOT = Path(__file__).resolve().parents[2]


def _folder(tmp_path, classes=("cat", "dog", "fox"), per=2, size=24):
    root = tmp_path / "imgs"
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for j in range(per):
            Image.new("RGB", (size, size), (40 * i, 80, 20 * j)).save(root / c / f"{j}.png")
    return root


def test_image_folder_checks_classnames_before_any_model(tmp_path):
    root = _folder(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("a cat\na dog\n")
    with pytest.raises(ValueError, match=r"lists 2 names but .* has 3 class folders"):
        zeroshot.image_folder(root, names)
    names.write_text("a cat\na dog\na fox\n")
    es = zeroshot.image_folder(root, names)
    assert es.classnames == ["a cat", "a dog", "a fox"] and es.n == 6
    with pytest.raises(FileNotFoundError, match="nope"):
        zeroshot.image_folder(tmp_path / "nope")


def test_imagenet21k_missing_classnames_says_where(tmp_path):
    root = _folder(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"ImageNet-21K needs a class-names file.*classnames\.txt.*Put one there"
    ):
        zeroshot.imagenet21k(root)
    (root / "classnames.txt").write_text("x\ny\n")
    with pytest.raises(ValueError, match="ImageNet-21K.*lists 2 names but .* 3 class folders"):
        zeroshot.imagenet21k(root)
    with pytest.raises(ValueError, match="expected 1000"):
        zeroshot.imagenet1k(root)


def test_evaluation_runs_on_an_image_folder_and_above_training_resolution(tmp_path):
    """A tiny model (random weights) evaluates an ImageFolder at its own and at twice its resolution,
    for both attention types; the positional embedding is interpolated by open_clip's helper."""
    from open_clip.model import resize_pos_embed

    from linrepro import clip

    root = _folder(tmp_path)
    es = zeroshot.image_folder(root)
    for att in ("softmax", "eq7"):
        model, pre, tok = clip.create_model("tiny-S", att, score_scale="1/N")
        sd = model.state_dict()
        big, pre64, _ = clip.create_model("tiny-S", att, score_scale="1/N", force_image_size=64)
        resize_pos_embed(sd, big)
        big.load_state_dict(sd)
        assert zeroshot.image_tokens(model) == 17 and zeroshot.image_tokens(big) == 65
        for m, p, r in ((model, pre, 32), (big, pre64, 64)):
            out = zeroshot.evaluate_set(m, tok, p, es, r)
            assert out["n"] == 6 and 0.0 <= out["top1"] <= out["top5"] <= 1.0
            assert np.asarray(out["confusion"]).sum() == 6


def test_power_law_fit_recovers_a_known_exponent():
    x = np.array([1e5, 4e5, 1.6e6])
    y = 3.0 * x**-0.37
    f = scaling.fit_power_law(x, y)
    assert f["b"] == pytest.approx(0.37, abs=1e-12) and f["a"] == pytest.approx(3.0, rel=1e-9)
    with pytest.raises(ValueError, match="2 distinct sizes"):
        scaling.fit_power_law([1.0, 1.0], [0.5, 0.4])
    with pytest.raises(ValueError, match="positive"):
        scaling.fit_power_law([1.0, 2.0], [0.5, 0.0])


def test_missing_imagenet21k_file_fails_the_notebook_before_models(tmp_path):
    """Through the real CLI: notebook 04 with an ImageNet-21K folder that has no class-names file."""
    root = _folder(tmp_path)
    out = tmp_path / "out"
    fake_train = out / "smoke" / "03_clip_training" / "20000101-000000-aaaaaa"
    fake_train.mkdir(parents=True)
    (fake_train / "run.json").write_text(json.dumps({"status": "ok"}))
    (fake_train / "results.json").write_text(
        json.dumps(
            {
                "summaries": [{"model": "tiny-S", "attention": "softmax", "checkpoint": "/does/not/exist.pt"}],
                "dataset": {"resolution": 32},
            }
        )
    )
    env = dict(os.environ, LINREPRO_OUTPUTS=str(out))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "linrepro",
            "run",
            "04_zero_shot_eval",
            "--profile",
            "smoke",
            "--no-progress",
            "-p",
            f"imagenet21k_root={root}",
            "-p",
            "domains=[]",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "ImageNet-21K needs a class-names file" in text and "classnames.txt" in text
    (run,) = (out / "smoke" / "04_zero_shot_eval").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert "exist.pt" not in (run / "error.txt").read_text()  # no model was loaded


def test_extra_runs_are_checked_before_training(tmp_path):
    from linrepro.study.experiments import train_variants

    with pytest.raises(ValueError, match="needs 'model' and 'attention'.*'modle'"):
        train_variants([{"modle": "tiny-S", "attention": "eq7"}], {}, tmp_path, log=lambda *_: None)
    with pytest.raises(ValueError, match="score_scale.*'1/M'"):
        train_variants([{"model": "tiny-S", "attention": "eq7", "score_scale": "1/M"}], {}, tmp_path)


def test_find_run_picks_the_latest_ok_run(tmp_path, monkeypatch):
    from linrepro.study.runs import find_run

    monkeypatch.setenv("LINREPRO_OUTPUTS", str(tmp_path))
    monkeypatch.delenv("LINREPRO_RUN_DIR", raising=False)
    with pytest.raises(
        FileNotFoundError, match=r"no finished 03_clip_training run.*linrepro run 03_clip_training --profile cpu"
    ):
        find_run("03_clip_training")
    for rid, status in (("20260101-000000-a", "ok"), ("20260102-000000-b", "ok"), ("20260103-000000-c", "failed")):
        d = tmp_path / "cpu" / "03_clip_training" / rid
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": status}))
        (d / "results.json").write_text("{}")
    assert find_run("03_clip_training").name == "20260102-000000-b"
    with pytest.raises(FileNotFoundError, match="no results.json"):
        find_run("03_clip_training", str(tmp_path))


def _frames():
    import pandas as pd

    from linrepro.study import evaluation as ev

    rows = []
    for m in ("tiny-S", "tiny-L"):
        for att, base in (("softmax", 0.9), ("eq7", 0.8)):
            for dom in ("digits", "shapes"):
                for r in (32, 64):
                    rows.append(
                        {
                            "model": m,
                            "attention": att,
                            "domain": dom,
                            "resolution": r,
                            "top1": base - (0.2 if r == 64 else 0) - (0.1 if att == "eq7" and r == 64 else 0),
                        }
                    )
    df = pd.DataFrame(rows)
    diff = ev.la_minus_softmax(df, "top1", by=("model", "domain", "resolution"))
    speed = pd.DataFrame(
        [
            {"model": m, "attention": a, "resolution": 256, "tokens": 1025, "images_per_s": ips}
            for m in ("tiny-S", "tiny-L")
            for a, ips in (("softmax", 10.0), ("eq7", 25.0))
        ]
    )
    return df, diff, speed


def test_resolution_conclusions_are_computed_from_the_frames():
    from linrepro.study import evaluation as ev

    df, diff, speed = _frames()
    found = ev.resolution_conclusions(df, diff, speed, trained_at=32)
    text = "\n".join(found["lines"])
    # LA − softmax: −0.1 at 32 px, −0.2 at 64 px, so −0.15 overall, behind in all 8 cells
    assert "averages -0.150 (LA ahead in 0, behind in 8)" in text
    assert "32 px -0.100, 64 px -0.200" in text
    assert "faster than softmax's for 2 of 2 models" in text and "2.50×" in text
    assert found["la_faster_all_models"] and found["change_from_training_resolution"] == pytest.approx(
        {"softmax": -0.2, "eq7": -0.3}
    )
    grid = ev.domain_grid(df[(df.model == "tiny-S") & (df.attention == "eq7")], "top1", ["shapes", "digits"])
    assert list(grid.index) == ["shapes", "digits"] and grid.loc["digits", 64] == pytest.approx(0.5)
    assert "Mean LA − softmax top-1 over 8 model × domain cells: -0.150" in ev.alignment_summary(df, diff)


def test_trained_resolution_reads_the_dataset_only():
    from linrepro.study import evaluation as ev

    assert ev.trained_resolution({"resolution": 48}) == 48
    assert ev.trained_resolution({"train_csv": "x.csv"}) == 224 and ev.trained_resolution(None) == 224


def test_an_explicit_eval_run_of_another_training_run_is_an_error(tmp_path):
    """Notebook 05 used to drop such an eval_run silently and fit training's own zero-shot results."""
    train_a, train_b, ev_run = tmp_path / "03" / "run-a", tmp_path / "03" / "run-b", tmp_path / "04" / "run-e"
    evaluated = {"source_run": str(train_b), "rows": [{"model": "tiny-S"}]}
    with pytest.raises(ValueError) as e:
        scaling.eval_for_training(train_a, ev_run, evaluated, explicit=True)
    msg = str(e.value)
    assert str(train_a) in msg and str(train_b) in msg and str(ev_run) in msg
    # the latest eval run found (not asked for) is skipped, and says so by returning None
    assert scaling.eval_for_training(train_a, ev_run, evaluated, explicit=False) is None
    # the matching one is used, whether the paths are spelled relative, with "..", or as given
    assert scaling.eval_for_training(train_b, ev_run, evaluated, explicit=True) is evaluated
    assert scaling.eval_for_training(train_b / ".." / "run-b", ev_run, evaluated, explicit=False) is evaluated
    with pytest.raises(ValueError, match="no source_run.*run-a"):
        scaling.eval_for_training(train_a, ev_run, {"rows": []}, explicit=True)
    assert scaling.eval_for_training(train_a, ev_run, {"rows": []}, explicit=False) is None
    assert scaling.eval_for_training(train_a, None, None, explicit=False) is None


def test_relative_run_paths_are_taken_from_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LINREPRO_ROOT", str(tmp_path))
    evaluated = {"source_run": str(tmp_path / "outputs" / "cpu" / "03_clip_training" / "r1")}
    assert scaling.eval_for_training("outputs/cpu/03_clip_training/r1", "e", evaluated, explicit=True) is evaluated


def test_notebook_05_refuses_an_eval_run_of_another_training_run(tmp_path):
    """Through the real CLI: an explicit eval_run that evaluated another training run fails the
    notebook, naming both training runs, instead of being dropped silently."""
    out = tmp_path / "out"
    trains = []
    for rid in ("20000101-000000-aaaaaa", "20000102-000000-bbbbbb"):
        d = out / "smoke" / "03_clip_training" / rid
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"status": "ok"}))
        (d / "results.json").write_text(json.dumps({"summaries": [], "dataset": {"resolution": 32}}))
        trains.append(d)
    ev_run = out / "smoke" / "04_zero_shot_eval" / "20000103-000000-cccccc"
    ev_run.mkdir(parents=True)
    (ev_run / "run.json").write_text(json.dumps({"status": "ok"}))
    (ev_run / "results.json").write_text(json.dumps({"source_run": str(trains[1]), "rows": []}))
    env = dict(os.environ, LINREPRO_OUTPUTS=str(out))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "linrepro",
            "run",
            "05_scaling_laws",
            "--profile",
            "smoke",
            "--no-progress",
            "-p",
            f"train_run={trains[0]}",
            "-p",
            f"eval_run={ev_run}",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode != 0, r.stdout + r.stderr
    (run,) = (out / "smoke" / "05_scaling_laws").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    err = (run / "error.txt").read_text()
    assert "ValueError" in err and str(trains[0]) in err and str(trains[1]) in err, err


def test_run_paths_are_stored_relative_and_resolved_against_the_run(tmp_path):
    """03's results.json stores paths relative to its run folder; load_training resolves them
    wherever the folder now is, and keeps the absolute paths of older runs as they are."""
    from linrepro.study import experiments as ex

    run = tmp_path / "a" / "run"
    model = run / "runs" / "tiny-S-eq7"
    results = {
        "dataset": {"dir": str(run / "data" / "k"), "classnames": str(run / "data" / "k" / "classnames.json")},
        "summaries": [{"checkpoint": str(model / "checkpoints" / "epoch_1.pt"), "run_dir": str(model), "lr": 0.1}],
        "external": {"train_csv": "/data/elsewhere/train.csv", "train_data": "shards/{0..3}.tar"},
    }
    stored = ex.relative_paths(results, run)
    assert stored["summaries"][0] == {
        "checkpoint": "runs/tiny-S-eq7/checkpoints/epoch_1.pt",
        "run_dir": "runs/tiny-S-eq7",
        "lr": 0.1,
    }
    assert stored["dataset"]["classnames"] == "data/k/classnames.json"
    assert stored["external"] == results["external"]  # outside the run, or not a path key: unchanged
    assert ex.relative_paths({"run_dir": str(run)}, run) == {"run_dir": "."}
    moved = tmp_path / "b" / "moved"
    moved.mkdir(parents=True)
    (moved / "results.json").write_text(json.dumps(stored))
    back = ex.load_training(moved)
    assert back["summaries"][0]["checkpoint"] == str(moved / "runs" / "tiny-S-eq7" / "checkpoints" / "epoch_1.pt")
    assert back["dataset"]["dir"] == str(moved / "data" / "k") and back["external"] == results["external"]
    (moved / "results.json").write_text(json.dumps(results))  # an older run: absolute paths, used as they are
    assert ex.load_training(moved) == results
