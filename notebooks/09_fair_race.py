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
# # 09 · A fair race: tuned learning rates, matched budgets, and three ways to change resolution
#
# Notebooks 03–06 train softmax and linear attention (LA, Eq. 7 with $s = 1/N$) with **one**
# learning rate and one budget, and "another resolution" there means one thing: the positional
# embedding of a model trained at 32 px, interpolated to a larger grid with no training at the new
# side. This notebook makes the race fair and asks the resolution question three ways, on one model:
#
# 1. **Learning rate per method.** A sweep of at least three values per attention, each run trained
#    on the `fit` part of the training split and scored on its `tune` part (never on `val`, which
#    every reported accuracy uses). The declared rule picks one value per method.
# 2. **Matched budgets and convergence.** An epoch sweep at each method's chosen rate, with seeds:
#    LA against softmax at equal steps and at equal measured wall-clock time, and the epochs each
#    needs to reach 95% of its final accuracy (the paper says LA needs more epochs).
# 3. **Three resolution arms**, each as LA − softmax with a paired interval:
#    (a) *interpolated*: the positional embedding resized on load, no training at the new side;
#    (b) *fine-tuned*: each model trained on at each evaluation side for a small fixed budget, the
#    same for both methods;
#    (c) *mixed*: trained from the start with each step at a side drawn from a set, the positional
#    embedding resampled to the step's grid (FlexiViT's recipe; `--mixed-resolutions` of
#    `python -m linrepro.train`, which works with torchrun on GPUs too).
# 4. **Accuracy against compute**: top-1 against the image tower's counted FLOPs per image and its
#    measured images/s at each side, with the Pareto frontier, and a computed answer to "does LA's
#    cheaper high-resolution inference buy accuracy at equal compute?".
#
# Every number is a mean over training seeds with a 95% interval (seeds, then images); every
# LA − softmax contrast is paired by seed and image, with Holm's correction across a table's cells.
# **Basis: proxy** — tiny CLIPs on bundled synthetic data, not the paper's ViTs on LAION.

# %% tags=["parameters"]
model = "tiny-S"  # the open_clip model raced (see linrepro.clip.model_names())
attentions = ["softmax", "eq7"]  # non-empty {softmax, eq4, eq7} the methods raced (softmax first: the baseline)
domains = ["digits", "shapes", "glyphs"]  # non-empty bundled domains to train and evaluate on
resolution = 32  # [1, ...) the side the base models train at (px)
n_per_domain = {"shapes": 600, "glyphs": 600}  # [1, ...) samples per domain before the split (unnamed: default)
val_fraction = 0.2  # (0, 1) held-out share per domain (the evaluation split)
seed = 0  # [0, ...) data seed: rendering, the splits, captions
seeds = [0]  # [0, ...) training seeds (each: initialisation and data order; fewer than 3: exploratory)
workers = 2  # [1, ...) runs trained at once on CPU, one thread each
lrs = [0.001, 0.002, 0.004]  # (0, ...) peak learning rates swept per attention
sweep_epochs = 4  # [1, ...) epochs of each learning-rate sweep run
epochs_list = [2, 4]  # [1, ...) training budgets of the epoch sweep (the largest makes the base models)
batch_size = 64  # [1, ...) batch size
warmup = 50  # [0, ...) warm-up steps
score_scale: "ScoreScale" = "1/N"  # s in Eq. 7: a number, or 1/N
mixed_resolutions = [32, 48]  # [1, ...) sides drawn per step in the mixed arm (empty: no mixed arm)
eval_resolutions = [32, 48, 64]  # non-empty [1, ...) sides every arm is evaluated at (multiples of the patch)
finetune_epochs = 1  # [1, ...) epochs of fine-tuning at each side above `resolution` (both methods alike)
finetune_lr = 0.0002  # (0, ...) peak learning rate of that fine-tuning
throughput_batch = 8  # [1, ...) images per timed batch for images/s
throughput_runs = 3  # [1, ...) timed batches per point (after one warm-up)
convergence_fraction = 0.95  # (0, 1) converged means reaching this fraction of the final accuracy

# %%
import os

from IPython.display import Markdown, display

from linrepro.study import evaluation as ev
from linrepro.study import experiments as ex
from linrepro.study import race, seeded
from linrepro.study.runs import run_dir, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import tidy

setup_notebook()
out = run_dir("09_fair_race")
resume = os.environ.get("LINREPRO_RESUME") == "1"
if resume:
    print(f"resuming {out}: finished models are reused, the others continue from their last checkpoint")
