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
# # 04 · Zero-shot alignment across domains
#
# Every model that `03_clip_training` trained is evaluated zero-shot with open_clip's
# `build_zero_shot_classifier`: each class's text embedding is the mean over the domain's caption
# templates, and an image is assigned the class of highest cosine similarity. Top-1 and top-5 are
# reported per domain, softmax next to linear attention, with confusion matrices.
#
# Besides the bundled domains, any ImageFolder with a class-names file, ImageNet-1K (open_clip's
# class names and templates) and ImageNet-21K (the paper's validation set; its class names are a
# file you supply) can be added through the parameters. Each set is checked before any model loads.

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
domains = ["digits", "shapes", "glyphs"]  # bundled domains to evaluate (their held-out split)
resolution = 0  # [0, ...) evaluation resolution in px (0: the training resolution)
limit = 0  # [0, ...) images per evaluation set (0: all)
imagefolder: "ExistingPath" = ""  # an extra ImageFolder dataset (root/class/image)
imagefolder_classnames: "ExistingPath" = ""  # its class names, one per line in sorted folder order
imagenet1k_root: "ExistingPath" = ""  # ImageNet-1K val in synset folders
imagenet21k_root: "ExistingPath" = ""  # ImageNet-21K in class folders
imagenet21k_classnames = ""  # its class-names file (empty: root/classnames.txt)

# %%
import plotly.express as px
from IPython.display import Markdown, display

from linrepro.study import evaluation as ev
from linrepro.study import experiments as ex
from linrepro.study.runs import find_run, save_results, setup_notebook

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = ex.load_training(source)  # its stored paths resolved against the run folder
summaries, dataset = trained["summaries"], trained["dataset"]
sets = ev.eval_sets(
    domains,
    dataset,
    limit=limit or None,
    imagefolder=imagefolder,
    imagefolder_classnames=imagefolder_classnames,
    imagenet1k_root=imagenet1k_root,
    imagenet21k_root=imagenet21k_root,
    imagenet21k_classnames=imagenet21k_classnames,
)
res = resolution or ev.trained_resolution(dataset)
display(
    Markdown(
        f"Models from `{source}`: "
        + ", ".join(f"{s['model']}/{s['attention']}" for s in summaries)
        + ". Evaluation sets: "
        + ", ".join(f"{e.name} ({e.n} images, {len(e.classnames)} classes)" for e in sets)
        + f". Resolution {res} px."
    )
)

# %% [markdown]
# ## Zero-shot accuracy, domain × model

# %%
rows = ev.evaluate_runs(summaries, sets, res)
df = ev.frame(rows)
top1 = df.pivot_table(index=["model", "attention"], columns="domain", values="top1", sort=False)
top5 = df.pivot_table(index=["model", "attention"], columns="domain", values="top5", sort=False)
display(Markdown("**Top-1** (chance: " + ", ".join(f"{e.name} {1 / len(e.classnames):.3f}" for e in sets) + ")"))
display(top1.style.format("{:.3f}").background_gradient(cmap="Blues", vmin=0, vmax=1))
display(Markdown("**Top-5**"))
top5.style.format("{:.3f}")

# %%
fig = px.bar(
    df,
    x="domain",
    y="top1",
    color="attention",
    barmode="group",
    facet_col="model",
    category_orders={"model": list(dict.fromkeys(df.model))},
    hover_data=["top5", "n"],
    title="Zero-shot top-1 per domain (dotted: chance)",
)
for e in sets:
    fig.add_hline(y=1 / len(e.classnames), line_dash="dot", line_color="grey")
fig.show()

# %% [markdown]
# ## LA − softmax
# Positive: linear attention is better aligned on that domain.

# %%
diff = ev.la_minus_softmax(df, "top1", by=("model", "domain"))
fig = px.imshow(
    diff.pivot(index="model", columns="domain", values=diff.columns[-1]).loc[list(dict.fromkeys(df.model))],
    text_auto=".3f",
    color_continuous_scale="RdBu",
    color_continuous_midpoint=0,
    title=f"{diff.columns[-1]} (zero-shot top-1)",
)
fig.show()

# %% [markdown]
# ## Confusion matrices of the largest model

# %%
largest = max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
ev.fig_confusion(rows, largest).show()

# %%
display(Markdown(ev.alignment_summary(df, diff)))

# %%
path = save_results(
    {
        "source_run": source,
        "resolution": res,
        "rows": rows,
        "la_minus_softmax": diff,
        "sets": [{"name": e.name, "n": e.n, "source": e.source, "n_classes": len(e.classnames)} for e in sets],
    },
    "04_zero_shot_eval",
)
print("saved", path)
