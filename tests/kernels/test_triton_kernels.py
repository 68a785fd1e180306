"""Triton kernels of the affine linear attention against the float64 O(N²) reference.

Runs on CPU through the Triton interpreter (TRITON_INTERPRET=1 is set below, before triton
is imported, unless the environment already sets it), so shapes are kept small. With
TRITON_INTERPRET=0 on a CUDA machine the same tests run the compiled kernels on the GPU
(plus the bf16 cases); LINREPRO_TEST_DEVICE overrides the device.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed; the Triton kernels cannot be tested")

from linrepro.attention import quadratic_reference
from linrepro.kernels import linear_attention_triton  # installed or not (linrepro/__init__.py maps it)

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = torch.device(os.environ.get("LINREPRO_TEST_DEVICE", "cpu" if _INTERPRET else "cuda"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and no CUDA device is available", allow_module_level=True)

TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    scale = ref.abs().max().item()
    err = (a.double() - ref).abs().max().item()
    return err / scale if scale > 0 else err


def _inputs(B, H, N, D, DV, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, D, generator=gen)
    k = torch.randn(B, H, N, D, generator=gen)
    v = torch.randn(B, H, N, DV, generator=gen)
    g = torch.randn(B, H, N, DV, generator=gen)
    return [t.to(device=DEVICE, dtype=dtype) for t in (q, k, v, g)]


def _check(q, k, v, g, *, variant, causal, score_scale=0.5, eps=1e-6, tol=None):
    """Compare o, dq, dk, dv of the Triton path with the float64 quadratic reference."""
    dtype = q.dtype
    tol = TOL[dtype] if tol is None else tol
    # keep the caller's memory layout (views stay views)
    qt, kt, vt = (t.detach().requires_grad_(True) for t in (q, k, v))
    o = linear_attention_triton(qt, kt, vt, variant=variant, causal=causal, score_scale=score_scale, eps=eps)
    assert o.dtype == dtype and o.shape == v.shape and o.device == q.device
    dq, dk, dv = torch.autograd.grad(o, (qt, kt, vt), g)
    assert dq.dtype == dtype and dk.dtype == dtype and dv.dtype == dtype

    qd, kd, vd = (t.detach().cpu().double().requires_grad_(True) for t in (q, k, v))
    ref = quadratic_reference(qd, kd, vd, variant=variant, causal=causal, score_scale=score_scale, eps=eps)
    rq, rk, rv = torch.autograd.grad(ref, (qd, kd, vd), g.detach().cpu().double())
    errs = {
        "o": _rel(o.detach().cpu(), ref.detach()),
        "dq": _rel(dq.cpu(), rq),
        "dk": _rel(dk.cpu(), rk),
        "dv": _rel(dv.cpu(), rv),
    }
    bad = {name: e for name, e in errs.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad} (all: {errs})"
    return errs


# (N, D, Dv): odd lengths, non-power-of-two head dims, Dv != D; under the interpreter's
# 3 splits × 16-row chunks, N = 70 gives several chunks per split, and D ≥ 80 or Dv ≥ 80
# (fp32 tile cap 64×64) takes the Dv-tiled path
SHAPES = [
    (1, 16, 16),
    (7, 48, 80),
    (33, 64, 32),
    (70, 64, 64),
    (70, 80, 96),
    (70, 96, 48),
]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
@pytest.mark.parametrize("N,D,DV", SHAPES, ids=[f"N{n}-D{d}-Dv{e}" for n, d, e in SHAPES])
def test_matches_quadratic_reference_fp32(N, D, DV, variant, causal):
    q, k, v, g = _inputs(1, 2, N, D, DV, torch.float32, seed=N * 1000 + D)
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_matches_quadratic_reference_fp16(variant, causal):
    q, k, v, g = _inputs(2, 1, 45, 64, 48, torch.float16, seed=7)
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.skipif(DEVICE.type != "cuda", reason="bf16 is not emulated correctly by the Triton interpreter")
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_matches_quadratic_reference_bf16(variant, causal):
    q, k, v, g = _inputs(2, 2, 300, 64, 64, torch.bfloat16, seed=8)
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_score_scale_and_batch(causal):
    q, k, v, g = _inputs(2, 2, 20, 32, 16, torch.float32, seed=3)
    _check(q, k, v, g, variant="eq7", causal=causal, score_scale=0.3)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_non_contiguous_inputs(variant, causal):
    B, H, N, D, DV = 1, 2, 21, 48, 32
    gen = torch.Generator().manual_seed(11)
    # (B, N, H, D) memory viewed as (B, H, N, D): strided rows, unit last stride (used in place)
    q = torch.randn(B, N, H, D, generator=gen).to(DEVICE).transpose(1, 2)
    # (B, H, D, N) memory viewed as (B, H, N, D): non-unit last stride (copied)
    k = torch.randn(B, H, D, N, generator=gen).to(DEVICE).transpose(2, 3)
    v = torch.randn(B, N, H, DV, generator=gen).to(DEVICE).transpose(1, 2)
    g = torch.randn(B, H, DV, N, generator=gen).to(DEVICE).transpose(2, 3)
    assert not q.is_contiguous() and not k.is_contiguous() and not v.is_contiguous()
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_zero_rows_hit_the_norm_clamp(variant, causal):
    q, k, v, g = _inputs(1, 1, 19, 16, 24, torch.float32, seed=5)
    q[..., 3, :] = 0.0
    k[..., 0, :] = 0.0
    k[..., 17, :] = 0.0
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_dv_tiled_path(variant, causal, monkeypatch):
    """Force the wide-head code path (Dv split into several register tiles, as for D = Dv = 256)."""
    mod = sys.modules[linear_attention_triton.__module__]
    monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)  # BD = 64 -> BV = 16 -> 3 tiles for Dv = 40
    q, k, v, g = _inputs(1, 2, 37, 48, 40, torch.float32, seed=21)
    assert mod._Cfg(q, v, causal).NVT == 3
    _check(q, k, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_deterministic(causal):
    q, k, v, g = _inputs(1, 2, 40, 32, 32, torch.float32, seed=9)
    outs = []
    for _ in range(2):
        qt, kt, vt = (t.clone().requires_grad_(True) for t in (q, k, v))
        o = linear_attention_triton(qt, kt, vt, variant="eq4", causal=causal)
        outs.append((o.detach(), *torch.autograd.grad(o, (qt, kt, vt), g)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_empty_sequence():
    q = torch.randn(1, 2, 0, 16, device=DEVICE, requires_grad=True)
    k = torch.randn(1, 2, 0, 16, device=DEVICE, requires_grad=True)
    v = torch.randn(1, 2, 0, 8, device=DEVICE, requires_grad=True)
    o = linear_attention_triton(q, k, v, variant="eq4", causal=True)
    assert o.shape == (1, 2, 0, 8)
    o.sum().backward()
    assert q.grad.shape == q.shape and v.grad.shape == v.shape


def test_dispatcher_routes_to_triton():
    from linrepro.attention import linear_attention

    q, k, v, _ = _inputs(1, 1, 12, 16, 16, torch.float32, seed=1)
    out = linear_attention(q, k, v, variant="eq4", causal=True, backend="triton")
    ref = quadratic_reference(q.cpu().double(), k.cpu().double(), v.cpu().double(), variant="eq4", causal=True)
    assert _rel(out.cpu(), ref) <= 1e-4


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dispatcher_per_length_scale_on_triton(causal):
    """score_scale="1/N" reaches the kernels as s = 1/N (full) or as a 1/i row rescale (causal)."""
    from linrepro.attention import linear_attention

    q, k, v, g = _inputs(1, 2, 37, 16, 16, torch.float32, seed=2)
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
    out = linear_attention(*leaves, variant="eq7", causal=causal, score_scale="1/N", backend="triton")
    grads = torch.autograd.grad(out, leaves, g)
    ref_leaves = [t.detach().cpu().double().requires_grad_(True) for t in (q, k, v)]
    ref = quadratic_reference(*ref_leaves, variant="eq7", causal=causal, score_scale="1/N")
    ref_grads = torch.autograd.grad(ref, ref_leaves, g.detach().cpu().double())
    assert _rel(out.detach().cpu(), ref.detach()) <= 1e-4
    for a, b in zip(grads, ref_grads):
        assert _rel(a.cpu(), b) <= 1e-4


def test_float64_is_refused_with_a_hint():
    """float64 would silently be computed in fp32: refused, before any other check, with the way out."""
    q, k, v, _ = _inputs(1, 1, 12, 16, 16, torch.float64, seed=4)
    with pytest.raises(TypeError, match=r"float64.*backend='torch'.*backend='reference'"):
        linear_attention_triton(q, k, v, variant="eq4", causal=True)
    with pytest.raises(TypeError, match="float64"):  # before the variant check
        linear_attention_triton(q, k, v, variant="nope")
    with pytest.raises(TypeError, match="float64"):  # before the empty-sequence shortcut
        linear_attention_triton(q[:, :, :0], k[:, :, :0], v[:, :, :0])
    q32, k32, _, _ = _inputs(1, 1, 12, 16, 16, torch.float32, seed=4)
    with pytest.raises(TypeError, match=r"v is torch\.float64"):
        linear_attention_triton(q32, k32, v)


def _kernels_module(name):
    import importlib

    return importlib.import_module(linear_attention_triton.__module__.rsplit(".", 1)[0] + "." + name)


def _run(q, k, v, g, **kw):
    qt, kt, vt = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    o = linear_attention_triton(qt, kt, vt, **kw)
    return (o.detach(), *torch.autograd.grad(o, (qt, kt, vt), g))


def test_nan_poison_alloc_reads_the_environment_per_call(monkeypatch):
    common = _kernels_module("common")
    monkeypatch.setenv("LINREPRO_NAN_POISON", "1")
    assert torch.isnan(common._alloc((3, 5), DEVICE, torch.float32)).all()
    assert torch.isnan(common._alloc_like(torch.zeros(2, 4, device=DEVICE, dtype=torch.float16))).all()
    monkeypatch.setenv("LINREPRO_NAN_POISON", "0")
    assert not common._nan_poison()
    monkeypatch.delenv("LINREPRO_NAN_POISON")
    assert not common._nan_poison()


# (N, D, Dv, tiled): N not a multiple of the 16-row block / chunk; ``tiled`` forces NVT > 1
# (per-tile scratch buffers ub, gb, dkp of the causal backward)
POISON_SHAPES = [(19, 16, 24, False), (37, 48, 40, True), (70, 64, 32, False)]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
@pytest.mark.parametrize(
    "N,D,DV,tiled", POISON_SHAPES, ids=[f"N{n}-D{d}-Dv{e}{'-tiled' if t else ''}" for n, d, e, t in POISON_SHAPES]
)
def test_nan_poison_mode_changes_nothing(N, D, DV, tiled, variant, causal, monkeypatch):
    """LINREPRO_NAN_POISON=1 fills every host-allocated buffer with NaN: every output and
    gradient must still be finite and bit-identical to the run without it (no kernel reads
    a row it did not write first, no output row is left unwritten)."""
    mod = sys.modules[linear_attention_triton.__module__]
    if tiled:
        monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)
    q, k, v, g = _inputs(1, 2, N, D, DV, torch.float32, seed=N + D)
    assert (mod._Cfg(q, v, causal).NVT > 1) == tiled
    kw = dict(variant=variant, causal=causal)
    monkeypatch.delenv("LINREPRO_NAN_POISON", raising=False)
    plain = _run(q, k, v, g, **kw)
    monkeypatch.setenv("LINREPRO_NAN_POISON", "1")
    poisoned = _run(q, k, v, g, **kw)
    for name, a, b in zip(("o", "dq", "dk", "dv"), plain, poisoned):
        assert torch.isfinite(b).all(), f"{name} has non-finite entries under NaN poisoning"
        assert torch.equal(a, b), f"{name} differs under NaN poisoning"


def test_nan_poison_exposes_an_unwritten_output(monkeypatch):
    """The mode does what it is for: if the output kernel never ran, o comes back NaN."""
    noncausal = _kernels_module("noncausal")
    real_launch = noncausal._launch

    def skip_out_kernel(kernel, *args, **kwargs):
        if kernel is not noncausal._nc_out_kernel:
            real_launch(kernel, *args, **kwargs)

    monkeypatch.setattr(noncausal, "_launch", skip_out_kernel)
    monkeypatch.setenv("LINREPRO_NAN_POISON", "1")
    q, k, v, _ = _inputs(1, 1, 20, 16, 16, torch.float32, seed=6)
    o = linear_attention_triton(q, k, v, variant="eq7", causal=False)
    assert torch.isnan(o).all()


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # only the fuzz test needs hypothesis
    given = None


if given is not None:

    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(
        B=st.integers(1, 2),
        H=st.integers(1, 2),
        N=st.integers(1, 40),
        D=st.sampled_from([16, 24, 48, 64, 80]),
        DV=st.sampled_from([16, 40, 64, 96]),
        variant=st.sampled_from(["eq4", "eq7"]),
        causal=st.booleans(),
        seed=st.integers(0, 2**16),
    )
    def test_fuzz_shapes(B, H, N, D, DV, variant, causal, seed):
        q, k, v, g = _inputs(B, H, N, D, DV, torch.float32, seed=seed)
        _check(q, k, v, g, variant=variant, causal=causal)
else:

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_fuzz_shapes():
        pass


# ------------------------------------------------------------------ issue 13: eps, padding, huge inputs, causality
def test_eps_is_validated_by_the_kernels_entry_point():
    q, k, v, _ = _inputs(1, 1, 20, 16, 16, torch.float32, seed=12)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"eps must be a positive finite number.*" + repr(bad)):
            linear_attention_triton(q, k, v, eps=bad)


PADDING_CASES = [("eq7", False, False), ("eq7", True, False), ("eq4", False, False), ("eq4", True, False)]
PADDING_CASES += [("eq4", False, True), ("eq4", True, True)]  # Dv-tiled


@pytest.mark.parametrize(
    "variant,causal,tiled",
    PADDING_CASES,
    ids=[f"{v}-{'causal' if c else 'full'}{'-tiled' if t else ''}" for v, c, t in PADDING_CASES],
)
def test_padding_rows_never_reach_valid_rows_even_with_eps_zero(variant, causal, tiled, monkeypatch):
    """N = 20 leaves 12 padding rows in the last 16-row block. Called below the eps check with eps = 0,
    a padding row is 0 / max(0, 0) if it is normalised at all: it must not reach any valid row, so the
    result is bit-identical to eps = 1e-6 (no valid row is shorter than 1e-6)."""
    mod = sys.modules[linear_attention_triton.__module__]
    if tiled:
        monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)
    q, k, v, g = _inputs(1, 2, 20, 16, 40, torch.float32, seed=14)
    assert (mod._Cfg(q, v, causal).NVT > 1) == tiled
    expected = _run(q, k, v, g, variant=variant, causal=causal, eps=1e-6)
    qt, kt, vt = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    o = mod.affine_la_fwd(qt, kt, vt, variant == "eq4", causal, 0.5, 0.0)[0]
    got = (o.detach(), *torch.autograd.grad(o, (qt, kt, vt), g))
    for name, a, b in zip(("o", "dq", "dk", "dv"), expected, got):
        assert torch.isfinite(b).all(), f"{name} is not finite with eps = 0"
        assert torch.equal(a, b), f"{name} differs between eps = 0 and eps = 1e-6"


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_huge_queries_and_keys_dv_tiled(variant, causal, monkeypatch):
    """‖q‖² and ‖k‖² overflow fp32: every kernel (Dv-tiled ones included) normalises safely, in the
    forward and in the backward."""
    mod = sys.modules[linear_attention_triton.__module__]
    monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)
    q, k, v, g = _inputs(1, 2, 37, 48, 40, torch.float32, seed=15)
    assert mod._Cfg(q, v, causal).NVT == 3
    _check(q * 1e25, k * 3e30, v, g, variant=variant, causal=causal)


@pytest.mark.parametrize("variant", ["eq7", "eq4"])
def test_causal_nan_in_a_later_value_stays_out_dv_tiled(variant, monkeypatch):
    """A NaN or Inf in v of a later token of the same 16-row chunk (Dv-tiled causal forward) never reaches
    an earlier row: earlier rows are bit-identical; from the token on, its column is not finite."""
    mod = sys.modules[linear_attention_triton.__module__]
    monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)
    q, k, v, _ = _inputs(1, 2, 70, 48, 40, torch.float32, seed=16)
    assert mod._Cfg(q, v, True).NVT == 3
    base = linear_attention_triton(q, k, v, variant=variant, causal=True)
    v2 = v.clone()
    changes = ((0, 45, 2, float("inf")), (1, 37, 33, float("nan")), (1, 69, 20, float("-inf")))
    for head, t, col, bad in changes:
        v2[0, head, t, col] = bad
    o = linear_attention_triton(q, k, v2, variant=variant, causal=True)
    for head, t, col, _bad in changes[:2]:
        assert torch.equal(o[0, head, :t], base[0, head, :t])
        assert not torch.isfinite(o[0, head, t:, col]).any()


@pytest.mark.parametrize(
    "variant,tiled", [("eq7", False), ("eq4", False), ("eq4", True)], ids=["eq7", "eq4", "eq4-tiled"]
)
def test_causal_nan_in_a_later_key_stays_out_of_earlier_dq(variant, tiled, monkeypatch):
    """dq_i depends on keys j ≤ i only: a NaN or Inf in a later k (same 16-row chunk) leaves the output
    and dq of every earlier row bit-identical and finite."""
    mod = sys.modules[linear_attention_triton.__module__]
    if tiled:
        monkeypatch.setattr(mod, "_MAX_TILE_AREA", 512)
    q, k, v, g = _inputs(1, 2, 40, 48, 40, torch.float32, seed=18)
    assert (mod._Cfg(q, v, True).NVT > 1) == tiled
    base = _run(q, k, v, g, variant=variant, causal=True)
    k2 = k.clone()
    changes = ((0, 30, float("inf")), (1, 21, float("nan")))
    for head, t, bad in changes:
        k2[0, head, t, 5] = bad
    o, dq, _dk, _dv = _run(q, k2, v, g, variant=variant, causal=True)
    for head, t, _bad in changes:
        for name, a, b in (("o", base[0], o), ("dq", base[1], dq)):
            assert torch.equal(a[0, head, :t], b[0, head, :t]), f"{name} of a row before token {t} changed"
            assert torch.isfinite(b[0, head, :t]).all()
        assert not torch.isfinite(o[0, head, t:]).all(-1).any()
