"""Mixed-resolution training through the launcher (real CLI calls): ``python -m linrepro.train`` is
``python -m linrepro.clip.train``; two torchrun ranks (gloo, CPU) draw the same side at every step and
end with identical weights; a bad set of sides is refused before training, naming the bad value."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from linrepro.clip import flexres
from linrepro.clip.train import open_clip_args, read_steps

ROOT = Path(__file__).resolve().parents[2]
SIDES = (16, 32)
SEED = 0
STEPS = 6  # 48 samples / (batch 4 x 2 ranks), one epoch


def _args(csv_path, logs, name, *, batch_size=4, seed=SEED, extra=()):
    return open_clip_args(
        model="tiny-XS",
        train_data=csv_path,
        logs=logs,
        name=name,
        epochs=1,
        batch_size=batch_size,
        lr=1e-3,
        warmup=0,
        seed=seed,
        extra=list(extra),
    )


def _launch(module: str, ours: list[str], theirs: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *ours, "--", *theirs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


# ------------------------------------------------------------------ linrepro.train is the launcher
@pytest.mark.parametrize("module", ["linrepro.train", "linrepro.clip.train"])
def test_launcher_alias_same_arguments_same_exit_codes(module, tiny_csv, tmp_path):
    """``--help`` (0), an argument error (2) and ``--resume latest`` with nothing to resume (2, naming
    the folder) come out the same from both module names."""
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--mixed-resolutions" in r.stdout and "--attention" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", module, "--attention", "eq99"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 2 and "eq99" in r.stderr, r.stderr[-2000:]
    assert f"python -m {module}: error:" in r.stderr, r.stderr[-2000:]  # the module actually run
    r = _launch(module, ["--attention", "eq7"], _args(tiny_csv, tmp_path, "none", extra=["--resume", "latest"]))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "nothing to resume" in r.stderr and str(tmp_path / "none" / "checkpoints") in r.stderr, r.stderr[-2000:]


def test_alias_module_calls_the_launchers_main(monkeypatch):
    """In-process: linrepro.train.main forwards its argv to linrepro.clip.train.main and returns its code."""
    import linrepro.clip.train as launcher
    from linrepro import train

    seen = []
    monkeypatch.setattr(launcher, "main", lambda argv=None: seen.append(argv) or 7)
    assert train.main(["--attention", "eq7", "--", "--epochs", "1"]) == 7
    assert seen == [["--attention", "eq7", "--", "--epochs", "1"]]


def test_alias_runs_one_thread_per_rank_under_torchrun_on_cpu(monkeypatch):
    """Under torchrun (LOCAL_RANK set) on CPU with no OMP_NUM_THREADS: one thread, in the variable and
    in torch itself (torch reads the variable on import, so setting it alone changes nothing)."""
    from linrepro import train

    before = torch.get_num_threads()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    try:
        train._one_thread_per_cpu_rank()  # not under torchrun: untouched
        assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == before
        monkeypatch.setenv("LOCAL_RANK", "0")
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        train._one_thread_per_cpu_rank()  # the user's setting wins
        assert os.environ["OMP_NUM_THREADS"] == "3" and torch.get_num_threads() == before
        monkeypatch.delenv("OMP_NUM_THREADS")
        train._one_thread_per_cpu_rank()
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ two ranks, one draw per step
def test_torchrun_two_ranks_train_at_the_same_drawn_sides(tiny_csv, tmp_path):
    draws = [flexres.resolution_at(t, SIDES, SEED) for t in range(STEPS)]
    assert set(draws) == set(SIDES), f"seed {SEED} draws {draws} in {STEPS} steps: pick a seed that draws both"
    env = dict(os.environ, LINREPRO_DUMP_WEIGHTS=str(tmp_path / "w"), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "linrepro.train",
        "--attention",
        "eq7",
        "--score-scale",
        "1/N",
        "--mixed-resolutions",
        ",".join(map(str, SIDES)),
        "--",
        *_args(tiny_csv, tmp_path, "mixed", extra=["--force-image-size", str(max(SIDES))]),
    ]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world_size: 2" in (tmp_path / "mixed" / "out.log").read_text()

    h0 = json.loads((tmp_path / "w" / "rank0.resolutions.json").read_text())
    h1 = json.loads((tmp_path / "w" / "rank1.resolutions.json").read_text())
    assert h0 == h1, (h0, h1)
    assert [step for step, _ in h0] == list(range(STEPS))
    assert [side for _, side in h0] == draws  # flexres.resolution_at(step, sides, --seed)
    assert len({side for _, side in h0}) > 1

    w0 = torch.load(tmp_path / "w" / "rank0.pt")
    w1 = torch.load(tmp_path / "w" / "rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert w0["visual.positional_embedding"].shape == (1 + 4 * 4, 32)  # stored at the largest side's grid

    steps = read_steps(tmp_path / "mixed")
    assert [(s["step"], s["resolution"]) for s in steps] == [tuple(x) for x in h0]
    with open(tmp_path / "mixed" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["resolution"]) for row in rows] == draws


# ------------------------------------------------------------------ a bad set is refused before training
@pytest.mark.parametrize(
    "sides,extra,bad",
    [
        pytest.param("16,20", ["--force-image-size", "20"], ["20", "patch size 8"], id="20-vs-patch"),
        pytest.param("12,32", [], ["12", "patch size 8"], id="12-vs-patch"),
        pytest.param("16,24.5,32", [], ["24.5"], id="fractional-side"),
        pytest.param("16,20", [], ["20"], id="largest-not-model-side"),
        pytest.param("16,48", [], ["48", "32"], id="largest-above-model-side"),
        pytest.param("16,32", ["--force-image-size", "48"], ["32", "48"], id="forced-side-not-largest"),
        pytest.param("16", [], ["16", "two"], id="one-side"),
        pytest.param("16,abc", [], ["abc"], id="not-an-integer"),
        pytest.param("16,32", ["--skip-scheduler"], ["--skip-scheduler"], id="skip-scheduler"),
    ],
)
def test_cli_refuses_a_bad_set_with_exit_code_2(sides, extra, bad, tiny_csv, tmp_path):
    r = _launch(
        "linrepro.train",
        ["--attention", "eq7", "--mixed-resolutions", sides],
        _args(tiny_csv, tmp_path, "bad", extra=extra),
    )
    assert r.returncode == 2, r.stderr[-3000:]
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert "error:" in err and all(b in err for b in bad), r.stderr[-3000:]
    assert not (tmp_path / "bad").exists()  # refused before open_clip_train made the run folder


def test_check_mixed_reads_the_patch_size_from_the_model_config():
    """In-process: the model's patch size (from its open_clip config) is checked; a model with no
    config known here gets no patch check (open_clip_train reports a model it cannot build)."""
    from linrepro.clip.train import check_mixed

    with pytest.raises(ValueError, match=r"patch size 8.*\[20\]|\[20\].*patch size 8"):
        check_mixed(["--model", "tiny-XS", "--force-image-size", "20"], "16,20")
    assert check_mixed(["--model", "tiny-XS", "--seed", "3"], "16,32") == ((16, 32), 3)
    assert check_mixed(["--model", "no-such-model", "--force-image-size", "20"], "16,20") == ((16, 20), 0)
    with pytest.raises(ValueError, match="--force-image-size None"):  # no config: no side of its own either
        check_mixed(["--model", "no-such-model"], "16,20")
