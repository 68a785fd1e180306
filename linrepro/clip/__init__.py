"""open_clip models with their attention swapped for affine linear attention.

* :class:`LinearMultiheadAttention` subclasses ``nn.MultiheadAttention`` and keeps its
  parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so a state_dict loads
  across attention types in both directions.
* It is called exactly as open_clip calls ``nn.MultiheadAttention`` (``batch_first=True``):
  the vision tower passes no mask (non-causal LA); the text tower passes open_clip's additive
  causal mask (−inf above the diagonal), which selects causal LA. Any other mask is refused.
* The attention itself is :func:`linrepro.attention.linear_attention` (Triton on CUDA).
* ``released`` (:mod:`linrepro.clip.released`) is the first author's public open_clip code instead
  of the paper's equations: no projections (frozen), heads by plain reshape, q and k scaled by the
  largest norm, Eq. 7 with s = 1, and the text tower's causal mask ignored. It replaces the ``attn``
  of each open_clip ``ResidualAttentionBlock`` only.
* The model registry: the paper's ViT-S/B/L-16 (open_clip's own configs) and tiny CPU
  analogues ``tiny-XS``, ``tiny-S``, ``tiny-B``, ``tiny-L`` (JSON files in ``linrepro/model_configs``,
  registered with ``open_clip.add_model_config``). All four have one head width, 32, in both towers,
  so that a scaling fit over them changes width and depth only (non-embedding parameters from
  60k to 1.65M, a 27× span).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from linrepro.clip.released import RELEASED, ReleasedMultiheadAttention, parameter_counts  # noqa: F401

ATTENTIONS = ("softmax", "eq4", "eq7", RELEASED)
PAPER_MODELS = {"ViT-S-16": 64, "ViT-B-16": 16, "ViT-L-16": 4}  # name → the paper's global batch size
TINY_MODELS = ("tiny-XS", "tiny-S", "tiny-B", "tiny-L")
CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


def register_models() -> None:
    """Make linrepro's tiny configs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def model_names() -> list[str]:
    return list(PAPER_MODELS) + list(TINY_MODELS)


def _causal_mask_matches(mask: torch.Tensor, n: int) -> torch.Tensor:
    """A 0-d bool tensor: is ``mask`` (n, n) open_clip's causal mask (bool True, or -inf, above the
    diagonal; False or 0 on and below it)? Tensor ops only, so torch.compile traces it."""
    upper = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    if mask.dtype == torch.bool:  # True = masked out
        return (mask == upper).all()
    return torch.where(upper, torch.isneginf(mask), mask == 0).all()


def _is_causal_mask(mask: torch.Tensor, n: int) -> bool:
    if mask.shape[-2:] != (n, n):
        return False
    return bool(_causal_mask_matches(mask, n))


