"""Attention variants of arXiv:2604.10064, and the project's written spec of the paper's math.

This module docstring is the specification that the rest of linrepro cites (as
"``linrepro.attention``, module docstring"): what is known about the paper, what linrepro
reconstructs, and the formulas every backend implements. Below it, one reference implementation
per variant.

The paper
---------
A. Gerami, S. Madani, R. Duraiswami, *On The Application of Linear Attention in Multimodal
Transformers*, arXiv:2604.10064 (April 2026). Its full text could not be read for this
reproduction and its code is unpublished, so each fact below is marked **known** or
**reconstructed**; whatever is reconstructed is a parameter, so that someone holding the paper
can set the value it used.

Known (from the abstract, secondary summaries and the claims of the seed report, a copy of which
is kept in the repository as ``tests/fixtures/seed_report.txt``):

* The kernel is affine, f(x) = 1 + x, applied to L2-normalised queries and keys. Since
  q̂·k̂ ∈ [−1, 1], every score is ≥ 0.
* The paper's Eq. 4 is normalised linear attention (LA). Its Eq. 7 drops the denominator to stop
  "attention score decay", and the paper says Eq. 7 keeps the scores in [0, 1].
* The models are OpenCLIP ViT-S-16, ViT-B-16 and ViT-L-16 trained on LAION-400M (global batch
  64 / 16 / 4 on four A5500 GPUs), validated by ImageNet-21K zero-shot accuracy. The paper says
  LA "adheres to the same scaling laws as standard softmax attention" and "needs more epochs".
* Its timing is one attention layer on an H200 against FlashAttention-2 (batch 4, 8 heads, head
  dim 64, up to about 4×10⁶ tokens; mean of 1000 runs after 100 warm-up runs): about 10³ faster at
  the longest length, log-log slopes about 1 (LA) and about 2 (softmax).
* The "optimized LA implementation from reference [13]" is most likely the authors' own Fastmax
  CUDA kernels (arXiv:2510.21956); that is unconfirmed.
* The per-term bound of the paper's Eq. 6 (a normalised weight is at most 2/i) does not hold in
  general: with i = 3, k₁ = q and k₂ = k₃ = −q the first weight is 1 > 2/3.

Reconstructed (linrepro's choices, each exposed as a parameter or stated as a convention):

* The exact formulas below, including the normalisation q̂ = q / max(‖q‖, eps) per token (the
  F.normalize convention, with a small eps), evaluated without overflow or underflow.
* Eq. 7's score scale s. The paper's exact scaling is unknown. linrepro's default is s = ½, which
  keeps every score s(1 + q̂·k̂) in [0, 1] as the paper says; the per-length scale ``"1/N"``
  (s = 1/N, and 1/i in causal row i) is the other candidate, and makes the output a mean.
* The causal form of the text tower, and eq4's rule for a vanishing denominator.
* The first author's public code (``armingerami/Fastmax``) is not the paper's code and differs
  from this spec: its open_clip variant drops the q/k/v and output projections, splits heads by a
  plain reshape, scales q and k by the largest per-token norm rather than normalising each token,
  uses Eq. 7 with s = 1 and ignores the causal mask; its CUDA kernels compute the normalised form
  with integer-truncated constant terms in fp32. It is not used as a numerical reference.

The math
--------
Shapes follow the convention (B, H, N, D) for q and k, and (B, H, N, Dv) for v; N is the number
of tokens. q̂ = q / max(‖q‖, eps), k̂ likewise (:func:`l2_normalise`).

* ``softmax``: o_i = Σ_j softmax_j(q_i·k_j / √D) v_j                        O(N²D)
* ``eq4``:     o_i = Σ_j (1+q̂_i·k̂_j) v_j / Σ_j (1+q̂_i·k̂_j)
                   = (Σ_j v_j + Sᵀq̂_i) / (N + q̂_i·Σ_j k̂_j)                    O(N·D·Dv)
* ``eq7``:     o_i = s Σ_j (1+q̂_i·k̂_j) v_j = s (Σ_j v_j + Sᵀq̂_i)           O(N·D·Dv)

with S = Σ_j k̂_j v_jᵀ (a D×Dv state).

* **eps** (``eps``, default 10⁻⁶) is a positive finite number; anything else is refused with an
  error that names it. It guards the norms, and sets eq4's vanishing-row threshold (below).
* **Normalisation without overflow**: ‖q‖ is computed on q·2⁻ᵉ, with 2ᵉ a power of two next to
  max|q| (:func:`pow2_scale`); the scaling is exact, so the result is q / max(‖q‖, eps) for every
  finite q: no fp32 q around 1e20 whose ‖q‖² overflows, or 1e-25 whose ‖q‖² underflows, is silently
  treated as another vector. Every backend does this, the Triton kernels included, and the
  gradients follow the same formula.
* **eq4 at a vanishing denominator**: the denominator d_i = Σ_j (1+q̂_i·k̂_j) is a sum of weights in
  [0, 2]. It vanishes only when every key row i sees is anti-parallel to q̂_i; then the numerator
  vanishes too and the weights are 0/0. The factorised forms compute d_i as count_i + q̂_i·z, whose
  round-off is of the order of count_i times the unit round-off (about 3·10⁻⁷·count_i in fp32), so
  below that no backend can tell d_i from 0, and num_i/d_i would be round-off divided by round-off
  (clamping d_i at eps, as linrepro did before, returned round-off/eps: about 1e-10 in float64 and
  0.1 to 10 in fp32). The rule, the same in every backend: **when the row's mean weight
  d_i / count_i is at most eps, o_i = 0, and so is its gradient** (count_i = N, or i causal);
  otherwise o_i = num_i / d_i. In float64 the rule is exact; in fp32 a mean weight between eps and
  about 10⁻⁵ is resolved only to a few digits (the problem is ill-conditioned there).
* **Causality is structural** in every backend: row i is computed from tokens j ≤ i only, never
  from a later token multiplied by a zero mask (0·NaN is NaN). Changing, or writing NaN or Inf into,
  a later token leaves every earlier row bit-identical, in fp32, fp16 and bf16.

* **Score scale** s (``score_scale``): a positive number, default ½, or ``"1/N"`` (``PER_LENGTH``):
  s = 1/N non-causal, s = 1/i for causal row i. eq4 ignores it.
* **Causal form** (the text tower): every sum runs over j ≤ i and N becomes i. The fast paths
  compute it with chunked prefix states, never with an N×N matrix.
* **Score decay**: under eq4 the mean weight is 1/N, so every weight fades as N grows (what Eq. 7
  targets); under eq7 a score does not depend on N, but with a fixed s the output is a sum over
  N keys and ‖o_i‖ grows with N (about linearly when the v_j share a direction); s = 1/N makes it
  a mean again. Notebook 01 measures both effects rather than arguing them.

The code
--------
``quadratic_reference`` builds the N×N score matrix explicitly; it exists only so
that tests can check every factorised path against an independent formula.
``linear_attention`` is the one dispatcher: ``backend="reference"`` is the
factorised float64-capable torch formula defined here; ``"torch"`` is the fast
tiled / chunked CPU path (``linrepro.attention.torch_path``), ``"quadratic"`` the N×N form made
fast for short sequences (``linrepro.attention.quadratic``) and ``"triton"`` the Triton kernels
(``linrepro.kernels``), all behind this same function. ``"auto"`` picks Triton on CUDA, and
elsewhere the form that a cost model calibrated by measurement predicts fastest
(``linrepro.attention.dispatch``).
"""

