"""The exact forms ``backend="auto"`` chooses among (quadratic, reference, torch) against float64 truth,
outputs and gradients; and the dispatcher's cost model and the visibility of its choice."""

from __future__ import annotations

import logging

import pytest
import torch

import linrepro.attention.torch_path as torch_path
from linrepro.attention import dispatch, linear_attention, quadratic_reference

F64 = torch.float64
FORMS = ["quadratic", "torch", "reference", "auto"]


def _rel(a, ref):
    ref = ref.detach().double()
    return ((a.detach().double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def _loops(q, k, v, variant, causal, s, eps=1e-6):
    """Row by row from the spec (linrepro.attention's module docstring), float64."""
    b, h, n, _ = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=F64)
    qh = q / q.norm(dim=-1, keepdim=True).clamp_min(eps)
    kh = k / k.norm(dim=-1, keepdim=True).clamp_min(eps)
    for i in range(n):
        m = i + 1 if causal else n
        w = 1.0 + torch.einsum("bhd,bhjd->bhj", qh[:, :, i], kh[:, :, :m])
        num = torch.einsum("bhj,bhje->bhe", w, v[:, :, :m])
        if variant == "eq7":
            out[:, :, i] = num * ((1.0 / m) if s == "1/N" else s)
        else:
            den = w.sum(-1, keepdim=True)
            out[:, :, i] = torch.where(den > eps * m, num / den, torch.zeros_like(num))
    return out


def _inputs(b, h, n, d, dv, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, n, d, generator=g, dtype=F64) for _ in range(2))
    v = torch.randn(b, h, n, dv, generator=g, dtype=F64)
    q[0, 0, -1] = 0.0  # a zero query row: norm clamped at eps (the projection-free gradient)
    k[-1, -1, n // 2] *= 1e-8  # a short key row, still above eps
    go = torch.randn(b, h, n, dv, generator=g, dtype=F64)
    return [t.to(dtype) for t in (q, k, v)], go.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("s", [0.5, "1/N"], ids=["s=0.5", "s=1/N"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("variant", ["eq4", "eq7"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("n", [1, 4, 7, 70])  # N ≤ D = 6 and N > D: both quadratic classes
def test_every_form_matches_float64_truth(form, variant, causal, s, dtype, n, monkeypatch):
    """Outputs and dq, dk, dv of every form (the torch path forced into several tiles) against autograd
    through the float64 row-by-row formula."""
    if variant == "eq4" and s != 0.5:
        pytest.skip("eq4 ignores the score scale")
    monkeypatch.setattr(torch_path, "TILE_BYTES", 2048)  # several tiles even at these sizes
    (q, k, v), go = _inputs(2, 2, n, 6, 5, dtype, seed=n)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    o = linear_attention(*leaves, variant=variant, causal=causal, score_scale=s, backend=form)
    grads = torch.autograd.grad(o, leaves, go)
    ref_leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref = _loops(*ref_leaves, variant, causal, s)
    ref_grads = torch.autograd.grad(ref, ref_leaves, go.double())
    tol = 1e-9 if dtype == F64 else 2e-5
    assert o.dtype == dtype
    assert _rel(o, ref) < tol
    for name, a, b in zip(("dq", "dk", "dv"), grads, ref_grads):
        if variant == "eq4" and n == 1 and name in ("dq", "dk"):
            continue  # o = v whatever q, k: the true gradient is 0, and any round-off is relative to 0
        assert _rel(a, b) < tol, name


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("form", ["quadratic", "torch"])
def test_fast_forms_equal_quadratic_reference_on_strided_views(form, causal):
    """q, k, v as open_clip hands them over (permuted views of one qkv tensor), fp32: same as the float64
    quadratic form, gradients included."""
    g = torch.Generator().manual_seed(3)
    b, n, h, dh = 3, 19, 2, 8
    qkv = torch.randn(b, n, 3, h, dh, generator=g, requires_grad=True)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    go = torch.randn(b, h, n, dh, generator=g)
    o = linear_attention(q, k, v, causal=causal, score_scale="1/N", backend=form)
    (dqkv,) = torch.autograd.grad(o, qkv, go)
    ref_qkv = qkv.detach().double().requires_grad_(True)
    rq, rk, rv = ref_qkv.permute(2, 0, 3, 1, 4).unbind(0)
    ref = quadratic_reference(rq, rk, rv, causal=causal, score_scale="1/N")
    (ref_d,) = torch.autograd.grad(ref, ref_qkv, go.double())
    assert _rel(o, ref) < 2e-6 and _rel(dqkv, ref_d) < 2e-5


def test_huge_inputs_fall_back_to_the_exact_normalisation():
    """Norms outside the direct range (‖q‖² overflows fp32) take the exact path in the fused forms, with the
    float64 answer, gradients included."""
    (q, k, v), go = _inputs(1, 2, 40, 8, 8, torch.float32, seed=5)
    q, k = q * 1e25, k * 3e30
    for form in ("quadratic", "torch"):
        for causal in (False, True):
            leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
            o = linear_attention(*leaves, causal=causal, backend=form)
            grads = torch.autograd.grad(o, leaves, go)
            ref_leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
            ref = quadratic_reference(*ref_leaves, causal=causal)
            ref_grads = torch.autograd.grad(ref, ref_leaves, go.double())
            assert torch.isfinite(o).all() and _rel(o, ref) < 1e-5, (form, causal)
            assert _rel(grads[2], ref_grads[2]) < 1e-5, (form, causal)


# ------------------------------------------------------------------ dispatcher
def test_auto_runs_the_form_the_cost_model_predicts_fastest(caplog):
    """The choice is the argmin of the predicted times, it is reported by explain_choice and logged at DEBUG,
    and auto's result is the chosen form's, bit for bit."""
    dispatch._choose.cache_clear()
    for n, causal in ((5, False), (17, True), (64, False), (600, False), (600, True)):
        info = dispatch.explain_choice(2, 2, n, 16, causal=causal)
        pred = info["predicted_ms"]
        assert set(pred) == set(dispatch.FORMS)
        assert info["choice"] == min(pred, key=pred.__getitem__)
        g = torch.Generator().manual_seed(n)
        q, k, v = (torch.randn(2, 2, n, 16, generator=g) for _ in range(3))
        with caplog.at_level(logging.DEBUG, logger="linrepro.attention.dispatch"):
            caplog.clear()
            o = linear_attention(q, k, v, causal=causal, backend="auto")
        assert f"picks {info['choice']} for BH=4 N={n} D=16" in caplog.text
        assert torch.equal(o, linear_attention(q, k, v, causal=causal, backend=info["choice"]))


def test_quadratic_form_is_not_considered_past_the_memory_cap():
    n = int((dispatch.MAX_ELEMENTS / 4) ** 0.5) + 1
    assert dispatch.predicted_seconds("quadratic", 4, n, 64, 64, False) == float("inf")
    assert dispatch.explain_choice(1, 4, n, 64)["choice"] != "quadratic"
    with pytest.raises(ValueError, match="unknown form 'fast'"):
        dispatch.predicted_seconds("fast", 4, 8, 8, 8, False)


def test_calibration_fits_non_negative_coefficients_from_measured_times(tmp_path, monkeypatch):
    """calibrate() measures every form on the grid, fits c ≥ 0 for each form and causality, and writes a
    table that the dispatcher reads back."""
    monkeypatch.setattr(dispatch, "TABLE", tmp_path / "_calibration.py")
    res = dispatch.calibrate(reps=1, write=True, grid={"bh": (2,), "n": (4, 16, 32, 64), "d": (8,)})
    assert {(s["form"], s["causal"]) for s in res["samples"]} == {(f, c) for f in dispatch.FORMS for c in (0, 1)}
    assert all(s["s"] > 0 for s in res["samples"])
    assert set(res["coefficients"]) == {f"{f}/{c}" for f in dispatch.FORMS for c in ("full", "causal")}
    assert all(len(c) == 4 and min(c) >= 0 for c in res["coefficients"].values())
    ns: dict = {}
    exec((tmp_path / "_calibration.py").read_text(), ns)
    assert ns["COEFFICIENTS"] == res["coefficients"] and ns["PROVENANCE"]["dtype"] == "float32"
    dispatch._choose.cache_clear()


def test_dispatch_cli_without_arguments_says_how_to_calibrate(capsys):
    assert dispatch.main([]) == 2
    assert "--calibrate" in capsys.readouterr().out


@pytest.mark.parametrize("form", ["quadratic", "auto"])
def test_cached_masks_built_under_inference_mode_serve_training_calls(form):
    """The quadratic form caches its causal mask and 1/i column: a first call under inference mode must not
    leave inference tensors behind for a later call with autograd (fp16 takes the autograd form)."""
    g = torch.Generator().manual_seed(11)
    n = 23  # a length no other test uses, so the cache is filled here
    q, k, v = (torch.randn(1, 2, n, 8, generator=g, dtype=torch.float16) for _ in range(3))
    with torch.inference_mode():
        linear_attention(q, k, v, causal=True, score_scale="1/N", backend=form)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    o = linear_attention(*leaves, causal=True, score_scale="1/N", backend=form)
    grads = torch.autograd.grad(o.float().sum(), leaves)
    assert all(torch.isfinite(x).all() for x in grads)
