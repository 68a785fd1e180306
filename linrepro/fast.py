"""Fast torch path for affine linear attention (CPU, or any device without Triton).

Same math as :func:`linrepro.attention.linear_attention_reference`, arranged for few
passes over memory and no N×N matrix:

* non-causal: one pass over k and v builds the augmented state [S | z] = K̂ᵀ[V | 1]
  (D×(Dv+1)); one batched matmul q @ [S | z] gives numerator and denominator together;
  q is never normalised in memory, its inverse norm is applied to the (N×(Dv+1)) product.
* causal: chunks of ``chunk`` rows. Inside a chunk a masked C×C matrix; across chunks
  an exclusive prefix sum of the per-chunk states (fla's "chunk" form).

Autograd differentiates through it.
"""
from __future__ import annotations

import torch


def _inv_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x.norm(dim=-1, keepdim=True).clamp_min(eps).reciprocal()


def _noncausal(q, k, v, variant, score_scale, eps):
    # 1 + 2 + 2 + 1 passes over k and v: ‖k‖, k̂, S = K̂ᵀV, Σv
    n = q.shape[-2]
    kh = k * _inv_norm(k, eps)
    state = torch.matmul(kh.transpose(-1, -2), v)                     # (B,H,D,Dv)
    vsum = v.sum(-2, keepdim=True)                                     # (B,H,1,Dv)
    # 1 + 2 + 2 passes over q and o: ‖q‖, q̂, o = Σv + q̂ S in one fused baddbmm-style matmul
    qh = q * _inv_norm(q, eps)
    if variant == "eq7":  # fold s into the tiny state instead of a pass over o
        return torch.matmul(qh, state * score_scale).add_(vsum * score_scale) if not _grad(q, k, v) \
            else torch.matmul(qh, state * score_scale) + vsum * score_scale
    zsum = kh.sum(-2, keepdim=True)                                    # (B,H,1,D)
    den = torch.matmul(qh, zsum.transpose(-1, -2)).add(n).clamp_min(eps)   # (B,H,N,1)
    if _grad(q, k, v):
        return (torch.matmul(qh, state) + vsum) / den
    return torch.matmul(qh, state).add_(vsum).div_(den)


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
    w = (1.0 + torch.matmul(qc, kc.transpose(-1, -2))).masked_fill(~mask, 0.0)   # (B,H,nc,C,C)
    intra = torch.matmul(w, vc)
    chunk_state = torch.matmul(kc.transpose(-1, -2), vc)             # (B,H,nc,D,Dv')
    chunk_vsum = vc.sum(-2, keepdim=True)                             # (B,H,nc,1,Dv')
    prev_state = torch.cumsum(chunk_state, dim=2) - chunk_state       # exclusive prefix
    prev_vsum = torch.cumsum(chunk_vsum, dim=2) - chunk_vsum
    out = intra + torch.matmul(qc, prev_state) + prev_vsum
    out = out.reshape(b, h, nc * c, -1)[:, :, :n]
    if variant == "eq7":
        return out * score_scale
    return out[..., :dv] / out[..., dv:].clamp_min(eps)


def linear_attention_torch(q, k, v, *, variant: str = "eq7", causal: bool = False,
                           score_scale: float = 0.5, eps: float = 1e-6, chunk: int = 64) -> torch.Tensor:
    """Fast torch implementation; inputs are assumed validated by the dispatcher."""
    if causal:
        return _causal(q, k, v, variant, score_scale, eps, chunk)
    return _noncausal(q, k, v, variant, score_scale, eps)
