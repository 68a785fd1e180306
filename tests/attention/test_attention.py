"""The reference math against independent forms, in float64, outputs and gradients."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from linrepro.attention import (
    affine_scores,
    check_score_scale,
    linear_attention,
    quadratic_reference,
    softmax_attention,
)

F64 = torch.float64


def _qkv(b, h, n, d, dv, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, n, d, generator=g, dtype=dtype),
        torch.randn(b, h, n, d, generator=g, dtype=dtype),
        torch.randn(b, h, n, dv, generator=g, dtype=dtype),
    )


def _naive_loops(q, k, v, variant, causal, s, eps=1e-6):
    """Independent, loop-by-loop float64 formula straight from the spec (linrepro.attention's module docstring)."""
    b, h, n, _ = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=F64)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                qi = q[bi, hi, i] / max(q[bi, hi, i].norm().item(), eps)
                num = torch.zeros(v.shape[-1], dtype=F64)
                den = 0.0
                for j in range(i + 1 if causal else n):
                    kj = k[bi, hi, j] / max(k[bi, hi, j].norm().item(), eps)
                    w = 1.0 + float(qi @ kj)
                    num += w * v[bi, hi, j]
                    den += w
                count = i + 1 if causal else n
                scale = 1.0 / count if s == "1/N" else s
                if variant == "eq7":
                    out[bi, hi, i] = scale * num
                elif den > eps * count:  # else a vanishing row: 0
                    out[bi, hi, i] = num / den
    return out


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("causal", [False, True])
def test_quadratic_matches_loops(variant, causal):
    q, k, v = _qkv(1, 2, 9, 5, 3)
    ref = _naive_loops(q, k, v, variant, causal, 0.5)
    assert rel(quadratic_reference(q, k, v, variant=variant, causal=causal), ref) < 1e-12


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    n=st.integers(1, 150),
    d=st.integers(2, 40),
    dv=st.integers(1, 40),
    variant=st.sampled_from(["eq4", "eq7"]),
    causal=st.booleans(),
    backend=st.sampled_from(["reference", "torch"]),
    s=st.floats(0.05, 2.0),
    seed=st.integers(0, 10),
)
def test_factorised_equals_quadratic_float64(b, h, n, d, dv, variant, causal, backend, s, seed):
    q, k, v = _qkv(b, h, n, d, dv, seed)
    ref = quadratic_reference(q, k, v, variant=variant, causal=causal, score_scale=s)
    out = linear_attention(q, k, v, variant=variant, causal=causal, score_scale=s, backend=backend)
    assert out.shape == (b, h, n, dv) and out.dtype == F64
    assert rel(out, ref) <= 1e-10


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("causal", [False, True])
def test_per_length_scale_matches_loops_with_gradients(backend, causal):
    """score_scale="1/N": each eq7 row is divided by the number of keys it sums over (N, or i causal)."""
    q, k, v = _qkv(2, 2, 13, 6, 5, seed=3)
    ref = _naive_loops(q, k, v, "eq7", causal, "1/N")
    assert rel(quadratic_reference(q, k, v, variant="eq7", causal=causal, score_scale="1/N"), ref) < 1e-12
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = linear_attention(*leaves, variant="eq7", causal=causal, score_scale="1/N", backend=backend)
    assert rel(out, ref) < 1e-12
    w = torch.randn_like(out)
    g = torch.autograd.grad((out * w).sum(), leaves)
    leaves2 = [t.clone().requires_grad_(True) for t in (q, k, v)]
    g_ref = torch.autograd.grad(
        (quadratic_reference(*leaves2, variant="eq7", causal=causal, score_scale="1/N") * w).sum(), leaves2
    )
    for a, b in zip(g, g_ref):
        assert rel(a, b) < 1e-10
    # the point of the scale: the output of constant v no longer grows with N
    q2, k2, _ = _qkv(1, 1, 256, 6, 1, seed=4)
    o = linear_attention(
        q2, k2, torch.ones(1, 1, 256, 4, dtype=F64), variant="eq7", causal=causal, score_scale="1/N", backend=backend
    )
    assert 0.0 <= o.min().item() and o.max().item() <= 2.0 + 1e-12


def test_score_scale_errors_name_the_value():
    q, k, v = _qkv(1, 1, 4, 4, 4)
    assert check_score_scale(" 1 / N ") == "1/N" and check_score_scale("0.25") == 0.25
    for bad in (0, -1.0, float("nan"), "1/M", True):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            linear_attention(q, k, v, score_scale=bad)


