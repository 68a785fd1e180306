"""The attention swap in open_clip models, and training through open_clip_train (real CLI calls)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from linrepro import clip
from linrepro.clip.train import NonFiniteLossError, StepLog, epoch_checkpoints, open_clip_args, read_steps

ROOT = Path(__file__).resolve().parents[2]


def test_open_clip_version_is_pinned_range():
    import importlib.metadata as md

    major, minor = (int(x) for x in md.version("open_clip_torch").split(".")[:2])
    assert major == 3 and minor >= 3


def test_state_dict_round_trips_across_attention_types():
    soft, _, _ = clip.create_model("tiny-S", "softmax")
    lin, _, _ = clip.create_model("tiny-S", "eq7")
    assert clip.attention_of(lin) == "eq7" and clip.attention_of(soft) == "softmax"
    res = lin.load_state_dict(soft.state_dict())
    assert not res.missing_keys and not res.unexpected_keys
    res = soft.load_state_dict(lin.state_dict())
    assert not res.missing_keys and not res.unexpected_keys
    n_swapped = sum(isinstance(m, clip.LinearMultiheadAttention) for m in lin.modules())
    assert n_swapped == 4  # 2 vision + 2 text blocks


def test_swapped_block_matches_reference_math():
    """One swapped attention module equals in_proj → linear_attention(reference) → out_proj."""
    from linrepro.attention import linear_attention

    mha = torch.nn.MultiheadAttention(32, 2, batch_first=True).double()
    lin = clip.LinearMultiheadAttention.from_mha(mha, variant="eq4").double()
    x = torch.randn(3, 9, 32, dtype=torch.float64)
    mask = torch.full((9, 9), float("-inf"), dtype=torch.float64).triu(1)
    for m, causal in ((None, False), (mask, True)):
        out = lin(x, x, x, need_weights=False, attn_mask=m)[0]
        q, k, v = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, -1)
        split = lambda t: t.view(3, 9, 2, 16).transpose(1, 2)  # noqa: E731
        ref = linear_attention(split(q), split(k), split(v), variant="eq4", causal=causal, backend="reference")
        ref = torch.nn.functional.linear(ref.transpose(1, 2).reshape(3, 9, 32), mha.out_proj.weight, mha.out_proj.bias)
        assert torch.allclose(out, ref, atol=1e-12)
    with pytest.raises(NotImplementedError, match="causal"):
        lin(x, x, x, attn_mask=torch.zeros(9, 9, dtype=torch.float64))


def test_text_tower_is_causal_and_vision_is_not():
    model, _, tok = clip.create_model("tiny-S", "eq7")
    model.eval()
    a = tok(["a b c d e f g h"])
    b = a.clone()
    b[0, 6] = 1234  # change a late token
    with torch.no_grad():
        xa = model.token_embedding(a) + model.positional_embedding
        xb = model.token_embedding(b) + model.positional_embedding
        ya = model.transformer(xa, attn_mask=model.attn_mask)
        yb = model.transformer(xb, attn_mask=model.attn_mask)
    assert torch.allclose(ya[0, :6], yb[0, :6], atol=1e-6)  # earlier positions unaffected
    assert not torch.allclose(ya[0, 6:], yb[0, 6:], atol=1e-6)
    img = torch.randn(1, 3, 32, 32)
    img2 = img.clone()
    img2[..., 24:, 24:] += 1.0  # last patch only
    with torch.no_grad():
        f1 = model.visual.transformer(model.visual.ln_pre(model.visual._embeds(img)))
        f2 = model.visual.transformer(model.visual.ln_pre(model.visual._embeds(img2)))
    assert not torch.allclose(f1[0, 1], f2[0, 1], atol=1e-6)  # first patch sees the last one: non-causal


ATTENTION_KEYS = (
    "visual.transformer.resblocks.0.attn.in_proj_weight",
    "transformer.resblocks.0.attn.in_proj_weight",
    "visual.transformer.resblocks.1.attn.out_proj.weight",
    "transformer.resblocks.1.attn.out_proj.weight",
)


def test_one_training_step_changes_vision_and_text_attention(tiny_csv, tmp_path, monkeypatch):
    """open_clip_train trains the swapped model: the model it builds is linear attention right
    after the swap, and one step moves both towers' attention weights away from that untrained init.

    The init is captured where the swap happens (not rebuilt from a seed, which could differ from
    the model open_clip_train built and make the comparison pass whatever was trained)."""
    from linrepro.clip.train import run_open_clip_train

    real_swap = clip.swap_attention
    inits = []

    def swap_and_snapshot(model, *args, **kw):
        out = real_swap(model, *args, **kw)
        inits.append((clip.attention_of(model), {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return out

    monkeypatch.setattr(clip, "swap_attention", swap_and_snapshot)
    args = open_clip_args(
        model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="one", epochs=1, batch_size=48, lr=1e-3, warmup=0
    )
    model = run_open_clip_train(args, attention="eq7")
    assert len(inits) == 1, "open_clip_train's model did not go through the attention swap"
    init_attention, init = inits[0]
    assert init_attention == "eq7", f"the model open_clip_train trained was built with {init_attention} attention"
    assert clip.attention_of(model) == "eq7"
    assert len(read_steps(tmp_path / "one")) == 1
    ck = torch.load(tmp_path / "one" / "checkpoints" / "epoch_1.pt", map_location="cpu", weights_only=False)
    trained = {k.removeprefix("module."): v for k, v in ck["state_dict"].items()}
    assert trained.keys() == init.keys()
    for key in ATTENTION_KEYS:
        assert not torch.allclose(trained[key], init[key]), f"{key} did not change in training"
    assert torch.equal(trained[ATTENTION_KEYS[0]], model.state_dict()[ATTENTION_KEYS[0]])  # the model we got


def test_short_training_keeps_only_the_latest_checkpoint(tiny_csv, tmp_path):
    """open_clip_train saves epoch_N.pt every epoch; only the newest stays, with optimizer state
    (resumable) while training, as weights only once linrepro has finalized the run."""
    from linrepro.clip.train import finalize_checkpoints, run_open_clip_train

    args = open_clip_args(
        model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="three", epochs=3, batch_size=16, lr=1e-3, warmup=0
    )
    model = run_open_clip_train(args, attention="eq7")
    ckpt = tmp_path / "three" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_3.pt"]
    ck = torch.load(ckpt / "epoch_3.pt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 3 and "optimizer" in ck
    full = (ckpt / "epoch_3.pt").stat().st_size
    assert finalize_checkpoints(ckpt) == ckpt / "epoch_3.pt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_3.pt"]
    slim = torch.load(ckpt / "epoch_3.pt", map_location="cpu", weights_only=False)
    assert "optimizer" not in slim and slim["epoch"] == 3
    assert (ckpt / "epoch_3.pt").stat().st_size < full / 2
    for k, v in model.state_dict().items():
        assert torch.equal(slim["state_dict"][k], v), k


def test_finished_run_leaves_one_weights_only_checkpoint_that_loads(tiny_csv, tmp_path):
    """Through linrepro.study.experiments (what notebook 03 calls): the run folder ends with exactly one
    checkpoint, the last epoch's, which summary['checkpoint'] names and load_model reads."""
    from linrepro.clip.train import is_weights_only
    from linrepro.study import experiments as ex

    dataset = {
        "train_csv": str(tiny_csv),
        "domains": [],
        "resolution": None,
        "seed": 0,
        "val_fraction": 0.2,
        "n_per_domain": None,
        "classnames": None,
    }
    s = ex.train_and_evaluate("tiny-S", "eq7", dataset, tmp_path, epochs=2, batch_size=16, lr=1e-3, warmup=0)
    ckpt = tmp_path / "tiny-S-eq7" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_2.pt"]
    assert s["checkpoint"] == str(ckpt / "epoch_2.pt") and is_weights_only(s["checkpoint"])
    model, _, _ = ex.load_model(s)
    assert clip.attention_of(model) == "eq7"
    assert ex.train_and_evaluate(
        "tiny-S", "eq7", dataset, tmp_path, epochs=2, batch_size=16, lr=1e-3, warmup=0
    ) == json.loads(json.dumps(s))  # finished: reused, not retrained
    (tmp_path / "tiny-S-eq7" / "summary.json").unlink()
    with pytest.raises(RuntimeError, match="weights only"):
        ex.train_and_evaluate("tiny-S", "eq7", dataset, tmp_path, epochs=2, batch_size=16, lr=1e-3, warmup=0)


