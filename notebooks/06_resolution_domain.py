# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Alignment across domains and resolutions: the seed's question
#
# *How does linear attention change the image–text alignment of multimodal models on
# mixed-domain data at varying resolutions?*
#
# The models of `03_clip_training` (every size × attention × training seed, and the authors'
# `released` code where it was trained) are evaluated zero-shot on every domain at several input
# resolutions. The bundled domains are **re-rendered** at each resolution (the same images, with
# more pixels), and each model's positional embedding is interpolated to the new patch grid with
# open_clip's `resize_pos_embed`, so a model sees resolutions it was never trained at. Real MNIST
# digits (never trained on; scored with the digits prompts) are evaluated at the training
# resolution and above it. The token count grows as $(r/p)^2 + 1$ for image side $r$ and patch
# $p$: this is where softmax's $O(N^2 D)$ and LA's $O(N D^2)$ part ways, so throughput and memory
# are measured too. Optionally one model pair is fine-tuned at a new resolution.
#
# Accuracy loses meaning near chance, so the comparison across resolutions is made on
# **chance-normalised retention**, $(\mathrm{acc} - \mathrm{chance}) / (\mathrm{acc}_0 - \mathrm{chance})$
# with $\mathrm{acc}_0$ the accuracy at the training resolution, and only in the cells where *both*
# methods learned the domain to more than twice chance at the training resolution. The other
# cells are shown, marked "not learned: not interpreted".

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
domains = ["digits", "shapes", "glyphs"]  # non-empty bundled domains to evaluate
resolutions = [32, 48, 64, 96]  # non-empty [1, ...) evaluation resolutions in px (multiples of the patch size)
limit = 150  # [0, ...) images per domain and resolution (0: the whole val split)
mnist_resolutions = [32, 64]  # [1, ...) resolutions at which the out-of-domain MNIST digits are evaluated (empty: none)
mnist_limit = 1000  # [0, ...) MNIST images per resolution (evenly spaced; 0: all 5,000)
throughput_resolutions = [32, 64, 128, 256]  # non-empty [1, ...) resolutions for the images/s and memory sweep
throughput_batch = 8  # [1, ...) images per timed batch
throughput_runs = 3  # [1, ...) timed batches per point (after one warm-up)
heatmap_model = ""  # model shown in the heatmaps (empty: the largest)
finetune_resolution = 0  # [0, ...) fine-tune the heatmap model pair at this resolution (0: skip)
finetune_epochs = 1  # [1, ...) epochs of that fine-tuning
finetune_lr = 0.0001  # (0, ...) its learning rate

# %%
import numpy as np
import pandas as pd
import plotly.express as px
from IPython.display import Markdown, display

from linrepro.study import evaluation as ev
from linrepro.study import seeded
from linrepro.study.experiments import load_training
from linrepro.study.runs import find_run, run_dir, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import tidy

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = load_training(source)  # stored paths resolved against the run folder
summaries, dataset = ev.eval_summaries(trained), trained["dataset"]  # the grid, plus `released` runs
trained_at = ev.trained_resolution(dataset)
sets = ev.eval_sets(domains, dataset, limit=limit or None)
ood = (
    ev.eval_sets((), dataset, out_of_domain=["mnist"], out_of_domain_limit=mnist_limit or None)
    if mnist_resolutions
    else []
)
order = pl.model_order(s["model"] for s in summaries)
model = heatmap_model or max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
if model not in order:
    raise ValueError(f"heatmap_model {model!r} was not trained in {source}; it has {order}")
n_seeds = len({s.get("seed", 0) for s in summaries})
display(
    Markdown(
        f"Models from run `{source.parent.name}/{source.name}` (trained at {trained_at} px), "
        f"{n_seeds} training seed(s) each{' (one seed: exploratory)' if n_seeds == 1 else ''}. "
        f"Evaluating {', '.join(e.name for e in sets)} at {resolutions} px"
        + (f", and {ood[0].n:,} MNIST digits (out of domain) at {mnist_resolutions} px" if ood else "")
        + "."
    )
)

