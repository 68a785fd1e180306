"""Every backend (reference, torch, Triton) under inputs that used to give wrong results with no error
(issue 13, items 1-5): causality with perturbed, NaN and Inf later tokens; eps validation and padded
rows; huge and tiny q, k; eq4 at a vanishing denominator; empty sequences. The truth is float64:
the quadratic form of ``linrepro.attention`` or a loop straight from its module docstring.

The Triton kernels run under the interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1 when
there is no CUDA), or compiled on a CUDA device, where the bf16 cases run too.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

from linrepro.attention import linear_attention, quadratic_reference

F64 = torch.float64
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
TRITON_DEVICE = torch.device(os.environ.get("LINREPRO_TEST_DEVICE", "cpu" if _INTERPRET else "cuda"))
TRITON_OK = TRITON_DEVICE.type == "cpu" or torch.cuda.is_available()
BACKENDS = ["reference", "torch", "quadratic", "auto", "triton"]
HALF = {torch.float16: "fp16", torch.bfloat16: "bf16"}


def _device(backend: str) -> torch.device:
    return TRITON_DEVICE if backend == "triton" else torch.device("cpu")


def _skip_unsupported(backend: str, dtype: torch.dtype) -> None:
    if backend == "triton" and not TRITON_OK:
        pytest.skip("TRITON_INTERPRET is off and no CUDA device is available")
    if backend == "triton" and dtype == torch.bfloat16 and TRITON_DEVICE.type != "cuda":
        pytest.skip("bf16 is not emulated correctly by the Triton interpreter")


def _rel(a: torch.Tensor, ref: torch.Tensor, floor: float = 0.0) -> float:
    """max |a − ref| relative to max |ref| (or to ``floor`` where that is larger)."""
    ref = ref.detach().cpu().double()
    err = (a.detach().cpu().double() - ref).abs().max().item()
    scale = max(ref.abs().max().item(), floor)
    return err / scale if scale > 0 else err


def _against_float64(q, k, v, g, backend, *, variant, causal, eps=1e-6, floor=0.0):
    """(relative errors of o, dq, dk, dv) of ``backend`` against autograd through the float64 quadratic form
    (relative to ``floor`` where that is larger than the reference)."""
    leaves = [t.detach().to(_device(backend)).requires_grad_(True) for t in (q, k, v)]
    o = linear_attention(*leaves, variant=variant, causal=causal, eps=eps, backend=backend)
    assert o.dtype == q.dtype and o.shape == v.shape
    grads = torch.autograd.grad(o, leaves, g.to(o.device, o.dtype))
    ref_leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref = quadratic_reference(*ref_leaves, variant=variant, causal=causal, eps=eps)
    ref_grads = torch.autograd.grad(ref, ref_leaves, g.double())
    errs = {"o": _rel(o, ref, floor)}
    errs.update({name: _rel(a, b, floor) for name, a, b in zip(("dq", "dk", "dv"), grads, ref_grads)})
    return errs, o.detach().cpu()


# ------------------------------------------------------------------ 1. causality is structural
# N = 150 crosses the torch path's 64-row chunks (0-63, 64-127, 128-149) and, under the interpreter, the
# Triton kernels' 16-row chunks and their three 64-row splits. Token 100 sits inside the second torch chunk
# and Triton split (rows 64-99 and 96-99 share its chunk), token 149 in the last, partial (padded) chunk.
CAUSAL_N = 150
TOKENS = (100, 149)
KINDS = ("scale", "nan_k", "nan_v", "inf_v")  # (a NaN in q_t touches row t only, by construction)


def _perturb(x: torch.Tensor, which: str, t: int, kind: str, head: int) -> None:
    """In place: change token ``t`` of head ``head`` of tensor ``which`` (q, k or v) according to ``kind``."""
    if kind == "scale":  # a finite change of every input of the token
        x[0, head, t] = x[0, head, t] * -100.0 + 3.0
    elif kind == f"nan_{which}":
        x[0, head, t, 1] = float("nan")
    elif kind == f"inf_{which}":
        x[0, head, t, 0] = float("inf")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_rows_before_a_changed_token_are_bit_identical(backend, variant, dtype):
    """Changing, or writing NaN or Inf into, token t of q, k or v leaves every row before t bit-identical
    (and finite), in every backend, variant and dtype; row t itself does see a NaN or Inf."""
    _skip_unsupported(backend, dtype)
    cases = [(t, kind) for t in TOKENS for kind in KINDS]
    gen = torch.Generator().manual_seed(13)
    # one head per case, so that one call covers every case; the unchanged call has the same shape
    base = [torch.randn(1, len(cases), CAUSAL_N, 16, generator=gen).to(dtype) for _ in range(3)]
    changed = [t.clone() for t in base]
    for head, (t, kind) in enumerate(cases):
        for which, x in zip("qkv", changed):
            _perturb(x, which, t, kind, head)
    dev = _device(backend)
    o0, o1 = (
        linear_attention(*(x.to(dev) for x in xs), variant=variant, causal=True, backend=backend).cpu()
        for xs in (base, changed)
    )
    assert torch.isfinite(o0).all()
    for head, (t, kind) in enumerate(cases):
        before0, before1 = o0[0, head, :t], o1[0, head, :t]
        assert torch.isfinite(before1).all(), f"{kind} at token {t} reached an earlier row"
        diff = (before0.double() - before1.double()).abs().max().item() if t else 0.0
        assert torch.equal(before0, before1), f"{kind} at token {t} changed earlier rows (max |diff| {diff})"
        if kind != "scale":
            assert not torch.isfinite(o1[0, head, t]).all(), f"{kind} at token {t} vanished from row {t}"


@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_dq_of_rows_before_a_changed_token_is_bit_identical(backend, variant):
    """∂L/∂q_i depends on tokens j ≤ i only: a finite change of a later token leaves it bit-identical (fp32)."""
    _skip_unsupported(backend, torch.float32)
    gen = torch.Generator().manual_seed(17)
    tokens = TOKENS
    base = [torch.randn(1, len(tokens), CAUSAL_N, 16, generator=gen) for _ in range(4)]
    changed = [t.clone() for t in base[:3]]
    for head, t in enumerate(tokens):
        for x in changed:
            _perturb(x, "", t, "scale", head)
    dev = _device(backend)
    dqs = []
    for xs in (base[:3], changed):
        leaves = [x.to(dev).requires_grad_(True) for x in xs]
        o = linear_attention(*leaves, variant=variant, causal=True, backend=backend)
        dqs.append(torch.autograd.grad(o, leaves[0], base[3].to(dev))[0].cpu())
    for head, t in enumerate(tokens):
        assert torch.equal(dqs[0][0, head, :t], dqs[1][0, head, :t]), f"dq of rows before token {t} changed"


# ------------------------------------------------------------------ 2. eps
@pytest.mark.parametrize("backend", BACKENDS)
def test_eps_must_be_positive_and_finite(backend):
    _skip_unsupported(backend, torch.float32)
    q, k, v = (torch.randn(1, 1, 20, 16, device=_device(backend)) for _ in range(3))
    for bad in (0, 0.0, -1e-6, float("nan"), float("inf"), "1e-6", None, True):
        with pytest.raises((ValueError, TypeError), match=re.escape(repr(bad))):
            linear_attention(q, k, v, eps=bad, backend=backend)
    for good in (1e-6, 1, 1e-30):
        assert torch.isfinite(linear_attention(q, k, v, eps=good, backend=backend)).all()


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
def test_tiny_eps_gives_the_float64_answer(variant, causal):
    """A legal but tiny eps (N = 20 is not a multiple of the 16-row blocks): no padding row turns into 0/eps."""
    _skip_unsupported("triton", torch.float32)
    gen = torch.Generator().manual_seed(2)
    q, k, v, g = (torch.randn(1, 2, 20, 16, generator=gen) for _ in range(4))
    for backend in BACKENDS:
        errs, o = _against_float64(q, k, v, g, backend, variant=variant, causal=causal, eps=1e-30)
        assert torch.isfinite(o).all() and max(errs.values()) < 1e-4, (backend, errs)


# ------------------------------------------------------------------ 3. huge and tiny q, k
SCALES = (1e20, 1e36, 1e-25, 1e-42)  # one head each


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_and_tiny_queries_and_keys_fp32(backend, variant, causal):
    """fp32 q, k around 1e20 and 1e36 (‖q‖² overflows), 1e-25 (‖q‖² underflows although ‖q‖ > eps = 1e-30)
    and 1e-42 (subnormal, ‖q‖ < eps): output and gradients of every head match the float64 quadratic form."""
    _skip_unsupported(backend, torch.float32)
    gen = torch.Generator().manual_seed(7)
    q, k, v, g = (torch.randn(1, len(SCALES), 37, 16, generator=gen, dtype=F64) for _ in range(4))
    scale = torch.tensor(SCALES, dtype=F64).view(1, -1, 1, 1)
    q, k, v, g = (q * scale).float(), (k * scale).float(), v.float(), g.float()
    assert torch.isfinite(q).all() and (q != 0).any(-1).all()
    leaves = [t.to(_device(backend)).requires_grad_(True) for t in (q, k, v)]
    o = linear_attention(*leaves, variant=variant, causal=causal, eps=1e-30, backend=backend)
    got = (o, *torch.autograd.grad(o, leaves, g.to(o.device)))
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    ref = quadratic_reference(*ref_leaves, variant=variant, causal=causal, eps=1e-30)
    want = (ref, *torch.autograd.grad(ref, ref_leaves, g.double()))
    for head, sc in enumerate(SCALES):
        errs = {name: _rel(a[:, head], b[:, head]) for name, a, b in zip(("o", "dq", "dk", "dv"), got, want)}
        assert max(errs.values()) < 1e-4, (sc, errs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_huge_queries_and_keys_half(backend, dtype):
    """Half types: fp16 q, k near its maximum (‖q‖ > 65504 in fp16), bf16 around 1e30."""
    _skip_unsupported(backend, dtype)
    scale = 3e4 if dtype == torch.float16 else 1e30
    gen = torch.Generator().manual_seed(8)
    q, k, v, g = (torch.rand(1, 2, 37, 16, generator=gen, dtype=F64) * 2 - 1 for _ in range(4))
    q, k = (q * scale).to(dtype), (k * scale).to(dtype)
    v, g = v.to(dtype), g.to(dtype)
    for variant in ("eq4", "eq7"):
        for causal in (False, True):
            errs, _ = _against_float64(q, k, v, g, backend, variant=variant, causal=causal)
            assert max(errs.values()) < 5e-2, (variant, causal, errs)


# ------------------------------------------------------------------ 4. eq4 at a vanishing denominator
def _naive_eq4(q, k, v, causal, eps=1e-6):
    """float64 loops from the spec: o_i = Σ w_ij v_j / Σ w_ij, and o_i = 0 when the row's mean weight ≤ eps."""
    q, k, v = (t.double() for t in (q, k, v))
    out = torch.zeros(q.shape[:-1] + v.shape[-1:], dtype=F64)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            n = q.shape[2]
            for i in range(n):
                qi = q[b, h, i] / max(q[b, h, i].norm().item(), eps)
                js = range(i + 1 if causal else n)
                w = [1.0 + float(qi @ (k[b, h, j] / max(k[b, h, j].norm().item(), eps))) for j in js]
                if sum(w) > eps * len(w):
                    out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, js)) / sum(w)
    return out


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_eq4_vanishing_denominator_agrees_with_float64(backend, causal, dtype):
    """Every key anti-parallel to the query (q = −k): all weights vanish and the row's output is 0 in every
    backend, as in float64; rows whose query is parallel to the keys, or random, average v (all keys
    share one direction). Gradients agree too (absolute errors: the true dq is 0 everywhere)."""
    _skip_unsupported(backend, dtype)
    if backend != "triton" and dtype != torch.float32:
        pytest.skip("the torch and reference paths compute in the input dtype; fp16 cannot resolve the clamp")
    gen = torch.Generator().manual_seed(4)
    n, d = 40, 64
    direction = torch.randn(1, 1, 1, d, generator=gen, dtype=F64)
    direction = direction.to(dtype).double()  # exact in dtype, so q and k below are exact multiples of it
    mags = 2.0 ** torch.randint(-3, 4, (1, 2, n, 1), generator=gen).double()  # powers of two: exact
    sign = torch.ones(1, 2, n, 1, dtype=F64)
    sign[0, 1, n // 2 :] = -1.0  # head 1: the second half of the queries is parallel to every key
    q = direction * mags * sign
    q[0, 1, -5:] = torch.randn(5, d, generator=gen, dtype=F64)  # ... but for five random ones
    q = q.to(dtype)
    k = (-direction * mags.flip(2)).to(dtype)
    v = torch.randn(1, 2, n, 8, generator=gen, dtype=F64).to(dtype)
    g = torch.randn(1, 2, n, 8, generator=gen, dtype=F64).to(dtype)
    truth = _naive_eq4(q, k, v, causal)
    assert (truth[0, 0] == 0).all() and (truth[0, 1, : n // 2] == 0).all() and (truth[0, 1, n // 2 :] != 0).all()
    ref64 = quadratic_reference(q.double(), k.double(), v.double(), variant="eq4", causal=causal)
    assert _rel(ref64, truth) < 1e-12
    errs, o = _against_float64(q, k, v, g, backend, variant="eq4", causal=causal, floor=1.0)
    assert (o[0, 0] == 0).all() and (o[0, 1, : n // 2] == 0).all(), "vanishing rows are not 0"
    assert max(errs.values()) < (1e-4 if dtype == torch.float32 else 1e-2), errs


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_eq4_small_but_resolved_denominator(backend, causal):
    """Keys close to anti-parallel (mean weight about 1e-3, well above eps): the ordinary normalised answer."""
    _skip_unsupported(backend, torch.float32)
    gen = torch.Generator().manual_seed(5)
    n, d = 30, 32
    direction = torch.randn(1, 1, 1, d, generator=gen, dtype=F64)
    q = direction.expand(1, 1, n, d) + 0.03 * torch.randn(1, 1, n, d, generator=gen, dtype=F64)
    k = -direction.expand(1, 1, n, d) + 0.03 * torch.randn(1, 1, n, d, generator=gen, dtype=F64)
    v = torch.randn(1, 1, n, 8, generator=gen, dtype=F64)
    w = quadratic_reference(q, k, torch.ones(1, 1, n, 1, dtype=F64), variant="eq7", causal=causal, score_scale=1.0)
    mean_w = w[..., 0] / (torch.arange(1, n + 1, dtype=F64) if causal else n)
    assert 1e-4 < mean_w.min().item() and mean_w.max().item() < 1e-2
    truth = _naive_eq4(q, k, v, causal)
    o = linear_attention(
        *(t.float().to(_device(backend)) for t in (q, k, v)), variant="eq4", causal=causal, backend=backend
    )
    assert _rel(o, truth) < 2e-2


# ------------------------------------------------------------------ 5. empty sequences
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_sequence_every_backend(backend, causal):
    _skip_unsupported(backend, torch.float32)
    dev = _device(backend)
    for variant, scale in (("eq4", 0.5), ("eq7", 0.5), ("eq7", "1/N")):
        q, k = (torch.randn(2, 3, 0, 16, device=dev, requires_grad=True) for _ in range(2))
        v = torch.randn(2, 3, 0, 8, device=dev, requires_grad=True)
        o = linear_attention(q, k, v, variant=variant, causal=causal, score_scale=scale, backend=backend)
        assert o.shape == (2, 3, 0, 8) and o.dtype == torch.float32
        gq, gk, gv = torch.autograd.grad(o.sum(), (q, k, v), allow_unused=True)
        for grad, x in ((gq, q), (gk, k), (gv, v)):
            assert grad is None or grad.shape == x.shape
