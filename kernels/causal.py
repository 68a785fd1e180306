"""Causal form: ``_scan_splits_kernel`` turns the split-K partial states into exclusive
prefix (forward) or suffix (backward) states per split, sequentially and therefore
deterministically. ``_c_fwd_kernel`` / ``_c_dq_kernel`` then walk their row range chunk by
chunk: the intra-chunk part is a masked C×C matrix, the inter-chunk part goes through the
running state carried in registers; ``_c_dkv_kernel`` walks the chunks in reverse with the
running suffix state. When Dv is tiled (NVT > 1) dq and dk need sums over all Dv tiles, so
``_c_dq_part_kernel`` / ``_c_dkv_kernel`` write per-tile fp32 partials ([NVT, BH, N, D])
that ``_c_dq_kernel`` / ``_c_dk_fin_kernel`` add up (no atomics).

Causality is structural in the forward and in dq: masks are ``tl.where``, never a
multiplication, and a masked C×C product never multiplies a NaN or Inf of a later row by a
zero weight (``_finite_part``). (dk and dv depend on later rows by nature; a non-finite earlier
row may reach them through the reverse walk's masked products.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl

from .common import (
    _alloc,
    _alloc_like,
    _dot_in,
    _grad_buffers,
    _head_off,
    _interpret,
    _l2n_bwd,
    _launch,
    _load_l2n,
    _load_rows,
    _load_state,
    _load_vec,
    _load_z,
    _prologue,
    _s4,
    _state,
    _state_off,
    _store_rows,
    _store_vec,
)

if TYPE_CHECKING:  # pragma: no cover
    from .autograd import _Cfg


# =========================================================================== kernels
@triton.jit
def _chunk_mask(BLOCK_C: tl.constexpr):
    """(ii, causal): ii = [0, BLOCK_C) and the intra-chunk mask causal[i, j] = i ≥ j."""
    ii = tl.arange(0, BLOCK_C)
    return ii, ii[:, None] >= ii[None, :]


@triton.jit
def _finite_part(x):
    """(x with its NaN/Inf entries replaced by 0, hit): hit[i, c] is true when some x[j, c], j ≤ i, is not
    finite. A chunk's masked C×C product with the first keeps every row free of later rows' values
    (0·finite = 0 exactly); ``tl.where(hit, nan, ·)`` then gives the rows at and after a NaN/Inf theirs."""
    ok = tl.abs(x) < float("inf")  # false for ±Inf and NaN
    hit = tl.cumsum(tl.where(ok, 0.0, 1.0), axis=0) > 0.0
    return tl.where(ok, x, 0.0), hit


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


@triton.jit
def _c_fwd_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    K,
    skb,
    skh,
    skn,
    V,
    svb,
    svh,
    svn,
    O,
    sob,
    soh,
    son,
    PRE,
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
    BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """Causal output; program (bh, p, vt) walks the chunks of split p for Dv tile vt."""
    vt = tl.program_id(2)
    bh, sp, row_lo, row_hi, nblk, cd, cv = _prologue(N, rows_per_split, vt, BD, BV, BLOCK_C)
    qbase = _head_off(bh, H, sqb, sqh)
    kbase = _head_off(bh, H, skb, skh)
    vbase = _head_off(bh, H, svb, svh)
    obase = _head_off(bh, H, sob, soh)
    ii, causal = _chunk_mask(BLOCK_C)
    # running prefix state of all rows before this split
    s_run, z_run, vs_run = _load_state(PRE, _state_off(bh * n_splits + sp, D, DV), cd, cv, D, DV)
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        qh, _rq, _sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
        kh, _rk, _sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        a = _dot_in(qh, tl.trans(kh), None, Q, K, PREC)
        w = tl.where(causal, 1.0 + a, 0.0)  # intra-chunk weights 1 + q̂·k̂ (where, not ×mask: a may be NaN)
        # w·v would carry a NaN or Inf of a later row's v to earlier rows (0·NaN = NaN): the product uses
        # finite v, and the (row, column) pairs at or after a non-finite value are set to NaN below
        v_ok, v_hit = _finite_part(v)
        num = vs_run[None, :] + tl.dot(qh, s_run, input_precision=PREC) + tl.dot(w, v_ok, input_precision=PREC)
        if EQ4:
            # count before the chunk + q̂·z_run + Σ_{j≤i in chunk}(1 + q̂_i·k̂_j); a mean weight ≤ eps
            # is a vanishing row: o = num/∞ = 0 (linrepro.attention's spec)
            den = start.to(tl.float32) + tl.sum(qh * z_run[None, :], axis=1) + tl.sum(w, axis=1)
            cnt = (start + ii + 1).to(tl.float32)
            o = num / tl.where(den <= eps * cnt, float("inf"), den)[:, None]
            z_run += tl.sum(kh, axis=0)
        else:
            o = num * scale
        o = tl.where(v_hit, float("nan"), o)
        _store_rows(O, obase, rows, row_hi, son, cv, DV, o)
        s_run = _dot_in(tl.trans(kh), v, s_run, K, V, PREC)
        vs_run += tl.sum(v, axis=0)


@triton.jit
def _c_dq_part_kernel(
    K,
    skb,
    skh,
    skn,
    V,
    svb,
    svh,
    svn,
    G,
    sgb,
    sgh,
    sgn,
    PRE,
    UB,
    GB,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    BH,
    rows_per_split,
    n_splits,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """Only when Dv is tiled: per Dv tile vt, u_i^vt = S_i[:, vt] g_i[vt] → UB[vt] and
    g_i[vt]·vsum_i[vt] → GB[vt] (fp32 [NVT, BH, N, D] / [NVT, BH, N]); ``_c_dq_kernel`` sums them."""
    vt = tl.program_id(2)
    bh, sp, row_lo, row_hi, nblk, cd, cv = _prologue(N, rows_per_split, vt, BD, BV, BLOCK_C)
    kbase = _head_off(bh, H, skb, skh)
    vbase = _head_off(bh, H, svb, svh)
    gbase = _head_off(bh, H, sgb, sgh)
    ubase = (vt * BH + bh) * N
    ii, causal = _chunk_mask(BLOCK_C)
    s_run, _z, vs_run = _load_state(PRE, _state_off(bh * n_splits + sp, D, DV), cd, cv, D, DV)
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        kh, _rk, _sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        g = _load_rows(G, gbase, rows, row_hi, sgn, cv, DV)
        gv = tl.where(causal, _dot_in(g, tl.trans(v), None, G, V, PREC), 0.0)
        kh_ok, k_hit = _finite_part(kh)  # a later row's NaN k̂ must not reach earlier rows through gv·k̂
        u = tl.dot(g, tl.trans(s_run), input_precision=PREC) + tl.dot(gv, kh_ok, input_precision=PREC)
        u = tl.where(k_hit, float("nan"), u)
        _store_rows(UB, ubase * D, rows, row_hi, D, cd, D, u)
        if EQ4:
            gvs = tl.sum(g * vs_run[None, :], axis=1) + tl.sum(gv, axis=1)
            _store_vec(GB, ubase, rows, row_hi, gvs)
            vs_run += tl.sum(v, axis=0)
        s_run = _dot_in(tl.trans(kh), v, s_run, K, V, PREC)


@triton.jit
def _c_dq_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    K,
    skb,
    skh,
    skn,
    V,
    svb,
    svh,
    svn,
    G,
    sgb,
    sgh,
    sgn,
    DQ,
    sdb,
    sdh,
    sdn,
    PRE,
    CROW,
    DDROW,
    UB,
    GB,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    BH,
    rows_per_split,
    n_splits,
    scale,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """Causal dq (and, for eq4, per-row 1/den and dd). With NVT == 1 the prefix state
    lives in registers; otherwise u and g·vsum come from ``_c_dq_part_kernel``."""
    bh, sp, row_lo, row_hi, nblk, cd, cv0 = _prologue(N, rows_per_split, 0, BD, BV, BLOCK_C)
    qbase = _head_off(bh, H, sqb, sqh)
    kbase = _head_off(bh, H, skb, skh)
    vbase = _head_off(bh, H, svb, svh)
    gbase = _head_off(bh, H, sgb, sgh)
    dbase = _head_off(bh, H, sdb, sdh)
    soff = _state_off(bh * n_splits + sp, D, DV)
    ii, causal = _chunk_mask(BLOCK_C)
    if NVT == 1:
        s_run, z_run, vs_run = _load_state(PRE, soff, cd, cv0, D, DV)
    else:
        z_run = _load_z(PRE, soff, cd, D, DV)
    for t in range(0, nblk):
        start = row_lo + t * BLOCK_C
        rows = start + ii
        qh, r, sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
        kh, _rk, _sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
        if NVT == 1:
            v = _load_rows(V, vbase, rows, row_hi, svn, cv0, DV)
            g = _load_rows(G, gbase, rows, row_hi, sgn, cv0, DV)
            gv = tl.where(causal, _dot_in(g, tl.trans(v), None, G, V, PREC), 0.0)  # g_i·v_j, j ≤ i
            # u_i = S_i g_i = S_run g_i + Σ_{j≤i in chunk} (g_i·v_j) k̂_j, with no later row's NaN k̂ in it
            kh_ok, k_hit = _finite_part(kh)
            u = tl.dot(g, tl.trans(s_run), input_precision=PREC) + tl.dot(gv, kh_ok, input_precision=PREC)
            u = tl.where(k_hit, float("nan"), u)
            gvs = tl.sum(g * vs_run[None, :], axis=1) + tl.sum(gv, axis=1)  # g_i·vsum_i
        else:
            u = tl.zeros((BLOCK_C, BD), dtype=tl.float32)
            gvs = tl.zeros((BLOCK_C,), dtype=tl.float32)
            for vt in range(NVT):
                ubase = (vt * BH + bh) * N
                u += _load_rows(UB, ubase * D, rows, row_hi, D, cd, D)
                if EQ4:
                    gvs += _load_vec(GB, ubase, rows, row_hi)
        if EQ4:
            a = tl.where(causal, _dot_in(qh, tl.trans(kh), None, Q, K, PREC), 0.0)
            cnt = (start + ii + 1).to(tl.float32)
            d = cnt + tl.sum(qh * z_run[None, :], axis=1) + tl.sum(a, axis=1)
            vanish = d <= eps * cnt  # o = 0 there, and so is its gradient
            c = 1.0 / tl.where(vanish, float("inf"), d)
            gnum = gvs + tl.sum(qh * u, axis=1)
            dd = tl.where(vanish, 0.0, -gnum * c * c)
            z_i = z_run[None, :] + tl.cumsum(kh, axis=0)  # prefix z at row i (a scan: rows j ≤ i only)
            dqh = u * c[:, None] + dd[:, None] * z_i
            _store_vec(CROW, bh * N, rows, row_hi, c)
            _store_vec(DDROW, bh * N, rows, row_hi, dd)
            z_run += tl.sum(kh, axis=0)
        else:
            dqh = u * scale
        dq = _l2n_bwd(qh, r, sq, dqh, eps)
        _store_rows(DQ, dbase, rows, row_hi, sdn, cd, D, dq)
        if NVT == 1:
            s_run = _dot_in(tl.trans(kh), v, s_run, K, V, PREC)
            vs_run += tl.sum(v, axis=0)


@triton.jit
def _c_dkv_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    K,
    skb,
    skh,
    skn,
    V,
    svb,
    svh,
    svn,
    G,
    sgb,
    sgh,
    sgn,
    DK,
    sdkb,
    sdkh,
    sdkn,
    DVO,
    sdvb,
    sdvh,
    sdvn,
    SUF,
    CROW,
    DDROW,
    DKP,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    BH,
    rows_per_split,
    n_splits,
    scale,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """Causal dv and dk by the reverse (suffix) recurrence; program (bh, p, vt).

    With NVT == 1 dk is finished here. Otherwise this writes the Dv-tile part of dk̂
    (without the dz term) to DKP[vt] (fp32 [NVT, BH, N, D]) for ``_c_dk_fin_kernel``."""
    vt = tl.program_id(2)
    bh, sp, row_lo, row_hi, nblk, cd, cv = _prologue(N, rows_per_split, vt, BD, BV, BLOCK_C)
    qbase = _head_off(bh, H, sqb, sqh)
    kbase = _head_off(bh, H, skb, skh)
    vbase = _head_off(bh, H, svb, svh)
    gbase = _head_off(bh, H, sgb, sgh)
    dkbase = _head_off(bh, H, sdkb, sdkh)
    dvbase = _head_off(bh, H, sdvb, sdvh)
    ii, causal = _chunk_mask(BLOCK_C)  # [i, j]: i ≥ j
    # running suffix state of all rows after this split: dS, dz, dvsum
    ds_run, dz_run, dvs_run = _load_state(SUF, _state_off(bh * n_splits + sp, D, DV), cd, cv, D, DV)
    for t in range(0, nblk):
        start = row_lo + (nblk - 1 - t) * BLOCK_C
        rows = start + ii
        qh, _rq, _sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
        kh, r, sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
        v = _load_rows(V, vbase, rows, row_hi, svn, cv, DV)
        g = _load_rows(G, gbase, rows, row_hi, sgn, cv, DV)
        if EQ4:
            dn = g * _load_vec(CROW, bh * N, rows, row_hi)[:, None]
        else:
            dn = g * scale
        p = _dot_in(qh, tl.trans(kh), None, Q, K, PREC)  # [i, j] = q̂_i·k̂_j
        w = tl.where(causal, 1.0 + p, 0.0)
        # dv_j = dvsum_run + dS_runᵀ k̂_j + Σ_{i≥j in chunk} (1 + q̂_i·k̂_j) dn_i
        dv = dvs_run[None, :] + tl.dot(kh, ds_run, input_precision=PREC) + tl.dot(tl.trans(w), dn, input_precision=PREC)
        _store_rows(DVO, dvbase, rows, row_hi, sdvn, cv, DV, dv)
        # dk̂_j = dS_run v_j + Σ_{i≥j in chunk} (dn_i·v_j) q̂_i  [+ dz_j = dz_run + Σ_{i≥j in chunk} dd_i q̂_i]
        dnv = tl.dot(dn, tl.trans(v), input_precision=PREC)
        if NVT == 1:
            if EQ4:
                dd = _load_vec(DDROW, bh * N, rows, row_hi)
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
            dk = _l2n_bwd(kh, r, sk, dkh, eps)
            _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)
        else:
            _store_rows(DKP, (vt * BH + bh) * N * D, rows, row_hi, D, cd, D, dkh)
        ds_run += tl.dot(tl.trans(qh), dn, input_precision=PREC)
        dvs_run += tl.sum(dn, axis=0)


@triton.jit
def _c_dk_fin_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    K,
    skb,
    skh,
    skn,
    DK,
    sdkb,
    sdkh,
    sdkn,
    SUF,
    DDROW,
    DKP,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    BH,
    rows_per_split,
    n_splits,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_C: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """Only when Dv is tiled: dk̂ = Σ_vt DKP[vt] (+ suffix dz for eq4), then dk."""
    bh, sp, row_lo, row_hi, nblk, cd, _cv = _prologue(N, rows_per_split, 0, BD, BV, BLOCK_C)
    qbase = _head_off(bh, H, sqb, sqh)
    kbase = _head_off(bh, H, skb, skh)
    dkbase = _head_off(bh, H, sdkb, sdkh)
    ii, causal = _chunk_mask(BLOCK_C)
    dz_run = _load_z(SUF, _state_off(bh * n_splits + sp, D, DV), cd, D, DV)
    for t in range(0, nblk):
        start = row_lo + (nblk - 1 - t) * BLOCK_C
        rows = start + ii
        kh, r, sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
        dkh = tl.zeros((BLOCK_C, BD), dtype=tl.float32)
        for vt in range(NVT):
            dkh += _load_rows(DKP, (vt * BH + bh) * N * D, rows, row_hi, D, cd, D)
        if EQ4:
            qh, _rq, _sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
            dd = _load_vec(DDROW, bh * N, rows, row_hi)
            w3 = tl.where(causal, dd[:, None], 0.0)  # [i, j] = dd_i for i ≥ j
            dkh += dz_run[None, :] + tl.dot(tl.trans(w3), qh, input_precision=PREC)
            dz_run += tl.sum(qh * dd[:, None], axis=0)
        dk = _l2n_bwd(kh, r, sk, dkh, eps)
        _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)


# =========================================================================== launchers
def _scan(cfg: _Cfg, part: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Exclusive prefix (or, ``reverse``, suffix) sums of ``part`` over its split dim."""
    out = _alloc_like(part)
    block = 256 if _interpret() else 1024
    _scan_splits_kernel[(cfg.BH, triton.cdiv(cfg.L, block))](
        part,
        out,
        cfg.n_splits,
        cfg.L,
        REVERSE=reverse,
        BLOCK=block,
        num_warps=4,
    )
    return out


