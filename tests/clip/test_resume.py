"""`linrepro run 03_clip_training --resume RUN_DIR` after a real kill in the middle of the second
model, through the real CLI; then the finished run folder is moved and notebook 04 reads it there."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linrepro.clip.train import epoch_checkpoints, read_steps

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 12  # 160 training pairs of the smoke data at batch 32: 5 steps an epoch
PARAMS = [
    "-p",
    "models=[tiny-S]",
    "-p",
    "seeds=[]",
    "-p",
    "workers=1",
    "-p",
    "attentions=[softmax, eq7]",
    "-p",
    "extra_runs=[]",
    "-p",
    f"epochs={EPOCHS}",
]


def cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "linrepro", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )


def _processes_of(run: Path) -> list[int]:
    """Live processes started for ``run`` (the papermill kernel has LINREPRO_RUN_DIR in its environment)."""
    key = f"LINREPRO_RUN_DIR={run}".encode() + b"\0"
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if key in (p / "environ").read_bytes() + b"\0":
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume-outputs")
    env = dict(os.environ, LINREPRO_OUTPUTS=str(out))
    log = open(out / "first.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "linrepro", "run", "03_clip_training", "--profile", "smoke", "--no-progress", *PARAMS],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    parent = out / "smoke" / "03_clip_training"
    t0 = time.time()
    second = None
    while True:  # kill once the second model has saved its 2nd epoch (of 12)
        assert proc.poll() is None, f"the run ended before the kill: {(out / 'first.log').read_text()[-3000:]}"
        assert time.time() - t0 < 600, "the second model never reached epoch 2"
        runs = list(parent.glob("*/runs/tiny-S-eq7"))
        ck = epoch_checkpoints(runs[0] / "checkpoints") if runs else []
        if ck and int(ck[-1].stem.split("_")[1]) >= 2:
            second = runs[0]
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = second.parents[1]
    t0 = time.time()
    while _processes_of(run):  # the kernel notices its parent is gone within a second or so
        assert time.time() - t0 < 60, f"processes of {run} still alive after the kill: {_processes_of(run)}"
        time.sleep(0.2)
    before = {
        "first_summary": (run / "runs" / "tiny-S-softmax" / "summary.json").read_text(),
        "second_steps": [s["step"] for s in read_steps(second)],
        "second_finished": (second / "summary.json").exists(),
        "status": json.loads((run / "run.json").read_text())["status"],
    }
    r = cli("run", "03_clip_training", "--resume", str(run), "--no-progress", env=env)
    return {"out": out, "env": env, "run": run, "before": before, "r": r}


@pytest.mark.slow
def test_resume_finishes_every_model_with_no_gap_and_no_repeat(resumed):
    run, before, r = resumed["run"], resumed["before"], resumed["r"]
    assert not before["second_finished"], "the kill landed after the second model had finished"
    assert before["second_steps"] and before["second_steps"][-1] < EPOCHS * 5 - 1
    assert before["status"] != "ok"
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "ok" and meta["run_id"] == run.name and meta.get("error") is None, meta
    # duration_s adds up the executions that recorded one (a SIGKILL leaves none to add)
    assert meta["executions_s"] and meta["duration_s"] == pytest.approx(sum(meta["executions_s"]), abs=0.05)
    assert [p.name for p in run.parent.iterdir()] == [run.name], "resume made a new run folder"
    first, second = run / "runs" / "tiny-S-softmax", run / "runs" / "tiny-S-eq7"
    assert (first / "summary.json").read_text() == before["first_summary"]  # finished: reused, not retrained
    assert [s["step"] for s in read_steps(first)] == list(range(EPOCHS * 5))
    assert [s["step"] for s in read_steps(second)] == list(range(EPOCHS * 5))  # no gap, no repeat
    csv_steps = [int(line.split(",")[0]) for line in (second / "steps.csv").read_text().splitlines()[1:]]
    assert csv_steps == list(range(EPOCHS * 5))
    assert "resuming checkpoint" in (second / "out.log").read_text()  # open_clip_train's own resume
    summaries = json.loads((run / "results.json").read_text())["summaries"]
    assert [(s["model"], s["attention"], s["steps"]) for s in summaries] == [
        ("tiny-S", "softmax", EPOCHS * 5),
        ("tiny-S", "eq7", EPOCHS * 5),
    ]
    assert summaries[1]["resumed_from"].startswith("epoch_")
    # a resumed run's train_s is every logged step's time, not only the resumed execution's
    assert summaries[1]["train_s"] == pytest.approx(sum(s["batch_time"] for s in read_steps(second)))
    assert summaries[1]["train_s_this_execution"] > 0
    assert [p.name for p in epoch_checkpoints(second / "checkpoints")] == [f"epoch_{EPOCHS}.pt"]
    assert (run / "report.html").exists()
    env = resumed["env"]
    again = cli("run", "03_clip_training", "--resume", str(run), env=env)
    assert again.returncode == 2 and "nothing to resume" in again.stderr and str(run) in again.stderr
    # --rerun executes the finished run again in place: its models are reused, nothing retrained
    before = {p: p.stat().st_mtime_ns for p in run.rglob("checkpoints/*.pt")}
    rerun = cli("run", "03_clip_training", "--rerun", str(run), env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("checkpoints/*.pt")} == before
    assert [s["step"] for s in read_steps(second)] == list(range(EPOCHS * 5))
    assert json.loads((run / "run.json").read_text())["status"] == "ok"
    both = cli("run", "03_clip_training", "--resume", str(run), "--rerun", str(run), env=env)
    assert both.returncode == 2 and "not both" in both.stderr
    with_p = cli("run", "03_clip_training", "--resume", str(run), "-p", "epochs=2", env=env)
    assert with_p.returncode == 2 and "own params.yaml" in with_p.stderr
    other = cli("run", "04_zero_shot_eval", "--resume", str(run), env=env)
    assert other.returncode == 2 and "a run of 03_clip_training, not of 04_zero_shot_eval" in other.stderr
    nowhere = cli("run", "03_clip_training", "--resume", str(run / "runs"), env=env)
    assert nowhere.returncode == 2 and "no run.json" in nowhere.stderr


@pytest.mark.slow
def test_moved_training_run_is_read_by_notebook_04(resumed, tmp_path):
    """Paths in the run folder are relative to it: moved elsewhere, notebook 04 still loads its models."""
    moved = tmp_path / "elsewhere" / resumed["run"].name
    moved.parent.mkdir()
    shutil.move(resumed["run"], moved)
    stored = json.loads((moved / "results.json").read_text())
    assert not Path(stored["summaries"][0]["checkpoint"]).is_absolute()
    assert not Path(json.loads((moved / "runs" / "tiny-S-eq7" / "summary.json").read_text())["run_dir"]).is_absolute()
    r = cli(
        "run",
        "04_zero_shot_eval",
        "--profile",
        "smoke",
        "-p",
        f"train_run={moved}",
        "--no-progress",
        env=resumed["env"],
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (ev,) = (resumed["out"] / "smoke" / "04_zero_shot_eval").iterdir()
    res = json.loads((ev / "results.json").read_text())
    assert {(row["model"], row["attention"], row["domain"]) for row in res["rows"]} == {
        (m, a, d) for m in ["tiny-S"] for a in ["softmax", "eq7"] for d in ["digits", "shapes", "mnist"]
    }
