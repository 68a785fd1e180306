"""Power-law fits of zero-shot error or final loss against model size and compute (notebook 05).

Model: ``y = a · x^(−b)``, fitted as a straight line in log-log space (least squares); ``b`` is
the scaling exponent. Uncertainty comes from :func:`scipy.stats.bootstrap`, resampling what each
point was measured from:

* zero-shot error: the validation images of each model (each image's correct/wrong outcome,
  recovered from the confusion matrix), resampled independently per model;
* final loss: the per-step losses of the last tenth of each run (at least 2 steps).

So the intervals cover evaluation noise only. With one training seed per size, seed-to-seed
variation is not in them, and with three sizes the fit has one degree of freedom: intervals are
wide, and that is the honest state of a three-point scaling law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares line through (log x, log y): returns exponent ``b`` (y ∝ x^−b) and prefactor ``a``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs at least 2 distinct sizes, got x = {x.tolist()}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"a power-law fit needs positive x and y, got x = {x.tolist()}, y = {y.tolist()}")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return {"b": float(-slope), "a": float(math.exp(intercept))}


def _outcomes(confusion) -> np.ndarray:
    """One 0/1 outcome per evaluated image, from a confusion matrix (rows true, columns predicted)."""
    c = np.asarray(confusion, dtype=np.int64)
    right = int(np.trace(c))
    return np.r_[np.ones(right), np.zeros(int(c.sum()) - right)]


def _error(o: np.ndarray, floor: float) -> float:
    return max(1.0 - float(np.mean(o)), floor)


def bootstrap_exponent(
    x: Sequence[float],
    samples: Sequence[np.ndarray],
    stat,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Exponent of ``stat(sample_i)`` against ``x_i`` with a percentile bootstrap interval."""
    from scipy.stats import bootstrap

    x = np.asarray(x, float)
    samples = [np.asarray(s, float) for s in samples]

    def exponent(*res):
        return fit_power_law(x, [stat(r) for r in res])["b"]

    point = fit_power_law(x, [stat(s) for s in samples])
    ci = bootstrap(
        tuple(samples),
        exponent,
        n_resamples=n_resamples,
        vectorized=False,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = ci.confidence_interval
    return {**point, "b_lo": float(lo), "b_hi": float(hi), "n_points": len(x), "n_resamples": n_resamples}


def bootstrap_difference(
    x1, s1, x2, s2, stat, *, n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """``b2 − b1`` (second family minus first) with a percentile bootstrap interval."""
    from scipy.stats import bootstrap

    x1, x2 = np.asarray(x1, float), np.asarray(x2, float)
    k = len(s1)

    def diff(*res):
        return fit_power_law(x2, [stat(r) for r in res[k:]])["b"] - fit_power_law(x1, [stat(r) for r in res[:k]])["b"]

    samples = tuple(np.asarray(s, float) for s in (*s1, *s2))
    point = diff(*samples)
    ci = bootstrap(
        samples,
        diff,
        n_resamples=n_resamples,
        vectorized=False,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    lo, hi = ci.confidence_interval
    return {"diff": float(point), "diff_lo": float(lo), "diff_hi": float(hi)}


def training_compute(summary: dict, tokens_per_sample: int) -> float:
    """Approximate training FLOPs, 6 · (non-embedding parameters) · (tokens processed)."""
    return 6.0 * summary["n_params_nonembed"] * summary["steps"] * summary["batch_size"] * tokens_per_sample


def fit_families(points: list[dict], *, x_key: str, metric: str, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Fit every attention's points (``x_key`` → x; metric ``error`` uses ``confusion``, ``loss``
    uses ``tail_losses``), and the LA − softmax exponent difference for each LA attention."""
    if metric == "error":
        n_min = min(int(np.asarray(p["confusion"]).sum()) for p in points)
        floor = 0.5 / max(n_min, 1)  # a perfect score is "error below one image", not zero

        def stat(o):
            return _error(o, floor)

        def sample(p):
            return _outcomes(p["confusion"])
    elif metric == "loss":

        def stat(o):
            return float(np.mean(o))

        def sample(p):
            return np.asarray(p["tail_losses"], float)
    else:
        raise ValueError(f"metric must be 'error' or 'loss', got {metric!r}")
    by_att: dict[str, list[dict]] = {}
    for p in sorted(points, key=lambda p: p[x_key]):
        by_att.setdefault(p["attention"], []).append(p)
    fits = {}
    for att, ps in by_att.items():
        fits[att] = {
            **bootstrap_exponent(
                [p[x_key] for p in ps], [sample(p) for p in ps], stat, n_resamples=n_resamples, seed=seed
            ),
            "x": [p[x_key] for p in ps],
            "y": [stat(sample(p)) for p in ps],
        }
    diffs = {}
    if "softmax" in by_att:
        for att in by_att:
            if att != "softmax":
                sm, la = by_att["softmax"], by_att[att]
                d = bootstrap_difference(
                    [p[x_key] for p in sm],
                    [sample(p) for p in sm],
                    [p[x_key] for p in la],
                    [sample(p) for p in la],
                    stat,
                    n_resamples=n_resamples,
                    seed=seed,
                )
                f1, f2 = fits["softmax"], fits[att]
                d["intervals_overlap"] = bool(f1["b_lo"] <= f2["b_hi"] and f2["b_lo"] <= f1["b_hi"])
                d["diff_interval_contains_0"] = bool(d["diff_lo"] <= 0 <= d["diff_hi"])
                diffs[att] = d
    return {"metric": metric, "x": x_key, "fits": fits, "differences": diffs}


def fit_all(points: list[dict], *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Every fit of notebook 05: {error, loss} against {size, compute}, keyed "<metric> vs <x>"."""
    return {
        f"{metric} vs {x_key}": fit_families(points, x_key=x_key, metric=metric, n_resamples=n_resamples, seed=seed)
        for metric in ("error", "loss")
        for x_key in ("n_params_nonembed", "compute")
    }


def fig_fit(result: dict, title: str):
    """Points and fitted lines on log-log axes, one colour per attention, exponents in the legend."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for att, f in result["fits"].items():
        x = np.asarray(f["x"], float)
        xs = np.geomspace(x.min(), x.max(), 50)
        label = f"{att}: b = {f['b']:.2f} [{f['b_lo']:.2f}, {f['b_hi']:.2f}]"
        fig.add_trace(
            go.Scatter(
                x=f["x"], y=f["y"], mode="markers", name=f"{att} (measured)", legendgroup=att, marker={"size": 10}
            )
        )
        fig.add_trace(go.Scatter(x=xs, y=f["a"] * xs ** (-f["b"]), mode="lines", name=label, legendgroup=att))
    fig.update_xaxes(type="log", title=result["x"]).update_yaxes(type="log", title=result["metric"])
    return fig.update_layout(title=title)


def fig_exponents(rows: list[dict]):
    """Exponent and its 95% interval for each (fit, attention): overlap is visible at a glance."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for att in dict.fromkeys(r["attention"] for r in rows):
        sel = [r for r in rows if r["attention"] == att]
        fig.add_trace(
            go.Scatter(
                x=[r["b"] for r in sel],
                y=[r["fit"] for r in sel],
                mode="markers",
                name=att,
                marker={"size": 11},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["b_hi"] - r["b"] for r in sel],
                    "arrayminus": [r["b"] - r["b_lo"] for r in sel],
                },
            )
        )
    return fig.update_layout(
        title="Scaling exponents b with bootstrap 95% intervals", xaxis_title="exponent b (y ∝ x^−b)"
    )


def tokens_per_sample(model_name: str, resolution: int | None = None) -> int:
    """Image tokens (patches + class token) plus the text context length of an open_clip config."""
    import open_clip

    from linrepro import clip

    clip.register_models()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"no open_clip config for model {model_name!r}")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    side = int(resolution or v["image_size"])
    return (side // v["patch_size"]) ** 2 + 1 + int(t.get("context_length", 77))


def _run_path(run) -> Path:
    """A run folder as an absolute, resolved path (a relative one is taken from the project root,
    as ``linrepro.study.runs.find_run`` takes it)."""
    p = Path(run)
    if not p.is_absolute():
        from linrepro.utils import project

        p = project.root() / p
    return p.resolve()


def eval_for_training(train_source, eval_source, evaluated: dict | None, *, explicit: bool) -> dict | None:
    """The ``04_zero_shot_eval`` results to fit with the models of ``train_source``, or ``None``.

    ``evaluated`` is the results.json of the 04 run at ``eval_source`` (``None``: there is none).
    It is used only if it evaluated ``train_source``'s models (its ``source_run``). An eval run of
    another training run is never dropped silently when it was asked for: with ``explicit`` (the
    user passed ``eval_run``) a ValueError names both training runs and the eval run; without it
    (``eval_source`` is merely the latest 04 run found) it is skipped and ``None`` is returned, so
    the fit uses training's own zero-shot pass.
    """
    if eval_source is None or evaluated is None:
        if explicit:
            raise ValueError(f"eval_run {eval_source} was given but its results could not be read")
        return None
    recorded = evaluated.get("source_run")
    if recorded is not None and _run_path(recorded) == _run_path(train_source):
        return evaluated
    if explicit:
        if recorded is None:
            raise ValueError(
                f"eval_run {eval_source} does not record which training run it evaluated (its results have no "
                f"source_run), so it cannot be matched to training run {train_source}. Pass a 04 run that "
                f"evaluated {train_source}, or leave eval_run empty to use training's own zero-shot results."
            )
        raise ValueError(
            f"eval_run {eval_source} evaluated the models of training run {recorded}, not those of training run "
            f"{train_source}. Pass the 04 run that evaluated {train_source} (or set train_run to {recorded}), "
            "or leave eval_run empty to use training's own zero-shot results."
        )
    return None


def points_from_training(trained: dict, fit_domain: str, eval_rows: list[dict] | None = None) -> list[dict]:
    """One point per trained model of a ``03_clip_training`` results.json: size, compute, the
    confusion matrix on ``fit_domain`` (from ``eval_rows`` of a ``04_zero_shot_eval`` run when
    given, else from training's own zero-shot pass) and the losses of the last tenth of the steps."""
    from linrepro.clip.train import read_steps

    points = []
    for s in trained["summaries"]:
        zs = {z["domain"]: z for z in s.get("zero_shot", [])}
        zs.update(
            {r["domain"]: r for r in eval_rows or [] if r["model"] == s["model"] and r["attention"] == s["attention"]}
        )
        if fit_domain not in zs:
            raise ValueError(
                f"run {s['model']}/{s['attention']} has no zero-shot result on {fit_domain!r}; it has {sorted(zs)}"
            )
        steps = read_steps(s["run_dir"])
        tail = [x["loss"] for x in steps[-max(2, len(steps) // 10) :]]
        if len(tail) < 2:
            raise ValueError(f"run {s['run_dir']} logged {len(tail)} step(s); the loss fit needs at least 2")
        points.append(
            {
                "model": s["model"],
                "attention": s["attention"],
                "n_params_nonembed": s["n_params_nonembed"],
                "compute": training_compute(s, tokens_per_sample(s["model"], trained["dataset"].get("resolution"))),
                "top1": zs[fit_domain]["top1"],
                "final_loss": float(np.mean(tail)),
                "confusion": zs[fit_domain]["confusion"],
                "tail_losses": tail,
            }
        )
    sizes = {p["n_params_nonembed"] for p in points}
    if len(sizes) < 2:
        raise ValueError(
            f"a scaling fit needs models of at least 2 sizes; this run has {len(sizes)} "
            f"({sorted({p['model'] for p in points})})"
        )
    return points


def exponent_table(results: dict):
    """One row per (fit, attention): exponent with interval, and the LA − softmax difference."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        for att, f in r["fits"].items():
            d = r["differences"].get(att, {})
            rows.append(
                {
                    "fit": name,
                    "attention": att,
                    "b": f["b"],
                    "b_lo": f["b_lo"],
                    "b_hi": f["b_hi"],
                    "width": f["b_hi"] - f["b_lo"],
                    "diff": d.get("diff"),
                    "diff_lo": d.get("diff_lo"),
                    "diff_hi": d.get("diff_hi"),
                    "intervals_overlap": d.get("intervals_overlap"),
                    "diff_contains_0": d.get("diff_interval_contains_0"),
                }
            )
    return pd.DataFrame(rows)


def same_law_verdict(results: dict) -> str:
    """``supported`` when every fit's LA − softmax interval contains 0, ``contradicted`` when
    none does, else ``inconclusive``."""
    flags = [d["diff_interval_contains_0"] for r in results.values() for d in r["differences"].values()]
    if not flags:
        return "inconclusive"
    return "supported" if all(flags) else ("contradicted" if not any(flags) else "inconclusive")


def verdict_text(results: dict) -> str:
    """Markdown sentences computed from the fits (no prose written in advance of the numbers)."""
    lines = []
    for name, r in results.items():
        fs = r["fits"]
        for att, d in r["differences"].items():
            sm, la = fs["softmax"], fs[att]
            lines.append(
                f"- **{name}**: softmax b = {sm['b']:.2f} [{sm['b_lo']:.2f}, {sm['b_hi']:.2f}], "
                f"{att} b = {la['b']:.2f} [{la['b_lo']:.2f}, {la['b_hi']:.2f}]; the intervals "
                f"{'overlap' if d['intervals_overlap'] else 'do not overlap'}. "
                f"b({att}) − b(softmax) = {d['diff']:+.2f} [{d['diff_lo']:+.2f}, {d['diff_hi']:+.2f}], "
                f"{'which contains 0' if d['diff_interval_contains_0'] else 'which excludes 0'}."
            )
    widths = [f["b_hi"] - f["b_lo"] for r in results.values() for f in r["fits"].values()]
    v = same_law_verdict(results)
    n = {len(f["x"]) for r in results.values() for f in r["fits"].values()}
    lines.append(
        f'\nVerdict on "LA follows the same scaling law": **{v}** over {len(results)} fits with '
        f"{'/'.join(map(str, sorted(n)))} sizes each. The exponent intervals are {min(widths):.2f} to "
        f"{max(widths):.2f} wide, so a difference smaller than that could not be detected here."
    )
    return "\n".join(lines)
