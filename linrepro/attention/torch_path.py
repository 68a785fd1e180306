"""Fast torch path for affine linear attention (CPU, or any device without Triton).

Same math as :func:`linrepro.attention.linear_attention_reference`, arranged for few
passes over memory and no N×N matrix:

* non-causal: blocks of rows small enough to stay in cache; per block, k̂ = k/‖k‖ and
  S += K̂ᵀV (one fused baddbmm), then per block of q, o = Σv + q̂ S in one fused baddbmm (eq7's
  scale s is folded into the D×Dv state). Each of q, k, v is read from memory about once.
* causal: chunks of ``chunk`` rows. Inside a chunk a masked C×C matrix; across chunks
  an exclusive prefix sum of the per-chunk states (fla's "chunk" form).

Autograd differentiates through it.
"""

from __future__ import annotations

import torch


def _inv_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x.norm(dim=-1, keepdim=True).clamp_min(eps).reciprocal()


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
        khc = kc * _inv_norm(kc, eps)
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
        qhc = qc * _inv_norm(qc, eps)
        if variant == "eq7":
            oc = torch.baddbmm(vsum, qhc, state)  # s(Σv + Sᵀq̂)
        else:
            den = torch.baddbmm(zsum.new_full((1, 1, 1), float(n)), qhc, zsum.transpose(1, 2)).clamp_min(eps)
            oc = torch.baddbmm(vsum, qhc, state) / den
        if out is None:
            outs.append(oc)
        else:
            out[:, i : i + block] = oc
    o = torch.cat(outs, dim=1) if out is None else out
    return o.view(b, h, n, dv)


def _grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _causal(q, k, v, variant, score_scale, eps, chunk):
    b, h, n, d = q.shape
    dv = v.shape[-1]
    c = min(chunk, n)
    pad = (-n) % c
    qh = q * _inv_norm(q, eps)
    kh = k * _inv_norm(k, eps)
    if pad:  # zero rows at the end never influence earlier rows of a causal sum
        qh, kh, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (qh, kh, v))
    nc = (n + pad) // c
    if variant == "eq4":  # carry the denominator as one more value column: [v | 1]
        v = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    qc = qh.reshape(b, h, nc, c, d)
    kc = kh.reshape(b, h, nc, c, d)
    vc = v.reshape(b, h, nc, c, v.shape[-1])
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    w = (1.0 + torch.matmul(qc, kc.transpose(-1, -2))).masked_fill(~mask, 0.0)  # (B,H,nc,C,C)
    intra = torch.matmul(w, vc)
    chunk_state = torch.matmul(kc.transpose(-1, -2), vc)  # (B,H,nc,D,Dv')
    chunk_vsum = vc.sum(-2, keepdim=True)  # (B,H,nc,1,Dv')
    prev_state = torch.cumsum(chunk_state, dim=2) - chunk_state  # exclusive prefix
    prev_vsum = torch.cumsum(chunk_vsum, dim=2) - chunk_vsum
    out = intra + torch.matmul(qc, prev_state) + prev_vsum
    out = out.reshape(b, h, nc * c, -1)[:, :, :n]
    if variant == "eq7":
        return out * score_scale
    return out[..., :dv] / out[..., dv:].clamp_min(eps)


def linear_attention_torch(
    q, k, v, *, variant: str = "eq7", causal: bool = False, score_scale: float = 0.5, eps: float = 1e-6, chunk: int = 64
) -> torch.Tensor:
    """Fast torch implementation; inputs are assumed validated by the dispatcher."""
    if causal:
        return _causal(q, k, v, variant, score_scale, eps, chunk)
    return _noncausal(q, k, v, variant, score_scale, eps)