# %% [markdown]
# ## Zero-shot accuracy by domain × resolution
# Means over training seeds; intervals over seeds, then images.

# %%
rows = ev.resolution_sweep(summaries, sets, resolutions, extra_sets=ood, extra_resolutions=mnist_resolutions)
df = ev.frame(rows)
names = [e.name for e in sets] + [e.name for e in ood]
acc = seeded.interval_frame(rows, by=("model", "attention", "domain", "resolution"))
diff = ev.la_minus_softmax(df, "top1", by=("model", "domain", "resolution"))  # means over seeds
dcol = diff.columns[-1]
la = dcol.split()[1]
accm = acc.rename(columns={"mean": "top1"})
panels = {
    a: ev.domain_grid(accm[(accm.model == model) & (accm.attention == a)], "top1", names) for a in ("softmax", la)
}
stack = np.stack([panels["softmax"].values, panels[la].values])
fig = px.imshow(
    stack,
    facet_col=0,
    text_auto=".2f",
    zmin=0,
    zmax=1,
    color_continuous_scale="Blues",
    x=[str(r) for r in panels["softmax"].columns],
    y=list(panels["softmax"].index),
    labels={"x": "resolution (px)", "y": "domain", "color": "top-1"},
    title=f"{model}: zero-shot top-1 (mean over seeds), softmax (left) and {la} (right)",
)
fig.for_each_annotation(lambda a: a.update(text=["softmax", la][int(a.text.split("=")[1])]))
fig.show()

# %%
acc_t = acc.copy()
acc_t["cell"] = acc_t.domain + " " + acc_t.resolution.astype(str) + " px"
cell_order = [f"{d} {r} px" for d in names for r in sorted(set(acc.resolution))]
tidy(
    seeded.wide_table(acc_t, ["model", "attention"], "cell", order=cell_order),
    caption="Zero-shot top-1: mean over seeds [95% interval over seeds, then images] ×seeds",
)

# %%
fig = px.line(
    acc.assign(plus=acc.ci_high - acc["mean"], minus=acc["mean"] - acc.ci_low, resolution=acc.resolution.astype(str)),
    x="resolution",
    y="mean",
    color="attention",
    line_dash="model",
    facet_col="domain",
    markers=True,
    error_y="plus",
    error_y_minus="minus",
    category_orders={**pl.category_orders(acc, names), "resolution": [str(r) for r in sorted(set(acc.resolution))]},
    color_discrete_map=pl.colour_map(acc.attention),
    hover_data=["seeds", "n_images"],
    labels={"resolution": "image side (px)", "mean": "zero-shot top-1"},
    title="Zero-shot top-1 against resolution: colour is the attention, dash the model size; "
    "95% intervals over seeds then images",
)
pl.style(fig).update_layout(scattermode="group", scattergap=0.7).show()

# %% [markdown]
# ### LA − softmax top-1, paired
# Paired by training seed and image; `p_holm` is Holm-adjusted across every cell of the table.

# %%
paired = ev.paired_contrasts(
    rows,
    by=("model", "domain", "resolution"),
    pairs=[(a, "softmax") for a in dict.fromkeys(df.attention) if a != "softmax"],
)
pt = paired.copy()
pt["cell"] = pt.domain + " " + pt.resolution.astype(str) + " px"
tidy(
    seeded.wide_table(pt, ["model", "contrast"], "cell", value="diff", signed=True, order=cell_order),
    caption="other − softmax zero-shot top-1: mean over seeds [95% interval] ×seeds",
)

# %% [markdown]
# ## Chance-normalised retention
# Per training seed, (acc − chance) / (acc₀ − chance) with acc₀ that seed's accuracy at the
# training resolution; the mean over seeds, with a 95% interval from a bootstrap over seeds and
# then images (the same images at both resolutions), recomputing the per-seed ratios in every
# resample. 1 means all of the above-chance accuracy is kept, 0 means it fell to chance.
# LA − softmax retention is paired by seed and image. Cells where either method's acc₀ is not
# above twice chance are marked **not learned: not interpreted** and kept out of the verdict.

