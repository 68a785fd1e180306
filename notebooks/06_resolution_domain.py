# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
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

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = load_training(source)  # stored paths resolved against the run folder
summaries, dataset = trained["summaries"], trained["dataset"]
sets = ev.eval_sets(domains, dataset, limit=limit or None)
order = list(dict.fromkeys(s["model"] for s in summaries))
model = heatmap_model or max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
if model not in order:
    raise ValueError(f"heatmap_model {model!r} was not trained in {source}; it has {order}")
display(
    Markdown(
        f"Models from `{source}` (trained at {ev.trained_resolution(dataset)} px). "
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
    title=f"{model}: zero-shot top-1, softmax (left) and {la} (right)",
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
px.line(
    df,
    x="resolution",
    y="top1",
    color="domain",
    line_dash="attention",
    facet_col="model",
    markers=True,
    category_orders={"model": order},
    title="Zero-shot top-1 against resolution, every model",
).show()
display(Markdown("**LA − softmax top-1, every model** (rows: model, domain; columns: resolution)"))
diff.pivot_table(index=["model", "domain"], columns="resolution", values=dcol).style.format(
    "{:+.3f}"
).background_gradient(cmap="RdBu", vmin=-0.5, vmax=0.5)

# %% [markdown]
# ## Throughput and memory against resolution
# One batch of random images through each image tower, measured in this run, model after model
# (not concurrently). Memory: peak bytes one batch adds (resident set on CPU, allocator on CUDA).

# %%
speed = pd.DataFrame(
    ev.throughput_sweep(summaries, throughput_resolutions, batch=throughput_batch, runs=throughput_runs)
)
speed["peak_MB"] = speed.peak_bytes / 2**20
px.line(
    speed,
    x="tokens",
    y="images_per_s",
    color="model",
    line_dash="attention",
    markers=True,
    log_x=True,
    log_y=True,
    category_orders={"model": order},
    hover_data=["resolution"],
    title="Image-tower throughput (images/s) against tokens per image",
).show()
px.line(
    speed,
    x="tokens",
    y="peak_MB",
    color="model",
    line_dash="attention",
    markers=True,
    log_x=True,
    category_orders={"model": order},
    hover_data=["resolution"],
    title=f"Peak memory added by one batch of {throughput_batch} (MB)",
).show()
ratio = speed.pivot_table(index=["model", "resolution", "tokens"], columns="attention", values="images_per_s")
ratio[f"{la} / softmax"] = ratio[la] / ratio["softmax"]
ratio.style.format("{:.2f}")

# %% [markdown]
# ## Fine-tuning at a new resolution (optional)

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
    display(cmp)
else:
    ft_rows = []
    print("fine-tuning skipped (finetune_resolution = 0)")

# %% [markdown]
# ## What the numbers say

# %%
found = ev.resolution_conclusions(df, diff, speed, ev.trained_resolution(dataset))
display(Markdown("\n".join(found["lines"])))

# %%
path = save_results(
    {
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
print("saved", path)
