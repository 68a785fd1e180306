"""Fast torch path for affine linear attention (CPU, or any device without Triton).

Same math as :func:`linrepro.attention.linear_attention_reference`, arranged for few
passes over memory and no N×N matrix:

* non-causal (fp32/fp64): one autograd node (``_NoncausalFn``) with a hand-written backward, in
  tiles of :data:`TILE_BYTES`: per tile k̂ = k·r and S += K̂ᵀV, then per tile o = cΣv + r·(q cS)
  (eq7's scale c folded into the D×Dv state); the backward is 4 tiled products
  (dS = Q̂ᵀG, dQ̂ = GSᵀ, dK̂ = VdSᵀ, dV = K̂dS + ΣG) and the normalisation's gradient
  (:func:`norm_backward`). eq4 is the same core on [v | 1]. Inputs whose row norms the direct
  normalisation cannot take, and half precision, go through the autograd form below.
* causal: chunks of ``chunk`` rows. Inside a chunk a masked C×C matrix; across chunks
  an exclusive prefix sum of the per-chunk states (fla's "chunk" form), built as a zero state
  followed by the cumulative sum of the previous chunks' states, so that every row only ever sums
  states of earlier chunks (causality is structural: a later token, NaN included, cannot reach an
  earlier row, not even by round-off). If v holds a NaN or Inf, the C×C product uses v with those
  entries zeroed and marks the (row, column) pairs at or after them NaN, since 0·NaN would carry
  them to earlier rows of the chunk.
* normalisation: ‖x‖ is computed directly where that is exact enough, and otherwise (a huge,
  tiny or non-finite norm, which a check on the per-row norms detects; and always for fp16) with
  the exact power-of-two scaling of :func:`linrepro.attention.l2_normalise`.

Autograd differentiates through it.
"""

from __future__ import annotations

import math

import torch

from linrepro.attention import eq4_denominator, l2_normalise


def _direct_range(dtype: torch.dtype) -> tuple[float, float]:
    """(lo, hi): norms the direct x·(1/max(‖x‖, eps)) gets right, gradient included: ‖x‖² keeps its
    digits in the (at least fp32) accumulation, and 1/‖x‖² (in its backward) neither underflows nor
    turns Σ g·x into an overflow; about 1e-12 to 1e12 in fp32 and bf16."""
    acc = torch.finfo(torch.promote_types(dtype, torch.float32))
    lo = math.sqrt(acc.tiny) / acc.eps
    return lo, 1.0 / lo