def test_nonfinite_loss_names_the_step(tmp_path):
    log = StepLog(str(tmp_path / "tensorboard"))
    log.add_scalar("train/loss", 1.0, 0)
    with pytest.raises(NonFiniteLossError, match="at step 1"):
        log.add_scalar("train/loss", float("nan"), 1)
    assert [r["step"] for r in read_steps(tmp_path)] == [0, 1]


def test_training_reports_model_step_and_time_left_to_the_run_progress_line(tiny_csv, tmp_path, monkeypatch):
    """Inside a recorded run the terminal (not the report) gets 'training <name>: k/total step'
    with the time left: the total comes from open_clip_train's own scheduler."""
    from linrepro.clip.train import run_open_clip_train

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("LINREPRO_RUN_DIR", str(run))
    args = open_clip_args(
        model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="prog", epochs=2, batch_size=16, lr=1e-3, warmup=0
    )
    run_open_clip_train(args, attention="eq7")
    line = (run / "progress.txt").read_text()
    steps = len((tmp_path / "prog" / "steps.csv").read_text().splitlines()) - 1
    assert line.startswith("training prog") and f"{steps}/{steps}" in line, line  # the last step, of the total
    assert "<" in line and "step" in line  # tqdm's elapsed<left and the unit


def _train_cmd(csv, logs, name, epochs, extra=(), torchrun=False):
    args = open_clip_args(
        model="tiny-S", train_data=csv, logs=logs, name=name, epochs=epochs, batch_size=8, lr=1e-3, warmup=0
    ) + list(extra)
    if torchrun:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "linrepro.clip.train",
            "--attention",
            "eq7",
            "--",
            *args,
        ]
    return [sys.executable, "-m", "linrepro.clip.train", "--attention", "eq7", "--", *args]


