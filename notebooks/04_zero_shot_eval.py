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
from linrepro.utils import plotting as pl
from linrepro.utils.tables import accuracy_table, fmt_sig

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
        f"Models from run `{source.parent.name}/{source.name}`: "
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
names = [e.name for e in sets]
display(Markdown("**Top-1** (chance: " + ", ".join(f"{e.name} {fmt_sig(1 / len(e.classnames))}" for e in sets) + ")"))
display(accuracy_table(df, "top1", "n", domains=names))
display(Markdown("**Top-5**"))
accuracy_table(df, "top5", "n", domains=names)

# %%
pl.accuracy_bars(
    df,
    value="top1",
    n="n",
    domains=names,
    chance={e.name: 1 / len(e.classnames) for e in sets},
    title="Zero-shot top-1 per domain, 95% Wilson intervals over the evaluated images (grey bars: chance)",
).show()

# %% [markdown]
# ## LA − softmax
# Positive: linear attention is better aligned on that domain.

# %%
diff = ev.la_minus_softmax(df, "top1", by=("model", "domain"))
fig = px.imshow(
    diff.pivot(index="model", columns="domain", values=diff.columns[-1]).loc[pl.model_order(df.model)][
        [d for d in names if d in set(diff.domain)]
    ],
    text_auto=".3f",
    color_continuous_scale="RdBu",
    color_continuous_midpoint=0,
    labels={"x": "domain", "y": "model", "color": "Δ top-1"},
    title=f"{diff.columns[-1]} (zero-shot top-1; blue: LA better)",
)
fig.show()

# %% [markdown]
# ## Confusion matrices of the largest model

# %%
largest = max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
classes = {e.name: list(e.classnames) for e in sets}
fig = ev.fig_confusion(rows, largest)
sel = [r for r in rows if r["model"] == largest]  # fig_confusion's order: attention × set
order = [(a, d) for a in dict.fromkeys(r["attention"] for r in sel) for d in dict.fromkeys(r["domain"] for r in sel)]
pl.label_confusion(fig, [classes[d] for _, d in order]).show()

# %%
display(Markdown(ev.alignment_summary(df, diff)))

# %%
worst = diff.sort_values(diff.columns[-1]).iloc[0]
n_img = {e.name: e.n for e in sets}
lo_, hi_ = pl.wilson_interval(0.5, min(n_img.values()))  # the widest interval: accuracy 0.5
half = (hi_ - lo_) / 2
path = save_results(
    {
        "takeaway": (
            f"Across {len(set(df.model))} model size(s) and {len(sets)} evaluation set(s), LA − softmax zero-shot "
            f"top-1 ranges from {fmt_sig(diff[diff.columns[-1]].min())} ({worst.model}, {worst.domain}) to "
            f"{fmt_sig(diff[diff.columns[-1]].max())}; with n = {min(n_img.values()):,} images an accuracy's 95% "
            f"Wilson interval is up to {fmt_sig(float(half), 2)} wide on each side, so smaller gaps are not "
            "differences. Basis: proxy — tiny CLIPs on synthetic domains, one seed."
        ),
        "n": n_img,
        "source_run": source,
        "resolution": res,
        "rows": rows,
        "la_minus_softmax": diff,
        "sets": [{"name": e.name, "n": e.n, "source": e.source, "n_classes": len(e.classnames)} for e in sets],
    },
    "04_zero_shot_eval",
)