def _l2n(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / max(‖x‖, eps) along the last dim. The direct form (fast, as before) for every row whose norm
    is in :func:`_direct_range` (or is clamped at eps anyway); :func:`l2_normalise`'s exact
    power-of-two scaling for the other rows (huge, tiny, non-finite), and for fp16, whose range is too
    narrow for the direct form's backward (1/‖x‖² underflows from ‖x‖ ≈ 256 on)."""
    if x.dtype == torch.float16:
        return l2_normalise(x, eps)
    nrm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    fast = x * nrm.clamp_min(eps).reciprocal()
    lo, hi = _direct_range(x.dtype)
    low_matters = eps < lo  # below eps every row is x/eps anyway
    smallest, largest = (float(t) for t in torch.aminmax(nrm.detach()))  # one pass over the row norms
    if largest <= hi and (smallest >= lo or not low_matters):  # false for a NaN too
        return fast
    unsafe = ~(nrm <= hi)  # huge, Inf or NaN
    if low_matters:
        unsafe = unsafe | (nrm < lo)
    return torch.where(unsafe, l2_normalise(x, eps), fast)  # only those rows: the others stay bit-identical


def norm_reciprocal(x: torch.Tensor, eps: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(r, m): r = 1/max(‖x‖, eps) per row (detached, shape (..., N, 1)) and m = r where ‖x‖ > eps, 0 where
    the norm is clamped (the factor of the projection in the gradient, :func:`norm_backward`), when every
    row norm is in :func:`_direct_range` (or below eps where that clamps anyway), so that x·r is exact
    enough, gradient included; (None, None) otherwise (a huge, tiny or non-finite row)."""
    with torch.no_grad():
        nrm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        smallest = _direct_smallest(nrm, x.dtype, eps)
        if smallest is None:
            return None, None
        return _r_and_m(nrm, eps, smallest)


def _r_and_m(nrm: torch.Tensor, eps: float, smallest: float) -> tuple[torch.Tensor, torch.Tensor]:
    r = nrm.clamp_min(eps).reciprocal_()
    return r, (r if smallest > eps else r.masked_fill(nrm <= eps, 0.0))


def norm_backward(xh: torch.Tensor, r: torch.Tensor, m: torch.Tensor, dxh: torch.Tensor) -> torch.Tensor:
    """Gradient of x̂ = x·r, r = 1/max(‖x‖, eps): r·dx̂ − x̂(x̂·dx̂)·m, with m = r where ‖x‖ > eps and 0
    where the norm is clamped (there x̂ = x/eps is linear in x). Linear in dx̂: a constant factor of
    dx̂ may be folded into r and m."""
    proj = (xh * dxh).sum(-1, keepdim=True).mul_(m)
    return (dxh * r).addcmul_(xh, proj, value=-1.0)


def _direct_smallest(nrm: torch.Tensor, dtype: torch.dtype, eps: float) -> float | None:
    """The smallest row norm if every row norm is one that the direct x·(1/max(‖x‖, eps)) gets right,
    else None (a NaN too)."""
    if nrm.numel() == 0:
        return math.inf
    lo, hi = _direct_range(dtype)
    smallest, largest = (float(t) for t in torch.aminmax(nrm))
    return smallest if largest <= hi and (smallest >= lo or eps >= lo) else None


def _tiles(b: int, h: int, n: int, width: int, itemsize: int, target: int):
    """(batch slice, row slice) tiles of about ``target`` bytes of one (B, H, N, width) operand: whole
    batch groups when a batch element is small, else row blocks of one batch element."""
    per_row = h * width * itemsize
    rows = max(1, target // per_row)
    if rows >= n:
        gb = max(1, min(b, target // max(1, per_row * n)))
        for b0 in range(0, b, gb):
            yield slice(b0, min(b, b0 + gb)), slice(0, n)
    else:
        for b0 in range(b):
            for i in range(0, n, rows):
                yield slice(b0, b0 + 1), slice(i, min(n, i + rows))


TILE_BYTES = 1 << 22  # one tile of q (or k) per pass (few Python-level ops per pass; measured 2^20-2^26)


class _NoncausalFn(torch.autograd.Function):
    """c(Σv + S q̂_i), S = K̂ᵀV, c a scalar, in tiles (see :func:`_tiles`) so each of q, k, v, o is read or
    written about once per pass; one autograd node with a hand-written, equally tiled backward
    (4 products: dS = Q̂ᵀG, dQ̂ = GSᵀ, dK̂ = VdSᵀ, dV = K̂dS + ΣG). Rows whose norm the direct
    normalisation cannot take (:func:`norm_reciprocal`) send the whole call through autograd instead."""

    @staticmethod
    def forward(ctx, q, k, v, scale: float, eps: float, variant: str):  # type: ignore[override]
        b, h, n, d = q.shape
        dv = v.shape[-1]
        tiles = list(_tiles(b, h, n, max(d, dv), q.element_size(), TILE_BYTES))
        # every pass inside the tiles (the row norms too): each of q, k, v is read from memory once
        nk = q.new_empty(b, h, n, 1)
        state = q.new_zeros(b, h, d, dv)
        vsum = q.new_zeros(b, h, 1, dv)
        for bs, rs in tiles:
            kc, vc = k[bs, :, rs], v[bs, :, rs]
            nkc = torch.linalg.vector_norm(kc, dim=-1, keepdim=True)
            nk[bs, :, rs] = nkc
            kh = kc * nkc.clamp_min(eps).reciprocal_()
            state[bs] += torch.matmul(kh.transpose(-1, -2), vc)
            vsum[bs] += vc.sum(-2, keepdim=True)
        sk = _direct_smallest(nk, q.dtype, eps)
        if sk is None:
            return _NoncausalFn._fallback(ctx, q, k, v, scale, eps, variant)
        state.mul_(scale)
        vsum.mul_(scale)
        nq = q.new_empty(b, h, n, 1)
        o = q.new_empty(b, h, n, dv)
        for bs, rs in tiles:
            qc = q[bs, :, rs]
            nqc = torch.linalg.vector_norm(qc, dim=-1, keepdim=True)
            nq[bs, :, rs] = nqc
            torch.addcmul(vsum[bs], torch.matmul(qc, state[bs]), nqc.clamp_min(eps).reciprocal_(), out=o[bs, :, rs])
        sq = _direct_smallest(nq, q.dtype, eps)
        if sq is None:
            return _NoncausalFn._fallback(ctx, q, k, v, scale, eps, variant)
        ctx.fallback = None
        rk, mk = _r_and_m(nk, eps, sk)
        rq, mq = _r_and_m(nq, eps, sq)
        ctx.save_for_backward(q, k, v, state, rq, rk, mq, mk)
        ctx.scale = scale
        return o

    @staticmethod
    def _fallback(ctx, q, k, v, scale, eps, variant):
        """A row norm the direct normalisation cannot take: the exact normalisation, through autograd."""
        with torch.enable_grad():
            lq, lk, lv = (t.detach().requires_grad_(True) for t in (q, k, v))
            o = _noncausal_autograd(lq, lk, lv, variant, scale, eps)
        ctx.fallback = ([lq, lk, lv], o)
        return o.detach()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        if ctx.fallback is not None:
            leaves, o = ctx.fallback
            return (*torch.autograd.grad(o, leaves, g), None, None, None)
        q, k, v, state, rq, rk, mq, mk = ctx.saved_tensors
        b, h, n, d = q.shape
        dv_ = v.shape[-1]
        tiles = list(_tiles(b, h, n, max(d, dv_), q.element_size(), TILE_BYTES))
        ds = q.new_zeros(b, h, d, dv_)
        dq = torch.empty_like(q, memory_format=torch.contiguous_format)
        gsum = q.new_zeros(b, h, 1, dv_)
        st = state.transpose(-1, -2)
        for bs, rs in tiles:
            qh = q[bs, :, rs] * rq[bs, :, rs]
            gc = g[bs, :, rs]
            ds[bs] += torch.matmul(qh.transpose(-1, -2), gc)
            gsum[bs] += gc.sum(-2, keepdim=True)
            dq[bs, :, rs] = norm_backward(qh, rq[bs, :, rs], mq[bs, :, rs], torch.matmul(gc, st[bs]))
        ds.mul_(ctx.scale)
        gsum.mul_(ctx.scale)
        dk = torch.empty_like(k, memory_format=torch.contiguous_format)
        dv = torch.empty_like(v, memory_format=torch.contiguous_format)
        dst = ds.transpose(-1, -2)
        for bs, rs in tiles:
            kh = k[bs, :, rs] * rk[bs, :, rs]
            vc = v[bs, :, rs]
            torch.add(torch.matmul(kh, ds[bs]), gsum[bs], out=dv[bs, :, rs])
            dk[bs, :, rs] = norm_backward(kh, rk[bs, :, rs], mk[bs, :, rs], torch.matmul(vc, dst[bs]))
        return dq, dk, dv, None, None, None


def _noncausal_autograd(q, k, v, variant, score_scale, eps, block: int = 2048):
    """Blocked over N so every block's passes (norm, scale, matmul) hit cache: each of q, k, v is
    read from memory about once and o written once, whatever N is. Autograd differentiates it; used
    for inputs outside the direct normalisation's range, and for half precision."""
    b, h, n, d = q.shape
    dv = v.shape[-1]
    q3, k3, v3 = q.reshape(b * h, n, d), k.reshape(b * h, n, d), v.reshape(b * h, n, dv)
    state = q.new_zeros(b * h, d, dv)
    vsum = q.new_zeros(b * h, 1, dv)
    zsum = q.new_zeros(b * h, 1, d)
    # split (not slicing): its backward concatenates the block gradients once; a slice's backward
    # writes into a zero tensor of the full size, which made the backward quadratic in N
    for kc, vc in zip(k3.split(block, dim=1), v3.split(block, dim=1)):
        khc = _l2n(kc, eps)
        state = torch.baddbmm(state, khc.transpose(1, 2), vc)  # S += K̂ᵀV
        vsum = vsum + vc.sum(1, keepdim=True)
        if variant == "eq4":
            zsum = zsum + khc.sum(1, keepdim=True)
    if variant == "eq7":  # fold s into the tiny state and Σv, not into a pass over o
        state, vsum = state * score_scale, vsum * score_scale
    grad = _grad(q, k, v)
    outs: list[torch.Tensor] = []  # with autograd: blocks joined once (no in-place writes into o)
    out = None if grad else q.new_empty(b * h, n, dv)
    for j, qc in enumerate(q3.split(block, dim=1)):
        i = j * block
        qhc = _l2n(qc, eps)
        if variant == "eq7":
            oc = torch.baddbmm(vsum, qhc, state)  # s(Σv + Sᵀq̂)
        else:
            den = torch.baddbmm(zsum.new_full((1, 1, 1), float(n)), qhc, zsum.transpose(1, 2))
            oc = torch.baddbmm(vsum, qhc, state) / eq4_denominator(den, n, eps)
        if out is None:
            outs.append(oc)
        else:
            out[:, i : i + block] = oc
    o = torch.cat(outs, dim=1) if out is None else out
    return o.view(b, h, n, dv)


def _noncausal(q, k, v, variant, score_scale, eps):
    """Non-causal eq4/eq7: the tiled one-node form for fp32/fp64 (eq4 as the eq7 core on [v | 1], whose
    last column is the denominator), the autograd form otherwise."""
    if q.dtype not in (torch.float32, torch.float64):
        return _noncausal_autograd(q, k, v, variant, score_scale, eps)
    if variant == "eq7":
        return _NoncausalFn.apply(q, k, v, float(score_scale), eps, variant)
    n, dv = q.shape[-2], v.shape[-1]
    out = _NoncausalFn.apply(q, k, torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], -1), 1.0, eps, "eq7")
    return out[..., :dv] / eq4_denominator(out[..., dv:], n, eps)