# %%
found = ev.retention(rows, trained_at)
ret, rdiff = found["retention"], found["difference"]
if len(ret):
    rt = ret.copy()
    rt["cell"] = rt.domain + " " + rt.resolution.astype(str) + " px"
    display(
        tidy(
            seeded.wide_table(rt, ["model", "attention"], "cell", value="retention", order=cell_order),
            caption=f"Retention relative to {trained_at} px: mean over seeds [95% interval] ×seeds",
        )
    )
    rd = rdiff.copy()
    rd["cell"] = rd.domain + " " + rd.resolution.astype(str) + " px"
    wide = seeded.wide_table(rd, ["model", "contrast"], "cell", value="diff", signed=True, order=cell_order)
    marks = rd.pivot_table(index=["model", "contrast"], columns="cell", values="interpreted", aggfunc="first")
    for c in wide.columns:
        for i in wide.index:
            v = marks.loc[i, c] if i in marks.index and c in marks.columns else None
            if v is not None and v == v and not bool(v):
                wide.loc[i, c] = f"{wide.loc[i, c]} (not learned: not interpreted)"
    display(tidy(wide, caption="LA − softmax retention, paired by seed and image; Holm across the interpreted cells"))
    fig = px.line(
        ret.assign(
            plus=ret.ci_high - ret.retention,
            minus=ret.retention - ret.ci_low,
            learned=np.where(ret.learned, "learned (> 2× chance)", "not learned"),
            resolution=ret.resolution.astype(str),
        ),
        x="resolution",
        y="retention",
        color="attention",
        line_dash="model",
        symbol="learned",
        facet_col="domain",
        markers=True,
        error_y="plus",
        error_y_minus="minus",
        category_orders={**pl.category_orders(ret, names), "resolution": [str(r) for r in sorted(set(ret.resolution))]},
        color_discrete_map=pl.colour_map(ret.attention),
        labels={"resolution": "image side (px)", "retention": "chance-normalised retention"},
        title=f"Retention of the above-chance accuracy relative to {trained_at} px (95% intervals over seeds then images)",
    )
    fig.add_hline(y=1, line_dash="dot")
    pl.style(fig).update_layout(scattermode="group", scattergap=0.7).show()
else:
    display(Markdown(f"No resolution other than the training one ({trained_at} px) was evaluated: no retention."))

# %%
decisions = {a: ev.degradation_decision(found, a) for a in dict.fromkeys(df.attention) if a != "softmax"}
by_res_decisions = (
    {
        a: {int(r): ev.degradation_decision(found, a, resolution=int(r)) for r in sorted(set(rdiff.resolution))}
        for a in decisions
    }
    if len(rdiff)
    else {}
)
tidy(
    pd.DataFrame(
        [
            {
                "attention": a,
                "resolution": "all" if r is None else r,
                "cells": d["cells"],
                "estimate": d["estimate"],
                "ci_low": d["ci_low"],
                "ci_high": d["ci_high"],
                "verdict": d["verdict"],
                "answer": d["answer"],
            }
            for a in decisions
            for r, d in [(None, decisions[a]), *by_res_decisions.get(a, {}).items()]
        ]
    ),
    caption="Does LA degrade more across resolutions? Mean LA − softmax retention over the interpreted cells, "
    "with the declared margin (rules.ACCURACY_MARGIN)",
)

# %% [markdown]
# ## Throughput and memory against resolution
# One batch of random images through each image tower (one run per model and attention: the
# architecture, not the seed, sets the cost), measured in this run, model after model (not
# concurrently). Memory: peak bytes one batch adds (resident set on CPU, allocator on CUDA).

