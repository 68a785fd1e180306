"""Fast torch path for affine linear attention (CPU, or any device without Triton).

Same math as :func:`linrepro.attention.linear_attention_reference`, arranged for few
passes over memory and no N×N matrix:

* non-causal: blocks of rows small enough to stay in cache; per block, k̂ = k/‖k‖ and
  S += K̂ᵀV (one fused baddbmm), then per block of q, o = Σv + q̂ S in one fused baddbmm (eq7's
  scale s is folded into the D×Dv state). Each of q, k, v is read from memory about once.
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


def _noncausal(q, k, v, variant, score_scale, eps, block: int = 2048):
    """Blocked over N so every block's passes (norm, scale, matmul) hit cache: each of q, k, v is
    read from memory about once and o written once, whatever N is."""
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


def _grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _exclusive_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """y[t] = Σ_{t' < t} x[t'] along ``dim``: a zero followed by the cumulative sum of x[:-1], so y[t]
    never touches x[t] or anything after it (a cumsum minus x[t] would, by round-off or NaN)."""
    head = x.narrow(dim, 0, x.shape[dim] - 1)
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), head.cumsum(dim)], dim=dim)


def _causal_intra(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """w @ v for lower-triangular C×C chunk weights w (masked entries exactly 0). With finite v the
    masked products are exact zeros, so row i sums only j ≤ i. A NaN or Inf v_jc would turn 0·v_jc
    into NaN in every row of the chunk, so then v_jc is zeroed for the product and (row ≥ j, c) set
    to NaN afterwards: the non-finite value reaches rows at and after its token, none before."""
    finite = torch.isfinite(v)
    if bool(finite.all()):
        return torch.matmul(w, v)
    out = torch.matmul(w, torch.where(finite, v, torch.zeros((), dtype=v.dtype, device=v.device)))
    reached = (~finite).cumsum(dim=-2) > 0  # (row, column) at or after a non-finite value of its chunk
    return out.masked_fill(reached, math.nan)


def _causal(q, k, v, variant, score_scale, eps, chunk):
    b, h, n, d = q.shape
    dv = v.shape[-1]
    c = min(chunk, n)
    pad = (-n) % c
    qh = _l2n(q, eps)
    kh = _l2n(k, eps)
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
    intra = _causal_intra(w, vc)
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