@pytest.mark.parametrize("backend", ["reference", "torch"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_quadratic_and_finite_differences(backend, variant, causal):
    q, k, v = _qkv(1, 2, 13, 6, 4, seed=3)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    f = lambda q, k, v: linear_attention(q, k, v, variant=variant, causal=causal, backend=backend)  # noqa: E731
    # against finite differences (independent of autograd's graph)
    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-7)
    # against autograd through the quadratic form
    g = torch.randn(1, 2, 13, 4, dtype=F64)
    grads = torch.autograd.grad(f(q, k, v), (q, k, v), g)
    ref = torch.autograd.grad(quadratic_reference(q, k, v, variant=variant, causal=causal), (q, k, v), g)
    for a, r in zip(grads, ref):
        assert rel(a, r) <= 1e-10


def test_l2_normalise_exact_scaling():
    """The power-of-two scaling changes no bit of x / max(‖x‖, eps) for ordinary vectors, and gives the
    float64 answer where ‖x‖² overflows (fp32 1e30, fp16 300 in 64 dims) or underflows (fp32 1e-30)."""
    from linrepro.attention import l2_normalise

    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 64, generator=g, dtype=F64) * 10 ** (torch.rand(200, 1, generator=g, dtype=F64) * 6 - 3)
    x[0] = 0.0
    x[1] *= 1e-9  # shorter than eps
    for dtype in (torch.float32, F64):
        xd = x.to(dtype)
        assert torch.equal(l2_normalise(xd), xd / xd.norm(dim=-1, keepdim=True).clamp_min(1e-6))
    for scale, dtype, eps in ((1e30, torch.float32, 1e-6), (1e-30, torch.float32, 1e-40), (300.0, torch.float16, 1e-6)):
        xd = (x[2:] * scale / x[2:].abs().amax(-1, keepdim=True)).to(dtype)
        want = xd.double() / xd.double().norm(dim=-1, keepdim=True)
        assert (l2_normalise(xd, eps).double() - want).abs().max() < (1e-6 if dtype == torch.float32 else 1e-3)


def test_torch_path_chunk_boundaries():
    from linrepro.attention.torch_path import linear_attention_torch

    q, k, v = _qkv(1, 1, 130, 8, 8)
    ref = quadratic_reference(q, k, v, variant="eq4", causal=True)
    for chunk in (1, 7, 64, 128, 256):
        assert rel(linear_attention_torch(q, k, v, variant="eq4", causal=True, chunk=chunk), ref) < 1e-10


def test_softmax_matches_explicit_and_sdpa():
    q, k, v = _qkv(2, 2, 17, 8, 5)
    for causal in (False, True):
        w = q @ k.transpose(-1, -2) / math.sqrt(8)
        if causal:
            w = w.masked_fill(torch.ones(17, 17, dtype=torch.bool).triu(1), -math.inf)
        ref = torch.softmax(w, -1) @ v
        assert rel(softmax_attention(q, k, v, causal=causal), ref) < 1e-12
        sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        assert rel(softmax_attention(q, k, v, causal=causal), sdpa) < 1e-10


def test_score_bounds():
    q, k, _ = _qkv(1, 1, 50, 16, 1)
    k[..., 0, :] = -q[..., 0, :]
    w4 = affine_scores(q, k, variant="eq4")
    assert w4.min() >= 0 and torch.allclose(w4.sum(-1), torch.ones(1, 1, 50, dtype=F64))
    w7 = affine_scores(q, k, variant="eq7", score_scale=0.5)
    assert w7.min() >= 0 and w7.max() <= 1 + 1e-12
    assert w7[0, 0, 0, 0].abs() < 1e-12  # the anti-aligned pair scores exactly 0


# ------------------------------------------------------------------ bad input
def test_errors_name_the_problem(monkeypatch):
    q, k, v = _qkv(1, 2, 8, 4, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="variant"):
        linear_attention(q, k, v, variant="eq5")
    with pytest.raises(ValueError, match=r"v must match q.*\(1, 2, 7, 4\)"):
        linear_attention(q, k, v[:, :, :7])
    with pytest.raises(ValueError, match=r"q and k.*\(1, 3, 8, 4\)"):
        linear_attention(q, torch.randn(1, 3, 8, 4), v)
    with pytest.raises(TypeError, match="int64"):
        linear_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="300"):
        big = torch.randn(1, 1, 4, 300)
        linear_attention(big, big, big)
    with pytest.raises(ValueError, match="meta"):
        linear_attention(q, k.to("meta"), v)
    with pytest.raises(ValueError, match="4 dims"):
        linear_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="backend"):
        linear_attention(q, k, v, backend="cuda")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        linear_attention(q, k, v, backend="triton")


def test_auto_sends_float64_to_the_torch_path_on_every_device():
    from linrepro.attention import resolve_backend

    assert resolve_backend("auto", torch.device("cuda"), torch.float64) == "torch"
    assert resolve_backend("auto", torch.device("cuda"), torch.bfloat16) == "triton"
    assert resolve_backend("auto", torch.device("cpu"), torch.float32) == "torch"
