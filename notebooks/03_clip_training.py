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
# # 03 · Training CLIP with softmax and with linear attention
#
# The paper trains OpenCLIP ViT-S/B/L-16 on LAION-400M with softmax attention and with affine
# LA. linrepro trains through **open_clip_train itself** (its loop, AMP, checkpoints, resume);
# it only swaps the attention modules (`linrepro.clip`): the vision tower gets non-causal LA,
# the text tower causal LA, and parameter names stay open_clip's, so checkpoints load across
# attention types.
#
# On a laptop CPU the `cpu` profile trains three tiny analogues (`tiny-S`, `tiny-B`, `tiny-L`)
# on a bundled mixed-domain dataset rendered from data that ships with scikit-learn and
# matplotlib (handwritten digits, geometric shapes, font glyphs). The `paper` profile trains the
# paper's models on LAION-400M webdataset shards with torchrun on 4 GPUs.
#
# Zero-shot accuracy is measured on each domain's held-out split with open_clip's
# `build_zero_shot_classifier`, using the same class names and caption templates as training.

# %% tags=["parameters"]
models = ["tiny-S", "tiny-B", "tiny-L"]  # non-empty open_clip model names (see linrepro.clip.model_names())
attentions = ["softmax", "eq7"]  # non-empty {softmax, eq4, eq7, released} attention of each model
domains = ["digits", "shapes", "glyphs"]  # bundled domains to train on
resolution = 32  # [1, ...) image side the data is rendered at and the models take (the tiny models: 32 px)
n_per_domain = {"shapes": 600, "glyphs": 600}  # [1, ...) samples per domain before the split (unnamed: default)
val_fraction = 0.2  # (0, 1) held-out share per domain
seed = 0  # [0, ...) data and training seed
epochs = 14  # [1, ...) training epochs per model
batch_size = 64  # [1, ...) global batch size (split over nproc processes)
batch_sizes = {}  # [1, ...) per-model global batch size, overriding batch_size (paper: ViT-S/B/L-16 → 64/16/4)
lr = 0.001  # (0, ...) peak learning rate (cosine schedule)
warmup = 50  # [0, ...) warm-up steps
precision = "fp32"  # {amp, amp_bf16, amp_bfloat16, bf16, fp16, pure_bf16, pure_fp16, fp32} open_clip_train --precision
score_scale: "ScoreScale" = "1/N"  # s in Eq. 7: a number, or 1/N (per query row: the keys it sums over)
train_data: "ExistingPath" = ""  # webdataset shards or CSV to train on instead of the bundled data
train_num_samples = 0  # [0, ...) samples per epoch for webdataset data (required with train_data shards)
nproc = 1  # [1, ...) processes (torchrun) per model; > 1 uses DDP
extra_runs = [
    {"model": "tiny-S", "attention": "eq7", "score_scale": 0.5}
]  # ablation runs, same budget (model, attention, score_scale)

# %%
import os

import pandas as pd
import plotly.express as px
from IPython.display import Markdown, display

from linrepro.study import experiments as ex
from linrepro.study.runs import run_dir, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import accuracy_table, fmt_sig, tidy

setup_notebook()
out = run_dir("03_clip_training")
# `linrepro run 03_clip_training --resume RUN_DIR` re-runs this notebook in RUN_DIR with this set:
# finished models are reused, unfinished ones continue from their last checkpoint
resume = os.environ.get("LINREPRO_RESUME") == "1"
if resume:
    print(f"resuming {out}: finished models are reused, the others continue from their last checkpoint")
if train_data:  # e.g. LAION-400M shards: zero-shot evaluation is notebook 04's job (ImageNet-21K)
    dataset = ex.external_dataset(train_data, train_num_samples, resolution=resolution)
    print(
        f"training on {train_data} ({train_num_samples:,} samples per epoch) at {resolution} px, "
        f"{nproc} process(es) per model"
    )
else:
    dataset = ex.prepare_data(out / "data", domains, resolution, seed, val_fraction, n_per_domain)
    print(
        f"{dataset['n_train']:,} training pairs from {', '.join(domains)} at {resolution} px "
        f"(export {dataset['export_s']:.1f} s)"
    )

# %% [markdown]
# ## A look at the data
# One training image per class of each domain (hover for its class), and a few captions.

# %%
grid = ex.sample_grid(domains, max(resolution, 48), seed)
fig = px.imshow(
    grid["image"], facet_col=0, facet_col_wrap=10, facet_row_spacing=0.04, title="training samples, one per class"
)
fig.for_each_annotation(lambda a: a.update(text=grid["names"][int(a.text.split("=")[1])].split(": ")[1]))
fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)
fig.update_layout(height=150 * len(domains) + 80).show()
print("\n".join(grid["captions"][::7]))

# %% [markdown]
# ## Training
# One open_clip_train run per (model, attention), in this process. Each run folder keeps
# open_clip_train's `out.log`, its last checkpoint (`checkpoints/epoch_N.pt`: earlier epochs are
# deleted as training goes, and the optimizer state once the run has finished, leaving the
# weights that notebooks 04-06 load) and linrepro's per-step `steps.csv`. Every model takes
# images of `resolution` px (open_clip's `--force-image-size` when that is not its own size).