def _grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _exclusive_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """y[t] = Σ_{t' < t} x[t'] along ``dim``: a zero followed by the cumulative sum of x[:-1], so y[t]
    never touches x[t] or anything after it (a cumsum minus x[t] would, by round-off or NaN)."""
    head = x.narrow(dim, 0, x.shape[dim] - 1)
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), head.cumsum(dim)], dim=dim)


def _causal_intra(w: torch.Tensor, v: torch.Tensor, traceable: bool = False) -> torch.Tensor:
    """w @ v for lower-triangular C×C chunk weights w (masked entries exactly 0). With finite v the
    masked products are exact zeros, so row i sums only j ≤ i. A NaN or Inf v_jc would turn 0·v_jc
    into NaN in every row of the chunk, so then v_jc is zeroed for the product and (row ≥ j, c) set
    to NaN afterwards: the non-finite value reaches rows at and after its token, none before."""
    finite = torch.isfinite(v)
    if not traceable and bool(finite.all()):  # (traceable: no data-dependent branch, for torch.compile)
        return torch.matmul(w, v)
    out = torch.matmul(w, torch.where(finite, v, torch.zeros((), dtype=v.dtype, device=v.device)))
    reached = (~finite).cumsum(dim=-2) > 0  # (row, column) at or after a non-finite value of its chunk
    return out.masked_fill(reached, math.nan)


