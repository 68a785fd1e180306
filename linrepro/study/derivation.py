"""The numerical checks behind notebook ``01_kernel_derivation``.

Each function returns plain records (lists of dicts) so the notebook only tabulates and plots.
All checks run in float64 on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from linrepro.attention import affine_scores, l2_normalise, linear_attention, quadratic_reference, softmax_attention

F64 = torch.float64


def _rand(shape, gen):
    return torch.randn(*shape, generator=gen, dtype=F64)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (0 when both vanish)."""
    scale = b.abs().max().item()
    err = (a - b).abs().max().item()
    return err / scale if scale > 0 else err


def factorisation_errors(
    ns, ds, *, backends=("reference", "torch"), seed: int = 0, batch: int = 1, heads: int = 2, score_scale: float = 0.5
) -> list[dict]:
    """Max relative error of each factorised path against the N×N quadratic form (float64)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n in ns:
        for d in ds:
            q, k, v = (_rand((batch, heads, n, d), gen) for _ in range(3))
            for variant in ("eq4", "eq7"):
                for causal in (False, True):
                    ref = quadratic_reference(q, k, v, variant=variant, causal=causal, score_scale=score_scale)
                    for backend in backends:
                        out = linear_attention(
                            q, k, v, variant=variant, causal=causal, score_scale=score_scale, backend=backend
                        )
                        rows.append(
                            {
                                "N": n,
                                "D": d,
                                "variant": variant,
                                "causal": causal,
                                "backend": backend,
                                "max_rel_err": rel_err(out, ref),
                            }
                        )
    return rows


def dot_product_range(n: int, d: int, seed: int = 0) -> dict:
    """Range of q̂·k̂ over random pairs plus the extreme pairs k = q and k = −q."""
    gen = torch.Generator().manual_seed(seed)
    q = _rand((n, d), gen)
    k = torch.cat([_rand((n, d), gen), q[:1] * 3.0, -q[:1] * 0.5])
    dots = l2_normalise(q) @ l2_normalise(k).T
    return {
        "n_pairs": dots.numel(),
        "D": d,
        "min": dots.min().item(),
        "max": dots.max().item(),
        "within_[-1,1]": bool((dots.abs() <= 1 + 1e-12).all()),
    }


def weight_properties(n: int, d: int, seed: int = 0, score_scale: float = 0.5) -> dict:
    """eq4 rows are non-negative and sum to 1; eq7 scores lie in [0, 2s] = [0, 1] for s = ½."""
    gen = torch.Generator().manual_seed(seed)
    q, k = _rand((1, 1, n, d), gen), _rand((1, 1, n, d), gen)
    # include the extreme scores 0 and 2s (not in row 0, whose causal row would be all-zero: 0/0)
    k[..., 1, :] = -q[..., 1, :]
    k[..., 2, :] = q[..., 2, :]
    out = {}
    for causal in (False, True):
        w4 = affine_scores(q, k, variant="eq4", causal=causal)
        w7 = affine_scores(q, k, variant="eq7", causal=causal, score_scale=score_scale)
        tag = "causal" if causal else "noncausal"
        out[tag] = {
            "eq4_min_weight": w4.min().item(),
            "eq4_max_abs_rowsum_minus_1": (w4.sum(-1) - 1).abs().max().item(),
            "eq7_min_score": w7.min().item(),
            "eq7_max_score": w7.max().item(),
        }
    return out


def eq6_counterexample(d: int = 8, seed: int = 0) -> dict:
    """The critique's counterexample to 'normalised weight ≤ 2/i': i = 3, k₁ = q, k₂ = k₃ = −q."""
    gen = torch.Generator().manual_seed(seed)
    q = _rand((1, 1, 1, d), gen)
    k = torch.cat([q, -q, -q], dim=2)
    qs = q.expand(1, 1, 3, d)
    w = affine_scores(qs, k, variant="eq4", causal=False)[0, 0, 0]
    i = 3
    return {
        "i": i,
        "weights": w.tolist(),
        "first_weight": w[0].item(),
        "bound_2_over_i": 2 / i,
        "bound_violated": bool(w[0].item() > 2 / i),
    }


