"""Power-law fits of zero-shot error or final loss against model size and compute (notebook 05).

Model: ``y = a · x^(−b)``, a straight line in log-log space (least squares); ``b`` is the scaling
exponent. One **point** is one trained model: (model, attention, training seed).

Uncertainty: a **seed-level bootstrap** (:func:`fit_family`). Each resample draws, within
every size, the training seeds with replacement and then, within each drawn seed, what that
seed's number was measured from (its validation images for the zero-shot error; the steps of the
last tenth of training for the loss), averages to one y per size and refits the line. The
percentiles of the refitted exponents are its 95% interval; with one seed the interval covers
evaluation noise only, and the result says so (exploratory).

The LA − softmax exponent difference is **paired**: both attentions get the same resampled seed
indices and images at every size (the evaluation images are the same for every run), so what
the two share (a hard seed, a hard image) cancels. "The same scaling law" is then decided by the
declared rule, :func:`linrepro.study.rules.decide` with :data:`rules.SAME_EXPONENT` (equivalence
margin ±:data:`rules.EXPONENT_MARGIN` on b(LA) − b(softmax)), with two further labels:

* fewer than :data:`MIN_SIZES_FOR_VERDICT` sizes: a line through two points checks nothing of
  the power-law form: "inconclusive (needs ≥ 3 sizes)";
* an interval wider than the band: no interval that wide could ever lie inside it:
  "inconclusive (underpowered)", with its width.

The sampling scheme is that of :mod:`linrepro.study.stats` (seeds, then images; its ``_draws``);
only the statistic differs (an exponent instead of a mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from linrepro.study import rules, stats

#: a verdict on "the same scaling law" needs this many distinct sizes (a line through 2 points
#: fits any 2 points, so it says nothing about the power-law form)
MIN_SIZES_FOR_VERDICT = 3
BASE = "softmax"
METRICS = ("error", "loss")
X_KEYS = ("n_params_nonembed", "compute")


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares line through (log x, log y): returns exponent ``b`` (y ∝ x^−b) and prefactor ``a``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"a power-law fit needs at least 2 distinct sizes, got x = {x.tolist()}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"a power-law fit needs positive x and y, got x = {x.tolist()}, y = {y.tolist()}")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return {"b": float(-slope), "a": float(math.exp(intercept))}


def _lines(logx: np.ndarray, logy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of every row of ``logy`` (R, K) against ``logx`` (K,)."""
    cx = logx - logx.mean()
    slope = (logy - logy.mean(axis=1, keepdims=True)) @ cx / (cx @ cx)
    return slope, logy.mean(axis=1) - slope * logx.mean()


def training_compute(summary: dict, tokens_per_sample: int) -> float:
    """Approximate training FLOPs, 6 · (non-embedding parameters) · (tokens processed)."""
    return 6.0 * summary["n_params_nonembed"] * summary["steps"] * summary["batch_size"] * tokens_per_sample


