"""The `paper` profile, rehearsed end to end on CPU before anyone spends GPU-days on it.

Notebook 03 trains under the paper profile on webdataset shards that linrepro's own export wrote
(``linrepro.data.write_webdataset``), with torchrun and 2 processes (gloo); notebook 04 then
evaluates zero-shot on an ImageFolder with a class-names file standing in for ImageNet-21K.
Only data paths, sample counts, steps, resolution, the process count and the model list (ViT-S-16
of the paper's three) are overridden: every other setting is the paper profile's own.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from linrepro import data
from linrepro.clip.train import read_steps

ROOT = Path(__file__).resolve().parents[2]
RES = 32  # ViT-S-16 at 32 px: 2 × 2 patches


def cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "linrepro", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )


def _imagenet21k_standin(root: Path, n_classes: int = 3, per_class: int = 2) -> Path:
    """ImageFolder layout (synset-like folder names) with classnames.txt at the root, as the paper
    profile expects ImageNet-21K: images are the bundled shapes' held-out split."""
    ds = data.MixedDomainDataset(domains=("shapes",), split="val", resolution=48, seed=0)
    names = data.domain_spec("shapes").classnames
    counts: dict[int, int] = {}
    for i in range(len(ds)):
        s = ds[i]
        if s.label < n_classes and counts.get(s.label, 0) < per_class:
            d = root / f"n{s.label:08d}"
            d.mkdir(parents=True, exist_ok=True)
            s.image.save(d / f"{i}.png")
            counts[s.label] = counts.get(s.label, 0) + 1
    assert counts == dict.fromkeys(range(n_classes), per_class)
    (root / "classnames.txt").write_text("".join(f"{names[k]}\n" for k in range(n_classes)))
    return root


@pytest.mark.slow
def test_paper_profile_rehearsal_on_cpu(tmp_path):
    pattern, n = data.write_webdataset(
        tmp_path / "shards",
        domains=("digits", "shapes"),
        resolution=RES,
        n_per_domain={"digits": 80, "shapes": 80},
        shard_size=32,
        progress=False,
    )
    assert n == 128 and len(list((tmp_path / "shards").glob("train-*.tar"))) == 4
    in21k = _imagenet21k_standin(tmp_path / "imagenet21k")
    env = dict(os.environ, LINREPRO_OUTPUTS=str(tmp_path / "outputs"))
    overrides = {
        "train_data": pattern,
        "train_num_samples": 64,  # one global batch of ViT-S-16 (64): one step
        "epochs": 1,
        "resolution": RES,
        "nproc": 2,
        "models": ["ViT-S-16"],
    }
    args = [x for k, v in overrides.items() for x in ("-p", f"{k}={json.dumps(v)}")]
    r = cli("run", "03_clip_training", "--profile", "paper", "--no-progress", *args, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (run,) = (tmp_path / "outputs" / "paper" / "03_clip_training").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "ok"

    paper = yaml.safe_load((ROOT / "params" / "paper" / "03_clip_training.yaml").read_text())
    used = yaml.safe_load((run / "params.yaml").read_text())
    for key, value in paper.items():  # every setting not overridden is the paper profile's own
        assert used[key] == (overrides[key] if key in overrides else value), key
    assert used["batch_sizes"]["ViT-S-16"] == 64 and used["precision"] == "amp_bf16"

    results = json.loads((run / "results.json").read_text())
    summaries = results["summaries"]
    assert [(s["model"], s["attention"]) for s in summaries] == [("ViT-S-16", "softmax"), ("ViT-S-16", "eq7")]
    assert results["dataset"]["dataset_type"] == "webdataset" and results["dataset"]["train_data"] == pattern
    for s in summaries:
        assert s["nproc"] == 2 and s["batch_size"] == 64 and s["steps"] == 1, s
        assert s["extra_args"] == ["--force-image-size", str(RES)]
        rd = run / s["run_dir"]
        assert [x["step"] for x in read_steps(rd)] == [0]
        params = (rd / "params.txt").read_text()
        for line in ("world_size: 2", "dist_backend: gloo", "precision: amp_bf16", "dataset_type: webdataset"):
            assert line in params, line
        assert "batch_size: 32" in params  # the global 64 over 2 processes

    r = cli(
        "run",
        "04_zero_shot_eval",
        "--profile",
        "paper",
        "--no-progress",
        "-p",
        f"imagenet21k_root={in21k}",
        "-p",
        f"resolution={RES}",
        env=env,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (ev,) = (tmp_path / "outputs" / "paper" / "04_zero_shot_eval").iterdir()
    res = json.loads((ev / "results.json").read_text())
    assert Path(res["source_run"]) == run
    assert res["sets"] == [{"name": "imagenet21k", "n": 6, "source": str(in21k), "n_classes": 3}]
    assert {(x["attention"], x["domain"], x["n"], x["resolution"]) for x in res["rows"]} == {
        ("softmax", "imagenet21k", 6, RES),
        ("eq7", "imagenet21k", 6, RES),
    }