def structured_inputs(n: int, d: int, kind: str, gen: torch.Generator):
    """'random': iid Gaussian q, k. 'needle': one key aligned with every query, the rest random.
    'clustered': keys near one of 4 centres, queries near centre 0."""
    if kind == "random":
        return _rand((1, 1, n, d), gen), _rand((1, 1, n, d), gen)
    if kind == "needle":
        q = _rand((1, 1, 1, d), gen).expand(1, 1, n, d).clone()
        k = _rand((1, 1, n, d), gen)
        k[..., n // 2, :] = q[..., 0, :] * 4.0
        return q, k
    if kind == "clustered":
        centres = _rand((4, d), gen) * 3
        idx = torch.randint(0, 4, (n,), generator=gen)
        k = (centres[idx] + 0.3 * _rand((n, d), gen)).view(1, 1, n, d)
        q = (centres[0] + 0.3 * _rand((n, d), gen)).view(1, 1, n, d)
        return q, k
    raise ValueError(f"unknown input kind {kind!r}; expected 'random', 'needle' or 'clustered'")


def _weights(q, k, method, score_scale):
    if method == "softmax":
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    if method == "eq7 s=1/N":  # the per-length scale over the N keys (q may hold fewer rows than k)
        return affine_scores(q, k, variant="eq7", score_scale=1.0 / k.shape[-2])
    return affine_scores(q, k, variant=method, score_scale=score_scale)


def score_decay(
    ns,
    d: int = 64,
    kinds=("random", "needle", "clustered"),
    n_queries: int = 64,
    seed: int = 0,
    score_scale: float = 0.5,
) -> list[dict]:
    """Max and mean attention weight per query, against N, for softmax, eq4, eq7 (scale
    ``score_scale``) and eq7 with the per-length scale s = 1/N (what the CLIPs of 03 train with).

    Only ``n_queries`` rows of the N×N matrix are formed, so this stays cheap at large N.
    """
    rows = []
    for kind in kinds:
        for n in ns:
            gen = torch.Generator().manual_seed(seed + n)
            q, k = structured_inputs(n, d, kind, gen)
            q = q[..., : min(n_queries, n), :]
            for method in ("softmax", "eq4", "eq7", "eq7 s=1/N"):
                w = _weights(q, k, method, score_scale)
                rows.append(
                    {
                        "inputs": kind,
                        "N": n,
                        "method": method,
                        "max_weight": w.max(-1).values.mean().item(),
                        "mean_weight": w.mean().item(),
                    }
                )
    return rows


def eq7_norm_growth(ns, d: int = 64, seed: int = 0, score_scale: float = 0.5) -> list[dict]:
    """Mean ‖o_i‖ of eq4, eq7 (scale ``score_scale``) and eq7 with the per-length scale s = 1/N
    against N (random q, k, v), via the factorised path."""
    rows = []
    for n in ns:
        gen = torch.Generator().manual_seed(seed + n)
        q, k, v = (_rand((1, 1, n, d), gen) for _ in range(3))
        for name, variant, s in (("eq4", "eq4", score_scale), ("eq7", "eq7", score_scale), ("eq7 s=1/N", "eq7", "1/N")):
            o = linear_attention(q, k, v, variant=variant, score_scale=s, backend="torch")
            rows.append({"N": n, "variant": name, "mean_out_norm": o.norm(dim=-1).mean().item()})
    return rows


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    from scipy import stats

    return float(stats.linregress(np.log(np.asarray(x, float)), np.log(np.asarray(y, float))).slope)


def flop_counts(ns, d: int = 64, dv: int | None = None) -> list[dict]:
    """Multiply-adds ×2 for one head: softmax 2N²D + 2N²Dv; affine LA 4N·D·Dv (+ lower order)."""
    dv = d if dv is None else dv
    rows = []
    for n in ns:
        rows.append(
            {
                "N": n,
                "softmax": 2 * n * n * d + 2 * n * n * dv,
                "linear": 2 * n * d * dv + 2 * n * d * dv + 4 * n * (d + dv),
            }
        )
    return rows


def flop_crossover(d: int = 64, dv: int | None = None) -> int:
    """Smallest N at which the LA FLOP count is below softmax's."""
    dv = d if dv is None else dv
    n = 1
    while True:
        r = flop_counts([n], d, dv)[0]
        if r["linear"] < r["softmax"]:
            return n
        n += 1


def softmax_reference_check(n: int, d: int, seed: int = 0) -> float:
    """softmax_attention against torch's SDPA (math backend) in float64: max relative error."""
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (_rand((1, 2, n, d), gen) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return rel_err(softmax_attention(q, k, v), ref)
