"""Non-causal form: the split-K partial states (``common._state_kernel``) are reduced with
``torch.sum`` over the split dim (deterministic, no atomics), then ``_nc_out_kernel`` /
``_nc_dq_kernel`` / ``_nc_dkv_kernel`` stream rows with the reduced state in registers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import triton
import triton.language as tl

from .common import (
    _alloc,
    _grad_buffers,
    _head_off,
    _l2n_bwd,
    _launch,
    _load_l2n,
    _load_rows,
    _load_state,
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
def _nc_out_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    O,
    sob,
    soh,
    son,
    ST,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    rows_per_split,
    n_f,
    scale,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """o = s(vsum + Sᵀq̂) or (vsum + Sᵀq̂)/(N + q̂·z) (0 where (N + q̂·z)/N ≤ eps); program (bh, p, vt)."""
    vt = tl.program_id(2)
    bh, sp, row_lo, row_hi, nblk, cd, cv = _prologue(N, rows_per_split, vt, BD, BV, BLOCK_N)
    qbase = _head_off(bh, H, sqb, sqh)
    obase = _head_off(bh, H, sob, soh)
    s_mat, z, vs = _load_state(ST, _state_off(bh, D, DV), cd, cv, D, DV)
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        qh, _r, _sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
        num = vs[None, :] + tl.dot(qh, s_mat, input_precision=PREC)
        if EQ4:
            den = n_f + tl.sum(qh * z[None, :], axis=1)
            # a mean weight den/N ≤ eps is a vanishing row: o = num/∞ = 0 (linrepro.attention's spec)
            o = num / tl.where(den <= eps * n_f, float("inf"), den)[:, None]
        else:
            o = num * scale
        _store_rows(O, obase, rows, row_hi, son, cv, DV, o)


@triton.jit
def _nc_dq_kernel(
    Q,
    sqb,
    sqh,
    sqn,
    G,
    sgb,
    sgh,
    sgn,
    DQ,
    sdb,
    sdh,
    sdn,
    ST,
    CROW,
    DDROW,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    rows_per_split,
    n_f,
    scale,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """dq (and, for eq4, the per-row 1/den and dd used by the state-gradient pass)."""
    bh, sp, row_lo, row_hi, nblk, cd, cv0 = _prologue(N, rows_per_split, 0, BD, BV, BLOCK_N)
    qbase = _head_off(bh, H, sqb, sqh)
    gbase = _head_off(bh, H, sgb, sgh)
    dbase = _head_off(bh, H, sdb, sdh)
    soff = _state_off(bh, D, DV)
    if NVT == 1:
        s_mat, z, vs = _load_state(ST, soff, cd, cv0, D, DV)
    else:
        z = _load_z(ST, soff, cd, D, DV)
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        qh, r, sq = _load_l2n(Q, qbase, rows, row_hi, sqn, cd, D, eps)
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
            vanish = d <= eps * n_f  # o = 0 there, and so is its gradient
            c = 1.0 / tl.where(vanish, float("inf"), d)
            gnum = gvs + tl.sum(qh * u, axis=1)
            dd = tl.where(vanish, 0.0, -gnum * c * c)
            dqh = u * c[:, None] + dd[:, None] * z[None, :]
            _store_vec(CROW, bh * N, rows, row_hi, c)
            _store_vec(DDROW, bh * N, rows, row_hi, dd)
        else:
            dqh = u * scale
        dq = _l2n_bwd(qh, r, sq, dqh, eps)
        _store_rows(DQ, dbase, rows, row_hi, sdn, cd, D, dq)


@triton.jit
def _nc_dkv_kernel(
    K,
    skb,
    skh,
    skn,
    V,
    svb,
    svh,
    svn,
    DK,
    sdkb,
    sdkh,
    sdkn,
    DVO,
    sdvb,
    sdvh,
    sdvn,
    DST,
    H,
    N,
    D: tl.constexpr,
    DV: tl.constexpr,
    rows_per_split,
    eps,
    BD: tl.constexpr,
    BV: tl.constexpr,
    NVT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EQ4: tl.constexpr,
    PREC: tl.constexpr,
):
    """dv_j = dvsum + dSᵀk̂_j, dk̂_j = dS v_j (+ dz), then dk through the normalisation."""
    bh, sp, row_lo, row_hi, nblk, cd, cv0 = _prologue(N, rows_per_split, 0, BD, BV, BLOCK_N)
    kbase = _head_off(bh, H, skb, skh)
    vbase = _head_off(bh, H, svb, svh)
    dkbase = _head_off(bh, H, sdkb, sdkh)
    dvbase = _head_off(bh, H, sdvb, sdvh)
    soff = _state_off(bh, D, DV)
    if NVT == 1:
        ds_mat, dz, dvs = _load_state(DST, soff, cd, cv0, D, DV)
    else:
        dz = _load_z(DST, soff, cd, D, DV)
    for t in range(0, nblk):
        rows = row_lo + t * BLOCK_N + tl.arange(0, BLOCK_N)
        kh, r, sk = _load_l2n(K, kbase, rows, row_hi, skn, cd, D, eps)
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
        dk = _l2n_bwd(kh, r, sk, dkh, eps)
        _store_rows(DK, dkbase, rows, row_hi, sdkn, cd, D, dk)


# =========================================================================== launchers
def _nc_forward(cfg: _Cfg, q, k, v, eq4: bool, score_scale: float, eps: float):
    """(o, state): the output and the reduced fp32 [BH, L] state saved for the backward."""
    o = _alloc(q.shape[:-1] + (cfg.DV,), q.device, q.dtype)
    part = _state(cfg, k, v, None, None, 1.0, eps, False, 1 if eq4 else 0, q.device)
    state = part.sum(dim=1)  # deterministic split reduction
    _launch(
        _nc_out_kernel,
        (cfg.BH, cfg.row_splits, cfg.NVT),
        (
            *_s4(q),
            *_s4(o),
            state,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.row_rows,
            float(cfg.N),
            float(score_scale),
            float(eps),
        ),
        cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4),
        "BLOCK_N",
        cfg.num_warps,
        3,
    )
    return o, state


def _nc_backward(cfg: _Cfg, q, k, v, g, state, eq4: bool, s: float, eps: float):
    """(dq, dk, dv) from the reduced forward state."""
    dev = q.device
    dq, dk, dv, crow, ddrow = _grad_buffers(cfg, q, k, v, state, eq4)
    _launch(
        _nc_dq_kernel,
        (cfg.BH, cfg.row_splits),
        (
            *_s4(q),
            *_s4(g),
            *_s4(dq),
            state,
            crow,
            ddrow,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.row_rows,
            float(cfg.N),
            s,
            eps,
        ),
        cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4),
        "BLOCK_N",
        cfg.num_warps,
        3,
    )
    dpart = _state(cfg, q, g, crow, ddrow, 1.0 if eq4 else s, eps, eq4, 2 if eq4 else 0, dev)
    dstate = dpart.sum(dim=1)
    _launch(
        _nc_dkv_kernel,
        (cfg.BH, cfg.row_splits),
        (
            *_s4(k),
            *_s4(v),
            *_s4(dk),
            *_s4(dv),
            dstate,
            cfg.H,
            cfg.N,
            cfg.D,
            cfg.DV,
            cfg.row_rows,
            eps,
        ),
        cfg.meta(BLOCK_N=cfg.block_n, EQ4=eq4),
        "BLOCK_N",
        cfg.num_warps,
        3,
    )
    return dq, dk, dv
