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
# # 05 · Scaling laws: does LA follow the same one as softmax?
#
# The paper claims that linear attention follows "the same scaling laws" as softmax. Here the
# models of `03_clip_training` (in the `study` profile: four sizes, tiny-XS to tiny-L, one head
# width throughout, about 27× in non-embedding parameters; softmax and Eq. 7; three training
# seeds each) are fitted with a power law
#
# $$ y = a\, x^{-b} $$
#
# where $y$ is the zero-shot error $1 - \text{top-1}$ on one domain, or the final training loss,
# and $x$ is the non-embedding parameter count or the training compute
# $C \approx 6\, N_\text{params}\, T_\text{tokens}$. The claim is a claim about the exponent $b$.
#
# **Uncertainty: a seed-level bootstrap.** Each resample draws, within every size, the training
# seeds with replacement, and within each drawn seed its validation images (for the error) or its
# late training steps (for the loss); it averages to one $y$ per size and refits the line. The
# difference $b_\text{LA} - b_\text{softmax}$ is **paired**: both attentions get the same drawn
# seed indices and images at every size.
#
# **The decision is declared in advance** (`linrepro.study.rules`): "the same scaling law" is
# *supported* when the 95% interval of $b_\text{LA} - b_\text{softmax}$ lies inside the
# equivalence margin ±0.1, *contradicted* when it lies wholly outside, and *inconclusive*
# otherwise: **underpowered** when the interval is wider than the band itself (then no outcome of
# these runs could have supported the claim), **exploratory** with fewer than 3 training seeds,
# and **needs ≥ 3 sizes** when the fit has only two (a line through two points tests nothing of
# the power-law form).

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
eval_run: "OptionalStr" = None  # folder of a 04_zero_shot_eval run of those models; it must have evaluated train_run (None: the latest one, if it did)
fit_domain = "digits"  # domain whose zero-shot error is fitted
n_resamples = 2000  # [100, ...) bootstrap resamples
seed = 0  # [0, ...) bootstrap seed
min_sizes = 3  # [2, ...) fewest distinct sizes an attention needs to be fitted (a verdict always needs 3)

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from linrepro.study import rules, scaling
from linrepro.study.experiments import load_training
from linrepro.study.runs import find_run, load_results, save_results, setup_notebook
from linrepro.utils import plotting as pl
from linrepro.utils.tables import fmt_sig, tidy

setup_notebook()
source = find_run("03_clip_training", train_run)
trained = load_training(source)  # stored paths resolved against the run folder
try:
    ev_source = find_run("04_zero_shot_eval", eval_run)
except FileNotFoundError:
    if eval_run:
        raise
    ev_source = None
# an explicit eval_run of another training run raises; the latest one found is skipped if it is
evaluated = scaling.eval_for_training(
    source, ev_source, load_results(ev_source) if ev_source else None, explicit=bool(eval_run)
)
ev_source = ev_source if evaluated is not None else None
points = scaling.points_from_training(trained, fit_domain, (evaluated or {}).get("rows"))
pts = pd.DataFrame(points).drop(columns=["correct", "tail_losses"])
grid = pts[pts.attention.isin({s["attention"] for s in trained["summaries"]})]
sizes = grid.groupby("model").n_params_nonembed.first().sort_values()
n_seeds = int(grid.groupby(["model", "attention"]).seed.nunique().min())
from_04 = sorted(set(pts.eval_source)) == ["04"]
display(
    Markdown(
        f"Runs from `{source.parent.name}/{source.name}`: {len(sizes)} sizes "
        f"({fmt_sig(sizes.iloc[0])} to {fmt_sig(sizes.iloc[-1])} non-embedding parameters, "
        f"{sizes.iloc[-1] / sizes.iloc[0]:.0f}×) × {pts.attention.nunique()} attentions × "
        f"{n_seeds} training seed(s); {len(pts)} trained models. Zero-shot error on **{fit_domain}** from "
        + (f"`{ev_source.parent.name}/{ev_source.name}`." if from_04 else "training's own evaluation.")
        + (" **One seed: exploratory.**" if n_seeds < 3 else "")
    )
)
tidy(pl.sort_frame(pts), index=False)

# %% [markdown]
# ## Fits
# Every trained model is one point (small markers), each size's mean over seeds a large open
# marker; the line is the least-squares fit through the means in log-log space, its band the
# bootstrap 95% interval of the fitted curve. Compute is $6\,N_\text{params}\,T$ with $T$ the
# tokens processed: image patches, class token and text context, times the samples seen.

