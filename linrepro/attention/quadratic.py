"""The quadratic N×N form of affine linear attention, made fast for short sequences.

o_i = c_i Σ_j (1 + q̂_i·k̂_j) v_j over all j (or j ≤ i, causal), with c_i a scalar or (causal "1/N")
1/i: the score matrix W = 1 + Q̂K̂ᵀ times V. It costs O(N²(D+Dv)) against the factorised
O(N·D·Dv), and below a crossover that the dispatcher measures (``linrepro.attention.dispatch``),
its two well-shaped products and few passes make it the fastest exact form.

* :class:`_QuadraticFn` (N > D) and :class:`_QuadraticScoresFn` (N ≤ D: the normalisation applied to
  the N×N scores instead of the N×D rows; 9% faster forward + backward at N = 17, D = 32, slower from
  N ≈ 2D, measured side by side) are each one autograd node with a hand-written backward (the normalisation's
  gradient included): dV = WᵀG, dW = GVᵀ (masked), dQ̂ = dW·K̂, dK̂ = dWᵀQ̂, then
  dx = r(dx̂ − x̂(x̂·dx̂)) with r = 1/max(‖x‖, eps) (``torch_path.norm_backward``; the projection is dropped
  where ‖x‖ ≤ eps, as autograd of x·r gives). It runs for fp32/fp64 when every row norm is in the range where
  the direct normalisation is exact (:func:`linrepro.attention.torch_path.norm_reciprocal`) and,
  causal, when v is finite.
* Otherwise (huge, tiny or non-finite inputs, half precision) the same form runs through autograd
  with the exact normalisation and the NaN-safe masked product of the torch path.

Causality is structural: W is masked by ``masked_fill`` (exact zeros) before any product, every
value multiplied by a masked zero is finite on the fast path, so row i reads tokens j ≤ i only.
eq4 is the same core on [v | 1]: its last column is the denominator.
"""

from __future__ import annotations

import functools

import torch

from linrepro.attention import eq4_denominator
from linrepro.attention.torch_path import _causal_intra, _l2n, norm_backward, norm_reciprocal


@functools.lru_cache(maxsize=64)
def _tri_mask(n: int, device) -> torch.Tensor:
    """True above the diagonal (j > i); cached per (n, device): a constant, only ever read."""
    with torch.inference_mode(False):  # a normal tensor even if first built under inference mode
        return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


class _QuadraticFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal: bool, scale, rq, rk, mq, mk):  # type: ignore[override]
        qh, kh = q * rq, k * rk
        n = q.shape[-2]
        if isinstance(scale, float) and not causal:  # W = c + c·Q̂K̂ᵀ in one product
            c = torch.full((1, 1, 1), scale, dtype=q.dtype, device=q.device)
            w3 = torch.baddbmm(
                c, qh.reshape(-1, n, q.shape[-1]), kh.reshape(-1, n, k.shape[-1]).transpose(1, 2), alpha=scale
            )
            w = w3.view(*q.shape[:-2], n, n)
        else:
            w = torch.matmul(qh, kh.transpose(-1, -2)).add_(1.0)
            if causal:
                w.masked_fill_(_tri_mask(n, q.device), 0.0)
            w.mul_(scale)  # W = c_i (1 + q̂_i·k̂_j): the row scale lives in W, not in a pass over o or g
        ctx.same_m = (mq is rq, mk is rk)  # no norm clamped: m = r, one tensor
        ctx.save_for_backward(qh, kh, v, w, rq, rk, mq, mk)
        ctx.causal = causal
        ctx.scale = scale
        return torch.matmul(w, v)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        qh, kh, v, w, rq, rk, mq, mk = ctx.saved_tensors
        dv = torch.matmul(w.transpose(-1, -2), g)
        dw = torch.matmul(g, v.transpose(-1, -2))  # ∂L/∂W; ∂L/∂(q̂_i·k̂_j) = c_i ∂L/∂W_ij
        if ctx.causal:
            dw.masked_fill_(_tri_mask(qh.shape[-2], qh.device), 0.0)
        c = ctx.scale
        if isinstance(c, float):  # fold the scalar c into the normalisation's factors (tiny (N, 1) tensors)
            rq, rk = rq * c, rk * c
            mq = rq if ctx.same_m[0] else mq * c
            mk = rk if ctx.same_m[1] else mk * c
            dq = norm_backward(qh, rq, mq, torch.matmul(dw, kh))
            dk = norm_backward(kh, rk, mk, torch.matmul(dw.transpose(-1, -2), qh))
        else:
            dw.mul_(c)
            dq = norm_backward(qh, rq, mq, torch.matmul(dw, kh))
            dk = norm_backward(kh, rk, mk, torch.matmul(dw.transpose(-1, -2), qh))
        return dq, dk, dv, None, None, None, None, None, None