def _causal(q, k, v, variant, score_scale, eps, chunk, traceable: bool = False):
    b, h, n, d = q.shape
    dv = v.shape[-1]
    c = min(chunk, n)
    pad = (-n) % c
    norm = l2_normalise if traceable else _l2n
    qh = norm(q, eps)
    kh = norm(k, eps)
    if pad:  # zero rows at the end never influence earlier rows of a causal sum
        qh, kh, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (qh, kh, v))
    nc = (n + pad) // c
    if variant == "eq4":  # carry the denominator as one more value column: [v | 1]
        v = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    qc = qh.reshape(b, h, nc, c, d)
    kc = kh.reshape(b, h, nc, c, d)
    vc = v.reshape(b, h, nc, c, v.shape[-1])
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    # masked_fill, not a multiplication by the mask: a NaN score of a later key (0·NaN = NaN) is dropped
    w = (1.0 + torch.matmul(qc, kc.transpose(-1, -2))).masked_fill(~mask, 0.0)  # (B,H,nc,C,C)
    intra = _causal_intra(w, vc, traceable)
    chunk_state = torch.matmul(kc.transpose(-1, -2), vc)  # (B,H,nc,D,Dv')
    chunk_vsum = vc.sum(-2, keepdim=True)  # (B,H,nc,1,Dv')
    prev_state = _exclusive_cumsum(chunk_state, dim=2)  # states of the chunks before, only
    prev_vsum = _exclusive_cumsum(chunk_vsum, dim=2)
    out = intra + torch.matmul(qc, prev_state) + prev_vsum
    out = out.reshape(b, h, nc * c, -1)[:, :, :n]
    if variant == "eq7":
        return out * score_scale
    count = torch.arange(1, n + 1, device=q.device, dtype=out.dtype).view(1, 1, n, 1)
    return out[..., :dv] / eq4_denominator(out[..., dv:], count, eps)