# %%
tokens = pts.compute / (6 * pts.n_params_nonembed)
if np.allclose(tokens, tokens.iloc[0]):
    display(
        Markdown(
            f"Every run processed the same {fmt_sig(tokens.iloc[0])} tokens, so compute is proportional to "
            "size here: the compute fits have the same exponents as the size fits, on a shifted axis."
        )
    )

# %%
results = scaling.fit_all(points, n_resamples=n_resamples, seed=seed, min_sizes=min_sizes)
for name, r in results.items():
    if not r["fits"]:
        display(Markdown(f"**{name}**: no fit. " + "; ".join(f"{a}: {w}" for a, w in r["not_fitted"].items())))
        continue
    metric, x = name.split(" vs ")
    title = (
        f"{pl.AXIS_TITLES.get(metric, metric)} against {pl.AXIS_TITLES.get(x, x)}: every seed, fitted line, 95% band"
    )
    pl.style(scaling.fig_fit(r, title)).show()

# %% [markdown]
# ## Exponents and their difference
# Left: each exponent with its seed-level 95% interval. Right: $b_\text{LA} - b_\text{softmax}$,
# paired, against the declared equivalence band (shaded). An interval inside the band supports
# "the same scaling law", one wholly outside contradicts it; an interval wider than the band could
# do neither.

# %%
table = scaling.exponent_table(results)
display(
    tidy(
        pl.sort_frame(table),
        index=False,
        caption="exponent b with its seed-level bootstrap 95% interval [b_lo, b_hi]; diff: b(LA) − b(softmax), "
        f"paired; verdict under the margin ±{rules.EXPONENT_MARGIN:g}",
    )
)
if table.get("b") is not None and table.b.notna().any():
    pl.style(scaling.fig_exponents(table)).show()

# %% [markdown]
# ## The claim, as these runs answer it

# %%
text = scaling.verdict_text(results)
decided = scaling.overall(results)
display(Markdown(text))

# %%
main = results["error vs n_params_nonembed"]
loss = results["loss vs n_params_nonembed"]


def b3(v):  # an exponent: 3 decimals, signed, no -0.000
    return f"{round(float(v), 3) + 0.0:+.3f}"


def diff_line(r, what):
    return " ".join(
        f"{what}: softmax b = {b3(r['fits']['softmax']['b'])}, {att} b = {b3(r['fits'][att]['b'])}, "
        f"b({att}) − b(softmax) = {b3(d['diff'])} [{b3(d['diff_lo'])}, {b3(d['diff_hi'])}] "
        f"(width {d['width']:.3f}): {d['decision']['label']}."
        for att, d in r["differences"].items()
    )


not_fitted = pl.attention_order(a for r in results.values() for a, w in r["not_fitted"].items() if "fewer than" in w)
takeaway = " ".join(
    part
    for part in (
        f"Same scaling law? **{decided['label']}** under the declared equivalence margin "
        f"±{rules.EXPONENT_MARGIN:g} on b(LA) − b(softmax), from {len(sizes)} sizes "
        f"({sizes.iloc[-1] / sizes.iloc[0]:.0f}× in non-embedding parameters) × {n_seeds} training seed(s)"
        + ("; one seed: exploratory" if n_seeds == 1 else "; fewer than 3 seeds: exploratory" if n_seeds < 3 else "")
        + ".",
        diff_line(main, f"{fit_domain} error against size"),
        diff_line(loss, "Final loss against size"),
        f"Not fitted (fewer than {min_sizes} sizes): {', '.join(not_fitted)}." if not_fitted else "",
        "Basis: proxy; 95% intervals from a seed-level bootstrap (seeds, then images or late steps).",
    )
    if part
)
display(Markdown(takeaway))
path = save_results(
    {
        "takeaway": takeaway,
        "n": {
            "model sizes": len(sizes),
            "training seeds": n_seeds,
            "trained models": len(pts),
            "bootstrap resamples": n_resamples,
        },
        "source_run": source,
        "eval_run": ev_source,
        "fit_domain": fit_domain,
        "margin": rules.EXPONENT_MARGIN,
        "min_sizes": min_sizes,
        "points": pts,
        "fits": results,
        "exponents": table,
        "decisions": scaling.decisions(results),
        "verdict": decided,
        "verdict_text": text,
    },
    "05_scaling_laws",
)