class _QuadraticScoresFn(torch.autograd.Function):
    """The same form and gradients as :class:`_QuadraticFn` with the normalisation applied to the N×N
    scores rather than to the N×D rows, cheaper where N ≤ D (a tiny CLIP's 17 image and 16 text tokens
    at head width 32): P̂ = (QKᵀ) ⊙ R with R = r_q r_kᵀ, W = c_i(1 + P̂) (masked). Backward, with
    dŴ = c_i·GVᵀ (masked), E = dŴ ⊙ R and D = dŴ ⊙ P̂:
    dq = EK − q·(r_q m_q Σ_j D_ij), dk = EᵀQ − k·(r_k m_k Σ_i D_ij), dv = WᵀG, which is
    ``norm_backward`` of dQ̂ = dŴK̂ written through q̂·dQ̂_i = Σ_j dŴ_ij P̂_ij."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool, scale, rq, rk, mq, mk):  # type: ignore[override]
        n = q.shape[-2]
        rr = rq * rk.transpose(-1, -2)  # R = r_q r_kᵀ
        p = torch.matmul(q, k.transpose(-1, -2)).mul_(rr)  # P̂ = q̂_i·k̂_j
        w = p + 1.0
        if causal:
            w.masked_fill_(_tri_mask(n, q.device), 0.0)
        w.mul_(scale)
        ctx.save_for_backward(q, k, v, w, p, rr, rq, rk, mq, mk)
        ctx.causal = causal
        ctx.scale = scale
        return torch.matmul(w, v)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        q, k, v, w, p, rr, rq, rk, mq, mk = ctx.saved_tensors
        dv = torch.matmul(w.transpose(-1, -2), g)
        dw = torch.matmul(g, v.transpose(-1, -2)).mul_(ctx.scale)  # ∂L/∂P̂ = c_i ∂L/∂W
        if ctx.causal:
            dw.masked_fill_(_tri_mask(q.shape[-2], q.device), 0.0)
        d = dw * p
        proj_q = d.sum(-1, keepdim=True).mul_(rq).mul_(mq)
        proj_k = d.sum(-2).unsqueeze(-1).mul_(rk).mul_(mk)
        e = dw.mul_(rr)
        dq = torch.matmul(e, k).addcmul_(q, proj_q, value=-1.0)
        dk = torch.matmul(e.transpose(-1, -2), q).addcmul_(k, proj_k, value=-1.0)
        return dq, dk, dv, None, None, None, None, None, None


@functools.lru_cache(maxsize=64)
def _inverse_counts(n: int, device, dtype) -> torch.Tensor:
    """The (n, 1) column 1/i, i = 1..n; cached: a constant, only ever read."""
    with torch.inference_mode(False):  # a normal tensor even if first built under inference mode
        return 1.0 / torch.arange(1, n + 1, device=device, dtype=dtype).view(n, 1)


def _row_scale(n: int, causal: bool, score_scale, like: torch.Tensor):
    """The per-row factor c_i: a float, or (causal, ``per_row``) the (n, 1) column 1/i."""
    if score_scale is None:  # per row
        return _inverse_counts(n, like.device, like.dtype)
    return float(score_scale)


def _quadratic_autograd(q, k, v, causal, scale, eps):
    qh, kh = _l2n(q, eps), _l2n(k, eps)
    w = 1.0 + torch.matmul(qh, kh.transpose(-1, -2))
    if causal:
        w = w.masked_fill(_tri_mask(q.shape[-2], q.device), 0.0)
        return _causal_intra(w, v) * scale
    return torch.matmul(w, v) * scale


def quadratic_core(q, k, v, *, causal: bool, score_scale, eps: float) -> torch.Tensor:
    """c_i Σ_j (1 + q̂_i·k̂_j) v_j (j ≤ i if causal); ``score_scale`` None means c_i = 1/count_i."""
    n = q.shape[-2]
    if score_scale is None and not causal:
        score_scale = 1.0 / n
    scale = _row_scale(n, causal, score_scale, q)
    if q.dtype in (torch.float32, torch.float64) and (not causal or bool(torch.isfinite(v.sum()))):
        rq, mq = norm_reciprocal(q, eps)
        if rq is not None:
            rk, mk = norm_reciprocal(k, eps)
            if rk is not None:
                fn = _QuadraticScoresFn if n <= q.shape[-1] else _QuadraticFn  # the cheaper place to normalise
                return fn.apply(q, k, v, causal, scale, rq, rk, mq, mk)
    return _quadratic_autograd(q, k, v, causal, scale, eps)


def linear_attention_quadratic(
    q, k, v, *, variant: str = "eq7", causal: bool = False, score_scale=0.5, eps: float = 1e-6
) -> torch.Tensor:
    """The quadratic form of eq4 or eq7 (inputs validated by the dispatcher). ``score_scale`` None:
    the per-length scale (1/N, or 1/i causal)."""
    if variant == "eq7":
        return quadratic_core(q, k, v, causal=causal, score_scale=score_scale, eps=eps)
    n, dv = q.shape[-2], v.shape[-1]
    out = quadratic_core(
        q, k, torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], -1), causal=causal, score_scale=1.0, eps=eps
    )
    count = torch.arange(1, n + 1, device=q.device, dtype=out.dtype).view(n, 1) if causal else n
    return out[..., :dv] / eq4_denominator(out[..., dv:], count, eps)
