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


def eval_sets(
    domains: Iterable[str] = (),
    dataset: dict | None = None,
    *,
    limit: int | None = None,
    imagefolder: str = "",
    imagefolder_classnames: str = "",
    imagenet1k_root: str = "",
    imagenet21k_root: str = "",
    imagenet21k_classnames: str = "",
) -> list[zeroshot.EvalSet]:
    """Every requested evaluation set, built (and so checked) before any model is loaded."""
    d = dataset or {}
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


def evaluate_runs(
    summaries: list[dict], sets: list[zeroshot.EvalSet], resolution: int, *, progress: bool = True
) -> list[dict]:
    """One row per (model, attention, evaluation set) at ``resolution``: top-1/top-5, confusion."""
    rows = []
    with progress_bar(len(summaries) * len(sets), f"zero-shot @ {resolution}px", progress) as bar:
        for s in summaries:
            model, preprocess, tokenizer = ex.load_model(s, resolution=resolution)
            for es in sets:
                r = zeroshot.evaluate_set(model, tokenizer, preprocess, es, resolution)
                rows.append(
                    {
                        "model": s["model"],
                        "attention": s["attention"],
                        "n_params": s.get("n_params"),
                        "tokens": zeroshot.image_tokens(model),
                        **r,
                    }
                )
                bar.update()
    return rows


def resolution_sweep(
    summaries: list[dict], sets: list[zeroshot.EvalSet], resolutions: Iterable[int], *, progress: bool = True
) -> list[dict]:
    """:func:`evaluate_runs` at every resolution (bundled domains are re-rendered at each)."""
    rows = []
    for r in resolutions:
        rows += evaluate_runs(summaries, sets, int(r), progress=progress)
    return rows


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


def finetune_at_resolution(
    summary: dict,
    dataset: dict,
    resolution: int,
    out_dir,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 1e-4,
    warmup: int = 10,
    seed: int = 0,
    quiet: bool = True,
) -> dict:
    """Continue training a run at a new input resolution (open_clip_train ``--pretrained`` from the
    run's checkpoint, ``--force-image-size``; open_clip interpolates the positional embedding on
    load), on the bundled data rendered at that resolution. Returns the new run's summary."""
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
    return ex.train_and_evaluate(
        d["model"],
        d["attention"],
        ds,
        out_dir,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        seed=seed,
        score_scale=d.get("score_scale", 0.5),
        name=f"{d['model']}-{d['attention']}-ft{resolution}",
        extra_args=["--pretrained", d["checkpoint"], "--force-image-size", str(resolution)],
        quiet=quiet,
    )


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
    models = {s["model"] for s in summaries}
    before = df[df.model.isin(models) & (df.resolution == resolution)][["model", "attention", "domain", "top1"]]
    after = frame(rows)[["model", "attention", "domain", "top1"]]
    cmp = before.merge(
        after, on=["model", "attention", "domain"], suffixes=(" interpolated", " fine-tuned"), how="right"
    )
    return rows, cmp


# --------------------------------------------------------------------------- tables
def frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ("confusion", "correct")} for r in rows])
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


def resolution_conclusions(df, diff, speed, trained_at: int) -> dict:
    """The sentences of notebook 06's conclusion, each computed from the measured frames:
    ``df`` (accuracy rows), ``diff`` (:func:`la_minus_softmax` by model/domain/resolution) and
    ``speed`` (:func:`throughput_sweep` rows). Returns the lines and the numbers behind them."""
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
    acc = df.pivot_table(index=["model", "attention"], columns="resolution", values="top1")
    hi_eval = int(df.resolution.max())
    change = None
    if trained_at in acc.columns and hi_eval != trained_at:
        change = {a: float((acc[hi_eval] - acc[trained_at]).xs(a, level="attention").mean()) for a in ("softmax", la)}
        lines.append(
            f"- Going from the training resolution {trained_at} px to {hi_eval} px without fine-tuning "
            f"changes mean top-1 by " + ", ".join(f"{a} {v:+.3f}" for a, v in change.items()) + "."
        )
    return {
        "lines": lines,
        "highest_resolution": hi_res,
        "images_per_s": top.reset_index(),
        "la_faster_all_models": bool(faster.all()),
        "by_resolution": by_res.to_dict(),
        "by_domain": by_dom.to_dict(),
        "change_from_training_resolution": change,
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
