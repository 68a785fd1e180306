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
# On a laptop CPU the `cpu` profile trains three tiny analogues (`tiny-S`, `tiny-B`, `tiny-L`) once
# (one seed: exploratory), and the `study` profile four sizes (`tiny-XS` to `tiny-L`, one head width)
# with three training seeds each, on a bundled mixed-domain dataset rendered from data that ships with scikit-learn and
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
seed = 0  # [0, ...) data seed: rendering, the split, captions (and the training seed when seeds is empty)
seeds = []  # [0, ...) training seeds: each changes the initialisation and the data order (empty: [seed])
workers = 1  # [1, ...) runs trained at once on CPU, one thread each (ignored on GPU)
epochs = 14  # [1, ...) training epochs per model
batch_size = 64  # [1, ...) global batch size (split over nproc processes)
batch_sizes = {}  # [1, ...) per-model global batch size, overriding batch_size (paper: ViT-S/B/L-16 → 64/16/4)
lr = 0.001  # (0, ...) peak learning rate (cosine schedule)
lrs = {}  # (0, ...) per-attention peak learning rate overriding lr (e.g. chosen by 09's sweep)
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
from linrepro.study import seeded
from linrepro.study.runs import run_dir, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import fmt_sig, tidy

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
    lrs=lrs,
    warmup=warmup,
    precision=precision,
    seed=seed,
    seeds=seeds,
    workers=workers,
    score_scale=score_scale,
    nproc=nproc,
    image_size=resolution,
    resume=resume,
)
if lrs:
    print("peak learning rate per attention: " + ", ".join(f"{a} {lrs.get(a, lr):g}" for a in attentions))

# %% [markdown]
# ### Extra runs: Eq. 7's score scale, the released code
# The paper's scale of Eq. 7 is not known. With $s = ½$ every score lies in $[0, 1]$ but the output
# is a *sum* over the $N$ keys, so its norm grows with $N$ (notebook 01); $s = 1/N$ makes it a mean.
# The authors' released code (`released`, notebook 08) computes something else again. The runs below
# use the same data, epochs, learning rate and seeds as the grid.

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
    seeds=seeds,
    workers=workers,
    score_scale=score_scale,
    nproc=nproc,
    image_size=resolution,
    resume=resume,
)
if extra and any(s["zero_shot"] for s in extra):
    key = ("model", "attention", "seed")
    same = [s for s in summaries if any(all(s.get(k) == x.get(k) for k in key) for x in extra)]
    ab_rows = [
        {
            **r,
            "variant": f"{r['attention']} (s = {s.get('score_scale')})" if r["attention"] != "released" else "released",
        }
        for s in same + extra
        for r in seeded.rows_from_summaries([s])
    ]
    ab = seeded.interval_frame(ab_rows, by=("model", "variant", "domain"))
    display(
        tidy(
            seeded.wide_table(ab, ("model", "variant"), "domain", order=domains),
            caption="zero-shot top-1: mean over seeds [95% interval, seeds then images] ×seeds",
        )
    )

# %% [markdown]
# ## Training curves

# %%
steps = ex.steps_frame(summaries)
used = ex.training_seeds(seeds, seed)
if len(steps):
    fig = ex.fig_curves(steps[steps.seed == used[0]], "loss")
    pl.style(fig).update_layout(
        title=f"Training loss, seed {used[0]} (rolling mean over 10 steps): colour is the attention, dash the model size"
        + (f"; the other {len(used) - 1} seed(s) are in each run's steps.csv" if len(used) > 1 else "")
    ).show()

# %%
thr = pd.DataFrame(summaries).groupby(["model", "attention"], as_index=False).images_per_s.median()
fig = px.bar(
    thr,
    x="model",
    y="images_per_s",
    color="attention",
    barmode="group",
    category_orders=pl.category_orders(thr),
    color_discrete_map=pl.colour_map(thr.attention),
    labels={"images_per_s": "training throughput (images/s)"},
    title=f"Training throughput (images/s, median over steps and {len(used)} seed(s); "
    + (f"{workers} runs shared the CPU at a time" if workers > 1 else "one run at a time")
    + ", so compare bars within this run only)",
)
pl.style(fig).show()

