"""The Triton kernels as torch.library custom ops (``linrepro::affine_la_fwd`` / ``affine_la_bwd``): their
fake-tensor implementations give the shapes and dtypes the kernels produce, and torch.library.opcheck
passes (schema, fake tensors, autograd registration, AOT dispatch). Under the Triton interpreter on CPU."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed; the Triton kernels cannot be tested")

from linrepro.kernels import autograd as ka

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
DEVICE = "cpu" if _INTERPRET else "cuda"
if not _INTERPRET and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET is off and no CUDA device is available", allow_module_level=True)

CASES = [(False, False), (False, True), (True, False), (True, True)]
IDS = ["eq7-full", "eq7-causal", "eq4-full", "eq4-causal"]


def _inputs(n=20, d=16, dv=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(1, 2, n, d, generator=g).to(DEVICE) for _ in range(2))
    v = torch.randn(1, 2, n, dv, generator=g).to(DEVICE)
    return q, k, v


@pytest.mark.parametrize("eq4,causal", CASES, ids=IDS)
def test_fake_implementations_match_the_kernels(eq4, causal):
    from torch._subclasses.fake_tensor import FakeTensorMode

    q, k, v = _inputs()
    o, state = torch.ops.linrepro.affine_la_fwd(q, k, v, eq4, causal, 0.5, 1e-6)
    grads = torch.ops.linrepro.affine_la_bwd(q, k, v, torch.ones_like(o), state, eq4, causal, 0.5, 1e-6)
    with FakeTensorMode() as mode:
        fq, fk, fv = (mode.from_tensor(t) for t in (q, k, v))
        fo, fstate = torch.ops.linrepro.affine_la_fwd(fq, fk, fv, eq4, causal, 0.5, 1e-6)
        fgrads = torch.ops.linrepro.affine_la_bwd(fq, fk, fv, torch.ones_like(fo), fstate, eq4, causal, 0.5, 1e-6)
    for real, fake in zip((o, state, *grads), (fo, fstate, *fgrads)):
        assert (fake.shape, fake.dtype, fake.device) == (real.shape, real.dtype, real.device)


@pytest.mark.parametrize("eq4,causal", CASES, ids=IDS)
def test_opcheck_forward_op(eq4, causal):
    q, k, v = _inputs(seed=1)
    args = (q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True), eq4, causal, 0.5, 1e-6)
    torch.library.opcheck(
        torch.ops.linrepro.affine_la_fwd.default,
        args,
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


def test_opcheck_backward_op():
    q, k, v = _inputs(seed=2)
    o, state = torch.ops.linrepro.affine_la_fwd(q, k, v, False, True, 0.5, 1e-6)
    torch.library.opcheck(
        torch.ops.linrepro.affine_la_bwd.default,
        (q, k, v, torch.randn_like(o), state, False, True, 0.5, 1e-6),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_compiled_triton_attention_has_no_graph_break():
    """fullgraph=True through the custom op (aot_eager: its fake implementations are what the trace uses),
    gradients included, equal to the eager call."""
    q, k, v = (t.requires_grad_(True) for t in _inputs(seed=3))

    def f(q, k, v):
        return ka.linear_attention_triton(q, k, v, variant="eq7", causal=True, score_scale=0.5)

    torch._dynamo.reset()
    o = torch.compile(f, backend="aot_eager", fullgraph=True)(q, k, v)
    g = torch.autograd.grad(o.sum(), (q, k, v))
    o_ref = f(q, k, v)
    g_ref = torch.autograd.grad(o_ref.sum(), (q, k, v))
    torch.testing.assert_close(o, o_ref)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)
