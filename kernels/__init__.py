r"""Triton kernels for affine linear attention (paper Eq. 4 and Eq. 7), installed as ``linrepro.kernels``.

``linear_attention_triton`` is called by ``linrepro.attention.linear_attention`` when
``backend="triton"`` (or ``"auto"`` on CUDA).

Files, one per form (as in flash-linear-attention):

* ``common.py``: ``@triton.jit`` helpers shared by all kernels (prologue, row loads/stores,
  L2 normalisation and its backward, packed-state loads), the split-K ``_state_kernel``
  both forms start from, and host helpers (row splits, ``_launch``, ``_alloc``).
* ``noncausal.py``: ``_nc_out`` / ``_nc_dq`` / ``_nc_dkv`` kernels and their launchers.
* ``causal.py``: ``_scan_splits``, ``_c_fwd``, ``_c_dq_part``, ``_c_dq``, ``_c_dkv``,
  ``_c_dk_fin`` kernels and their launchers.
* ``autograd.py``: the per-call launch configuration, the ``torch.autograd.Function`` and
  ``linear_attention_triton``.

Forward math (identical to ``linrepro.attention``)
---------------------------------------------------
q, k: (B, H, N, D); v: (B, H, N, Dv).  q̂ = q / max(‖q‖₂, eps), k̂ likewise (per row), with eps
positive and finite (checked by ``linear_attention_triton``).

Non-causal, with S = Σ_j k̂_j v_jᵀ (D×Dv), vsum = Σ_j v_j, z = Σ_j k̂_j and
a_i = vsum + Sᵀ q̂_i (the "numerator"):

* eq7:  o_i = s · a_i
* eq4:  o_i = a_i / d_i,   d_i = N + q̂_i·z;  o_i = 0 where d_i ≤ eps·N (a vanishing row, whose
  mean weight d_i/N no backend can tell from 0: see ``linrepro.attention``'s docstring). The
  kernels divide by +∞ there (``tl.where(d ≤ eps·N, inf, d)``), so o_i = 0 and 1/d_i = 0.

Causal: every sum runs over j ≤ i and N becomes the 1-based count i+1 (also in eq4's eps·count).

Backward derivation
-------------------
Let g_i = ∂L/∂o_i.

eq7.  o_i = s (vsum + Sᵀq̂_i) is linear in (vsum, S, q̂_i), so
    ∂L/∂q̂_i  = s S g_i
    ∂L/∂S    = s Σ_i q̂_i g_iᵀ      =: dS
    ∂L/∂vsum = s Σ_i g_i           =: dvsum
and, since S = Σ_j k̂_j v_jᵀ and vsum = Σ_j v_j,
    ∂L/∂v_j = dvsum + dSᵀ k̂_j,     ∂L/∂k̂_j = dS v_j.

eq4.  o_i = a_i / d_i with a_i = vsum + Sᵀq̂_i, d_i = N + q̂_i·z (for a vanishing row,
d_i ≤ eps·N, o_i is the constant 0, so dn_i = dd_i = 0: the kernels keep c_i = 1/d_i = 0 there).
    dn_i := ∂L/∂a_i = g_i / d_i
    dd_i := ∂L/∂d_i = −(g_i·a_i)/d_i² = −(g_i·o_i)/d_i           (0 for a vanishing row)
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
every kernel that reads them (no normalised copy is ever written).  r is never formed
directly: ``common._l2n`` scales each row by the power of two 2⁻ᵉ that brings max|x| into
[1, 2) (read off the exponent bits; exact) and works with rs = ‖x·2⁻ᵉ‖ = r·2⁻ᵉ, which neither
overflows (fp32 q around 1e20 and above) nor underflows; for ordinary rows the result is
bit-identical to the unscaled formula.  Padding rows and columns of x̂ are set to exactly 0
(never 0/eps), so they reach no valid row whatever eps is.

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
  Causality is structural: masks are ``tl.where`` (never a multiplication), and the masked
  C×C products take v (forward) or k̂ (dq) with NaN/Inf entries zeroed, the (row, column)
  pairs at or after such an entry being set to NaN afterwards (``causal._finite_part``), so
  a later token, NaN or Inf included, never changes an earlier row's output or dq.
  ``_c_dkv_kernel`` walks the chunks in reverse with the running suffix state.
  When Dv is tiled (NVT > 1) dq and dk need sums over all Dv tiles, so
  ``_c_dq_part_kernel`` / ``_c_dkv_kernel`` write per-tile fp32 partials
  ([NVT, BH, N, D]) that ``_c_dq_kernel`` / ``_c_dk_fin_kernel`` add up (no atomics).
* All arithmetic and every accumulation is fp32.  Dots use ``input_precision="tf32x3"``
  for fp32 inputs (≈ fp32 accuracy on tensor cores; "ieee" FMA dots spill registers
  heavily).  For fp16/bf16 inputs, the products of normalised rows and input values
  (k̂ᵀv and q̂ᵀg in ``_state_kernel``; q̂k̂ᵀ, k̂ᵀv and g vᵀ in the causal kernels) take
  operands in the input dtype (``common._dot_in``: raw values convert back exactly, x̂ is
  rounded once), except fp16 q̂ᵀ(g/den) in eq4's state gradient, whose g/den is subnormal
  in fp16 for long sequences; every product with the state S (which can exceed the fp16
  range) or with a derived fp32 tile stays fp32 with "tf32" ("ieee" on ROCm).  float64
  inputs are refused with a TypeError (use backend="torch" or "reference").  Head dims
  are padded to powers of two ≥ 16 with masks; D and Dv are compile-time constants (one
  compile per head dim, no reliance on divisibility hints); offsets are int64
  (``common._prologue``).
* ``_launch`` retries a launch with one pipeline stage and then smaller row blocks
  if the compiled kernel needs more shared memory (or registers) than the GPU has.
* Every output and scratch buffer is allocated by ``common._alloc``; with
  ``LINREPRO_NAN_POISON=1`` (read on each call) they start out as NaN, so rows that no
  kernel writes show up in tests instead of reusing a previous call's values.
"""

from .autograd import linear_attention_triton

__all__ = ["linear_attention_triton"]
