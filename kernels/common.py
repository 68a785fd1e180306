"""Pieces shared by the non-causal and the causal kernels.

* ``@triton.jit`` helpers: the kernel prologue (program ids → head, split, row range,
  column ranges), per-head and per-state offsets, row-tile loads and stores, the L2
  normalisation x̂ = x / max(‖x‖, eps) and its backward, packed-state loads.
* ``_state_kernel``, the split-K pass both forms start from (forward state and backward
  state gradient), with its launcher ``_state``.
* Host helpers: row splits, ``_launch`` (retries with fewer stages / smaller blocks when a
  kernel needs more shared memory or registers than the GPU has), and ``_alloc`` /
  ``_alloc_like``, the one place host code allocates buffers (NaN-filled when
  ``LINREPRO_NAN_POISON=1``).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl

if TYPE_CHECKING:  # pragma: no cover
    from .autograd import _Cfg


# =========================================================================== jit helpers
@triton.jit
def _prologue(N, rows_per_split, vt, BD: tl.constexpr, BV: tl.constexpr, BLOCK: tl.constexpr):
    """Start of every kernel with grid (B·H, n_splits[, NVT]).

    Returns (bh, sp, row_lo, row_hi, nblk, cd, cv): head bh and split sp (int64, so every
    offset derived from them is int64), the rows [row_lo, row_hi) of split sp walked in
    nblk blocks of BLOCK rows, the head-dim columns cd = [0, BD) and the Dv columns
    cv = [vt·BV, (vt+1)·BV) of value tile vt (pass vt = 0 for a 2-D grid)."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK - 1) // BLOCK
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    return bh, sp, row_lo, row_hi, nblk, cd, cv


