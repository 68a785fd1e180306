r"""Triton kernels for affine linear attention (paper Eq. 4 and Eq. 7).

Forward math (identical to ``linrepro.attention``)
---------------------------------------------------
q, k: (B, H, N, D); v: (B, H, N, Dv).  q̂ = q / max(‖q‖₂, eps), k̂ likewise (per row).

Non-causal, with S = Σ_j k̂_j v_jᵀ (D×Dv), vsum = Σ_j v_j, z = Σ_j k̂_j and
a_i = vsum + Sᵀ q̂_i (the "numerator"):

* eq7:  o_i = s · a_i
* eq4:  o_i = a_i / max(d_i, eps),   d_i = N + q̂_i·z

Causal: every sum runs over j ≤ i and N becomes the 1-based count i+1.

Backward derivation
-------------------
Let g_i = ∂L/∂o_i.

eq7.  o_i = s (vsum + Sᵀq̂_i) is linear in (vsum, S, q̂_i), so
    ∂L/∂q̂_i  = s S g_i
    ∂L/∂S    = s Σ_i q̂_i g_iᵀ      =: dS
    ∂L/∂vsum = s Σ_i g_i           =: dvsum
and, since S = Σ_j k̂_j v_jᵀ and vsum = Σ_j v_j,
    ∂L/∂v_j = dvsum + dSᵀ k̂_j,     ∂L/∂k̂_j = dS v_j.

eq4.  o_i = a_i / d_i with a_i = vsum + Sᵀq̂_i, d_i = N + q̂_i·z (d_i ≥ eps; if
d_i < eps the clamp makes the denominator the constant eps, so its gradient is 0).
    dn_i := ∂L/∂a_i = g_i / d_i
    dd_i := ∂L/∂d_i = −(g_i·a_i)/d_i² = −(g_i·o_i)/d_i           (0 when clamped)
    ∂L/∂q̂_i = S dn_i + dd_i z
    dS    = Σ_i q̂_i dn_iᵀ,  dvsum = Σ_i dn_i,  dz = Σ_i dd_i q̂_i
    ∂L/∂v_j = dvsum + dSᵀ k̂_j,  ∂L/∂k̂_j = dS v_j + dz.
eq7 is the special case dn_i = s g_i, dd_i = 0, so both variants share one set of
kernels driven by (dn_i, dd_i).  In the kernels g_i·a_i is formed as
g_i·vsum + q̂_i·(S g_i), re-using u_i = S g_i which ∂L/∂q̂_i needs anyway, so the
output o is never re-read or recomputed.

Causal.  Row i sees the prefix state S_i = Σ_{j≤i} k̂_j v_jᵀ (and vsum_i, z_i, count
i+1), so ∂L/∂q̂_i uses the prefix states, while the state gradients become suffix
sums: dS_j = Σ_{i≥j} q̂_i dn_iᵀ, dvsum_j = Σ_{i≥j} dn_i, dz_j = Σ_{i≥j} dd_i q̂_i and
    ∂L/∂v_j = dvsum_j + dS_jᵀ k̂_j,   ∂L/∂k̂_j = dS_j v_j + dz_j.

L2 normalisation backward.  x̂ = x / max(r, eps), r = ‖x‖: if r > eps,
∂L/∂x = (∂L/∂x̂ − x̂ (x̂·∂L/∂x̂)) / r, else ∂L/∂x = ∂L/∂x̂ / eps.  This is fused into
the dq and dk kernels; the normalisation of q and k in the forward is fused into
every kernel that reads them (no normalised copy is ever written).

Kernel design
-------------
Every kernel has grid (B·H, n_splits[, NVT]): program (bh, p) owns the contiguous row
range [p·R, min((p+1)·R, N)) of one head and loops over it in blocks (R is a multiple
of the block).  For the split-K state passes and the causal passes n_splits is chosen
so that B·H·n_splits ≈ 8 × SM count on CUDA (each split at least 4 blocks; 3 splits
under the interpreter so that the split logic is exercised): B·H = 32, N = 4M on an
H200 gives 33 splits, 1056 programs.  The stateless non-causal row passes use their
own, finer split (≈ 16 × SM programs).
Wide value heads are cut into NVT register tiles of BV columns so that one fp32 state
tile is at most 128×128 for fp16/bf16 inputs (e.g. D = Dv = 256 → BV = 64, NVT = 4) and
64×64 for fp32 inputs (D = Dv = 128 → BV = 32, NVT = 4).

* ``_state_kernel`` (split-K): fp32 partial [S | z | vsum] of one row range, written
  to a [BH, n_splits, D·Dv + D + Dv] buffer.  Used for the forward state
  (x = k̂, y = v) and for the backward state gradient (x = q̂, y = dn, z-weights dd).
* Non-causal: partials are reduced with ``torch.sum`` over the split dim
  (deterministic, no atomics), then ``_nc_out_kernel`` / ``_nc_dq_kernel`` /
  ``_nc_dkv_kernel`` stream rows with the reduced state held in registers.
* Causal: ``_scan_splits_kernel`` turns the partials into exclusive prefix (forward)
  or suffix (backward) states per split, sequentially and therefore
  deterministically.  ``_c_fwd_kernel`` / ``_c_dq_kernel`` then walk their row range
  chunk by chunk (chunk C = 16 on CUDA): the intra-chunk part is a masked C×C
  matrix, the inter-chunk part goes through the running state carried in registers.
  ``_c_dkv_kernel`` walks the chunks in reverse with the running suffix state.
  When Dv is tiled (NVT > 1) dq and dk need sums over all Dv tiles, so
  ``_c_dq_part_kernel`` / ``_c_dkv_kernel`` write per-tile fp32 partials
  ([NVT, BH, N, D]) that ``_c_dq_kernel`` / ``_c_dk_fin_kernel`` add up (no atomics).
* All arithmetic is fp32.  Dots use ``input_precision="tf32x3"`` for fp32 inputs
  (≈ fp32 accuracy on tensor cores; "ieee" FMA dots spill registers heavily) and
  "tf32" for fp16/bf16 inputs, whose operands stay fp32 because the state S can
  exceed the fp16 range for long sequences ("ieee" on ROCm and for fp64).  Head dims
  are padded to powers of two ≥ 16 with masks; offsets are int64.
* ``_launch`` retries a launch with one pipeline stage and then smaller row blocks
  if the compiled kernel needs more shared memory (or registers) than the GPU has.
"""
from __future__ import annotations