class LinearMultiheadAttention(nn.MultiheadAttention):
    """Drop-in for open_clip's ``nn.MultiheadAttention(batch_first=True)`` using affine LA."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        variant: str = "eq7",
        score_scale: float | str = 0.5,
        eps: float = 1e-6,
        backend: str = "auto",
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True, device=device, dtype=dtype)
        if variant not in ("eq4", "eq7"):
            raise ValueError(f"variant must be 'eq4' or 'eq7', got {variant!r}")
        from linrepro.attention import check_score_scale

        self.variant, self.eps, self.backend = variant, eps, backend
        self.score_scale = check_score_scale(score_scale)
        self._causal_checked: dict[tuple, bool] = {}

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, **kw) -> LinearMultiheadAttention:
        if not mha.batch_first:
            raise ValueError("only batch_first=True attention (open_clip's layout) can be swapped")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("only plain self-attention nn.MultiheadAttention can be swapped")
        p = mha.in_proj_weight
        new = cls(mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None, device=p.device, dtype=p.dtype, **kw)
        new.load_state_dict(mha.state_dict())
        return new

    def extra_repr(self) -> str:
        return f"{self.embed_dim}, heads={self.num_heads}, variant={self.variant}, s={self.score_scale}"

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
        from linrepro.attention import linear_attention

        if key_padding_mask is not None:
            raise NotImplementedError("LinearMultiheadAttention does not support key_padding_mask")
        if need_weights:
            raise NotImplementedError("linear attention forms no N×N weight matrix: use need_weights=False")
        if key is not None and key is not query or value is not None and value is not query:
            raise NotImplementedError("LinearMultiheadAttention is self-attention only (key = value = query)")
        b, n, e = query.shape
        causal = bool(is_causal)
        if attn_mask is not None and torch.compiler.is_compiling():
            # no Python bool of a tensor in a compiled graph: the same check, as an assertion op
            if attn_mask.shape[-2:] != (n, n):
                raise NotImplementedError("only a causal attention mask is supported by linear attention")
            torch._assert_async(
                _causal_mask_matches(attn_mask, n), "only a causal attention mask is supported by linear attention"
            )
            causal = True
        elif attn_mask is not None:
            key = (attn_mask.data_ptr(), tuple(attn_mask.shape), attn_mask.dtype, attn_mask._version)
            ok = self._causal_checked.get(key)
            if ok is None:  # open_clip passes the same mask buffer every call: check it once
                ok = _is_causal_mask(attn_mask, n)
                self._causal_checked[key] = ok
            if not ok:
                raise NotImplementedError("only a causal attention mask is supported by linear attention")
            causal = True
        h = self.num_heads
        qkv = nn.functional.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, h, e // h).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, Dh)
        o = linear_attention(
            q,
            k,
            v,
            variant=self.variant,
            causal=causal,
            score_scale=self.score_scale,
            eps=self.eps,
            backend=self.backend,
        )
        o = o.transpose(1, 2).reshape(b, n, e)
        return self.out_proj(o), None


def swap_attention(model: nn.Module, attention: str = "eq7", **kw) -> nn.Module:
    """Replace every self-attention ``nn.MultiheadAttention`` in ``model`` (in place); returns it."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if attention == "softmax":
        return model
    if attention == RELEASED:
        return _swap_released(model, eps=kw.get("eps", 1e-6))
    swaps = []
    for _name, mod in model.named_modules():
        for child_name, child in mod.named_children():
            if type(child) is nn.MultiheadAttention and child.batch_first and child._qkv_same_embed_dim:
                swaps.append((mod, child_name, child))
    if not swaps:
        raise ValueError("no nn.MultiheadAttention found to swap; is this an open_clip model?")
    for parent, child_name, child in swaps:
        setattr(parent, child_name, LinearMultiheadAttention.from_mha(child, variant=attention, **kw))
    return model


def _swap_released(model: nn.Module, eps: float = 1e-6) -> nn.Module:
    """The released code changes open_clip's ``ResidualAttentionBlock`` only (self-attention blocks;
    score_scale and backend do not apply: s = 1, one torch path). Projections are frozen."""
    from open_clip.transformer import ResidualAttentionBlock

    blocks = [m for m in model.modules() if isinstance(m, ResidualAttentionBlock)]
    swaps = [b for b in blocks if type(b.attn) is nn.MultiheadAttention and not hasattr(b, "ln_1_kv")]
    if not swaps:
        raise ValueError("no open_clip ResidualAttentionBlock with self-attention found to swap")
    for b in swaps:
        b.attn = ReleasedMultiheadAttention.from_mha(b.attn, eps=eps)
    return model


def attention_of(model: nn.Module) -> str:
    kinds = {
        m.variant for m in model.modules() if isinstance(m, (LinearMultiheadAttention, ReleasedMultiheadAttention))
    }
    return kinds.pop() if len(kinds) == 1 else ("softmax" if not kinds else "mixed")


class _RandomInitFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


class _quiet_random_init:
    """open_clip warns on every model built without pretrained weights; linrepro builds them on
    purpose (then loads its own checkpoints), so that one warning is dropped."""

    def __init__(self, kw: dict):
        self.active = not kw.get("pretrained")
        self.filter = _RandomInitFilter()

    def __enter__(self):
        if self.active:
            logging.getLogger().addFilter(self.filter)

    def __exit__(self, *exc):
        logging.getLogger().removeFilter(self.filter)


def create_model_and_transforms(
    name: str, attention: str = "softmax", *, score_scale: float | str = 0.5, backend: str = "auto", **kw
):
    """open_clip's ``create_model_and_transforms`` plus the swap: (model, preprocess_train, preprocess_val)."""
    import open_clip

    register_models()
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    known = open_clip.list_models()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        raise ValueError(f"unknown model {name!r}; linrepro's: {model_names()}; close matches: {close}")
    with _quiet_random_init(kw):
        model, pre_train, pre_val = open_clip.create_model_and_transforms(name, **kw)
    swap_attention(model, attention, score_scale=score_scale, backend=backend)
    return model, pre_train, pre_val


def create_model(name: str, attention: str = "softmax", **kw):
    """(model, preprocess, tokenizer) for ``name`` with the given attention."""
    import open_clip

    model, _, preprocess = create_model_and_transforms(name, attention, **kw)
    return model, preprocess, open_clip.get_tokenizer(name)
