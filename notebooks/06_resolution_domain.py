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
# The models of `03_clip_training` are evaluated zero-shot on every domain at several input
# resolutions. The bundled domains are **re-rendered** at each resolution (the same images, with
# more pixels), and each model's positional embedding is interpolated to the new patch grid with
# open_clip's `resize_pos_embed`, so a model sees resolutions it was never trained at. The token
# count grows as $(r/p)^2 + 1$ for image side $r$ and patch $p$: this is where softmax's
# $O(N^2 D)$ and LA's $O(N D^2)$ part ways, so throughput and memory are measured too, at
# resolutions up to several times the training one. Optionally one model pair is fine-tuned at a
# new resolution.

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
domains = ["digits", "shapes", "glyphs"]  # non-empty bundled domains to evaluate
resolutions = [32, 48, 64, 96]  # non-empty [1, ...) evaluation resolutions in px (multiples of the patch size)
limit = 150  # [0, ...) images per domain and resolution (0: the whole val split)
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
from linrepro.study.experiments import load_training
from linrepro.study.runs import find_run, run_dir, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import tidy

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = load_training(source)  # stored paths resolved against the run folder
summaries, dataset = trained["summaries"], trained["dataset"]
sets = ev.eval_sets(domains, dataset, limit=limit or None)
order = pl.model_order(s["model"] for s in summaries)
model = heatmap_model or max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
if model not in order:
    raise ValueError(f"heatmap_model {model!r} was not trained in {source}; it has {order}")
display(
    Markdown(
        f"Models from run `{source.parent.name}/{source.name}` (trained at {ev.trained_resolution(dataset)} px). "
        f"Evaluating {', '.join(e.name for e in sets)} at {resolutions} px."
    )
)

# %% [markdown]
# ## Zero-shot accuracy by domain × resolution

# %%
rows = ev.resolution_sweep(summaries, sets, resolutions)
df = ev.frame(rows)
diff = ev.la_minus_softmax(df, "top1", by=("model", "domain", "resolution"))
dcol = diff.columns[-1]
la = dcol.split()[1]
names = [e.name for e in sets]
panels = {
    "softmax": ev.domain_grid(df[(df.model == model) & (df.attention == "softmax")], "top1", names),
    la: ev.domain_grid(df[(df.model == model) & (df.attention == la)], "top1", names),
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
    title=f"{model}: zero-shot top-1, softmax (left) and {la} (right); n = {int(df.n.max()):,} images per cell",
)
fig.for_each_annotation(lambda a: a.update(text=["softmax", la][int(a.text.split("=")[1])]))
fig.show()

# %%
dgrid = ev.domain_grid(diff[diff.model == model], dcol, names)
px.imshow(
    dgrid.values,
    text_auto="+.2f",
    color_continuous_scale="RdBu",
    color_continuous_midpoint=0,
    x=[str(r) for r in dgrid.columns],
    y=list(dgrid.index),
    labels={"x": "resolution (px)", "y": "domain", "color": "Δ top-1"},
    title=f"{model}: {dcol} (blue: LA better)",
).show()

# %%
dfi = pl.add_accuracy_intervals(df, "top1", "n")
dfi["resolution"] = dfi.resolution.astype(str)  # categories, so that coinciding points sit side by side
fig = px.line(
    dfi,
    x="resolution",
    y="top1",
    color="attention",
    line_dash="model",
    facet_col="domain",
    markers=True,
    error_y="top1_plus",
    error_y_minus="top1_minus",
    category_orders={**pl.category_orders(dfi, names), "resolution": [str(r) for r in sorted(set(df.resolution))]},
    color_discrete_map=pl.colour_map(dfi.attention),
    hover_data=["n"],
    labels={"resolution": "image side (px)", "top1": "zero-shot top-1"},
    title="Zero-shot top-1 against resolution: colour is the attention, dash the model size; 95% Wilson intervals",
)
pl.style(fig).update_layout(scattermode="group", scattergap=0.7).show()
display(Markdown("**LA − softmax top-1, every model** (rows: model, domain; columns: image side in px)"))
tidy(pl.sort_frame(diff.pivot_table(index=["model", "domain"], columns="resolution", values=dcol), names))

# %% [markdown]
# ## Throughput and memory against resolution
# One batch of random images through each image tower, measured in this run, model after model
# (not concurrently). Memory: peak bytes one batch adds (resident set on CPU, allocator on CUDA).

# %%
speed = pd.DataFrame(
    ev.throughput_sweep(summaries, throughput_resolutions, batch=throughput_batch, runs=throughput_runs)
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
    ft_rows, cmp = ev.finetune_and_compare(
        [s for s in summaries if s["model"] == model],
        dataset,
        df,
        sets,
        finetune_resolution,
        run_dir("06_resolution_domain") / "finetune",
        epochs=finetune_epochs,
        lr=finetune_lr,
    )
    display(Markdown(f"{model} fine-tuned for {finetune_epochs} epoch(s) at {finetune_resolution} px:"))
    display(tidy(cmp))
else:
    ft_rows = []
    display(
        Markdown("Not run in this profile: `finetune_resolution` is 0 (set it to a resolution in px to fine-tune).")
    )

# %% [markdown]
# ## What the numbers say

# %%
found = ev.resolution_conclusions(df, diff, speed, ev.trained_resolution(dataset))
display(Markdown("\n".join(found["lines"])))

# %%
path = save_results(
    {
        "takeaway": " ".join(line.lstrip("- ") for line in found["lines"][:2])
        + f" Basis: proxy — {len(order)} tiny model size(s) trained at {ev.trained_resolution(dataset)} px on "
        f"synthetic domains, {limit or 'all'} images per domain and resolution, one seed.",
        "n": {"images per domain and resolution": int(df.n.max()) if "n" in df else limit},
        "source_run": source,
        "heatmap_model": model,
        "rows": rows,
        "la_minus_softmax": diff,
        "throughput": speed,
        "finetune": ft_rows,
        "conclusions": found["lines"],
        "highest_resolution": {k: found[k] for k in ("highest_resolution", "images_per_s", "la_faster_all_models")},
        "by_resolution": found["by_resolution"],
        "by_domain": found["by_domain"],
        "change_from_training_resolution": found["change_from_training_resolution"],
    },
    "06_resolution_domain",
)