# %%
speed = pd.DataFrame(
    ev.throughput_sweep(ev.first_seed(summaries), throughput_resolutions, batch=throughput_batch, runs=throughput_runs)
)
speed["peak_MB"] = speed.peak_bytes / 2**20
for y, title, log_y in (
    ("images_per_s", f"Image-tower throughput against tokens per image (median of {throughput_runs} batches)", True),
    ("peak_MB", f"Peak memory added by one batch of {throughput_batch} images", False),
):
    fig = px.line(
        speed,
        x="tokens",
        y=y,
        color="attention",
        line_dash="model",
        markers=True,
        log_x=True,
        log_y=log_y,
        category_orders=pl.category_orders(speed),
        color_discrete_map=pl.colour_map(speed.attention),
        hover_data=["resolution"],
        title=title + ": colour is the attention, dash the model size",
    )
    pl.style(fig).show()
ratio = speed.pivot_table(index=["model", "resolution", "tokens"], columns="attention", values="images_per_s")
ratio[f"{la} / softmax"] = ratio[la] / ratio["softmax"]
tidy(pl.sort_frame(ratio), caption="images/s of each image tower, and the LA / softmax ratio")

# %% [markdown]
# ## Fine-tuning at a new resolution

# %%
if finetune_resolution:
    pair = [s for s in ev.first_seed(summaries) if s["model"] == model]
    ft_rows, cmp = ev.finetune_and_compare(
        pair,
        dataset,
        df,
        sets,
        finetune_resolution,
        run_dir("06_resolution_domain") / "finetune",
        epochs=finetune_epochs,
        lr=finetune_lr,
    )
    display(
        Markdown(
            f"{model} (first training seed) fine-tuned for {finetune_epochs} epoch(s) at {finetune_resolution} px:"
        )
    )
    display(tidy(cmp))
else:
    ft_rows = []
    display(
        Markdown("Not run in this profile: `finetune_resolution` is 0 (set it to a resolution in px to fine-tune).")
    )

# %% [markdown]
# ## What the numbers say

# %%
found_lines = ev.resolution_conclusions(
    df, diff, speed, trained_at, found=found, decisions={la: decisions[la]} if la in decisions else None
)
for a, d in decisions.items():
    if a != la:
        found_lines["lines"].append(
            f"- {a}: {d['verdict']} under the same rule, {d['answer']}"
            + (
                f" ({d['estimate']:+.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}], {d['cells']} cells)."
                if d.get("ci_low") is not None
                else "."
            )
        )
display(Markdown("\n".join(found_lines["lines"])))

# %%
path = save_results(
    {
        "takeaway": " ".join(line.lstrip("- ").replace("**", "") for line in found_lines["lines"][:2])
        + "".join(
            " " + line.lstrip("- ").replace("**", "") for line in found_lines["lines"] if line.startswith("- Does ")
        )
        + f" Basis: proxy — {len(order)} tiny model size(s) trained at {trained_at} px on synthetic domains, "
        f"{limit or 'all'} images per domain and resolution, {n_seeds} training seed(s)"
        + ("; one seed: exploratory." if n_seeds == 1 else "."),
        "n": {
            "images per domain and resolution": int(df[df.domain != "mnist"].n.max()) if "n" in df else limit,
            "mnist images": ood[0].n if ood else 0,
        },
        "seeds": sorted({r["seed"] for r in rows}),
        "source_run": source,
        "heatmap_model": model,
        "rows": rows,
        "accuracy": acc,
        "paired": paired,
        "la_minus_softmax": diff,
        "retention": ret,
        "retention_difference": rdiff,
        "decision": decisions.get(la),
        "decisions": decisions,
        "decisions_by_resolution": {a: {str(r): d for r, d in v.items()} for a, v in by_res_decisions.items()},
        "throughput": speed,
        "finetune": ft_rows,
        "conclusions": found_lines["lines"],
        "highest_resolution": {
            k: found_lines[k] for k in ("highest_resolution", "images_per_s", "la_faster_all_models")
        },
        "by_resolution": found_lines["by_resolution"],
        "by_domain": found_lines["by_domain"],
        "change_from_training_resolution": found_lines["change_from_training_resolution"],
        "retention_interpreted": found_lines["retention_interpreted"],
    },
    "06_resolution_domain",
)
