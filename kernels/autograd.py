"""Per-call launch configuration (``_Cfg``), the ``torch.autograd.Function`` and the public
``linear_attention_triton``. The kernels and their launchers live in ``noncausal.py`` and
``causal.py``; the math is documented in the package docstring (``kernels/__init__.py``).

``_Cfg`` and its tile caps sit here, next to the entry point, because the tests force the
Dv-tiled path by patching ``_MAX_TILE_AREA`` on the module of ``linear_attention_triton``.
"""

from __future__ import annotations

import math
import numbers

import torch
import triton

from .causal import _c_backward, _c_forward
from .common import _device_guard, _interpret, _pow2, _sm_count, _split_rows, _unit_last
from .noncausal import _nc_backward, _nc_forward

__all__ = ["linear_attention_triton"]

# Largest fp32 state tile (BD × BV elements) one program keeps in registers. Wider Dv is
# split into NVT = cdiv(Dv, BV) tiles. 128×128 compiles cleanly for sm_90 with tf32 dots
# (fp16/bf16 inputs); 256×256 runs out of registers. fp32 inputs use tf32x3 dots, whose
# operand splitting triples shared memory and registers, hence the smaller cap.
_MAX_TILE_AREA = 128 * 128
_MAX_TILE_AREA_FP32 = 64 * 64


