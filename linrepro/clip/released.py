"""``released``: the attention of the first author's public open_clip code, as a third LA variant.

The paper's code is unpublished. The first author's public repository ``armingerami/Fastmax``
(commit c73e1c2, March 2026) holds ``Simplefied/transformer.py``: open_clip's ``transformer.py``
with linear attention hard-wired on in every ``ResidualAttentionBlock``, whose attention becomes
``fastmax(ln_1(x), ln_1(x), ln_1(x), n_head)``. Written here from that description (see
``../shared/PAPER.md``, "The authors' released code"; no code is copied). For a block input
x of shape (B, N, E) with H heads and d = E / H:

* **No projections.** q = k = v = ln_1(x); the block's ``nn.MultiheadAttention`` in- and
  out-projections exist (a state_dict still loads) but are not used.
* **Heads by a plain reshape.** (B, N, H·d) is reshaped straight to (B, H, N, d), no transpose:
  "head" h holds the flat run h·N·d … (h+1)·N·d − 1 of each sample's features, i.e. about N/H
  consecutive tokens with all their features. The output is reshaped back the same way.
* **Scaled by the largest norm.** Per (batch, head), q and k are divided by the largest L2 norm
  of the head's N rows (of length d); only that row has unit norm.
* **No denominator and no scale.** o_i = Σ_j v_j + q_i·(Σ_j k_jᵀ v_j) = Σ_j (1 + q_i·k_j) v_j:
  the paper's Eq. 7 with s = 1, and no 1/N.
* **No causal mask.** Any attention mask (the text tower's causal one) is ignored.

One deviation, which changes nothing for a non-zero input: the division is by max(m, eps) rather
than m, so an all-zero head gives 0 instead of 0/0.

Training honestly. The projections get no gradient; under DDP an unused parameter stops the
second step ("Expected to have finished reduction…"). :meth:`ReleasedMultiheadAttention.from_mha`
therefore **freezes** them (``requires_grad = False``): open_clip_train's optimizer and DDP then
leave them alone, and :func:`parameter_counts` reports what is trained.
"""

from __future__ import annotations

import torch
from torch import nn

from linrepro.attention import check_eps

RELEASED = "released"
PROJECTIONS = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")


def _check_x(x: torch.Tensor, num_heads: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.dtype.is_floating_point:
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point (B, N, E) tensor, got {got}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    if x.shape[-1] % num_heads:
        raise ValueError(f"the width E = {x.shape[-1]} is not a multiple of num_heads = {num_heads}")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, H·d) → (B, H, N, d) by a plain reshape (no transpose), as the released code does."""
    _check_x(x, num_heads)
    b, n, e = x.shape
    return x.reshape(b, num_heads, n, e // num_heads)


def merge_heads(o: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) → (B, N, H·d) by a plain reshape: the inverse of :func:`split_heads`."""
    b, h, n, d = o.shape
    return o.reshape(b, n, h * d)


def scale_by_max_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x (…, N, d) divided by max(largest row norm over the N rows, eps): the released code's q and k."""
    m = torch.linalg.vector_norm(x, dim=-1, keepdim=True).amax(dim=-2, keepdim=True)
    return x / m.clamp_min(eps)


def released_attention(x: torch.Tensor, num_heads: int, *, eps: float = 1e-6) -> torch.Tensor:
    """The released operator on a block's layer-normed input x (B, N, E): (B, N, E), O(N·d²) per head.

    Heads by plain reshape; q = k = x scaled by the largest row norm of each (batch, head); v = x;
    o_i = Σ_j v_j + q_i·(Σ_j k_jᵀ v_j); merged back by plain reshape. No mask, no projection."""
    v = split_heads(x, num_heads)
    qk = scale_by_max_norm(v, eps)  # q = k: the same input, the same scale
    state = qk.transpose(-1, -2) @ v  # Σ_j k_jᵀ v_j: (B, H, d, d)
    return merge_heads(v.sum(-2, keepdim=True) + qk @ state)


def released_scores(x: torch.Tensor, num_heads: int, *, eps: float = 1e-6) -> torch.Tensor:
    """The explicit (B, H, N, N) weights 1 + q_i·k_j of :func:`released_attention` (rows and columns
    are the rows of a reshaped head, not tokens when H > 1). For analysis and tests only."""
    qk = scale_by_max_norm(split_heads(x, num_heads), eps)
    return 1.0 + qk @ qk.transpose(-1, -2)


class ReleasedMultiheadAttention(nn.MultiheadAttention):
    """Drop-in for an open_clip ``ResidualAttentionBlock``'s ``attn`` that computes the released
    operator on the block's ``ln_1(x)`` (the query open_clip passes). Parameters (unused, frozen by
    :meth:`from_mha`) keep ``nn.MultiheadAttention``'s names, so a state_dict loads either way."""

    variant = RELEASED

    def __init__(
        self, embed_dim: int, num_heads: int, *, eps: float = 1e-6, bias: bool = True, device=None, dtype=None
    ):
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True, device=device, dtype=dtype)
        self.eps = check_eps(eps)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, *, eps: float = 1e-6, freeze: bool = True):
        if not mha.batch_first:
            raise ValueError("only batch_first=True attention (open_clip's layout) can be swapped")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("only plain self-attention nn.MultiheadAttention can be swapped")
        p = mha.in_proj_weight
        new = cls(
            mha.embed_dim, mha.num_heads, eps=eps, bias=mha.in_proj_bias is not None, device=p.device, dtype=p.dtype
        )
        new.load_state_dict(mha.state_dict())
        if freeze:
            freeze_projections(new)
        return new

    def extra_repr(self) -> str:
        frozen = not any(p.requires_grad for p in self.parameters())
        return f"{self.embed_dim}, heads={self.num_heads}, variant=released, projections={'frozen' if frozen else 'trainable (unused)'}"

    def forward(
        self,
        query,
        key=None,
        value=None,
        key_padding_mask=None,
        need_weights=False,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if key_padding_mask is not None:
            raise NotImplementedError("ReleasedMultiheadAttention does not support key_padding_mask")
        if need_weights:
            raise NotImplementedError("the released operator forms no N×N weight matrix: use need_weights=False")
        if key is not None and key is not query or value is not None and value is not query:
            raise NotImplementedError("the released operator is self-attention only (q = k = v = the block's ln_1(x))")
        # attn_mask and is_causal are ignored on purpose: the released code ignores the text tower's mask
        return released_attention(query, self.num_heads, eps=self.eps), None


def freeze_projections(module: nn.Module) -> int:
    """``requires_grad = False`` on the unused projections of every released attention in ``module``;
    returns how many parameter elements that froze."""
    n = 0
    for m in module.modules():
        if isinstance(m, ReleasedMultiheadAttention):
            for name, p in m.named_parameters():
                if name in PROJECTIONS:
                    p.requires_grad_(False)
                    n += p.numel()
    return n


def parameter_counts(model: nn.Module) -> dict:
    """{"total", "trainable", "frozen"} parameter elements of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}
