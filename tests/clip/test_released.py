"""The ``released`` variant (the first author's public open_clip code) against a float64 loop
reference written from its description, and each property that sets it apart from the paper's
Eq. 7, shown to hold for ``released`` and to fail for eq7 (``linrepro.attention``'s public API)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from linrepro import clip
from linrepro.attention import affine_scores, linear_attention
from linrepro.clip.released import (
    PROJECTIONS,
    ReleasedMultiheadAttention,
    released_attention,
    released_scores,
)

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- the loop reference
def _head_rows(x, b, h, heads):
    """Head h of sample b as a list of N rows of d scalars. The plain reshape (B, N, H·d) → (B, H, N, d)
    puts at [b, h, r, c] the flat element h·N·d + r·d + c of sample b; flat element p is x[b, p // E, p % E]."""
    _, n, e = x.shape
    d = e // heads
    return [[x[b, (h * n * d + r * d + c) // e, (h * n * d + r * d + c) % e] for c in range(d)] for r in range(n)]


def _dot(a, b):
    return sum(ai * bi for ai, bi in zip(a, b, strict=True))


def loop_reference(x, heads):
    """(output, scores) of the released operator by loops over batch, head, rows: q = k = v = head rows,
    q and k divided by the largest row norm, o_i = Σ_j (1 + q_i·k_j) v_j, written back to the flat
    positions the rows came from. No mask."""
    bsz, n, e = x.shape
    d = e // heads
    out = [[[None] * e for _ in range(n)] for _ in range(bsz)]
    scores = [[None] * heads for _ in range(bsz)]
    for b in range(bsz):
        for h in range(heads):
            rows = _head_rows(x, b, h, heads)
            m = max(torch.sqrt(_dot(r, r)) for r in rows)
            q = [[c / m for c in r] for r in rows]
            s = [[1.0 + _dot(q[i], q[j]) for j in range(n)] for i in range(n)]
            scores[b][h] = torch.stack([torch.stack(r) for r in s])
            for i in range(n):
                for c in range(d):
                    p = h * n * d + i * d + c
                    out[b][p // e][p % e] = sum(s[i][j] * rows[j][c] for j in range(n))
    o = torch.stack([torch.stack([torch.stack(t) for t in sample]) for sample in out])
    return o, torch.stack([torch.stack(s) for s in scores])


def paper_eq7(x, heads, causal=False, score_scale=0.5):
    """The paper's Eq. 7 on the same input, through linrepro.attention: heads as feature slices
    (view + transpose), q = k = v = x, unit q̂ and k̂ (no projections, as in the released code)."""
    b, n, e = x.shape
    xh = x.view(b, n, heads, e // heads).transpose(1, 2)
    o = linear_attention(xh, xh, xh, variant="eq7", causal=causal, score_scale=score_scale, backend="reference")
    return o.transpose(1, 2).reshape(b, n, e)


def ln_tokens(b, n, e, seed=0, shared=0.0):
    g = torch.Generator().manual_seed(seed)
    c, z = torch.randn(e, generator=g, dtype=F64), torch.randn(b, n, e, generator=g, dtype=F64)
    return torch.nn.functional.layer_norm(shared * c + z, (e,))


@pytest.mark.parametrize("shape", [(2, 6, 12, 3), (2, 7, 12, 3), (1, 5, 8, 1), (3, 4, 16, 4)])
def test_matches_the_loop_reference_outputs_and_gradients(shape):
    b, n, e, h = shape
    x = ln_tokens(b, n, e, seed=n) * 1.7 + 0.3  # off the layer-norm sphere too
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, ref_scores = loop_reference(x1, h)
    out = released_attention(x2, h)
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(released_scores(x.clone(), h), ref_scores, rtol=1e-12, atol=1e-12)
    w = torch.randn(out.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x1)
    (g_out,) = torch.autograd.grad((out * w).sum(), x2)
    assert torch.allclose(g_out, g_ref, rtol=1e-10, atol=1e-12)


def test_module_ignores_projections_and_masks_and_refuses_cross_attention():
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True).double()
    rel = ReleasedMultiheadAttention.from_mha(mha)
    x = ln_tokens(2, 6, 12)
    mask = torch.full((6, 6), float("-inf"), dtype=F64).triu(1)
    ref = loop_reference(x, 3)[0]
    for m in (None, mask):
        assert torch.allclose(rel(x, x, x, need_weights=False, attn_mask=m)[0], ref, atol=1e-12)
    assert all(not p.requires_grad for p in rel.parameters())
    assert sorted(n for n, _ in rel.named_parameters()) == sorted(PROJECTIONS)
    with pytest.raises(NotImplementedError, match="self-attention"):
        rel(x, x.clone(), x)
    with pytest.raises(ValueError, match="not a multiple"):
        released_attention(torch.zeros(1, 2, 10, dtype=F64), 3)


def test_swapped_into_open_clip_blocks_state_dict_loads_and_projections_frozen():
    soft, _, _ = clip.create_model("tiny-B", "softmax")
    rel, _, _ = clip.create_model("tiny-B", "released")
    assert clip.attention_of(rel) == "released"
    assert not rel.load_state_dict(soft.state_dict()).missing_keys
    res = soft.load_state_dict(rel.state_dict())
    assert not res.missing_keys and not res.unexpected_keys
    swapped = [m for m in rel.modules() if isinstance(m, ReleasedMultiheadAttention)]
    assert len(swapped) == 6  # 3 vision + 3 text blocks
    frozen = {n for n, p in rel.named_parameters() if not p.requires_grad}
    assert frozen == {
        f"{pre}.resblocks.{i}.attn.{p}"
        for pre in ("visual.transformer", "transformer")
        for i in range(3)
        for p in PROJECTIONS
    }
    counts = clip.parameter_counts(rel)
    assert counts["frozen"] == sum(p.numel() for m in swapped for p in m.parameters())
    assert counts["trainable"] + counts["frozen"] == counts["total"] == clip.parameter_counts(soft)["total"]
    # one whole text block, causal mask passed as open_clip passes it: x + released(ln_1(x)), then the MLP
    blk = rel.transformer.resblocks[0].double()
    x = torch.randn(2, 16, 96, dtype=F64)
    mask = torch.full((16, 16), float("-inf"), dtype=F64).triu(1)
    y = x + loop_reference(blk.ln_1(x), 3)[0]
    y = y + blk.mlp(blk.ln_2(y))
    assert torch.allclose(blk(x, attn_mask=mask), y, atol=1e-10)


# --------------------------------------------------------------------------- the properties
def support(fn, x):
    """(N·E, N·E) bool: output flat position p depends on input flat position q (one sample)."""
    jac = torch.autograd.functional.jacobian(fn, x)
    n, e = x.shape[1:]
    a = jac.abs().reshape(n * e, n * e)
    return a > 1e-12 * a.max()


def run_pattern(n, e, heads):
    """From the description: output flat p touches exactly the flat run of its head, [h·N·d, (h+1)·N·d)."""
    d = e // heads
    head = torch.arange(n * e) // (n * d)
    return head[:, None] == head[None, :]


@pytest.mark.parametrize("n", [8, 7])
def test_head_mixing_pattern_from_jacobian_rows(n):
    e, h = 12, 3
    x = ln_tokens(1, n, e, seed=3)
    rel = support(lambda t: released_attention(t, h), x)
    assert torch.equal(rel, run_pattern(n, e, h))
    # a token sees a run of N/H tokens (a token split between two heads sees both runs), never all N
    tokens_touched = rel.view(n, e, n, e).any(3).any(1).sum(1)
    assert int(tokens_touched.max()) < n
    if n % h == 0:
        assert tokens_touched.tolist() == [n // h] * n
    # the paper's Eq. 7 (heads as feature slices) fails it: a row touches every token, d features each
    eq7 = support(lambda t: paper_eq7(t, h), x)
    assert not torch.equal(eq7, run_pattern(n, e, h))
    feature_slice = (torch.arange(n * e) % e) // (e // h)
    assert torch.equal(eq7, feature_slice[:, None] == feature_slice[None, :])


def _text_features(model, tok, text):
    with torch.no_grad():
        x = model.token_embedding(tok([text])) + model.positional_embedding
        return x, model.transformer(x, attn_mask=model.attn_mask)


@pytest.mark.parametrize("name", ["tiny-S", "tiny-B"])
def test_text_tower_leaks_future_tokens_unlike_eq7(name):
    torch.manual_seed(0)
    rel, _, tok = clip.create_model(name, "released")
    torch.manual_seed(0)
    eq7, _, _ = clip.create_model(name, "eq7")
    # a token inside the first "head" run of both models (tiny-S: 2 runs of 8 tokens; tiny-B: 3 runs
    # of 16/3 tokens), so that earlier tokens of its run can see it in the released code
    late = 5
    for model, leaks in ((rel, True), (eq7, False)):
        model.eval()
        a = tok(["a b c d e f g h i j"])
        b = a.clone()
        b[0, late] = 1234  # change one late token
        with torch.no_grad():
            ya = model.transformer(model.token_embedding(a) + model.positional_embedding, attn_mask=model.attn_mask)
            yb = model.transformer(model.token_embedding(b) + model.positional_embedding, attn_mask=model.attn_mask)
        changed_before = (ya[0, :late] - yb[0, :late]).abs().amax(-1) > 1e-6
        assert bool(changed_before.any()) is leaks, f"{name} {clip.attention_of(model)}: {changed_before.tolist()}"


def test_future_leakage_in_one_block_follows_the_runs():
    """With the text tower's causal mask, ∂o_i/∂x_j ≠ 0 for later j in i's run (released), never (eq7)."""
    n, e, h = 9, 12, 3
    x = ln_tokens(1, n, e, seed=5)
    mha = torch.nn.MultiheadAttention(e, h, batch_first=True).double()
    rel = ReleasedMultiheadAttention.from_mha(mha)
    mask = torch.full((n, n), float("-inf"), dtype=F64).triu(1)
    s_rel = support(lambda t: rel(t, t, t, attn_mask=mask)[0], x).view(n, e, n, e).any(3).any(1)
    s_eq7 = support(lambda t: paper_eq7(t, h, causal=True), x).view(n, e, n, e).any(3).any(1)
    later = torch.ones(n, n, dtype=torch.bool).triu(1)
    same_run = (torch.arange(n)[:, None] // (n // h)) == (torch.arange(n)[None, :] // (n // h))
    assert torch.equal(s_rel & later, same_run & later) and bool((s_rel & later).any())
    assert not bool((s_eq7 & later).any())


def test_dot_products_bounded_but_not_cosines_and_scores_reach_two():
    """q_i·k_j stays in [−1, 1] (every row norm ≤ the largest: Cauchy–Schwarz), but rows are not unit
    vectors, scores 1 + q·k (s = 1) reach 2, and a pair's score depends on a third token (the largest
    norm). eq7 with s = ½ fails each: unit rows, scores in [0, 1], no third-token dependence."""
    n, e, h = 10, 12, 3
    x = ln_tokens(1, n, e, seed=7) * (1 + torch.rand(1, n, 1, dtype=F64, generator=torch.Generator().manual_seed(2)))
    w = released_scores(x, h)
    assert float((w - 1).abs().max()) <= 1 + 1e-12
    assert float(w.max()) == pytest.approx(2.0, abs=1e-12)  # the largest-norm row with itself
    assert float(w.max()) > 1.0
    xh = x.view(1, n, h, e // h).transpose(1, 2)
    w7 = affine_scores(xh, xh, variant="eq7", score_scale=0.5)
    assert float(w7.max()) <= 1.0 + 1e-12 and float(w7.min()) >= -1e-12
    # a third token: triple the token holding head 0's largest-norm row; head-0 rows of two other tokens
    d = e // h
    rows0 = x.reshape(1, h, n, d)[0, 0]  # head 0, by the plain reshape
    top = int(torch.linalg.vector_norm(rows0, dim=-1).argmax())
    token_of = [(r * d) // e for r in range(n)]  # token holding head 0's row r
    r0, r1 = [r for r in range(n) if token_of[r] != token_of[top]][:2]
    x2 = x.clone()
    x2[0, token_of[top]] *= 3.0
    assert abs(float(released_scores(x2, h)[0, 0, r0, r1] - w[0, 0, r0, r1])) > 1e-3
    a, b = [t for t in range(n) if t != token_of[top]][:2]
    x2h = x2.view(1, n, h, d).transpose(1, 2)
    w7b = affine_scores(x2h, x2h, variant="eq7", score_scale=0.5)
    assert torch.allclose(w7b[..., a, b], w7[..., a, b], atol=1e-14)


def _slope(fn, ns, e=24):
    import numpy as np

    norms = [float(torch.linalg.vector_norm(fn(ln_tokens(1, n, e, seed=1, shared=1.0)), dim=-1).mean()) for n in ns]
    return float(np.polyfit(np.log(ns), np.log(norms), 1)[0])


def test_output_norm_grows_with_n_unlike_eq7_per_length():
    ns = [16, 64, 256, 1024]
    assert 0.8 < _slope(lambda t: released_attention(t, 3), ns) < 1.1
    assert abs(_slope(lambda t: paper_eq7(t, 3, score_scale="1/N"), ns)) < 0.1  # Eq. 7 as 03 trains it
    assert 0.8 < _slope(lambda t: paper_eq7(t, 3, score_scale=0.5), ns) < 1.1  # s = ½: it grows too


# --------------------------------------------------------------------------- DDP with 2 processes
_DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from linrepro import clip
    from linrepro.clip.train import run_open_clip_train

    real = clip.swap_attention
    def swap(model, *a, **k):
        out = real(model, *a, **k)
        if os.environ.get("UNFREEZE") == "1":
            for p in model.parameters():
                p.requires_grad_(True)
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   os.path.join(os.environ["LINREPRO_DUMP_WEIGHTS"], "init%s.pt" % os.environ.get("RANK", "0")))
        return out
    clip.swap_attention = swap
    argv = sys.argv[1:]
    run_open_clip_train(argv[1:] if argv[:1] == ["--"] else argv, attention="released")
    """
)


def _torchrun(tmp_path, csv, name, unfreeze):
    from linrepro.clip.train import open_clip_args

    script = tmp_path / "ddp_released.py"
    script.write_text(_DDP_SCRIPT)
    dump = tmp_path / f"w-{name}"
    dump.mkdir()
    args = open_clip_args(
        model="tiny-B", train_data=csv, logs=tmp_path, name=name, epochs=1, batch_size=8, lr=1e-3, warmup=0
    )
    env = dict(os.environ, LINREPRO_DUMP_WEIGHTS=str(dump), OMP_NUM_THREADS="1", UNFREEZE="1" if unfreeze else "0")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        str(script),
        "--",
        *args,
    ]  # `--`: torchrun would read --logs as --logs-specs
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    return r, dump


@pytest.mark.slow
def test_ddp_two_processes_gloo_trains_released_with_frozen_projections(tmp_path):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["filepath\ttitle"]
    for i in range(48):
        p = tmp_path / f"{i}.png"
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(p)
        rows.append(f"{p}\ta picture of class {i % 4}")
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(rows) + "\n")

    r, dump = _torchrun(tmp_path, csv, "ddp", unfreeze=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world_size: 2" in (tmp_path / "ddp" / "out.log").read_text()
    w0, w1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    init = torch.load(dump / "init0.pt")
    assert w0.keys() == w1.keys() == init.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    proj = [k for k in w0 if k.rsplit("attn.", 1)[-1] in PROJECTIONS]
    assert len(proj) == 4 * 6
    for k in proj:
        assert torch.equal(w0[k], init[k]), f"frozen {k} changed"
    moved = [k for k in w0 if k not in proj and not torch.equal(w0[k], init[k])]
    assert any(".mlp." in k for k in moved) and any("ln_1" in k for k in moved)
    # the same run with the unused projections left trainable stops at DDP's second step
    r2, _ = _torchrun(tmp_path, csv, "ddp-unfrozen", unfreeze=True)
    assert r2.returncode != 0
    assert "finished reduction" in r2.stderr or "unused parameters" in r2.stderr, r2.stderr[-3000:]