# %% [markdown]
# ## Zero-shot top-1 on each domain's held-out split
# Each cell is the mean over training seeds with a 95% interval from a two-stage bootstrap (seeds,
# then held-out images). With one seed the interval covers the images only: exploratory.

# %%
res = ex.results_frame(summaries)
rows = seeded.rows_from_summaries(summaries)
acc = seeded.interval_frame(rows) if rows else pd.DataFrame()
if len(acc):
    chance = dict(zip(res.domain, res.chance, strict=False))
    pl.accuracy_bars(
        acc.assign(top1=acc["mean"]),
        value="top1",
        lo="ci_low",
        hi="ci_high",
        domains=domains,
        chance=chance,
        title=f"Zero-shot top-1, mean over {len(used)} seed(s) with 95% intervals (seeds, then images; grey bars: chance)",
    ).show()
    display(
        tidy(
            seeded.wide_table(acc, ("model", "attention"), "domain", order=domains),
            caption="zero-shot top-1: mean [95% interval] ×seeds",
        )
    )
else:  # external training data: no bundled held-out split to evaluate here
    display(Markdown("No zero-shot domains for this training data: notebook 04 evaluates these models."))


# %%
def _cell(r):
    return f"{r.model}/{r.attention} {fmt_sig(r['mean'])} [{fmt_sig(r.ci_low, 2)}, {fmt_sig(r.ci_high, 2)}]"


digits = acc[acc.domain == "digits"] if len(acc) else acc
if len(digits):
    verdict = digits.set_index(["model", "attention"])[["mean", "ci_low", "ci_high", "seeds", "n_images"]].copy()
    verdict["bar"] = [0.90 if a == "softmax" else 0.80 for _, a in verdict.index]
    verdict["mean meets bar"] = verdict["mean"] >= verdict["bar"]
    display(
        Markdown(
            "Acceptance bars on the digits domain (chance 0.10): softmax ≥ 0.90 and LA ≥ 0.80, on the mean over seeds."
        )
    )
    display(tidy(pl.sort_frame(verdict)))
if len(acc):
    per_domain = "; ".join(
        f"{d}: " + ", ".join(_cell(r) for _, r in pl.sort_frame(acc[acc.domain == d]).iterrows()) for d in domains
    )
    n_img = {d: int(acc[acc.domain == d].n_images.max()) for d in domains if (acc.domain == d).any()}
    takeaway = (
        f"Zero-shot top-1 on the held-out splits ({', '.join(f'{d} n = {n:,}' for d, n in n_img.items())}), mean over "
        f"{len(used)} training seed(s) with 95% intervals: {per_domain}. "
        + (
            (
                "One seed: exploratory, the intervals cover the images only. "
                if len(used) == 1
                else f"{len(used)} seeds: exploratory (fewer than 3). "
            )
            if len(used) < 3
            else "Intervals resample seeds, then images. "
        )
        + f"Basis: proxy — tiny CLIPs ({', '.join(pl.model_order(models))}) trained {epochs} epoch(s) on "
        f"{dataset.get('n_train', 0):,} synthetic pairs at {resolution} px."
    )
else:
    takeaway = (
        f"Trained {len(summaries)} model(s) on {train_data or 'the bundled domains'}; no held-out split to report here."
    )

# %%
# paths are stored relative to this run's folder, so a moved or copied run still works (ex.load_training)
mean_digits = digits.set_index(["model", "attention"])["mean"] if len(digits) else pd.Series(dtype=float)
path = save_results(
    ex.relative_paths(
        {
            "dataset": dataset,
            "seeds": used,
            "summaries": summaries,
            "results": res,
            "accuracy": acc.drop(columns=["per_seed"]).to_dict("records") if len(acc) else [],
            "extra_summaries": extra,
            "digits_top1": {f"{m}/{a}": v for (m, a), v in mean_digits.items()},
            "takeaway": takeaway,
            "n": {"training pairs": dataset.get("n_train"), "training seeds": len(used)}
            | ({"held-out images per domain (max)": int(res.n_val.max())} if len(res) else {}),
        },
        out,
    ),
    "03_clip_training",
)