# --------------------------------------------------------------------------- points
def _samples(p: dict, metric: str) -> np.ndarray:
    """What one point's y is the mean of: per-image errors (1 − correct), or late-step losses."""
    if metric == "error":
        if p.get("correct") is not None:
            return 1.0 - np.asarray(p["correct"], float)
        if p.get("confusion") is not None:  # an older 04 run: outcomes from the confusion matrix
            c = np.asarray(p["confusion"], dtype=np.int64)
            return np.r_[np.zeros(int(np.trace(c))), np.ones(int(c.sum() - np.trace(c)))]
        raise ValueError(f"point {p.get('model')}/{p.get('attention')} seed {p.get('seed')} has no 'correct' outcomes")
    if metric == "loss":
        t = p.get("tail_losses")
        if t is None or len(t) < 1:
            raise ValueError(f"point {p.get('model')}/{p.get('attention')} seed {p.get('seed')} has no tail losses")
        return np.asarray(t, float)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _groups(points: list[dict], x_key: str, metric: str, seeds: dict | None = None) -> dict:
    """{model: {"x", "seeds", "arr" (seeds, items)}} for one attention's points, smallest x first;
    ``seeds`` ({model: seed list}) keeps only those seeds (for a paired comparison)."""
    by_model: dict[str, list[dict]] = {}
    for p in points:
        if x_key not in p:
            raise ValueError(f"point {p.get('model')}/{p.get('attention')} has no {x_key!r}")
        by_model.setdefault(p["model"], []).append(p)
    out = {}
    for model, ps in by_model.items():
        keep = None if seeds is None else set(seeds.get(model, ()))
        ps = sorted(
            (p for p in ps if keep is None or int(p.get("seed", 0) or 0) in keep), key=lambda p: p.get("seed", 0) or 0
        )
        if not ps:
            continue
        got = [int(p.get("seed", 0) or 0) for p in ps]
        if len(set(got)) != len(got):
            raise ValueError(f"{model}/{ps[0].get('attention')} has a training seed twice: {got}")
        s = [_samples(p, metric) for p in ps]
        n = {len(x) for x in s}
        if len(n) > 1:
            if metric == "error":
                raise ValueError(
                    f"{model}/{ps[0].get('attention')}: every seed must be evaluated on the same images; "
                    f"got {sorted(n)} images"
                )
            s = [x[-min(n) :] for x in s]  # the same number of late steps for every seed
        out[model] = {"x": float(np.mean([p[x_key] for p in ps])), "seeds": got, "arr": np.vstack(s)}
    return dict(sorted(out.items(), key=lambda kv: kv[1]["x"]))


def _floor(points: list[dict], metric: str) -> float:
    """A perfect score is "error below one image", not zero (log 0): half an image of the fewest."""
    if metric != "error":
        return 1e-12
    return 0.5 / max(1, min(len(_samples(p, metric)) for p in points))


def _resampled_y(arr: np.ndarray, draw, floor: float) -> np.ndarray:
    seeds, items = draw
    return np.maximum(arr[seeds[..., None], items].mean(axis=(1, 2)), floor)


