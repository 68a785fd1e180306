"""Intervals over seeds and images, paired comparisons, and multiple-testing correction.

A trained model's accuracy varies with its seed (initialisation and data order) and with the
finite evaluation set. Both are resampled here, in that order (a two-stage, hierarchical
bootstrap): draw seeds with replacement, then, within each drawn seed, images with replacement.
The outcomes of one seed are aligned with every other seed's (the same evaluation images in the
same order), so two methods can be compared **paired**: the same resampled seeds and images for
both.

* :func:`seed_image_interval`: mean over seeds of the per-seed mean, with its interval;
* :func:`paired_difference`: B − A with its interval, a two-sided bootstrap p-value, and the
  seed-level paired t-test beside it when there are at least 3 seeds;
* :func:`holm`: Holm's step-down adjustment of the p-values of a table's cells.

One seed gives an interval over images only; the result says so (``seeds`` = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _outcomes(x, name: str) -> np.ndarray:
    """(seeds, images) float array; every seed must have the same evaluation images."""
    try:
        arr = np.asarray([np.asarray(s, float) for s in x], float)
    except ValueError:
        lengths = sorted({len(s) for s in x})
        raise ValueError(f"{name}: every seed must be evaluated on the same images; got lengths {lengths}") from None
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name}: expected (seeds, images) outcomes, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: outcomes contain NaN or inf")
    return arr


def _draws(n_seeds: int, n_images: int, n_resamples: int, rng: np.random.Generator):
    """Resampled seed indices (R, S) and, per drawn seed, image indices (R, S, I)."""
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds)) if n_seeds > 1 else np.zeros((n_resamples, 1), int)
    images = rng.integers(0, n_images, size=(n_resamples, n_seeds, n_images))
    return seeds, images


def _resampled_means(arr: np.ndarray, seeds: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Mean over drawn seeds of the mean over drawn images, one per resample."""
    rows = arr[seeds[..., None], images]  # (R, S, I)
    return rows.mean(axis=(1, 2))


def _check(n_resamples: int, confidence: float) -> None:
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"n_resamples must be an integer ≥ 100, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def seed_image_interval(
    outcomes: Sequence[Sequence[float]], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Mean of per-image outcomes (e.g. 1 for a correct zero-shot prediction), averaged over seeds,
    with a percentile interval from the two-stage bootstrap (seeds, then images)."""
    _check(n_resamples, confidence)
    arr = _outcomes(outcomes, "outcomes")
    rng = np.random.default_rng(seed)
    means = _resampled_means(arr, *_draws(*arr.shape, n_resamples, rng))
    a = (1 - confidence) / 2
    lo, hi = np.quantile(means, [a, 1 - a])
    return {
        "mean": float(arr.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "seeds": int(arr.shape[0]),
        "n_images": int(arr.shape[1]),
        "per_seed": arr.mean(axis=1).tolist(),
        "confidence": confidence,
    }


def paired_difference(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """B − A, paired by seed and by image: the same resampled seeds and images for both methods.

    ``p_value`` is the two-sided bootstrap p-value of "no difference" (twice the smaller tail of
    the resampled differences at 0, at least 1/n_resamples). With ≥ 3 seeds the seed-level
    paired t-test (:func:`scipy.stats.ttest_rel` on the per-seed means) is reported beside it."""
    _check(n_resamples, confidence)
    A, B = _outcomes(a, "a"), _outcomes(b, "b")
    if A.shape != B.shape:
        raise ValueError(f"paired outcomes need the same (seeds, images) shape; got a {A.shape} and b {B.shape}")
    d = B - A
    rng = np.random.default_rng(seed)
    diffs = _resampled_means(d, *_draws(*d.shape, n_resamples, rng))
    al = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [al, 1 - al])
    tail = min((diffs <= 0).mean(), (diffs >= 0).mean())
    p = float(min(1.0, max(2 * tail, 1.0 / n_resamples)))
    out = {
        "diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": p,
        "seeds": int(d.shape[0]),
        "n_images": int(d.shape[1]),
        "per_seed_diff": d.mean(axis=1).tolist(),
        "confidence": confidence,
        "t_test_p": None,
    }
    if d.shape[0] >= 3:
        from scipy import stats

        per_a, per_b = A.mean(axis=1), B.mean(axis=1)
        if np.ptp(per_b - per_a) > 0:
            out["t_test_p"] = float(stats.ttest_rel(per_b, per_a).pvalue)
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (family-wise error across the cells
    of one table): the k-th smallest is multiplied by (m − k + 1), then made non-decreasing."""
    p = np.asarray(p_values, float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one list, got shape {p.shape}")
    if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out.tolist()