used = ex.training_seeds(seeds, seed)
if attentions[0] != "softmax":
    raise ValueError(f"attentions must start with the baseline 'softmax', got {attentions}")
train_kw = dict(batch_size=batch_size, warmup=warmup, score_scale=score_scale, image_size=resolution, resume=resume)
fit = ex.prepare_data(out / "data", domains, resolution, seed, val_fraction, n_per_domain, split="fit")
full = ex.prepare_data(out / "data", domains, resolution, seed, val_fraction, n_per_domain)
print(
    f"{full['n_train']:,} training pairs at {resolution} px; the sweep trains on {fit['n_train']:,} of them (fit) "
    f"and is scored on the other {full['n_train'] - fit['n_train']:,} (tune); every accuracy below is on val"
)

# %% [markdown]
# ## 1 · Learning rate per method
# Rule, declared before the runs: for each attention, the rate with the highest mean over seeds of
# the mean over domains of top-1 on `tune`. A choice at the edge of the swept range is flagged: the
# best rate may then lie outside it.

# %%
sweep = race.lr_sweep(
    model, attentions, lrs, fit, out / "runs", seeds=used, epochs=sweep_epochs, workers=workers, **train_kw
)
from linrepro.study import frontier as fr

choice = fr.choose_lr(race.rows(sweep))
chosen = {a: float(choice["chosen"][a]) for a in attentions}
lr_table = choice["table"].assign(lr=choice["table"].lr.map(lambda v: f"{v:g}"))
display(
    tidy(
        seeded.wide_table(lr_table, ("attention", "lr"), "domain", order=[*domains, fr.MEAN_OVER_DOMAINS]),
        caption=f"tune-split top-1 after {sweep_epochs} epochs: mean over seeds [95% interval, seeds then images] ×seeds",
    )
)
display(Markdown(f"*Rule.* {choice['rule']}\n\n**Chosen.** {race.choice_text(choice)}"))
pl.style(race.fig_lr(choice["table"], chosen)).show()

# %% [markdown]
# ### Tuning history
# What was chosen while looking at LA's results, before this sweep existed (from the project's
# CHANGELOG and issues), so that a reader can weigh how much the configuration favours LA:
# the head layout (one head width, 32, in every model), light backgrounds in the rendered data,
# and Eq. 7's scale $s = 1/N$ (chosen over $s = ½$ after LA trained poorly with it; 03's extra run
# keeps $s = ½$ beside it). The learning rate (2e-3) and the budget (26 epochs) of the study grid
# were set once for both methods. This notebook's sweep is the first choice made per method, by a
# rule declared before its runs. One choice was made while looking at this sweep: in the study
# profile the first pass swept 1e-3, 2e-3 and 4e-3, both methods chose 1e-3 (the lower edge), and
# 5e-4 was added to the same run before any later stage used the choice
# (`params/study/09_fair_race.yaml` says so too).

# %%
grid_lrs = race.grid_learning_rates()
display(Markdown(race.grid_lr_note(grid_lrs, chosen)))

# %% [markdown]
# ## 2 · Matched budgets and convergence
# Each method trains at its chosen rate for every budget of the epoch sweep (cosine schedule over
# the whole budget, so a short run is a complete run, not a truncated long one). The
# mixed-resolution models of arm (c) train in the same pool. Wall-clock time is each run's measured
# training seconds; runs trained two at a time on one thread each, in the same pool.

# %%
mixed_data = (
    ex.prepare_data(out / "data", domains, max(mixed_resolutions), seed, val_fraction, n_per_domain)
    if mixed_resolutions
    else None
)
epoch_runs, mixed_runs = race.epoch_sweep(
    model,
    chosen,
    epochs_list,
    full,
    out / "runs",
    seeds=used,
    workers=workers,
    mixed_resolutions=mixed_resolutions,
    mixed_dataset=mixed_data,
    **train_kw,
)
bases = [s for s in epoch_runs if s["epochs"] == max(epochs_list)]
conv_rows = race.rows(epoch_runs)
conv = fr.convergence(conv_rows, frac=convergence_fraction)
acc_by_epochs = fr.epoch_accuracy(conv_rows)
pl.style(fr.fig_convergence(acc_by_epochs, conv)).show()
display(
    tidy(
        conv[["attention", "kind", "mean", "ci_low", "ci_high", "t_test_p", "seeds", "censored"]],
        caption=f"epochs to reach {convergence_fraction:.0%} of the final accuracy (mean over domains of val top-1)",
    )
)
display(Markdown("\n".join(f"- {t}" for t in conv.text) + f"\n\n*Rule.* {fr.CONVERGENCE_RULE}"))

