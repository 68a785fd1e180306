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
# models of `03_clip_training` (three sizes × softmax and LA) are fitted with a power law
#
# $$ y = a\, x^{-b} $$
#
# where $y$ is the zero-shot error $1 - \text{top-1}$ on one domain, or the final training loss,
# and $x$ is the non-embedding parameter count or the training compute
# $C \approx 6\, N_\text{params}\, T_\text{tokens}$. The claim is tested directly on the
# exponent $b$: do the bootstrap 95% intervals of softmax and LA overlap, and what is
# $b_\text{LA} - b_\text{softmax}$ with its own interval?
#
# The intervals come from `scipy.stats.bootstrap` over what each point was measured from (the
# validation images; the last tenth of the training steps). They do not include seed-to-seed
# variation, and with three sizes a line in log-log space has one degree of freedom left, so they
# are wide. Read them as "what these runs can and cannot exclude".

# %% tags=["parameters"]
train_run: "OptionalStr" = None  # folder of a 03_clip_training run (None: the latest finished one of this profile)
eval_run: "OptionalStr" = None  # folder of a 04_zero_shot_eval run of those models; it must have evaluated train_run (None: the latest one, if it did)
fit_domain = "digits"  # domain whose zero-shot error is fitted
n_resamples = 2000  # [1, ...) bootstrap resamples
seed = 0  # [0, ...) bootstrap seed

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from linrepro.study import scaling
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
pts = pd.DataFrame(points).drop(columns=["confusion", "tail_losses"])
display(
    Markdown(
        f"Runs from `{source.parent.name}/{source.name}`; zero-shot error on **{fit_domain}** from "
        + (f"`{ev_source.parent.name}/{ev_source.name}`." if ev_source else "training's own evaluation.")
    )
)
tidy(pl.sort_frame(pts), index=False)

# %% [markdown]
# ## Fits
# Compute is $6\,N_\text{params}\,T$ with $T$ the tokens processed: image patches, class token
# and text context, times the samples seen.

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
results = scaling.fit_all(points, n_resamples=n_resamples, seed=seed)
for name, r in results.items():
    metric, x = name.split(" vs ")
    title = f"{pl.AXIS_TITLES.get(metric, metric)} against {pl.AXIS_TITLES.get(x, x)}: points measured, lines fitted"
    pl.style(scaling.fig_fit(r, title)).show()

# %%
table = scaling.exponent_table(results)
display(
    tidy(
        pl.sort_frame(table),
        index=False,
        caption="exponent b with its bootstrap 95% interval [b_lo, b_hi]; diff: b(LA) − b(softmax)",
    )
)
pl.style(scaling.fig_exponents(table.to_dict("records"))).show()

# %% [markdown]
# ## The claim, as these runs answer it

# %%
display(Markdown(scaling.verdict_text(results)))

# %%
main = "error vs n_params_nonembed"
la_rows = table[(table.fit == main) & (table.attention != "softmax")]
sm_row = table[(table.fit == main) & (table.attention == "softmax")]


def b3(v):  # an exponent: 3 decimals, signed, no -0.000
    return f"{round(float(v), 3) + 0.0:+.3f}"


takeaway = (
    f"Same scaling law? **{scaling.same_law_verdict(results)}** over {len(results)} fits. "
    + " ".join(
        f"On {fit_domain} error against size: softmax b = {b3(sm_row.b.iloc[0])} "
        f"[{b3(sm_row.b_lo.iloc[0])}, {b3(sm_row.b_hi.iloc[0])}], {r.attention} b = {b3(r.b)} "
        f"[{b3(r.b_lo)}, {b3(r.b_hi)}], difference {b3(r['diff'])} [{b3(r.diff_lo)}, {b3(r.diff_hi)}]."
        for _, r in la_rows.iterrows()
        if len(sm_row)
    )
    + (
        f" Basis: proxy — {pts.model.nunique()} model sizes, one training seed; bootstrap 95% intervals over "
        "validation images and late training steps, not over seeds."
    )
)
path = save_results(
    {
        "takeaway": takeaway,
        "n": {"model sizes": int(pts.model.nunique()), "bootstrap resamples": n_resamples},
        "source_run": source,
        "fit_domain": fit_domain,
        "points": pts,
        "fits": results,
        "exponents": table,
    },
    "05_scaling_laws",
)