# %%
summaries = ex.train_grid(
    models,
    attentions,
    dataset,
    out / "runs",
    batch_sizes=batch_sizes,
    batch_size=batch_size,
    epochs=epochs,
    lr=lr,
    warmup=warmup,
    precision=precision,
    seed=seed,
    score_scale=score_scale,
    nproc=nproc,
    image_size=resolution,
    resume=resume,
)

# %% [markdown]
# ### Ablation: Eq. 7's score scale
# The paper's scale of Eq. 7 is not known. With $s = ½$ every score lies in $[0, 1]$ but the output
# is a *sum* over the $N$ keys, so its norm grows with $N$ (notebook 01); $s = 1/N$ makes it a mean.
# The runs below use the same data, epochs and learning rate as the grid.

# %%
extra = ex.train_variants(
    extra_runs,
    dataset,
    out / "runs",
    batch_size=batch_size,
    epochs=epochs,
    lr=lr,
    warmup=warmup,
    precision=precision,
    seed=seed,
    score_scale=score_scale,
    nproc=nproc,
    image_size=resolution,
    resume=resume,
)
if extra and any(s["zero_shot"] for s in extra):
    same = [s for s in summaries for x in extra if s["model"] == x["model"] and s["attention"] == x["attention"]]
    ab = ex.results_frame(same + extra)
    ab["score_scale"] = [str(s.get("score_scale")) for s in same + extra for _ in s["zero_shot"]]
    display(accuracy_table(ab, "top1", "n_val", index=("model", "attention", "score_scale"), domains=domains))

# %% [markdown]
# ## Training curves

# %%
steps = ex.steps_frame(summaries)
fig = ex.fig_curves(steps, "loss")
pl.style(fig).update_layout(
    title="Training loss (rolling mean over 10 steps): colour is the attention, dash the model size (S solid, B dashed, L dotted)"
).show()

# %%
thr = pd.DataFrame(summaries)
fig = px.bar(
    thr,
    x="model",
    y="images_per_s",
    color="attention",
    barmode="group",
    category_orders=pl.category_orders(thr),
    color_discrete_map=pl.colour_map(thr.attention),
    labels={"images_per_s": "training throughput (images/s)"},
    title="Training throughput (images/s, median over steps; one run each, no interval)",
)
pl.style(fig).show()

# %% [markdown]
# ## Zero-shot top-1 on each domain's held-out split

# %%
res = ex.results_frame(summaries)
if len(res):
    chance = dict(zip(res.domain, res.chance, strict=False))
    pl.accuracy_bars(
        res,
        value="top1",
        n="n_val",
        domains=domains,
        chance=chance,
        title="Zero-shot top-1 with 95% Wilson intervals over the held-out images (grey bars: chance)",
    ).show()
    display(accuracy_table(res, "top1", "n_val", domains=domains))
else:  # external training data: no bundled held-out split to evaluate here
    display(Markdown("No zero-shot domains for this training data: notebook 04 evaluates these models."))

# %%
digits = res[res.domain == "digits"].set_index(["model", "attention"]).top1 if len(res) else pd.Series(dtype=float)
if len(digits):
    verdict = pd.DataFrame({"digits top-1": digits, "bar": [0.90 if a == "softmax" else 0.80 for _, a in digits.index]})
    verdict["meets bar"] = verdict["digits top-1"] >= verdict["bar"]
    verdict["n"] = res[res.domain == "digits"].set_index(["model", "attention"]).n_val
    display(Markdown("Acceptance bars: softmax ≥ 0.90 and LA ≥ 0.80 on the digits domain (chance 0.10)."))
    display(tidy(pl.sort_frame(verdict)))

# %%
# paths are stored relative to this run's folder, so a moved or copied run still works (ex.load_training)
n_val = res[res.domain == "digits"].n_val.max() if len(res) and (res.domain == "digits").any() else None
if len(digits) and n_val:
    lo, hi = pl.wilson_interval(digits.values, n_val)
    best = "; ".join(
        f"{m}/{a} {fmt_sig(v)} [{fmt_sig(lo_, 2)}, {fmt_sig(hi_, 2)}]"
        for ((m, a), v), lo_, hi_ in zip(digits.items(), lo, hi, strict=True)
    )
    takeaway = (
        f"Zero-shot top-1 on the digits held-out split (n = {int(n_val):,} images, 95% Wilson intervals): {best}. "
        f"Basis: proxy — tiny CLIPs ({', '.join(pl.model_order(models))}) trained {epochs} epoch(s) on "
        f"{dataset.get('n_train', 0):,} synthetic pairs at {resolution} px, one seed ({seed})."
    )
else:
    takeaway = f"Trained {len(summaries)} model(s) on {train_data or 'the bundled domains'}; no held-out digits split to report here."
path = save_results(
    ex.relative_paths(
        {
            "dataset": dataset,
            "summaries": summaries,
            "results": res,
            "extra_summaries": extra,
            "digits_top1": {f"{m}/{a}": v for (m, a), v in digits.items()},
            "takeaway": takeaway,
            "n": {"training pairs": dataset.get("n_train"), "held-out images per domain (max)": int(res.n_val.max())}
            if len(res)
            else {"training pairs": dataset.get("n_train")},
        },
        out,
    ),
    "03_clip_training",
)