@pytest.mark.slow
def test_ddp_two_processes_gloo_identical_weights(tiny_csv, tmp_path):
    env = dict(os.environ, LINREPRO_DUMP_WEIGHTS=str(tmp_path / "w"), OMP_NUM_THREADS="1")
    r = subprocess.run(
        _train_cmd(tiny_csv, tmp_path, "ddp", 1, torchrun=True),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world_size: 2" in (tmp_path / "ddp" / "out.log").read_text()
    w0 = torch.load(tmp_path / "w" / "rank0.pt")
    w1 = torch.load(tmp_path / "w" / "rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    steps = read_steps(tmp_path / "ddp")
    assert [s["step"] for s in steps] == list(range(3))  # 48 samples / (8 × 2 ranks)


@pytest.mark.slow
def test_killed_run_resumes_without_gap_or_repeat(tiny_csv, tmp_path):
    epochs, per_epoch = 8, 6
    proc = subprocess.Popen(
        _train_cmd(tiny_csv, tmp_path, "res", epochs),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ckpt = tmp_path / "res" / "checkpoints"
    t0 = time.time()
    while not epoch_checkpoints(ckpt):  # only the newest epoch_N.pt is kept: wait for any
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() - t0 < 300
        time.sleep(0.05)
    time.sleep(0.1)  # into epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt / f"epoch_{epochs}.pt").exists(), "the run finished before it could be killed"
    logged = [s["step"] for s in read_steps(tmp_path / "res")]
    assert logged and logged[-1] < epochs * per_epoch - 1
    r = subprocess.run(
        _train_cmd(tiny_csv, tmp_path, "res", epochs, ["--resume", "latest"]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming checkpoint" in (tmp_path / "res" / "out.log").read_text()
    steps = [s["step"] for s in read_steps(tmp_path / "res")]
    assert steps == list(range(epochs * per_epoch))
    assert (ckpt / f"epoch_{epochs}.pt").exists()
    # earlier epochs were deleted as newer ones were saved (a kill between saving epoch_k and
    # deleting epoch_k-1 may leave that one: finalize_checkpoints removes it when a run finishes)
    left = [p.name for p in epoch_checkpoints(ckpt)]
    assert left[-1] == f"epoch_{epochs}.pt" and len(left) <= 2, left


# ------------------------------------------------------------------ issue 13: launcher and checkpoints
def test_resume_latest_with_nothing_to_resume_is_an_error(tiny_csv, tmp_path):
    """`--resume latest` on a run with no checkpoint used to train from scratch and exit 0; now the
    launcher refuses (naming the folder) unless --resume-missing-ok opts in to a fresh start."""
    r = subprocess.run(
        _train_cmd(tiny_csv, tmp_path, "none", 1, ["--resume", "latest"]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0, "--resume latest with nothing to resume trained from scratch"
    assert "nothing to resume" in r.stderr and str(tmp_path / "none" / "checkpoints") in r.stderr, r.stderr[-2000:]
    assert read_steps(tmp_path / "none") == [] and not epoch_checkpoints(tmp_path / "none" / "checkpoints")
    from linrepro.clip.train import run_open_clip_train

    args = open_clip_args(
        model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="none", epochs=1, batch_size=48, lr=1e-3, warmup=0
    )
    run_open_clip_train([*args, "--resume", "latest"], attention="eq7", resume_missing_ok=True)
    assert [s["step"] for s in read_steps(tmp_path / "none")] == [0]


def test_failed_start_is_cleaned_up_so_a_retry_works(tiny_csv, tmp_path):
    """A start that fails before training (a missing train CSV) leaves no logs/<name>/ behind, so
    the same command works once the CSV is there (open_clip_train said 'Experiment already exists')."""
    from linrepro.clip.train import run_open_clip_train

    missing = tmp_path / "data" / "train.csv"
    args = open_clip_args(
        model="tiny-S", train_data=missing, logs=tmp_path / "logs", name="retry", epochs=1, batch_size=48, lr=1e-3
    )
    with pytest.raises(Exception, match="train.csv"):
        run_open_clip_train(args, attention="eq7")
    assert not (tmp_path / "logs" / "retry").exists(), list((tmp_path / "logs" / "retry").rglob("*"))
    missing.parent.mkdir()
    missing.write_text(tiny_csv.read_text())
    run_open_clip_train(args, attention="eq7")
    assert [s["step"] for s in read_steps(tmp_path / "logs" / "retry")] == [0]
    # a run that exists is never deleted by a failed start: open_clip_train's refusal is reported
    with pytest.raises(RuntimeError, match=r"logs/retry already exists"):
        run_open_clip_train(args, attention="eq7")
    assert (tmp_path / "logs" / "retry" / "checkpoints" / "epoch_1.pt").exists()


def test_steplog_survives_a_line_cut_by_a_kill(tmp_path):
    """A kill mid-append leaves a partial last line in steps.jsonl; a resumed run reads past it."""
    log = StepLog(str(tmp_path / "tensorboard"))
    for step in range(3):
        log.add_scalar("train/loss", 1.0 + step, step)
    with open(tmp_path / "steps.jsonl", "a") as f:
        f.write('{"step": 3, "lo')
    log2 = StepLog(str(tmp_path / "tensorboard"))
    log2.add_scalar("train/loss", 9.0, 3)
    assert [(r["step"], r["loss"]) for r in read_steps(tmp_path)] == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 9.0)]


def _fake_run(tmp_path, name="tiny-S-eq7"):
    model, _, _ = clip.create_model("tiny-S", "eq7")
    run = tmp_path / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    ck = run / "checkpoints" / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, ck)
    summary = {"model": "tiny-S", "attention": "eq7", "score_scale": 0.5, "checkpoint": str(ck), "run_dir": str(run)}
    return summary, ck, run


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_checkpoint_error_names_the_file_and_the_run(tmp_path, keep):
    from linrepro.clip.train import CheckpointError, finalize_checkpoints, is_weights_only
    from linrepro.study import experiments as ex

    summary, ck, run = _fake_run(tmp_path)
    data = ck.read_bytes()
    ck.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    for call in (lambda: ex.load_model(summary), lambda: is_weights_only(ck), lambda: finalize_checkpoints(ck.parent)):
        with pytest.raises(CheckpointError) as e:
            call()
        assert str(ck) in str(e.value) and "tiny-S-eq7" in str(e.value) and "truncated or corrupt" in str(e.value)
    ck.unlink()
    with pytest.raises(CheckpointError, match=r"epoch_1\.pt of run .*tiny-S-eq7 does not exist"):
        ex.load_model(summary)


def test_unfinished_run_continues_only_when_resume_is_asked(tiny_csv, tmp_path):
    """A model folder without summary.json is an error unless resume=True; stopped before its first
    checkpoint, resuming it starts that model again (a failed start's leftovers do not block it)."""
    from linrepro.study import experiments as ex

    dataset = {
        "train_csv": str(tiny_csv),
        "domains": [],
        "resolution": None,
        "seed": 0,
        "val_fraction": 0.2,
        "n_per_domain": None,
        "classnames": None,
    }
    run = tmp_path / "tiny-S-eq7"
    (run / "checkpoints").mkdir(parents=True)
    (run / "out.log").write_text("killed in epoch 1\n")
    (run / "steps.jsonl").write_text('{"step": 0, "loss": 9.0}\n{"step": 1, "lo')
    kw = dict(epochs=1, batch_size=16, lr=1e-3, warmup=0)
    with pytest.raises(RuntimeError, match=r"tiny-S-eq7 is an unfinished run .*resume"):
        ex.train_and_evaluate("tiny-S", "eq7", dataset, tmp_path, **kw)
    s = ex.train_and_evaluate("tiny-S", "eq7", dataset, tmp_path, resume=True, **kw)
    assert [x["step"] for x in read_steps(run)] == [0, 1, 2] and s["steps"] == 3
    assert "resumed_from" not in s and "killed in epoch 1" not in (run / "out.log").read_text()
    stored = json.loads((run / "summary.json").read_text())  # paths relative to the model's folder
    assert stored["checkpoint"] == "checkpoints/epoch_1.pt" and stored["run_dir"] == "."