# %%
budget = fr.equal_budget(conv_rows)
show = [
    c
    for c in (
        "comparison",
        "attention",
        "epochs",
        "train_s",
        "la_train_s",
        "la_epochs",
        "diff",
        "ci_low",
        "ci_high",
        "t_test_p",
        "seeds",
        "note",
    )
    if c in budget
]
display(
    tidy(
        budget[show],
        caption="LA − softmax, mean over domains of val top-1: at equal steps and at equal measured training time",
    )
)
display(Markdown(f"*Rule.* {fr.EQUAL_BUDGET_RULE}"))

# %% [markdown]
# ## 3 · Three resolution arms
# Fine-tuning: each base model continues for the same small budget at each side above the training
# side (data rendered at that side; open_clip interpolates the positional embedding once, on load).
# At the training side the fine-tuned arm is the base model itself.

# %%
tuned = race.finetune_arm(
    bases,
    full,
    [r for r in eval_resolutions if r != resolution],
    out / "runs",
    epochs=finetune_epochs,
    lr=finetune_lr,
    batch_size=batch_size,
    warmup=min(warmup, 10),
    workers=workers,
)
sets = ev.eval_sets(domains, full)
arms = race.arm_rows(bases, tuned, mixed_runs, sets, eval_resolutions, resolution)
acc = seeded.interval_frame(arms, by=("arm", "attention", "resolution", "domain"))
pl.style(race.fig_arms(acc, domains)).show()
contrast = fr.arm_contrasts(arms)
display(
    tidy(
        seeded.wide_table(contrast, ("arm", "resolution"), "domain", value="diff", signed=True, order=domains),
        caption="LA − softmax top-1 per arm and side: paired by seed and image [95% interval] ×seeds (Holm across the table)",
    )
)
top = race.highest_resolution_contrasts(contrast)
display(Markdown(race.arms_text(top)))

# %% [markdown]
# ## 4 · Accuracy against compute
# The image tower's cost per image at each side: FLOPs counted by torch's `FlopCounterMode`, and
# images/s measured on this machine (one model per attention, the first seed; timed one after the
# other, nothing else running in this notebook).

# %%
first = {s["attention"]: s for s in sorted(bases, key=lambda s: -s["seed"])}
costs = fr.image_costs(
    lambda att, r: ex.load_model(first[att], resolution=r)[0],
    eval_resolutions,
    attentions=attentions,
    batch=throughput_batch,
    runs=throughput_runs,
)
display(tidy(costs.drop(columns=[c for c in ("by_op", "count") if c in costs]), caption="image tower per image"))
display(Markdown(f"*How cost is measured.* {fr.COST_RULE}"))

# %%
points = fr.frontier_points(arms, costs)
pl.style(fr.fig_frontier(points)).show()
decision = fr.frontier_decision(arms, costs)
speed_points = fr.frontier_points(arms, costs, cost="images_per_s")
speed_decision = fr.frontier_decision(arms, costs, cost="images_per_s")
display(
    Markdown(
        f"**{decision['overall']}**\n\n"
        + "\n".join(f"- {v['text']}" for v in decision["domains"].values())
        + f"\n\nMeasured as time instead (s per image from images/s on this machine): {speed_decision['overall']}"
        + f"\n\n*Rule.* {fr.DECISION_RULE}"
    )
)

# %%
takeaway = race.takeaway(choice, conv, budget, top, decision, n_seeds=len(used))
display(Markdown(takeaway))
save_results(
    ex.relative_paths(
        {
            "model": model,
            "seeds": used,
            "chosen_lr": chosen,
            "lr_choice": race.jsonable({k: v for k, v in choice.items()}),
            "grid_lrs": grid_lrs,
            "sweep": race.brief(sweep),
            "epoch_runs": race.brief(epoch_runs),
            "mixed_runs": race.brief(mixed_runs),
            "finetuned": race.brief(tuned),
            "convergence": race.jsonable(conv),
            "epoch_accuracy": race.jsonable(acc_by_epochs),
            "equal_budget": race.jsonable(budget),
            "arm_accuracy": race.jsonable(acc),
            "arm_contrasts": race.jsonable(contrast),
            "highest_resolution": race.jsonable(top),
            "costs": race.jsonable(costs),
            "frontier_points": race.jsonable(points),
            "frontier": race.jsonable(decision),
            "frontier_by_time": race.jsonable(speed_decision),
            "takeaway": takeaway,
            "n": {
                "training runs": len(sweep) + len(epoch_runs) + len(mixed_runs) + len(tuned),
                "training seeds": len(used),
            },
        },
        out,
    ),
    "09_fair_race",
)