class _Cfg:
    """Block sizes, split sizes and compile flags for one call."""

    def __init__(self, q: torch.Tensor, v: torch.Tensor, causal: bool):
        B, H, N, D = q.shape
        DV = v.shape[-1]
        self.B, self.H, self.N, self.D, self.DV = B, H, N, D, DV
        self.BH = B * H
        self.BD, BDV = _pow2(D), _pow2(DV)
        cap = _MAX_TILE_AREA if q.dtype in (torch.float16, torch.bfloat16) else min(_MAX_TILE_AREA, _MAX_TILE_AREA_FP32)
        self.BV = min(BDV, max(16, cap // self.BD))
        self.NVT = triton.cdiv(DV, self.BV)
        on_gpu = q.device.type == "cuda" and not _interpret()
        if on_gpu:
            # Picked from sm_90 AOT compiles (ptxas register/spill reports): 8 warps with
            # 32-row blocks (16-row chunks when causal) keep D, Dv ≤ 128 at ≤ 255 registers
            # with no or little spilling, for tf32 and tf32x3 dots alike.
            self.block_n = 32
            self.block_c = 16
            self.num_warps = 8 if self.BD * self.BV > 32 * 32 else 4
            self.num_warps_c = self.num_warps
            sms = _sm_count(q.device)
            target = 8 * sms  # programs of a split-K / causal pass (× NVT)
            target_rows = 16 * sms  # programs of a non-causal row pass (stateless, finer)
            min_blocks = 4
        else:  # interpreter: small blocks, several splits to exercise them
            self.block_n = 16
            self.block_c = 16
            self.num_warps = self.num_warps_c = 4
            target = 3 * self.BH
            target_rows = 2 * self.BH
            min_blocks = 1
        blk = max(self.block_n, self.block_c) if causal else self.block_n
        # split-K passes (and every causal pass: they share the per-split prefix states)
        self.rows_per_split, self.n_splits = _split_rows(N, blk, self.BH, target, min_blocks)
        # non-causal output / dq / dk-dv passes
        self.row_rows, self.row_splits = _split_rows(N, self.block_n, self.BH, target_rows, min_blocks)
        self.L = D * DV + D + DV
        if getattr(torch.version, "hip", None):
            self.prec = "ieee"
        elif q.dtype == torch.float32:
            self.prec = "tf32x3"  # ~fp32-accurate on tensor cores; "ieee" FMA dots spill badly
        else:
            # fp16/bf16 inputs: products with the state (S can exceed the fp16 range) or derived fp32
            # tiles keep fp32 operands; row·value products use 16-bit ones (common._dot_in)
            self.prec = "tf32"

    def meta(self, **kw):
        d = dict(BD=self.BD, BV=self.BV, NVT=self.NVT, PREC=self.prec)
        d.update(kw)
        return d


def _state_shape(cfg: _Cfg, causal: bool) -> tuple[int, ...]:
    """The fp32 state the forward saves for the backward: reduced [BH, L] (non-causal) or the
    per-split exclusive prefix states [BH, n_splits, L] (causal)."""
    return (cfg.BH, cfg.n_splits, cfg.L) if causal else (cfg.BH, cfg.L)


# The kernels are registered as torch.library custom ops (with fake-tensor implementations and
# autograd), so that torch.compile traces a model through them without a graph break.
@torch.library.custom_op("linrepro::affine_la_fwd", mutates_args=())
def affine_la_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eq4: bool, causal: bool, score_scale: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, state): the Triton forward of eq4/eq7 (inputs validated by ``linear_attention_triton``)."""
    with _device_guard(q):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        cfg = _Cfg(q, v, causal)
        run = _c_forward if causal else _nc_forward
        return run(cfg, q, k, v, eq4, float(score_scale), float(eps))


@affine_la_fwd.register_fake
def _affine_la_fwd_fake(q, k, v, eq4, causal, score_scale, eps):
    cfg = _Cfg(q, v, causal)
    o = q.new_empty(q.shape[:-1] + (cfg.DV,))
    return o, q.new_empty(_state_shape(cfg, causal), dtype=torch.float32)


@torch.library.custom_op("linrepro::affine_la_bwd", mutates_args=())
def affine_la_bwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    state: torch.Tensor,
    eq4: bool,
    causal: bool,
    score_scale: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv): the Triton backward, from the forward's saved fp32 state."""
    with _device_guard(g):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        cfg = _Cfg(q, v, causal)
        run = _c_backward if causal else _nc_backward
        return run(cfg, q, k, v, _unit_last(g), state, eq4, float(score_scale), float(eps))


@affine_la_bwd.register_fake
def _affine_la_bwd_fake(q, k, v, g, state, eq4, causal, score_scale, eps):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, eq4, causal, score_scale, eps = inputs
    ctx.save_for_backward(q, k, v, output[1])
    ctx.args = (eq4, causal, score_scale, eps)


def _backward(ctx, g, _g_state):
    q, k, v, state = ctx.saved_tensors
    dq, dk, dv = affine_la_bwd(q, k, v, g, state, *ctx.args)
    return dq, dk, dv, None, None, None, None


affine_la_fwd.register_autograd(_backward, setup_context=_setup_context)


def linear_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    variant: str = "eq7",
    causal: bool = False,
    score_scale: float = 0.5,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Affine linear attention (eq4 / eq7, causal or not) with Triton kernels; differentiable in q, k, v.

    q, k: (B, H, N, D); v: (B, H, N, Dv); one device and a float32, float16 or bfloat16
    dtype (validated by ``linrepro.attention.linear_attention``; float64 raises a
    ``TypeError``: the kernels compute in fp32). The output has the input dtype; all
    accumulation is fp32. Tensors whose last dim is not unit-stride are copied; other
    strided layouts (e.g. a (B, N, H, D) tensor viewed as (B, H, N, D)) are used in place.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dtype == torch.float64:
            raise TypeError(
                f"the Triton backend does not support {t.dtype} ({name} is {t.dtype}): its kernels compute "
                "in float32, so the result would silently lose float64 precision. Use backend='torch' or "
                "backend='reference' for float64 inputs, or cast to float32."
            )
    if variant not in ("eq4", "eq7"):
        raise ValueError(f"unknown variant {variant!r}; expected 'eq4' or 'eq7'")
    # (linrepro.attention.check_eps, which this layer cannot import: attention imports the kernels)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if q.shape[2] == 0:
        # empty sequence: nothing to launch; keep the graph connected for autograd
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + v.sum())
    return affine_la_fwd(q, k, v, variant == "eq4", bool(causal), float(score_scale), float(eps))[0]
