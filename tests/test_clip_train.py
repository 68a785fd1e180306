"""The attention swap in open_clip models, and training through open_clip_train (real CLI calls)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from linrepro import clip
from linrepro.train import StepLog, NonFiniteLossError, open_clip_args, read_steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("csv")
    rng = np.random.default_rng(0)
    rows = ["filepath\ttitle"]
    for i in range(48):
        p = d / f"{i}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(p)
        rows.append(f"{p}\ta picture of class {i % 4}")
    (d / "train.csv").write_text("\n".join(rows) + "\n")
    return d / "train.csv"


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
    assert torch.allclose(ya[0, :6], yb[0, :6], atol=1e-6)      # earlier positions unaffected
    assert not torch.allclose(ya[0, 6:], yb[0, 6:], atol=1e-6)
    img = torch.randn(1, 3, 32, 32)
    img2 = img.clone()
    img2[..., 24:, 24:] += 1.0  # last patch only
    with torch.no_grad():
        f1 = model.visual.transformer(model.visual.ln_pre(model.visual._embeds(img)))
        f2 = model.visual.transformer(model.visual.ln_pre(model.visual._embeds(img2)))
    assert not torch.allclose(f1[0, 1], f2[0, 1], atol=1e-6)  # first patch sees the last one: non-causal


def test_one_training_step_changes_vision_and_text_attention(tiny_csv, tmp_path):
    from linrepro.train import run_open_clip_train

    args = open_clip_args(model="tiny-S", train_data=tiny_csv, logs=tmp_path, name="one", epochs=1,
                          batch_size=48, lr=1e-3, warmup=0)
    before, _, _ = clip.create_model("tiny-S", "eq7")
    model = run_open_clip_train(args, attention="eq7")
    assert clip.attention_of(model) == "eq7"
    init = torch.load(tmp_path / "one" / "checkpoints" / "epoch_1.pt", map_location="cpu", weights_only=False)
    assert len(read_steps(tmp_path / "one")) == 1
    # compare the trained weights against a fresh model of the same seed (open_clip_train seeds with 0)
    torch.manual_seed(0)
    fresh, _, _ = clip.create_model("tiny-S", "eq7")
    sd = {k.removeprefix("module."): v for k, v in init["state_dict"].items()}
    for key in ("visual.transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.attn.in_proj_weight",
                "visual.transformer.resblocks.1.attn.out_proj.weight", "transformer.resblocks.1.attn.out_proj.weight"):
        assert not torch.allclose(sd[key], fresh.state_dict()[key]), key


def test_nonfinite_loss_names_the_step(tmp_path):
    log = StepLog(str(tmp_path / "tensorboard"))
    log.add_scalar("train/loss", 1.0, 0)
    with pytest.raises(NonFiniteLossError, match="at step 1"):
        log.add_scalar("train/loss", float("nan"), 1)
    assert [r["step"] for r in read_steps(tmp_path)] == [0, 1]


def _train_cmd(csv, logs, name, epochs, extra=(), torchrun=False):
    args = open_clip_args(model="tiny-S", train_data=csv, logs=logs, name=name, epochs=epochs,
                          batch_size=8, lr=1e-3, warmup=0) + list(extra)
    if torchrun:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "linrepro.train",
                "--attention", "eq7", "--", *args]
    return [sys.executable, "-m", "linrepro.train", "--attention", "eq7", "--", *args]


def test_ddp_two_processes_gloo_identical_weights(tiny_csv, tmp_path):
    env = dict(os.environ, LINREPRO_DUMP_WEIGHTS=str(tmp_path / "w"), OMP_NUM_THREADS="1")
    r = subprocess.run(_train_cmd(tiny_csv, tmp_path, "ddp", 1, torchrun=True), env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world_size: 2" in (tmp_path / "ddp" / "out.log").read_text()
    w0 = torch.load(tmp_path / "w" / "rank0.pt")
    w1 = torch.load(tmp_path / "w" / "rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    steps = read_steps(tmp_path / "ddp")
    assert [s["step"] for s in steps] == list(range(3))  # 48 samples / (8 × 2 ranks)


def test_killed_run_resumes_without_gap_or_repeat(tiny_csv, tmp_path):
    epochs, per_epoch = 8, 6
    proc = subprocess.Popen(_train_cmd(tiny_csv, tmp_path, "res", epochs), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = tmp_path / "res" / "checkpoints"
    t0 = time.time()
    while not (ckpt / "epoch_1.pt").exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() - t0 < 300
        time.sleep(0.05)
    time.sleep(0.1)  # into epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ckpt / f"epoch_{epochs}.pt").exists(), "the run finished before it could be killed"
    logged = [s["step"] for s in read_steps(tmp_path / "res")]
    assert logged and logged[-1] < epochs * per_epoch - 1
    r = subprocess.run(_train_cmd(tiny_csv, tmp_path, "res", epochs, ["--resume", "latest"]), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming checkpoint" in (tmp_path / "res" / "out.log").read_text()
    steps = [s["step"] for s in read_steps(tmp_path / "res")]
    assert steps == list(range(epochs * per_epoch))
    assert (ckpt / f"epoch_{epochs}.pt").exists()