@triton.jit
def _head_off(bh, H, stride_b, stride_h):
    """Offset of head bh = b·H + h in a (B, H, ...) tensor (int64 because bh is)."""
    return (bh // H) * stride_b + (bh % H) * stride_h


@triton.jit
def _state_off(idx, D, DV):
    """Offset of packed state number ``idx`` ([S (D×Dv) | z (D) | y (Dv)] each)."""
    return idx * (D * DV + D + DV)


@triton.jit
def _load_rows(ptr, base, rows, row_hi, stride_n, cols, DIM):
    """Load a (len(rows), len(cols)) tile of rows < row_hi, cols < DIM as fp32 (zeros outside)."""
    mask = (rows[:, None] < row_hi) & (cols[None, :] < DIM)
    x = tl.load(ptr + base + rows[:, None] * stride_n + cols[None, :], mask=mask, other=0.0)
    return x.to(tl.float32)


@triton.jit
def _store_rows(ptr, base, rows, row_hi, stride_n, cols, DIM, val):
    mask = (rows[:, None] < row_hi) & (cols[None, :] < DIM)
    tl.store(ptr + base + rows[:, None] * stride_n + cols[None, :], val.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_vec(ptr, base, rows, row_hi):
    """One fp32 value per row (rows < row_hi; zeros outside), e.g. CROW / DDROW / GB."""
    return tl.load(ptr + base + rows, mask=rows < row_hi, other=0.0)


@triton.jit
def _store_vec(ptr, base, rows, row_hi, val):
    tl.store(ptr + base + rows, val, mask=rows < row_hi)


@triton.jit
def _row_norm(x):
    return tl.sqrt(tl.sum(x * x, axis=1))


@triton.jit
def _pow2_inv(m):
    """2⁻ᵉ for row maxima m ≥ 0 with 2ᵉ ≤ m < 2ᵉ⁺¹ (so m·2⁻ᵉ ∈ [1, 2)): an exact power of two read off
    m's exponent bits, kept within [2⁻¹²⁶, 2¹²⁶] so that it is a normal number (m = 0 gets 2¹²⁶, and
    0·2¹²⁶ = 0; a subnormal m lands in [2⁻²³, 1))."""
    e = (m.to(tl.int32, bitcast=True) >> 23) & 0xFF  # biased exponent of m
    e = tl.minimum(tl.maximum(e, 1), 253)
    return ((254 - e) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _l2n(x, eps):
    """(x̂, rs, sc): x̂ = x / max(‖x‖, eps) row-wise, without overflow or underflow.

    ‖x‖ is computed on xs = x·sc with sc = 2⁻ᵉ (``_pow2_inv`` of the row's max|x|), an exact scaling:
    rs = ‖xs‖ = ‖x‖·sc. Rows with ‖x‖ > eps (rs > eps·sc) get xs / rs (bit-identical to x / ‖x‖
    wherever ‖x‖² neither overflows nor underflows), the others x / eps. (rs, sc) are kept for
    ``_l2n_bwd``."""
    sc = _pow2_inv(tl.max(tl.abs(x), axis=1))
    xs = x * sc[:, None]
    rs = _row_norm(xs)
    big = rs > eps * sc
    xh = tl.where(big[:, None], xs / tl.where(big, rs, 1.0)[:, None], x / eps)
    return xh, rs, sc


@triton.jit
def _load_l2n(ptr, base, rows, row_hi, stride_n, cols, DIM, eps):
    """``_l2n`` of a row tile loaded by ``_load_rows``: (x̂, rs, sc). Padding rows (≥ row_hi) and
    columns (≥ DIM) of x̂ are exactly 0 whatever eps is (never 0/0), so they cannot reach valid rows."""
    x = _load_rows(ptr, base, rows, row_hi, stride_n, cols, DIM)
    xh, rs, sc = _l2n(x, eps)
    valid = (rows[:, None] < row_hi) & (cols[None, :] < DIM)
    return tl.where(valid, xh, 0.0), rs, sc


@triton.jit
def _l2n_bwd(xh, rs, sc, dxh, eps):
    """Gradient through x̂ = x / max(‖x‖, eps) given x̂, (rs, sc) from ``_l2n`` and ∂L/∂x̂:
    (∂L/∂x̂ − x̂ (x̂·∂L/∂x̂)) / ‖x‖ if ‖x‖ > eps, else ∂L/∂x̂ / eps (1/‖x‖ = sc / rs)."""
    proj = tl.sum(xh * dxh, axis=1)
    big = (dxh - xh * proj[:, None]) * sc[:, None] / tl.maximum(rs, eps * sc)[:, None]
    small = dxh / eps
    return tl.where((rs > eps * sc)[:, None], big, small)


@triton.jit
def _dot_in(a, b, acc, A, B, PREC: tl.constexpr, FP16: tl.constexpr = True):
    """``tl.dot(a, b, acc)`` (fp32 accumulation) of fp32 tiles a, b made from the rows of A and B
    (normalised rows, input values). Where A and B hold the same 16-bit type, the operands go to the
    tensor cores in that type: raw input values convert back exactly, a normalised x̂ (|x̂| ≤ 1) is
    rounded once (fp16 keeps tf32's 10 mantissa bits, bf16 7). Otherwise (fp32 inputs, or FP16 false
    for an operand that can leave fp16's range) they stay fp32 with ``PREC``."""
    ty = A.dtype.element_ty
    if (ty == B.dtype.element_ty) and ((ty == tl.bfloat16) or (FP16 and (ty == tl.float16))):
        return tl.dot(a.to(ty), b.to(ty), acc)
    else:
        return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def _load_state(P, off, cd, cv, D, DV):
    """Load the packed fp32 state [S (D×Dv) | z (D) | y (Dv)] at offset ``off``."""
    smask = (cd[:, None] < D) & (cv[None, :] < DV)
    s = tl.load(P + off + cd[:, None] * DV + cv[None, :], mask=smask, other=0.0)
    z = tl.load(P + off + D * DV + cd, mask=cd < D, other=0.0)
    y = tl.load(P + off + D * DV + D + cv, mask=cv < DV, other=0.0)
    return s, z, y


@triton.jit
def _load_z(P, off, cd, D, DV):
    """Only the z part of the packed state at offset ``off``."""
    return tl.load(P + off + D * DV + cd, mask=cd < D, other=0.0)


# =========================================================================== state (split-K)
@triton.jit
def _state_kernel(
    X,
    sxb,
    sxh,
    sxn,  # rows that get L2-normalised: k (forward) or q (backward)
    Y,
    syb,
    syh,
    syn,  # v (forward) or g (backward)
    CROW,
    DDROW,  # fp32 [BH, N] per-row y-multiplier (1/den) and z-weight (dd)
    PART,  # fp32 [BH, n_splits, D*DV + D + DV]
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    rows_per_split,
    n_splits,
    scale,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROW_C: tl.constexpr,
    Z_MODE: tl.constexpr,
    PREC: tl.constexpr,
):
    """PART[bh, p] = [scale·Σ x̂_i y_iᵀ | Σ w_i x̂_i | scale·Σ y_i] over the rows of split p.

    Program (bh, p, vt) owns Dv columns [vt·BV, (vt+1)·BV). y_i is multiplied by
    CROW[i] when ROW_C; Z_MODE 0: z not needed, 1: w_i = 1, 2: w_i = DDROW[i]."""
    vt = tl.program_id(2)
    bh, sp, row_lo, row_hi, nblk, cd, cv = _prologue(N, rows_per_split, vt, BD, BV, BLOCK_N)
    xbase = _head_off(bh, H, sxb, sxh)
    ybase = _head_off(bh, H, syb, syh)

    acc = tl.zeros((BD, BV), dtype=tl.float32)
    # column sums kept as 2-D (BLOCK_N, ·) register accumulators, reduced over rows once after the
    # loop: no cross-thread reduction (shuffles, barriers) inside the row loop
    zacc2 = tl.zeros((BLOCK_N, BD), dtype=tl.float32)
    yacc2 = tl.zeros((BLOCK_N, BV), dtype=tl.float32)
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        xh, _rs, _sc = _load_l2n(X, xbase, rows, row_hi, sxn, cd, D, eps)
        y = _load_rows(Y, ybase, rows, row_hi, syn, cv, DV)
        if ROW_C:
            y = y * _load_vec(CROW, bh * N, rows, row_hi)[:, None]
        # 16-bit inputs: fp16/bf16 operands (y converts back exactly unless ROW_C). Not fp16 with ROW_C:
        # y_i/den_i ≈ g_i/N is subnormal in fp16 for long sequences and overflows for rows near the
        # vanishing threshold (bf16 has fp32's range)
        acc = _dot_in(tl.trans(xh), y, acc, X, Y, PREC, not ROW_C)
        yacc2 += y
        if Z_MODE == 1:
            zacc2 += xh
        if Z_MODE == 2:
            w = _load_vec(DDROW, bh * N, rows, row_hi)
            zacc2 += xh * w[:, None]
    yacc = tl.sum(yacc2, axis=0)
    zacc = tl.sum(zacc2, axis=0)

    off = _state_off(bh * n_splits + sp, D, DV)
    smask = (cd[:, None] < D) & (cv[None, :] < DV)
    tl.store(PART + off + cd[:, None] * DV + cv[None, :], acc * scale, mask=smask)
    tl.store(PART + off + D * DV + cd, zacc, mask=(cd < D) & (vt == 0))
    tl.store(PART + off + D * DV + D + cv, yacc * scale, mask=cv < DV)


# =========================================================================== host helpers
_SM_COUNT: dict[int, int] = {}


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _sm_count(device: torch.device) -> int:
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def _pow2(x: int) -> int:
    return max(16, triton.next_power_of_2(int(x)))


def _split_rows(N: int, blk: int, bh: int, target: int, min_blocks: int):
    """Rows per split (a multiple of ``blk``) and split count so that bh·splits ≈ target."""
    nblocks = triton.cdiv(N, blk)
    want = max(1, triton.cdiv(target, bh))
    per_split = max(triton.cdiv(nblocks, want), min(min_blocks, nblocks))
    rows = per_split * blk
    return rows, triton.cdiv(N, rows)


def _nan_poison() -> bool:
    """``LINREPRO_NAN_POISON=1`` (read on every call): fill host-allocated buffers with NaN."""
    return os.environ.get("LINREPRO_NAN_POISON", "0") not in ("", "0")


def _alloc(shape, device, dtype) -> torch.Tensor:
    """``torch.empty`` for every output and scratch buffer of the kernels. With
    ``LINREPRO_NAN_POISON=1`` the buffer is filled with NaN, so rows no kernel writes show
    up as NaN instead of as whatever the caching allocator handed back (on a GPU often the
    previous call's correct values)."""
    t = torch.empty(shape, device=device, dtype=dtype)
    if _nan_poison() and t.is_floating_point():
        t.fill_(float("nan"))
    return t


def _alloc_like(t: torch.Tensor) -> torch.Tensor:
    """``_alloc`` with the shape, device and dtype of ``t`` (always a fresh contiguous buffer)."""
    return _alloc(t.shape, t.device, t.dtype)


try:
    from triton.runtime import errors as _triton_errors
except Exception:  # pragma: no cover - a triton without triton.runtime.errors
    _triton_errors = None


class _NeverRaised(Exception):
    """Stands in for an error class this triton does not have."""


# a launch that needs too much shared memory or too many registers raises one of these
_OutOfResources: type[Exception] = getattr(_triton_errors, "OutOfResources", _NeverRaised)
_PTXASError: type[Exception] = getattr(_triton_errors, "PTXASError", _NeverRaised)


_LAUNCH_CHOICE: dict = {}


def _launch(kernel, grid, args, meta: dict, block_key: str, num_warps: int, num_stages: int):
    """Launch ``kernel``; if it needs more shared memory (or registers) than the GPU has,
    retry with a single pipeline stage and then with halved row blocks (down to 16),
    remembering the choice that worked. Row ranges stay multiples of the block, so the
    result does not depend on the choice beyond fp32 rounding."""
    if _interpret():
        kernel[grid](*args, **meta)
        return
    block0 = meta[block_key]
    cands = [(num_stages, block0)]
    if num_stages > 1:
        cands.append((1, block0))
    b = block0 // 2
    while b >= 16:
        cands.append((1, b))
        b //= 2
    key = (id(kernel), tuple(sorted(meta.items())), num_warps, num_stages, torch.cuda.current_device())
    for i in range(_LAUNCH_CHOICE.get(key, 0), len(cands)):
        stages, blk = cands[i]
        m = dict(meta)
        m[block_key] = blk
        try:
            kernel[grid](*args, num_warps=num_warps, num_stages=stages, **m)
        except (_OutOfResources, _PTXASError):
            if i + 1 == len(cands):
                raise
            continue
        _LAUNCH_CHOICE[key] = i
        return


def _s4(t: torch.Tensor):
    """(t, stride_b, stride_h, stride_n) for a (B, H, N, X) tensor with unit last stride."""
    return t, t.stride(0), t.stride(1), t.stride(2)


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _device_guard(t: torch.Tensor):
    """Make ``t``'s GPU the current one while launching (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _state(cfg: _Cfg, x, y, crow, ddrow, scale, eps, row_c, z_mode, device):
    """fp32 [BH, n_splits, L] split-K partial states (see ``_state_kernel``)."""
    part = _alloc((cfg.BH, cfg.n_splits, cfg.L), device, torch.float32)
    _launch(
        _state_kernel,
        (cfg.BH, cfg.n_splits, cfg.NVT),
        (
            *_s4(x),
            *_s4(y),
            crow if crow is not None else part,
            ddrow if ddrow is not None else part,
            part,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.rows_per_split,
            cfg.n_splits,
            float(scale),
            float(eps),
        ),
        cfg.meta(BLOCK_N=cfg.block_n, ROW_C=row_c, Z_MODE=z_mode),
        "BLOCK_N",
        cfg.num_warps,
        3,
    )
    return part


def _grad_buffers(cfg: _Cfg, q, k, v, state, eq4: bool):
    """dq, dk, dv (input dtypes) and, for eq4, the fp32 [BH, N] per-row 1/den (crow) and dd
    (ddrow) written by the dq pass; for eq7 those two are unused placeholders (``state``)."""
    dq, dk, dv = _alloc_like(q), _alloc_like(k), _alloc_like(v)
    if eq4:
        crow = _alloc((cfg.BH, cfg.N), q.device, torch.float32)
        ddrow = _alloc((cfg.BH, cfg.N), q.device, torch.float32)
    else:
        crow = ddrow = state
    return dq, dk, dv, crow, ddrow