def _c_forward(cfg: _Cfg, q, k, v, eq4: bool, score_scale: float, eps: float):
    """(o, state): the output and the per-split exclusive prefix states saved for the backward."""
    o = _alloc(q.shape[:-1] + (cfg.DV,), q.device, q.dtype)
    part = _state(cfg, k, v, None, None, 1.0, eps, False, 1 if eq4 else 0, q.device)
    state = _scan(cfg, part, reverse=False)  # exclusive prefix per split
    _launch(
        _c_fwd_kernel,
        (cfg.BH, cfg.n_splits, cfg.NVT),
        (
            *_s4(q),
            *_s4(k),
            *_s4(v),
            *_s4(o),
            state,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.rows_per_split,
            cfg.n_splits,
            float(score_scale),
            float(eps),
        ),
        cfg.meta(BLOCK_C=cfg.block_c, EQ4=eq4),
        "BLOCK_C",
        cfg.num_warps_c,
        2,
    )
    return o, state


def _c_backward(cfg: _Cfg, q, k, v, g, state, eq4: bool, s: float, eps: float):
    """(dq, dk, dv) from the per-split prefix states of the forward."""
    dev = q.device
    f32 = torch.float32
    dq, dk, dv, crow, ddrow = _grad_buffers(cfg, q, k, v, state, eq4)
    grid = (cfg.BH, cfg.n_splits)
    grid_v = (cfg.BH, cfg.n_splits, cfg.NVT)
    meta_c = cfg.meta(BLOCK_C=cfg.block_c, EQ4=eq4)
    if cfg.NVT > 1:  # Dv tiled: per-tile partials of u, g·vsum
        ub = _alloc((cfg.NVT, cfg.BH, cfg.N, cfg.D), dev, f32)
        gb = _alloc((cfg.NVT, cfg.BH, cfg.N), dev, f32) if eq4 else ub
        _launch(
            _c_dq_part_kernel,
            grid_v,
            (
                *_s4(k),
                *_s4(v),
                *_s4(g),
                state,
                ub,
                gb,
                cfg.H,
                cfg.N,
                cfg.D,
                cfg.DV,
                cfg.BH,
                cfg.rows_per_split,
                cfg.n_splits,
                eps,
            ),
            meta_c,
            "BLOCK_C",
            cfg.num_warps_c,
            2,
        )
    else:
        ub = gb = state
    _launch(
        _c_dq_kernel,
        grid,
        (
            *_s4(q),
            *_s4(k),
            *_s4(v),
            *_s4(g),
            *_s4(dq),
            state,
            crow,
            ddrow,
            ub,
            gb,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.BH,
            cfg.rows_per_split,
            cfg.n_splits,
            s,
            eps,
        ),
        meta_c,
        "BLOCK_C",
        cfg.num_warps_c,
        2,
    )
    del ub, gb
    dpart = _state(cfg, q, g, crow, ddrow, 1.0 if eq4 else s, eps, eq4, 2 if eq4 else 0, dev)
    dsuf = _scan(cfg, dpart, reverse=True)  # exclusive suffix per split
    dkp = _alloc((cfg.NVT, cfg.BH, cfg.N, cfg.D), dev, f32) if cfg.NVT > 1 else dsuf
    _launch(
        _c_dkv_kernel,
        grid_v,
        (
            *_s4(q),
            *_s4(k),
            *_s4(v),
            *_s4(g),
            *_s4(dk),
            *_s4(dv),
            dsuf,
            crow,
            ddrow,
            dkp,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.BH,
            cfg.rows_per_split,
            cfg.n_splits,
            s,
            eps,
        ),
        meta_c,
        "BLOCK_C",
        cfg.num_warps_c,
        2,
    )
    if cfg.NVT > 1:
        _launch(
            _c_dk_fin_kernel,
            grid,
            (
                *_s4(q),
                *_s4(k),
                *_s4(dk),
                dsuf,
                ddrow,
                dkp,
                cfg.H,
                cfg.N,
                cfg.D,
                cfg.DV,
                cfg.BH,
                cfg.rows_per_split,
                cfg.n_splits,
                eps,
            ),
            meta_c,
            "BLOCK_C",
            cfg.num_warps_c,
            2,
        )
    return dq, dk, dv