import contextlib
import os

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

__all__ = ["linear_attention_triton"]


# =========================================================================== helpers
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
def _row_norm(x):
    return tl.sqrt(tl.sum(x * x, axis=1))


@triton.jit
def _l2n_bwd(xh, r, dxh, eps):
    """Gradient through x̂ = x / max(‖x‖, eps) given x̂, r = ‖x‖ and ∂L/∂x̂."""
    proj = tl.sum(xh * dxh, axis=1)
    big = (dxh - xh * proj[:, None]) / tl.maximum(r, eps)[:, None]
    small = dxh / eps
    return tl.where((r > eps)[:, None], big, small)


@triton.jit
def _load_state(P, off, cd, cv, D, DV):
    """Load the packed fp32 state [S (D×Dv) | z (D) | y (Dv)] at offset ``off``."""
    smask = (cd[:, None] < D) & (cv[None, :] < DV)
    s = tl.load(P + off + cd[:, None] * DV + cv[None, :], mask=smask, other=0.0)
    z = tl.load(P + off + D * DV + cd, mask=cd < D, other=0.0)
    y = tl.load(P + off + D * DV + D + cv, mask=cv < DV, other=0.0)
    return s, z, y


# =========================================================================== state (split-K)
@triton.jit
def _state_kernel(
    X, sxb, sxh, sxn,            # rows that get L2-normalised: k (forward) or q (backward)
    Y, syb, syh, syn,            # v (forward) or g (backward)
    CROW, DDROW,                 # fp32 [BH, N] per-row y-multiplier (1/den) and z-weight (dd)
    PART,                        # fp32 [BH, n_splits, D*DV + D + DV]
    H, N, D, DV, rows_per_split, n_splits, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_N: tl.constexpr,
    ROW_C: tl.constexpr, Z_MODE: tl.constexpr, PREC: tl.constexpr,
):
    """PART[bh, p] = [scale·Σ x̂_i y_iᵀ | Σ w_i x̂_i | scale·Σ y_i] over the rows of split p.

    Program (bh, p, vt) owns Dv columns [vt·BV, (vt+1)·BV). y_i is multiplied by
    CROW[i] when ROW_C; Z_MODE 0: z not needed, 1: w_i = 1, 2: w_i = DDROW[i]."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    vt = tl.program_id(2)
    b = bh // H
    h = bh % H
    xbase = b * sxb + h * sxh
    ybase = b * syb + h * syh
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_N - 1) // BLOCK_N

    acc = tl.zeros((BD, BV), dtype=tl.float32)
    zacc = tl.zeros((BD,), dtype=tl.float32)
    yacc = tl.zeros((BV,), dtype=tl.float32)
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        x = _load_rows(X, xbase, rows, row_hi, sxn, cd, D)
        xh = x / tl.maximum(_row_norm(x), eps)[:, None]
        y = _load_rows(Y, ybase, rows, row_hi, syn, cv, DV)
        if ROW_C:
            c = tl.load(CROW + bh * N + rows, mask=rows < row_hi, other=0.0)
            y = y * c[:, None]
        acc += tl.dot(tl.trans(xh), y, input_precision=PREC)
        yacc += tl.sum(y, axis=0)
        if Z_MODE == 1:
            zacc += tl.sum(xh, axis=0)
        if Z_MODE == 2:
            w = tl.load(DDROW + bh * N + rows, mask=rows < row_hi, other=0.0)
            zacc += tl.sum(xh * w[:, None], axis=0)

    off = (bh * n_splits + sp) * (D * DV + D + DV)
    smask = (cd[:, None] < D) & (cv[None, :] < DV)
    tl.store(PART + off + cd[:, None] * DV + cv[None, :], acc * scale, mask=smask)
    tl.store(PART + off + D * DV + cd, zacc, mask=(cd < D) & (vt == 0))
    tl.store(PART + off + D * DV + D + cv, yacc * scale, mask=cv < DV)


@triton.jit
def _scan_splits_kernel(PART, OUT, n_splits, L, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """OUT[bh, p] = Σ_{p' < p} PART[bh, p'] (REVERSE: Σ_{p' > p}), summed in a fixed order."""
    bh = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = cols < L
    base = bh * n_splits * L
    run = tl.zeros((BLOCK,), dtype=tl.float32)
    for t in range(0, n_splits):
        if REVERSE:
            p = n_splits - 1 - t
        else:
            p = t
        off = base + p * L
        tl.store(OUT + off + cols, run, mask=m)
        run += tl.load(PART + off + cols, mask=m, other=0.0)


# =========================================================================== non-causal row passes
@triton.jit
def _nc_out_kernel(
    Q, sqb, sqh, sqn, O, sob, soh, son, ST,
    H, N, D, DV, rows_per_split, n_f, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """o = s(vsum + Sᵀq̂) or (vsum + Sᵀq̂)/max(N + q̂·z, eps); program (bh, p, vt)."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    vt = tl.program_id(2)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    obase = b * sob + h * soh
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    s_mat, z, vs = _load_state(ST, bh * (D * DV + D + DV), cd, cv, D, DV)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_N - 1) // BLOCK_N
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
        qh = q / tl.maximum(_row_norm(q), eps)[:, None]
        num = vs[None, :] + tl.dot(qh, s_mat, input_precision=PREC)
        if EQ4:
            den = n_f + tl.sum(qh * z[None, :], axis=1)
            o = num / tl.maximum(den, eps)[:, None]
        else:
            o = num * scale
        _store_rows(O, obase, rows, row_hi, son, cv, DV, o)


@triton.jit
def _nc_dq_kernel(
    Q, sqb, sqh, sqn, G, sgb, sgh, sgn, DQ, sdb, sdh, sdn, ST, CROW, DDROW,
    H, N, D, DV, rows_per_split, n_f, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """dq (and, for eq4, the per-row 1/den and dd used by the state-gradient pass)."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    gbase = b * sgb + h * sgh
    dbase = b * sdb + h * sdh
    soff = bh * (D * DV + D + DV)
    cd = tl.arange(0, BD)
    cv0 = tl.arange(0, BV)
    if NVT == 1:
        s_mat, z, vs = _load_state(ST, soff, cd, cv0, D, DV)
    else:
        z = tl.load(ST + soff + D * DV + cd, mask=cd < D, other=0.0)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_N - 1) // BLOCK_N
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
        r = _row_norm(q)
        qh = q / tl.maximum(r, eps)[:, None]
        # u_i = S g_i and g_i·vsum, contracted over all Dv tiles
        if NVT == 1:
            g = _load_rows(G, gbase, rows, row_hi, sgn, cv0, DV)
            u = tl.dot(g, tl.trans(s_mat), input_precision=PREC)
            gvs = tl.sum(g * vs[None, :], axis=1)
        else:
            u = tl.zeros((BLOCK_N, BD), dtype=tl.float32)
            gvs = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for vt in range(NVT):
                cv = vt * BV + cv0
                s_t, _z, vs_t = _load_state(ST, soff, cd, cv, D, DV)
                g = _load_rows(G, gbase, rows, row_hi, sgn, cv, DV)
                u += tl.dot(g, tl.trans(s_t), input_precision=PREC)
                gvs += tl.sum(g * vs_t[None, :], axis=1)
        if EQ4:
            d = n_f + tl.sum(qh * z[None, :], axis=1)
            c = 1.0 / tl.maximum(d, eps)
            gnum = gvs + tl.sum(qh * u, axis=1)
            dd = tl.where(d >= eps, -gnum * c * c, 0.0)
            dqh = u * c[:, None] + dd[:, None] * z[None, :]
            rmask = rows < row_hi
            tl.store(CROW + bh * N + rows, c, mask=rmask)
            tl.store(DDROW + bh * N + rows, dd, mask=rmask)
        else:
            dqh = u * scale
        dq = _l2n_bwd(qh, r, dqh, eps)
        _store_rows(DQ, dbase, rows, row_hi, sdn, cd, D, dq)


@triton.jit
def _nc_dkv_kernel(
    K, skb, skh, skn, V, svb, svh, svn, DK, sdkb, sdkh, sdkn, DVO, sdvb, sdvh, sdvn, DST,
    H, N, D, DV, rows_per_split, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """dv_j = dvsum + dSᵀk̂_j, dk̂_j = dS v_j (+ dz), then dk through the normalisation."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    kbase = b * skb + h * skh
    vbase = b * svb + h * svh
    dkbase = b * sdkb + h * sdkh
    dvbase = b * sdvb + h * sdvh
    soff = bh * (D * DV + D + DV)
    cd = tl.arange(0, BD)
    cv0 = tl.arange(0, BV)
    if NVT == 1:
        ds_mat, dz, dvs = _load_state(DST, soff, cd, cv0, D, DV)
    else:
        dz = tl.load(DST + soff + D * DV + cd, mask=cd < D, other=0.0)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_N - 1) // BLOCK_N
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        r = _row_norm(k)
        kh = k / tl.maximum(r, eps)[:, None]
        if NVT == 1:
            v = _load_rows(V, vbase, rows, row_hi, svn, cv0, DV)
            dv = dvs[None, :] + tl.dot(kh, ds_mat, input_precision=PREC)
            _store_rows(DVO, dvbase, rows, row_hi, sdvn, cv0, DV, dv)
            dkh = tl.dot(v, tl.trans(ds_mat), input_precision=PREC)
        else:
            dkh = tl.zeros((BLOCK_N, BD), dtype=tl.float32)
            for vt in range(NVT):
                cv = vt * BV + cv0
                ds_t, _dz, dvs_t = _load_state(DST, soff, cd, cv, D, DV)
                v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
                dv = dvs_t[None, :] + tl.dot(kh, ds_t, input_precision=PREC)
                _store_rows(DVO, dvbase, rows, row_hi, sdvn, cv, DV, dv)
                dkh += tl.dot(v, tl.trans(ds_t), input_precision=PREC)
        if EQ4:
            dkh += dz[None, :]
        dk = _l2n_bwd(kh, r, dkh, eps)
        _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)


# =========================================================================== causal chunked passes
@triton.jit
def _c_fwd_kernel(
    Q, sqb, sqh, sqn, K, skb, skh, skn, V, svb, svh, svn, O, sob, soh, son, PRE,
    H, N, D, DV, rows_per_split, n_splits, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """Causal output; program (bh, p, vt) walks the chunks of split p for Dv tile vt."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    vt = tl.program_id(2)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    kbase = b * skb + h * skh
    vbase = b * svb + h * svh
    obase = b * sob + h * soh
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    ii = tl.arange(0, BLOCK_C)
    causal = ii[:, None] >= ii[None, :]
    # running prefix state of all rows before this split
    s_run, z_run, vs_run = _load_state(PRE, (bh * n_splits + sp) * (D * DV + D + DV), cd, cv, D, DV)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_C - 1) // BLOCK_C
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
        qh = q / tl.maximum(_row_norm(q), eps)[:, None]
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        kh = k / tl.maximum(_row_norm(k), eps)[:, None]
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        a = tl.dot(qh, tl.trans(kh), input_precision=PREC)
        w = tl.where(causal, 1.0 + a, 0.0)                       # intra-chunk weights 1 + q̂·k̂
        num = vs_run[None, :] + tl.dot(qh, s_run, input_precision=PREC) + tl.dot(w, v, input_precision=PREC)
        if EQ4:
            # count before the chunk + q̂·z_run + Σ_{j≤i in chunk}(1 + q̂_i·k̂_j)
            den = start.to(tl.float32) + tl.sum(qh * z_run[None, :], axis=1) + tl.sum(w, axis=1)
            o = num / tl.maximum(den, eps)[:, None]
            z_run += tl.sum(kh, axis=0)
        else:
            o = num * scale
        _store_rows(O, obase, rows, row_hi, son, cv, DV, o)
        s_run += tl.dot(tl.trans(kh), v, input_precision=PREC)
        vs_run += tl.sum(v, axis=0)


@triton.jit
def _c_dq_part_kernel(
    K, skb, skh, skn, V, svb, svh, svn, G, sgb, sgh, sgn, PRE, UB, GB,
    H, N, D, DV, BH, rows_per_split, n_splits, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """Only when Dv is tiled: per Dv tile vt, u_i^vt = S_i[:, vt] g_i[vt] → UB[vt] and
    g_i[vt]·vsum_i[vt] → GB[vt] (fp32 [NVT, BH, N, D] / [NVT, BH, N]); ``_c_dq_kernel`` sums them."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    vt = tl.program_id(2)
    b = bh // H
    h = bh % H
    kbase = b * skb + h * skh
    vbase = b * svb + h * svh
    gbase = b * sgb + h * sgh
    ubase = (vt * BH + bh) * N
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    ii = tl.arange(0, BLOCK_C)
    causal = ii[:, None] >= ii[None, :]
    s_run, _z, vs_run = _load_state(PRE, (bh * n_splits + sp) * (D * DV + D + DV), cd, cv, D, DV)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_C - 1) // BLOCK_C
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        kh = k / tl.maximum(_row_norm(k), eps)[:, None]
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        g = _load_rows(G, gbase, rows, row_hi, sgn, cv, DV)
        gv = tl.where(causal, tl.dot(g, tl.trans(v), input_precision=PREC), 0.0)
        u = tl.dot(g, tl.trans(s_run), input_precision=PREC) + tl.dot(gv, kh, input_precision=PREC)
        _store_rows(UB, ubase * D, rows, row_hi, D, cd, D, u)
        if EQ4:
            gvs = tl.sum(g * vs_run[None, :], axis=1) + tl.sum(gv, axis=1)
            tl.store(GB + ubase + rows, gvs, mask=rows < row_hi)
            vs_run += tl.sum(v, axis=0)
        s_run += tl.dot(tl.trans(kh), v, input_precision=PREC)


@triton.jit
def _c_dq_kernel(
    Q, sqb, sqh, sqn, K, skb, skh, skn, V, svb, svh, svn, G, sgb, sgh, sgn,
    DQ, sdb, sdh, sdn, PRE, CROW, DDROW, UB, GB,
    H, N, D, DV, BH, rows_per_split, n_splits, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """Causal dq (and, for eq4, per-row 1/den and dd). With NVT == 1 the prefix state
    lives in registers; otherwise u and g·vsum come from ``_c_dq_part_kernel``."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    kbase = b * skb + h * skh
    vbase = b * svb + h * svh
    gbase = b * sgb + h * sgh
    dbase = b * sdb + h * sdh
    soff = (bh * n_splits + sp) * (D * DV + D + DV)
    cd = tl.arange(0, BD)
    cv0 = tl.arange(0, BV)
    ii = tl.arange(0, BLOCK_C)
    causal = ii[:, None] >= ii[None, :]
    causal_f = tl.where(causal, 1.0, 0.0)
    if NVT == 1:
        s_run, z_run, vs_run = _load_state(PRE, soff, cd, cv0, D, DV)
    else:
        z_run = tl.load(PRE + soff + D * DV + cd, mask=cd < D, other=0.0)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_C - 1) // BLOCK_C
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
        r = _row_norm(q)
        qh = q / tl.maximum(r, eps)[:, None]
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        kh = k / tl.maximum(_row_norm(k), eps)[:, None]
        if NVT == 1:
            v = _load_rows(V, vbase, rows, row_hi, svn, cv0, DV)
            g = _load_rows(G, gbase, rows, row_hi, sgn, cv0, DV)
            gv = tl.where(causal, tl.dot(g, tl.trans(v), input_precision=PREC), 0.0)   # g_i·v_j, j ≤ i
            # u_i = S_i g_i = S_run g_i + Σ_{j≤i in chunk} (g_i·v_j) k̂_j
            u = tl.dot(g, tl.trans(s_run), input_precision=PREC) + tl.dot(gv, kh, input_precision=PREC)
            gvs = tl.sum(g * vs_run[None, :], axis=1) + tl.sum(gv, axis=1)               # g_i·vsum_i
        else:
            u = tl.zeros((BLOCK_C, BD), dtype=tl.float32)
            gvs = tl.zeros((BLOCK_C,), dtype=tl.float32)
            for vt in range(NVT):
                ubase = (vt * BH + bh) * N
                u += _load_rows(UB, ubase * D, rows, row_hi, D, cd, D)
                if EQ4:
                    gvs += tl.load(GB + ubase + rows, mask=rows < row_hi, other=0.0)
        if EQ4:
            a = tl.where(causal, tl.dot(qh, tl.trans(kh), input_precision=PREC), 0.0)
            cnt = (start + ii + 1).to(tl.float32)
            d = cnt + tl.sum(qh * z_run[None, :], axis=1) + tl.sum(a, axis=1)
            c = 1.0 / tl.maximum(d, eps)
            gnum = gvs + tl.sum(qh * u, axis=1)
            dd = tl.where(d >= eps, -gnum * c * c, 0.0)
            z_i = z_run[None, :] + tl.dot(causal_f, kh, input_precision=PREC)       # prefix z at row i
            dqh = u * c[:, None] + dd[:, None] * z_i
            rmask = rows < row_hi
            tl.store(CROW + bh * N + rows, c, mask=rmask)
            tl.store(DDROW + bh * N + rows, dd, mask=rmask)
            z_run += tl.sum(kh, axis=0)
        else:
            dqh = u * scale
        dq = _l2n_bwd(qh, r, dqh, eps)
        _store_rows(DQ, dbase, rows, row_hi, sdn, cd, D, dq)
        if NVT == 1:
            s_run += tl.dot(tl.trans(kh), v, input_precision=PREC)
            vs_run += tl.sum(v, axis=0)


@triton.jit
def _c_dkv_kernel(
    Q, sqb, sqh, sqn, K, skb, skh, skn, V, svb, svh, svn, G, sgb, sgh, sgn,
    DK, sdkb, sdkh, sdkn, DVO, sdvb, sdvh, sdvn, SUF, CROW, DDROW, DKP,
    H, N, D, DV, BH, rows_per_split, n_splits, scale, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """Causal dv and dk by the reverse (suffix) recurrence; program (bh, p, vt).

    With NVT == 1 dk is finished here. Otherwise this writes the Dv-tile part of dk̂
    (without the dz term) to DKP[vt] (fp32 [NVT, BH, N, D]) for ``_c_dk_fin_kernel``."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    vt = tl.program_id(2)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    kbase = b * skb + h * skh
    vbase = b * svb + h * svh
    gbase = b * sgb + h * sgh
    dkbase = b * sdkb + h * sdkh
    dvbase = b * sdvb + h * sdvh
    cd = tl.arange(0, BD)
    cv = vt * BV + tl.arange(0, BV)
    ii = tl.arange(0, BLOCK_C)
    causal = ii[:, None] >= ii[None, :]                 # [i, j]: i ≥ j
    # running suffix state of all rows after this split: dS, dz, dvsum
    ds_run, dz_run, dvs_run = _load_state(SUF, (bh * n_splits + sp) * (D * DV + D + DV), cd, cv, D, DV)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_C - 1) // BLOCK_C
    for t in range(0, nblk):
        start = row_lo + (nblk - 1 - t) * BLOCK_C
        rows = start + ii
        rmask = rows < row_hi
        q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
        qh = q / tl.maximum(_row_norm(q), eps)[:, None]
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        r = _row_norm(k)
        kh = k / tl.maximum(r, eps)[:, None]
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        g = _load_rows(G, gbase, rows, row_hi, sgn, cv, DV)
        if EQ4:
            c = tl.load(CROW + bh * N + rows, mask=rmask, other=0.0)
            dn = g * c[:, None]
        else:
            dn = g * scale
        p = tl.dot(qh, tl.trans(kh), input_precision=PREC)                  # [i, j] = q̂_i·k̂_j
        w = tl.where(causal, 1.0 + p, 0.0)
        # dv_j = dvsum_run + dS_runᵀ k̂_j + Σ_{i≥j in chunk} (1 + q̂_i·k̂_j) dn_i
        dv = dvs_run[None, :] + tl.dot(kh, ds_run, input_precision=PREC) \
            + tl.dot(tl.trans(w), dn, input_precision=PREC)
        _store_rows(DVO, dvbase, rows, row_hi, sdvn, cv, DV, dv)
        # dk̂_j = dS_run v_j + Σ_{i≥j in chunk} (dn_i·v_j) q̂_i  [+ dz_j = dz_run + Σ_{i≥j in chunk} dd_i q̂_i]
        dnv = tl.dot(dn, tl.trans(v), input_precision=PREC)
        if NVT == 1:
            if EQ4:
                dd = tl.load(DDROW + bh * N + rows, mask=rmask, other=0.0)
                w2 = tl.where(causal, dnv + dd[:, None], 0.0)
            else:
                w2 = tl.where(causal, dnv, 0.0)
        else:
            w2 = tl.where(causal, dnv, 0.0)
        dkh = tl.dot(v, tl.trans(ds_run), input_precision=PREC) + tl.dot(tl.trans(w2), qh, input_precision=PREC)
        if NVT == 1:
            if EQ4:
                dkh += dz_run[None, :]
                dz_run += tl.sum(qh * dd[:, None], axis=0)
            dk = _l2n_bwd(kh, r, dkh, eps)
            _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)
        else:
            _store_rows(DKP, (vt * BH + bh) * N * D, rows, row_hi, D, cd, D, dkh)
        ds_run += tl.dot(tl.trans(qh), dn, input_precision=PREC)
        dvs_run += tl.sum(dn, axis=0)


@triton.jit
def _c_dk_fin_kernel(
    Q, sqb, sqh, sqn, K, skb, skh, skn, DK, sdkb, sdkh, sdkn, SUF, DDROW, DKP,
    H, N, D, DV, BH, rows_per_split, n_splits, eps,
    BD: tl.constexpr, BV: tl.constexpr, NVT: tl.constexpr, BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr, PREC: tl.constexpr,
):
    """Only when Dv is tiled: dk̂ = Σ_vt DKP[vt] (+ suffix dz for eq4), then dk."""
    bh = tl.program_id(0).to(tl.int64)
    sp = tl.program_id(1).to(tl.int64)
    b = bh // H
    h = bh % H
    qbase = b * sqb + h * sqh
    kbase = b * skb + h * skh
    dkbase = b * sdkb + h * sdkh
    cd = tl.arange(0, BD)
    ii = tl.arange(0, BLOCK_C)
    causal_f = tl.where(ii[:, None] >= ii[None, :], 1.0, 0.0)
    soff = (bh * n_splits + sp) * (D * DV + D + DV)
    dz_run = tl.load(SUF + soff + D * DV + cd, mask=cd < D, other=0.0)
    row_lo = sp * rows_per_split
    row_hi = tl.minimum(row_lo + rows_per_split, N)
    nblk = (row_hi - row_lo + BLOCK_C - 1) // BLOCK_C
    for t in range(0, nblk):
        start = row_lo + (nblk - 1 - t) * BLOCK_C
        rows = start + ii
        k = _load_rows(K, kbase, rows, row_hi, skn, cd, D)
        r = _row_norm(k)
        kh = k / tl.maximum(r, eps)[:, None]
        dkh = tl.zeros((BLOCK_C, BD), dtype=tl.float32)
        for vt in range(NVT):
            dkh += _load_rows(DKP, (vt * BH + bh) * N * D, rows, row_hi, D, cd, D)
        if EQ4:
            q = _load_rows(Q, qbase, rows, row_hi, sqn, cd, D)
            qh = q / tl.maximum(_row_norm(q), eps)[:, None]
            dd = tl.load(DDROW + bh * N + rows, mask=rows < row_hi, other=0.0)
            w3 = causal_f * dd[:, None]                                    # [i, j] = dd_i for i ≥ j
            dkh += dz_run[None, :] + tl.dot(tl.trans(w3), qh, input_precision=PREC)
            dz_run += tl.sum(qh * dd[:, None], axis=0)
        dk = _l2n_bwd(kh, r, dkh, eps)
        _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)


# =========================================================================== launch config
_SM_COUNT: dict[int, int] = {}

# Largest fp32 state tile (BD × BV elements) one program keeps in registers. Wider Dv is
# split into NVT = cdiv(Dv, BV) tiles. 128×128 compiles cleanly for sm_90 with tf32 dots
# (fp16/bf16 inputs); 256×256 runs out of registers. fp32 inputs use tf32x3 dots, whose
# operand splitting triples shared memory and registers, hence the smaller cap.
_MAX_TILE_AREA = 128 * 128
_MAX_TILE_AREA_FP32 = 64 * 64


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
            target = 8 * sms                # programs of a split-K / causal pass (× NVT)
            target_rows = 16 * sms          # programs of a non-causal row pass (stateless, finer)
            min_blocks = 4
        else:                                          # interpreter: small blocks, several splits to exercise them
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
        if getattr(torch.version, "hip", None) or q.dtype == torch.float64:
            self.prec = "ieee"
        elif q.dtype == torch.float32:
            self.prec = "tf32x3"        # ~fp32-accurate on tensor cores; "ieee" FMA dots spill badly
        else:
            self.prec = "tf32"          # fp16/bf16 inputs: operands stay fp32 (S can exceed the fp16 range)

    def meta(self, **kw):
        d = dict(BD=self.BD, BV=self.BV, NVT=self.NVT, PREC=self.prec)
        d.update(kw)
        return d


try:
    from triton.runtime.errors import OutOfResources as _OutOfResources
except Exception:  # pragma: no cover - very old triton
    class _OutOfResources(Exception):
        pass
try:
    from triton.runtime.errors import PTXASError as _PTXASError
except Exception:  # pragma: no cover - triton without a PTXASError class
    class _PTXASError(Exception):
        pass

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


def _state(cfg: _Cfg, x, y, crow, ddrow, scale, eps, row_c, z_mode, device):
    part = torch.empty((cfg.BH, cfg.n_splits, cfg.L), device=device, dtype=torch.float32)
    _launch(_state_kernel, (cfg.BH, cfg.n_splits, cfg.NVT), (
        *_s4(x), *_s4(y), crow if crow is not None else part, ddrow if ddrow is not None else part, part,
        cfg.H, cfg.N, cfg.D, cfg.DV, cfg.rows_per_split, cfg.n_splits, float(scale), float(eps),
    ), cfg.meta(BLOCK_N=cfg.block_n, ROW_C=row_c, Z_MODE=z_mode), "BLOCK_N", cfg.num_warps, 3)
    return part


def _scan(cfg: _Cfg, part: torch.Tensor, reverse: bool) -> torch.Tensor:
    out = torch.empty_like(part)
    block = 256 if _interpret() else 1024
    _scan_splits_kernel[(cfg.BH, triton.cdiv(cfg.L, block))](
        part, out, cfg.n_splits, cfg.L, REVERSE=reverse, BLOCK=block, num_warps=4,
    )
    return out


# =========================================================================== autograd
def _device_guard(t: torch.Tensor):
    """Make ``t``'s GPU the current one while launching (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


class _AffineLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, variant, causal, score_scale, eps):
        with _device_guard(q):
            return _AffineLinearAttention._forward(ctx, q, k, v, variant, causal, score_scale, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        with _device_guard(g):
            return _AffineLinearAttention._backward(ctx, g)

    @staticmethod
    def _forward(ctx, q, k, v, variant, causal, score_scale, eps):
        q, k, v = _unit_last(q), _unit_last(k), _unit_last(v)
        cfg = _Cfg(q, v, causal)
        eq4 = variant == "eq4"
        o = torch.empty(q.shape[:-1] + (cfg.DV,), device=q.device, dtype=q.dtype)
        part = _state(cfg, k, v, None, None, 1.0, eps, False, 1 if eq4 else 0, q.device)
        grid = (cfg.BH, cfg.n_splits, cfg.NVT)
        if not causal:
            state = part.sum(dim=1)                                    # deterministic split reduction
            _launch(_nc_out_kernel, (cfg.BH, cfg.row_splits, cfg.NVT), (
                *_s4(q), *_s4(o), state,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.row_rows, float(cfg.N), float(score_scale), float(eps),
            ), cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4), "BLOCK_N", cfg.num_warps, 3)
        else:
            state = _scan(cfg, part, reverse=False)                    # exclusive prefix per split
            _launch(_c_fwd_kernel, grid, (
                *_s4(q), *_s4(k), *_s4(v), *_s4(o), state,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.rows_per_split, cfg.n_splits, float(score_scale), float(eps),
            ), cfg.meta(BLOCK_C=cfg.block_c, EQ4=eq4), "BLOCK_C", cfg.num_warps_c, 2)
        ctx.save_for_backward(q, k, v, state)
        ctx.cfg = cfg
        ctx.eq4 = eq4
        ctx.causal = causal
        ctx.score_scale = float(score_scale)
        ctx.eps = float(eps)
        return o

    @staticmethod
    def _backward(ctx, g):
        q, k, v, state = ctx.saved_tensors
        cfg, eq4, eps, s = ctx.cfg, ctx.eq4, ctx.eps, ctx.score_scale
        g = _unit_last(g)
        dev = q.device
        f32 = torch.float32
        dq = torch.empty(q.shape, device=dev, dtype=q.dtype)
        dk = torch.empty(k.shape, device=dev, dtype=k.dtype)
        dv = torch.empty(v.shape, device=dev, dtype=v.dtype)
        if eq4:
            crow = torch.empty((cfg.BH, cfg.N), device=dev, dtype=f32)
            ddrow = torch.empty((cfg.BH, cfg.N), device=dev, dtype=f32)
        else:
            crow = ddrow = state                                        # unused placeholders
        grid = (cfg.BH, cfg.n_splits)
        grid_v = (cfg.BH, cfg.n_splits, cfg.NVT)
        if not ctx.causal:
            _launch(_nc_dq_kernel, (cfg.BH, cfg.row_splits), (
                *_s4(q), *_s4(g), *_s4(dq), state, crow, ddrow,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.row_rows, float(cfg.N), s, eps,
            ), cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4), "BLOCK_N", cfg.num_warps, 3)
            dpart = _state(cfg, q, g, crow, ddrow, 1.0 if eq4 else s, eps, eq4, 2 if eq4 else 0, dev)
            dstate = dpart.sum(dim=1)
            _launch(_nc_dkv_kernel, (cfg.BH, cfg.row_splits), (
                *_s4(k), *_s4(v), *_s4(dk), *_s4(dv), dstate,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.row_rows, eps,
            ), cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4), "BLOCK_N", cfg.num_warps, 3)
            return dq, dk, dv, None, None, None, None

        meta_c = cfg.meta(BLOCK_C=cfg.block_c, EQ4=eq4)
        if cfg.NVT > 1:                                                 # Dv tiled: per-tile partials of u, g·vsum
            ub = torch.empty((cfg.NVT, cfg.BH, cfg.N, cfg.D), device=dev, dtype=f32)
            gb = torch.empty((cfg.NVT, cfg.BH, cfg.N), device=dev, dtype=f32) if eq4 else ub
            _launch(_c_dq_part_kernel, grid_v, (
                *_s4(k), *_s4(v), *_s4(g), state, ub, gb,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.BH, cfg.rows_per_split, cfg.n_splits, eps,
            ), meta_c, "BLOCK_C", cfg.num_warps_c, 2)
        else:
            ub = gb = state
        _launch(_c_dq_kernel, grid, (
            *_s4(q), *_s4(k), *_s4(v), *_s4(g), *_s4(dq), state, crow, ddrow, ub, gb,
            cfg.H, cfg.N, cfg.D, cfg.DV, cfg.BH, cfg.rows_per_split, cfg.n_splits, s, eps,
        ), meta_c, "BLOCK_C", cfg.num_warps_c, 2)
        del ub, gb
        dpart = _state(cfg, q, g, crow, ddrow, 1.0 if eq4 else s, eps, eq4, 2 if eq4 else 0, dev)
        dsuf = _scan(cfg, dpart, reverse=True)                          # exclusive suffix per split
        dkp = torch.empty((cfg.NVT, cfg.BH, cfg.N, cfg.D), device=dev, dtype=f32) if cfg.NVT > 1 else dsuf
        _launch(_c_dkv_kernel, grid_v, (
            *_s4(q), *_s4(k), *_s4(v), *_s4(g), *_s4(dk), *_s4(dv), dsuf, crow, ddrow, dkp,
            cfg.H, cfg.N, cfg.D, cfg.DV, cfg.BH, cfg.rows_per_split, cfg.n_splits, s, eps,
        ), meta_c, "BLOCK_C", cfg.num_warps_c, 2)
        if cfg.NVT > 1:
            _launch(_c_dk_fin_kernel, grid, (
                *_s4(q), *_s4(k), *_s4(dk), dsuf, ddrow, dkp,
                cfg.H, cfg.N, cfg.D, cfg.DV, cfg.BH, cfg.rows_per_split, cfg.n_splits, eps,
            ), meta_c, "BLOCK_C", cfg.num_warps_c, 2)
        return dq, dk, dv, None, None, None, None


def linear_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, variant: str = "eq7",
                            causal: bool = False, score_scale: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """Affine linear attention (eq4 / eq7, causal or not) with Triton kernels; differentiable in q, k, v.

    q, k: (B, H, N, D); v: (B, H, N, Dv); one device and floating dtype (validated by
    ``linrepro.attention.linear_attention``). The output has the input dtype; all
    accumulation is fp32. Tensors whose last dim is not unit-stride are copied; other
    strided layouts (e.g. a (B, N, H, D) tensor viewed as (B, H, N, D)) are used in place.
    """
    if variant not in ("eq4", "eq7"):
        raise ValueError(f"unknown variant {variant!r}; expected 'eq4' or 'eq7'")
    if q.shape[2] == 0:
        # empty sequence: nothing to launch; keep the graph connected for autograd
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + v.sum())
    return _AffineLinearAttention.apply(q, k, v, variant, bool(causal), float(score_scale), float(eps))