def linear_attention_torch(
    q, k, v, *, variant: str = "eq7", causal: bool = False, score_scale: float = 0.5, eps: float = 1e-6, chunk: int = 64
) -> torch.Tensor:
    """Fast torch implementation; inputs are assumed validated by the dispatcher."""
    if q.shape[-2] == 0:  # empty sequence: nothing to compute; keep the graph connected for autograd
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + v.sum())
    if causal:
        return _causal(q, k, v, variant, score_scale, eps, chunk)
    return _noncausal(q, k, v, variant, score_scale, eps)


def linear_attention_traceable(
    q, k, v, *, variant: str = "eq7", causal: bool = False, score_scale: float = 0.5, eps: float = 1e-6
) -> torch.Tensor:
    """The same math with no data-dependent Python branch, for ``torch.compile`` (what the dispatcher runs
    while compiling, so that linrepro's attention breaks no graph): the exact normalisation of
    :func:`linrepro.attention.l2_normalise` for every row; non-causal, the factorised form; causal, the
    chunked form with the NaN-safe masked chunk product always on."""
    if causal:
        return _causal(q, k, v, variant, score_scale, eps, 64, traceable=True)
    qh, kh = l2_normalise(q, eps), l2_normalise(k, eps)
    num = v.sum(-2, keepdim=True) + torch.matmul(qh, torch.matmul(kh.transpose(-1, -2), v))
    if variant == "eq7":
        return num * score_scale
    den = q.shape[-2] + torch.matmul(qh, kh.sum(-2, keepdim=True).transpose(-1, -2))
    return num / eq4_denominator(den, q.shape[-2], eps)