def _resampled_logy(groups: dict, n_resamples: int, seed: int, floor: float) -> np.ndarray:
    """log y of every size under each resample, (n_resamples, sizes). The draws are those of
    :mod:`linrepro.study.stats` (seeds with replacement, then items within each drawn seed), from
    one generator seeded with ``seed``, size by size in order, in chunks that bound the memory:
    two calls with the same ``seed`` and the same (seeds, items) shapes draw the same indices,
    which is what pairs two attentions."""
    rng = np.random.default_rng(seed)
    cols = []
    for g in groups.values():
        n_seeds, n_items = g["arr"].shape
        step = max(1, min(n_resamples, 4_000_000 // (n_seeds * n_items)))
        cols.append(
            np.concatenate(
                [
                    _resampled_y(g["arr"], stats._draws(n_seeds, n_items, min(step, n_resamples - i), rng), floor)
                    for i in range(0, n_resamples, step)
                ]
            )
        )
    return np.log(np.column_stack(cols))


# --------------------------------------------------------------------------- fits
def _fit_groups(
    groups: dict, n_resamples: int, seed: int, floor: float, confidence: float, band_points: int = 40
) -> dict:
    x = np.array([g["x"] for g in groups.values()])
    y = np.array([max(float(g["arr"].mean()), floor) for g in groups.values()])
    point = fit_power_law(x, y)
    logy = _resampled_logy(groups, n_resamples, seed, floor)
    slope, icpt = _lines(np.log(x), logy)
    al = (1 - confidence) / 2
    lo, hi = np.quantile(-slope, [al, 1 - al])
    xs = np.geomspace(x.min(), x.max(), band_points)
    pred = np.exp(icpt[:, None] + slope[:, None] * np.log(xs)[None, :])
    band_lo, band_hi = np.quantile(pred, [al, 1 - al], axis=0)
    return {
        **point,
        "b_lo": float(lo),
        "b_hi": float(hi),
        "width": float(hi - lo),
        "models": list(groups),
        "x": x.tolist(),
        "y": y.tolist(),
        "seeds_per_size": [len(g["seeds"]) for g in groups.values()],
        "n_sizes": len(groups),
        "n_seeds": min(len(g["seeds"]) for g in groups.values()),
        "points": [
            {"model": m, "seed": s, "x": g["x"], "y": max(float(row.mean()), floor)}
            for m, g in groups.items()
            for s, row in zip(g["seeds"], g["arr"])
        ],
        "band": {"x": xs.tolist(), "lo": band_lo.tolist(), "hi": band_hi.tolist()},
        "_b": -slope,
    }


def decide_same_law(diff, lo, hi, *, seeds: int, sizes: int) -> dict:
    """The declared rule on b(LA) − b(softmax), and a ``label`` that says why an inconclusive
    verdict is one: exploratory (< 3 seeds), needs ≥ 3 sizes, underpowered (interval wider
    than the band), or on the margin's edge."""
    r = rules.decide(diff, lo, hi, rules.SAME_EXPONENT, seeds=seeds, between_models=True)
    band_width = rules.SAME_EXPONENT.hi - rules.SAME_EXPONENT.lo
    r["sizes"] = sizes
    if sizes < MIN_SIZES_FOR_VERDICT:
        if r["verdict"] != "inconclusive":
            r["decided_before_cap"] = r.get("decided_before_cap", r["verdict"])
        r.update(
            verdict="inconclusive",
            label=f"inconclusive (needs ≥ {MIN_SIZES_FOR_VERDICT} sizes)",
            why=f"{sizes} size(s): a line through {sizes} point(s) does not test a power law; "
            f"a verdict needs ≥ {MIN_SIZES_FOR_VERDICT}",
        )
    elif r["verdict"] != "inconclusive":
        r["label"] = r["verdict"]
    elif (seeds or 0) < 3:
        r["label"] = "inconclusive (exploratory)"
    elif r["width"] is None:
        r["label"] = "inconclusive (no interval)"
    elif r["width"] > band_width:
        r["label"] = "inconclusive (underpowered)"
        r["why"] = f"the interval is {r['width']:.3g} wide, wider than the band ({band_width:.3g}): underpowered"
    else:
        r["label"] = "inconclusive (on the margin's edge)"
    r["text"] = rules.rule_text(r)
    return r


def fit_family(
    points: list[dict],
    *,
    x_key: str,
    metric: str,
    n_resamples: int = 2000,
    seed: int = 0,
    min_sizes: int = MIN_SIZES_FOR_VERDICT,
    base: str = BASE,
    confidence: float = 0.95,
) -> dict:
    """One fit (``metric`` against ``x_key``) for every attention with at least ``min_sizes``
    distinct sizes, and b(att) − b(``base``) for every other fitted attention, paired by model,
    training seed and image, decided by :func:`decide_same_law`.

    Returns ``{"metric", "x", "fits": {att: fit}, "differences": {att: difference},
    "not_fitted": {att: reason}}``."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise ValueError(f"n_resamples must be an integer ≥ 100, got {n_resamples!r}")
    if not isinstance(min_sizes, int) or min_sizes < 2:
        raise ValueError(f"min_sizes must be an integer ≥ 2 (a line needs 2 points), got {min_sizes!r}")
    if not points:
        raise ValueError("no points to fit")
    floor = _floor(points, metric)
    by_att: dict[str, list[dict]] = {}
    for p in points:
        by_att.setdefault(p["attention"], []).append(p)
    fits, not_fitted, groups = {}, {}, {}
    for att, ps in by_att.items():
        g = _groups(ps, x_key, metric)
        if len({v["x"] for v in g.values()}) < min_sizes:
            not_fitted[att] = f"not fitted: fewer than {min_sizes} sizes ({len(g)}: {', '.join(g)})"
            continue
        groups[att] = g
        f = _fit_groups(g, n_resamples, seed, floor, confidence)
        f.pop("_b")
        fits[att] = {**f, "n_resamples": n_resamples}
    diffs = {}
    if base in fits:
        for att in fits:
            if att == base:
                continue
            common = {
                m: sorted(set(groups[base][m]["seeds"]) & set(groups[att][m]["seeds"]))
                for m in groups[base]
                if m in groups[att]
            }
            common = {m: s for m, s in common.items() if s}
            gb = _groups(by_att[base], x_key, metric, common)
            ga = _groups(by_att[att], x_key, metric, common)
            if len(gb) < 2 or len({v["x"] for v in ga.values()}) < 2:
                not_fitted.setdefault(f"{att} − {base}", f"no difference: {len(gb)} size(s) in common")
                continue
            for m in gb:  # the same items for both (the last steps of the shorter run, for the loss)
                n = min(gb[m]["arr"].shape[1], ga[m]["arr"].shape[1])
                if metric == "error" and gb[m]["arr"].shape[1] != ga[m]["arr"].shape[1]:
                    raise ValueError(
                        f"{m}: {base} and {att} were evaluated on different images "
                        f"({gb[m]['arr'].shape[1]} vs {ga[m]['arr'].shape[1]}); a paired difference needs the same"
                    )
                gb[m]["arr"], ga[m]["arr"] = gb[m]["arr"][:, -n:], ga[m]["arr"][:, -n:]
            # the same seed and shapes: the same drawn seed indices and images for both attentions
            fb, fa = (_fit_groups(g, n_resamples, seed + 1, floor, confidence) for g in (gb, ga))
            d = fa["_b"] - fb["_b"]
            al = (1 - confidence) / 2
            lo, hi = np.quantile(d, [al, 1 - al])
            n_seeds, n_sizes = min(len(s) for s in common.values()), len(common)
            f1, f2 = fits[base], fits[att]
            rec = {
                "diff": fa["b"] - fb["b"],
                "diff_lo": float(lo),
                "diff_hi": float(hi),
                "width": float(hi - lo),
                "seeds": n_seeds,
                "sizes": n_sizes,
                "models": list(common),
                "intervals_overlap": bool(f1["b_lo"] <= f2["b_hi"] and f2["b_lo"] <= f1["b_hi"]),
                "diff_interval_contains_0": bool(lo <= 0 <= hi),
            }
            rec["decision"] = decide_same_law(rec["diff"], rec["diff_lo"], rec["diff_hi"], seeds=n_seeds, sizes=n_sizes)
            diffs[att] = rec
    else:
        for att in fits:
            not_fitted[f"{att} − {base}"] = f"no difference: {base} is not fitted"
    sizes = {att: len({p["model"] for p in ps}) for att, ps in by_att.items()}
    return {
        "metric": metric,
        "x": x_key,
        "fits": fits,
        "differences": diffs,
        "not_fitted": not_fitted,
        "sizes": sizes,
        "min_sizes": min_sizes,
    }


def fit_all(
    points: list[dict], *, n_resamples: int = 2000, seed: int = 0, min_sizes: int = MIN_SIZES_FOR_VERDICT
) -> dict:
    """Every fit of notebook 05: {error, loss} against {size, compute}, keyed "<metric> vs <x>"."""
    return {
        f"{metric} vs {x_key}": fit_family(
            points, x_key=x_key, metric=metric, n_resamples=n_resamples, seed=seed, min_sizes=min_sizes
        )
        for metric in METRICS
        for x_key in X_KEYS
    }


def decisions(results: dict) -> list[dict]:
    """Every (fit, attention) decision record, flat."""
    return [
        {"fit": name, "attention": att, **d["decision"]}
        for name, r in results.items()
        for att, d in (r.get("differences") or {}).items()
        if d.get("decision")
    ]


def overall(results: dict) -> dict:
    """One verdict over every fit: the common verdict when all agree, else inconclusive (as the
    findings of :mod:`linrepro.study.claims` combine them); its label says why."""
    ds = decisions(results)
    if not ds:
        n = max((f.get("n_sizes", 0) for r in results.values() for f in r["fits"].values()), default=0)
        return {
            "verdict": "inconclusive",
            "label": f"inconclusive (needs ≥ {MIN_SIZES_FOR_VERDICT} sizes)"
            if n < MIN_SIZES_FOR_VERDICT
            else "inconclusive (no LA − softmax difference)",
            "decisions": 0,
        }
    verdicts = {d["verdict"] for d in ds}
    labels = list(dict.fromkeys(d["label"] for d in ds))
    verdict = verdicts.pop() if len(verdicts) == 1 else "inconclusive"
    if len(labels) == 1:
        label = labels[0]
    elif verdict != "inconclusive":
        label = verdict
    else:  # the fits disagree: say which reads what, by metric (and attention when there are several)
        atts = {d["attention"] for d in ds}
        by: dict[str, list[str]] = {}
        for d in ds:
            key = d["fit"].split(" vs ")[0] + (f" ({d['attention']})" if len(atts) > 1 else "")
            by.setdefault(key, [])
            if d["label"] not in by[key]:
                by[key].append(d["label"])
        label = "inconclusive (the fits disagree: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in by.items()) + ")"
    return {"verdict": verdict, "label": label, "decisions": len(ds)}


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
    """One point per trained model (model, attention, training seed) of a ``03_clip_training``
    results.json: size, compute, the per-image outcomes on ``fit_domain`` and the losses of the
    last tenth of the steps.

    The outcomes come from ``eval_rows`` of a ``04_zero_shot_eval`` run when a row matches the
    model, attention and seed (a row without ``seed`` matches only a cell trained with one seed),
    else from training's own zero-shot pass. The main grid's summaries are used, and of the extra
    runs those whose attention is not in the main grid (``released``); score-scale ablations of a
    grid attention are skipped (they would clash with its cells)."""
    from linrepro.clip.train import read_steps
    from linrepro.study.evaluation import eval_summaries

    runs = eval_summaries(trained)
    seeds_per_cell: dict[tuple, int] = {}
    for s in runs:
        seeds_per_cell[(s["model"], s["attention"])] = seeds_per_cell.get((s["model"], s["attention"]), 0) + 1
    rows = [r for r in eval_rows or [] if r.get("domain") == fit_domain]
    points = []
    for s in runs:
        seed = int(s.get("seed", 0) or 0)
        zs = {z["domain"]: z for z in s.get("zero_shot", [])}
        z, source = zs.get(fit_domain), "03"
        for r in rows:
            if r.get("model") != s["model"] or r.get("attention") != s["attention"]:
                continue
            if r.get("seed") is None and seeds_per_cell[(s["model"], s["attention"])] > 1:
                continue  # an older 04 row: which seed it evaluated is unknown
            if (r.get("seed") is None or int(r["seed"]) == seed) and (r.get("correct") or r.get("confusion")):
                z, source = r, "04"
        if z is None:
            raise ValueError(
                f"run {s['model']}/{s['attention']} seed {seed} has no zero-shot result on {fit_domain!r}; "
                f"it has {sorted(zs)}"
            )
        steps = read_steps(s["run_dir"])
        tail = [x["loss"] for x in steps[-max(2, len(steps) // 10) :]]
        if len(tail) < 2:
            raise ValueError(f"run {s['run_dir']} logged {len(tail)} step(s); the loss fit needs at least 2")
        correct = z.get("correct")
        if correct is None:
            correct = (1.0 - _samples({"confusion": z["confusion"]}, "error")).tolist()
        points.append(
            {
                "model": s["model"],
                "attention": s["attention"],
                "seed": seed,
                "n_params_nonembed": s["n_params_nonembed"],
                "compute": training_compute(s, tokens_per_sample(s["model"], trained["dataset"].get("resolution"))),
                "top1": z["top1"],
                "error": 1.0 - float(z["top1"]),
                "final_loss": float(np.mean(tail)),
                "n_images": len(correct),
                "eval_source": source,
                "correct": [int(c) for c in correct],
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


# --------------------------------------------------------------------------- tables and text
def exponent_table(results: dict):
    """One row per (fit, attention): exponent with interval, and b(att) − b(softmax) with the
    decision; attentions that were not fitted get a row that says why."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        for att, f in r["fits"].items():
            d = r["differences"].get(att, {})
            dec = d.get("decision") or {}
            rows.append(
                {
                    "fit": name,
                    "attention": att,
                    "sizes": f.get("n_sizes", len(f.get("x", []))),
                    "seeds": f.get("n_seeds"),
                    "b": f["b"],
                    "b_lo": f["b_lo"],
                    "b_hi": f["b_hi"],
                    "width": f["b_hi"] - f["b_lo"],
                    "diff": d.get("diff"),
                    "diff_lo": d.get("diff_lo"),
                    "diff_hi": d.get("diff_hi"),
                    "diff_width": d.get("width"),
                    "verdict": dec.get("label", "— (the base)" if att == BASE else None),
                }
            )
        for att, why in (r.get("not_fitted") or {}).items():
            rows.append({"fit": name, "attention": att, "verdict": why})
    return pd.DataFrame(rows)


def _label(d: dict, n_sizes: int | None) -> str:
    """A difference's decision label (an older results.json has no decision: decide it now)."""
    if d.get("decision"):
        return d["decision"].get("label") or d["decision"]["verdict"]
    r = rules.decide(
        d.get("diff"),
        d.get("diff_lo"),
        d.get("diff_hi"),
        rules.SAME_EXPONENT,
        seeds=d.get("seeds"),
        between_models=d.get("seeds") is not None,
    )
    if n_sizes is not None and n_sizes < MIN_SIZES_FOR_VERDICT:
        return f"inconclusive (needs ≥ {MIN_SIZES_FOR_VERDICT} sizes)"
    return r["verdict"]


def _fmt(v, signed=False) -> str:
    v = round(float(v), 3) + 0.0
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def verdict_text(results: dict) -> str:
    """Markdown computed from the fits (no prose written in advance of the numbers): one line per
    LA − softmax difference, then one sentence that starts with "Verdict"."""
    lines = []
    margin = rules.EXPONENT_MARGIN
    for name, r in results.items():
        fs = r["fits"]
        for att, d in (r.get("differences") or {}).items():
            sm, la = fs[BASE], fs[att]
            n_sizes = d.get("sizes") or len(sm.get("x", []))
            seeds = d.get("seeds")
            lines.append(
                f"- **{name}**: softmax b = {_fmt(sm['b'])} [{_fmt(sm['b_lo'])}, {_fmt(sm['b_hi'])}], "
                f"{att} b = {_fmt(la['b'])} [{_fmt(la['b_lo'])}, {_fmt(la['b_hi'])}]; "
                f"b({att}) − b(softmax) = {_fmt(d['diff'], True)} [{_fmt(d['diff_lo'], True)}, "
                f"{_fmt(d['diff_hi'], True)}] (width {d['diff_hi'] - d['diff_lo']:.3f}; {n_sizes} sizes"
                + (f", {seeds} seed{'s' if seeds != 1 else ''}" if seeds is not None else "")
                + f") against the margin ±{margin:g}: **{_label(d, n_sizes)}**."
            )
        for att, why in (r.get("not_fitted") or {}).items():
            lines.append(f"- **{name}**: {att}: {why}.")
    ds = [
        (d, d.get("sizes") or len(r["fits"][BASE].get("x", [])))
        for r in results.values()
        for d in (r.get("differences") or {}).values()
    ]
    if ds:
        labels = [_label(d, n) for d, n in ds]
        verdicts = {lab.split(" (")[0] for lab in labels}
        v = verdicts.pop() if len(verdicts) == 1 else "inconclusive"
        if v == "inconclusive":
            v = labels[0] if len(set(labels)) == 1 else "inconclusive (the fits disagree)"
        widths = [d["diff_hi"] - d["diff_lo"] for d, _ in ds]
        sizes = sorted({n for _, n in ds})
        lines.append(
            f'\nVerdict on "LA follows the same scaling law": **{v}** over {len(ds)} exponent difference(s) '
            f"with {'/'.join(map(str, sizes))} sizes, under the declared equivalence margin ±{margin:g} on "
            f"b(LA) − b(softmax). The difference intervals are {min(widths):.3f} to {max(widths):.3f} wide "
            f"(the band is {2 * margin:g} wide)."
        )
    else:
        n = max((v for r in results.values() for v in (r.get("sizes") or {}).values()), default=0)
        lines.append(
            '\nVerdict on "LA follows the same scaling law": **inconclusive** — no LA − softmax exponent '
            "difference could be fitted"
            + (f" (needs ≥ {MIN_SIZES_FOR_VERDICT} sizes; this run has {n})" if 0 < n < MIN_SIZES_FOR_VERDICT else "")
            + "."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def fig_fit(result: dict, title: str):
    """Every seed's point, each size's mean, the fitted line and its bootstrap 95% band, on log-log
    axes, one colour per attention, the exponent with its interval in the legend."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for att, f in result["fits"].items():
        band = f.get("band")
        if band:
            fig.add_trace(
                go.Scatter(
                    x=band["x"] + band["x"][::-1],
                    y=band["hi"] + band["lo"][::-1],
                    fill="toself",
                    opacity=0.2,
                    mode="lines",
                    line={"width": 0},
                    name=f"{att} 95% band",
                    legendgroup=att,
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        pts = f.get("points") or []
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[p["x"] for p in pts],
                    y=[p["y"] for p in pts],
                    mode="markers",
                    name=f"{att}: one training seed",
                    legendgroup=att,
                    marker={"size": 7, "opacity": 0.55},
                    text=[f"{p['model']} seed {p['seed']}" for p in pts],
                )
            )
        fig.add_trace(
            go.Scatter(
                x=f["x"],
                y=f["y"],
                mode="markers",
                name=f"{att}: mean over seeds",
                legendgroup=att,
                marker={"size": 12, "symbol": "diamond-open", "line": {"width": 2}},
            )
        )
        xs = np.geomspace(min(f["x"]), max(f["x"]), 50)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=f["a"] * xs ** (-f["b"]),
                mode="lines",
                legendgroup=att,
                name=f"{att}: b = {f['b']:.2f} [{f['b_lo']:.2f}, {f['b_hi']:.2f}]",
            )
        )
    fig.update_xaxes(type="log", title=result["x"]).update_yaxes(type="log", title=result["metric"])
    return fig.update_layout(title=title)


def fig_exponents(table):
    """Left: each (fit, attention)'s exponent with its 95% interval. Right: b(LA) − b(softmax)
    with its paired interval against the declared equivalence band (shaded)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [r for r in (table.to_dict("records") if hasattr(table, "to_dict") else table) if r.get("b") == r.get("b")]
    rows = [r for r in rows if r.get("b") is not None and not (isinstance(r["b"], float) and math.isnan(r["b"]))]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=("exponent b (y ∝ x^−b)", "b(LA) − b(softmax), paired"),
    )
    m = rules.EXPONENT_MARGIN
    fig.add_vrect(x0=-m, x1=m, fillcolor="#999999", opacity=0.2, line_width=0, row=1, col=2)
    fig.add_vline(x=0, line={"color": "#4D4D4D", "width": 1}, row=1, col=2)
    for att in dict.fromkeys(r["attention"] for r in rows):
        sel = [r for r in rows if r["attention"] == att]
        fig.add_trace(
            go.Scatter(
                x=[r["b"] for r in sel],
                y=[r["fit"] for r in sel],
                mode="markers",
                name=att,
                legendgroup=att,
                marker={"size": 11},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["b_hi"] - r["b"] for r in sel],
                    "arrayminus": [r["b"] - r["b_lo"] for r in sel],
                },
            ),
            row=1,
            col=1,
        )
        dsel = [r for r in sel if r.get("diff") is not None and r["diff"] == r["diff"]]
        if dsel:
            fig.add_trace(
                go.Scatter(
                    x=[r["diff"] for r in dsel],
                    y=[r["fit"] for r in dsel],
                    mode="markers",
                    name=f"{att} − softmax",
                    legendgroup=att,
                    showlegend=False,
                    marker={"size": 11},
                    text=[r["verdict"] for r in dsel],
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [r["diff_hi"] - r["diff"] for r in dsel],
                        "arrayminus": [r["diff"] - r["diff_lo"] for r in dsel],
                    },
                ),
                row=1,
                col=2,
            )
    return fig.update_layout(
        title=f"Scaling exponents with seed-level bootstrap 95% intervals; shaded: the equivalence band ±{m:g}"
    )