from __future__ import annotations

import math
import numbers
import os

import torch

VARIANTS = ("eq4", "eq7")
PER_LENGTH = "1/N"  # score_scale value: s = 1/N (non-causal) or 1/i (causal row i)
BACKENDS = ("auto", "triton", "torch", "quadratic", "reference")
CPU_FORMS = ("quadratic", "reference", "torch")  # the exact forms "auto" chooses among off CUDA
MAX_HEAD_DIM = 256


# --------------------------------------------------------------------------- checks
def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, max_dim: int | None = None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have 4 dims (B, H, N, D), got shape {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if q.shape != k.shape:
        raise ValueError(
            f"q and k must have the same shape (B, H, N, D), got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must match q in (B, H, N): q is {tuple(q.shape)}, v is {tuple(v.shape)}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got q on {q.device}, k on {k.device}, v on {v.device}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if max_dim is not None:
        for name, d in (("q/k head dim D", q.shape[-1]), ("v head dim Dv", v.shape[-1])):
            if d > max_dim:
                raise ValueError(f"{name} is {d}; at most {max_dim} is supported")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def check_eps(eps) -> float:
    """``eps`` must be a positive finite real number (not a bool or a string); returns it as a float.

    With eps = 0 a zero vector would be normalised to 0/0, and eq4's vanishing-row test (see this module's
    docstring) would never fire."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


def check_score_scale(score_scale) -> float | str:
    """A positive finite number, or ``"1/N"`` (the per-length scale; see this module's docstring);
    returns it normalised."""
    if isinstance(score_scale, str):
        if score_scale.strip().replace(" ", "") == PER_LENGTH:
            return PER_LENGTH
        try:
            score_scale = float(score_scale)
        except ValueError:
            raise ValueError(f"score_scale must be a positive number or {PER_LENGTH!r}, got {score_scale!r}") from None
    if (
        isinstance(score_scale, bool)
        or not isinstance(score_scale, (int, float))
        or not math.isfinite(score_scale)
        or score_scale <= 0
    ):
        raise ValueError(f"score_scale must be a positive number or {PER_LENGTH!r}, got {score_scale!r}")
    return float(score_scale)


def _row_counts(n: int, causal: bool, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, n, 1) number of keys each query row sums over: n, or i for causal row i."""
    if causal:
        return torch.arange(1, n + 1, device=like.device, dtype=like.dtype).view(1, 1, n, 1)
    return torch.full((1, 1, n, 1), float(n), device=like.device, dtype=like.dtype)


def pow2_scale(x: torch.Tensor) -> torch.Tensor:
    """Per vector (last dim, kept as size 1) the power of two 2⁻ᵉ that brings max|x| into [½, 1).

    Multiplying by a power of two is exact (no rounding), so x·2⁻ᵉ / ‖x·2⁻ᵉ‖ is bit-identical to
    x / ‖x‖ wherever ‖x‖² neither overflows nor underflows, and right where it does. The exponent is
    clamped so that 2⁻ᵉ itself is finite in x's dtype (a subnormal max|x| then lands below ½, still
    far from underflow). A zero, NaN or infinite vector gets 1. Not differentiated (a constant)."""
    m = x.detach().abs().amax(-1, keepdim=True)
    _, e = torch.frexp(m)  # m = f·2ᵉ with f ∈ [½, 1)
    emax = math.frexp(torch.finfo(x.dtype).max)[1]  # in Python: no tensor-to-int (torch.compile traces this)
    e = e.clamp_min(1 - emax)
    return torch.pow(2.0, -e.to(torch.float64)).to(x.dtype)


def l2_normalise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / max(‖x‖₂, eps) along the last dim (the F.normalize convention), for any finite x.

    ‖x‖ is computed on x·2⁻ᵉ (:func:`pow2_scale`), so it neither overflows for huge x (fp32 q around
    1e20 and above, fp16 around 3e2·√D) nor loses its digits to underflow for tiny x: the result is
    (x·2⁻ᵉ) / ‖x·2⁻ᵉ‖ where ‖x·2⁻ᵉ‖ > eps·2⁻ᵉ (that is ‖x‖ > eps), else x / eps, the same numbers.
    Gradients flow as through x / max(‖x‖, eps)."""
    sc = pow2_scale(x)
    xs = x * sc
    nrm = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    big = nrm > eps * sc
    return torch.where(big, xs / torch.where(big, nrm, torch.ones_like(nrm)), x / eps)


def eq4_denominator(den: torch.Tensor, count, eps: float) -> torch.Tensor:
    """eq4's denominator as divided by: ``den`` where the row's mean weight den/count is above ``eps``,
    and +∞ where it is not, so that such a row's output num/den is 0 and so is its gradient (see
    "eq4 at a vanishing denominator" in this module's docstring). A NaN den stays NaN."""
    return den.masked_fill(den <= eps * count, math.inf)


# --------------------------------------------------------------------------- softmax
def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Plain softmax attention with scale 1/√D, computed with the full N×N matrix (any dtype)."""
    _check_inputs(q, k, v)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


# --------------------------------------------------------------------------- quadratic forms
def affine_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    variant: str = "eq7",
    causal: bool = False,
    score_scale: float = 0.5,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The explicit (B, H, N, N) matrix of attention weights of an affine variant.

    eq4: rows are normalised weights (non-negative, summing to 1 over j ≤ i);
    eq7: entries are s(1 + q̂_i·k̂_j), in [0, 2s]. Masked entries are 0.
    """
    _check_variant(variant)
    qh, kh = l2_normalise(q, eps), l2_normalise(k, eps)
    w = 1.0 + torch.matmul(qh, kh.transpose(-1, -2))
    if causal:  # masked_fill, not a multiplication by the mask: 0·NaN would be NaN
        n = q.shape[-2]
        w = w.masked_fill(torch.ones(n, n, dtype=torch.bool, device=w.device).triu(1), 0.0)
    if variant == "eq4":
        return w / eq4_denominator(w.sum(-1, keepdim=True), _row_counts(q.shape[-2], causal, w), eps)
    if check_score_scale(score_scale) == PER_LENGTH:
        return w / _row_counts(q.shape[-2], causal, w)
    return score_scale * w


def quadratic_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    variant: str = "eq7",
    causal: bool = False,
    score_scale: float = 0.5,
    eps: float = 1e-6,
) -> torch.Tensor:
    """O(N²) form of an affine variant: the score matrix times v. For tests only."""
    _check_inputs(q, k, v)
    return torch.matmul(affine_scores(q, k, variant=variant, causal=causal, score_scale=score_scale, eps=eps), v)


# --------------------------------------------------------------------------- factorised reference
def linear_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    variant: str = "eq7",
    causal: bool = False,
    score_scale: float = 0.5,
    eps: float = 1e-6,
) -> torch.Tensor:
    """The factorised O(N·D·Dv) formula, written for clarity rather than speed.

    Non-causal: one state S = K̂ᵀV, z = Σ k̂, Σ v. Causal: running prefix sums
    (cumsum over N of the outer products would be O(N·D·Dv) memory, so the causal
    reference uses the per-step state via cumsum of k̂ vᵀ only on small inputs; the fast
    chunked path lives in ``linrepro.attention.torch_path``).
    """
    _check_inputs(q, k, v)
    _check_variant(variant)
    if variant == "eq7" and check_score_scale(score_scale) == PER_LENGTH:
        o = linear_attention_reference(q, k, v, variant=variant, causal=causal, score_scale=1.0, eps=eps)
        return o / _row_counts(q.shape[-2], causal, o)
    qh, kh = l2_normalise(q, eps), l2_normalise(k, eps)
    n = q.shape[-2]
    if not causal:
        state = torch.einsum("bhnd,bhne->bhde", kh, v)  # S = K̂ᵀV
        vsum = v.sum(-2, keepdim=True)  # Σ v
        num = vsum + torch.einsum("bhnd,bhde->bhne", qh, state)  # Σv + Sᵀq̂
        if variant == "eq7":
            return score_scale * num
        zsum = kh.sum(-2, keepdim=True)  # Σ k̂
        den = n + (qh * zsum).sum(-1, keepdim=True)
        return num / eq4_denominator(den, n, eps)
    # causal: prefix states S_i = Σ_{j≤i} k̂_j v_jᵀ
    states = torch.cumsum(torch.einsum("bhnd,bhne->bhnde", kh, v), dim=2)
    vcum = torch.cumsum(v, dim=2)
    num = vcum + torch.einsum("bhnd,bhnde->bhne", qh, states)
    if variant == "eq7":
        return score_scale * num
    zcum = torch.cumsum(kh, dim=2)
    count = _row_counts(n, True, q)
    den = count + (qh * zcum).sum(-1, keepdim=True)
    return num / eq4_denominator(den, count, eps)


# --------------------------------------------------------------------------- dispatcher
def _triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype | None = None) -> str:
    """Map ``backend`` ("auto" included) to the implementation that will run on ``device``.
    ``auto`` sends float64 to the torch path: the Triton kernels compute in fp32 and refuse it."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and dtype != torch.float64 else "torch"
    if backend == "triton" and device.type != "cuda" and not _triton_interpret():
        raise RuntimeError(
            f"backend='triton' needs CUDA tensors, got tensors on {device}. "
            "To run the Triton kernels on CPU set TRITON_INTERPRET=1 before importing triton "
            "(fp32/fp16 only), or use backend='torch'."
        )
    return backend


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    variant: str = "eq7",
    causal: bool = False,
    score_scale: float = 0.5,
    eps: float = 1e-6,
    backend: str = "auto",
) -> torch.Tensor:
    """Affine linear attention f(x) = 1 + x on L2-normalised q, k (paper Eq. 4 or Eq. 7).

    Args:
        q, k: (B, H, N, D); v: (B, H, N, Dv). Floating point, one device, one dtype, D, Dv ≤ 256.
        variant: ``"eq4"`` (normalised) or ``"eq7"`` (denominator-free, scores s(1+q̂·k̂) ∈ [0, 2s]).
        causal: sums over j ≤ i only (the text tower).
        score_scale: s in Eq. 7 (default ½ keeps every score in [0, 1]), or ``"1/N"``: s = 1/N
            (non-causal) and 1/i for causal row i, so the output is a mean rather than a sum and
            its norm no longer grows with N; ignored by eq4.
        eps: guard of the L2 norms (and eq4's vanishing-row threshold); a positive finite number.
        backend: ``"auto"`` (Triton on CUDA; elsewhere the exact form the measured cost model of
            :mod:`linrepro.attention.dispatch` predicts fastest), ``"triton"``, ``"torch"`` (tiled /
            chunked), ``"quadratic"`` (the N×N form, for short N) or ``"reference"``. While
            ``torch.compile`` traces, the torch forms run a branch-free equivalent
            (:func:`linrepro.attention.torch_path.linear_attention_traceable`).
    """
    _check_inputs(q, k, v, max_dim=MAX_HEAD_DIM)
    _check_variant(variant)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    chosen = resolve_backend(backend, q.device, q.dtype)
    scale = check_score_scale(score_scale)
    eps = check_eps(eps)
    if q.shape[-2] == 0 and chosen != "triton":  # empty sequence (the Triton entry point has its own check)
        return v.new_zeros(v.shape) + 0 * (q.sum() + k.sum() + v.sum())  # keeps the graph connected
    if chosen in ("torch", "quadratic") and torch.compiler.is_compiling():  # no data-dependent branch
        from linrepro.attention.torch_path import linear_attention_traceable

        o = linear_attention_traceable(
            q, k, v, variant=variant, causal=causal, score_scale=1.0 if scale == PER_LENGTH else float(scale), eps=eps
        )
        if variant == "eq7" and scale == PER_LENGTH:
            return o / _row_counts(q.shape[-2], causal, o)
        return o
    if backend == "auto" and chosen == "torch":  # off CUDA: the form the measured cost model predicts fastest
        from linrepro.attention.dispatch import choose_form

        chosen = choose_form(q, v, variant=variant, causal=causal)
    if chosen == "quadratic":  # takes the per-length scale itself (one autograd node, causal 1/i included)
        from linrepro.attention.quadratic import linear_attention_quadratic

        s_q = None if variant == "eq7" and scale == PER_LENGTH else scale
        return linear_attention_quadratic(q, k, v, variant=variant, causal=causal, score_scale=s_q, eps=eps)
    if variant == "eq7" and scale == PER_LENGTH:
        if not causal:  # one constant per call: the kernels take it as s
            return linear_attention(
                q, k, v, variant=variant, causal=False, score_scale=1.0 / max(q.shape[-2], 1), eps=eps, backend=chosen
            )
        o = linear_attention(q, k, v, variant=variant, causal=True, score_scale=1.0, eps=eps, backend=chosen)
        return o / _row_counts(q.shape[-2], True, o)
    s = 1.0 if scale == PER_LENGTH else float(scale)
    if chosen == "reference":
        return linear_attention_reference(q, k, v, variant=variant, causal=causal, score_scale=s, eps=eps)
    if chosen == "torch":
        from linrepro.attention.torch_path import linear_attention_torch

        return linear_attention_torch(q, k, v, variant=variant, causal=causal, score_scale=s, eps=eps)
    from linrepro.kernels import linear_attention_triton

    return linear_attention_triton(q, k, v, variant=variant, causal=causal, score_scale=s, eps=eps)
