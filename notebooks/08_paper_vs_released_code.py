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
# # 08 · The paper's equations against the authors' released code
#
# The paper's code is unpublished. The first author's public repository (`armingerami/Fastmax`,
# `Simplefied/transformer.py`, commit c73e1c2) is open_clip's `transformer.py` with linear attention
# switched on in every residual block, and it computes something other than the paper's Eq. 7.
# linrepro carries it as a third LA variant, **`released`** (`linrepro.clip.released`): in each
# block the attention of $x = \mathrm{ln}_1(\text{input})$ becomes
#
# $$o_i = \sum_j (1 + q_i \cdot k_j)\, v_j, \qquad q = k = v = x \text{ reshaped (B, N, H·d) → (B, H, N, d)},
# \quad q, k \;/\!=\; \max_r \lVert x_r \rVert ,$$
#
# with no projections, heads formed by a plain reshape (no transpose), no score scale or
# denominator, and no causal mask. The paper's Eq. 7 is
# $o_i = W_o\, s \sum_j (1 + \hat q_i \cdot \hat k_j) v_j$ with unit $\hat q, \hat k$ from projected
# heads. Each difference below is **measured** on attention modules built from one
# `nn.MultiheadAttention` (the same weights), called as an open_clip block calls them.

# %% tags=["parameters"]
train_runs = []  # 03_clip_training run folders (one run trains every seed; empty: the latest finished one of this profile)
seed = 0  # [0, ...) seed of the block weights and the tokens
width = 48  # [1, ...) block width E for the property table
heads = 3  # [1, ...) heads H (width must be a multiple of it)
n_tokens = 12  # [2, ...) tokens for the dependence and score measurements
norm_ns = [16, 64, 256, 1024, 4096]  # non-empty [1, ...) sequence lengths for the output-norm growth
eq7_scales = [0.5, "1/N"]  # non-empty Eq. 7 score scales shown (a number, or 1/N)
speed_ns = [256, 1024, 4096]  # non-empty [1, ...) sequence lengths timed
speed_batch = 8  # [1, ...) batch of the timed attention
speed_width = 256  # [1, ...) width of the timed attention
speed_heads = 4  # [1, ...) heads of the timed attention
speed_modes = ["fwd", "fwd+bwd"]  # non-empty {fwd, fwd+bwd} what is timed
speed_runs = 10  # [1, ...) interleaved rounds per point
speed_budget_s = 5.0  # (0, ...) seconds per point, at most
device = "auto"  # {auto, cpu, cuda} where to time (auto: cuda when there is one)

# %%
import numpy as np
import pandas as pd
import plotly.express as px
import torch
from IPython.display import Markdown, display

from linrepro.study import released as rs
from linrepro.study import seeded
from linrepro.study.runs import save_results, setup_notebook
from linrepro.utils import plotting as pl

setup_notebook()
dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
results = {"params": {"seed": seed, "width": width, "heads": heads, "n_tokens": n_tokens, "eq7_scales": eq7_scales}}

# %% [markdown]
# ## 1 · What each variant computes, measured
#
# * **uses projections**: does the output change when $W_\text{in}$ and $W_o$ change?
# * **trainable params**: of the attention module (`released` freezes the projections it does not use,
#   so DDP does not stop on parameters without a gradient);
# * **text: later tokens seen**: with the text tower's causal mask passed, the share of pairs
#   $j > i$ for which $\partial o_i / \partial x_j \neq 0$ (0 means causal);
# * **vision: tokens seen**: the share of the $N$ tokens an output token depends on (1 for global attention);
# * **score range**: the weights on $v_j$ (softmax probabilities, Eq. 4's normalised weights, Eq. 7's
#   $s(1 + \hat q \cdot \hat k)$, released's $1 + q \cdot k$), the dot products inside them, and the
#   smallest query norm (1 where queries are unit vectors);
# * **norm slope**: the log-log slope of the mean $\lVert o_i \rVert$ against $N$ (tokens sharing a direction).

# %%
props = rs.property_table(width, heads, n_tokens, norm_ns, seed=seed, eq7_scales=eq7_scales)
table = pd.DataFrame(props).set_index("variant")
display(
    table[
        [
            "uses_projections",
            "trainable_params",
            "text_future_share",
            "vision_token_share",
            "vision_tokens_per_row",
            "vision_score_min",
            "vision_score_max",
            "vision_dot_min",
            "vision_dot_max",
            "vision_min_query_norm",
            "norm_slope",
        ]
    ].style.format(precision=3)
)
display(Markdown("\n".join(f"* **{r['variant']}**: {r['computes']}" for r in props)))
results["properties"] = props
results["headline"] = rs.headline(props)

# %% [markdown]
# ### Which tokens an output token depends on
# One block with the text tower's causal mask (as open_clip passes it). Eq. 7 is lower-triangular;
# `released` ignores the mask and, with heads formed by a plain reshape, each "head" is a run of
# about $N/H$ consecutive tokens: the blocks on the diagonal, later tokens included.

# %%
mods = rs.build_modules(width, heads, seed=seed, eq7_scales=eq7_scales[:1], backend="reference")
x = rs.tokens(1, n_tokens, width, seed=seed + 1)
eq7_name = rs.label("eq7", eq7_scales[0])
maps = {name: rs.dependence_map(mods[name], x, causal=True) for name in (eq7_name, "released")}
fig = px.imshow(
    np.stack(list(maps.values())),
    facet_col=0,
    color_continuous_scale="Blues",
    labels={"x": "input token j", "y": "output token i"},
    title=f"Text tower, one block: output i depends on input j (1) or not (0); H = {heads}",
)
fig.for_each_annotation(lambda a: a.update(text=list(maps)[int(a.text.split("=")[1])]))
fig.show()

# %%
growth = pd.DataFrame(
    [{"variant": r["variant"], "N": n, "mean ‖o_i‖": v} for r in props for n, v in zip(r["norm_ns"], r["mean_norms"])]
)
fig = px.line(
    growth,
    x="N",
    y="mean ‖o_i‖",
    color="variant",
    markers=True,
    log_x=True,
    log_y=True,
    labels={"N": "sequence length N (tokens)", "mean ‖o_i‖": "mean output norm ‖o_i‖"},
    title="Output norm against sequence length (slopes in the table above)",
)
looks = [("solid", "circle"), ("dash", "square"), ("dot", "diamond"), ("dashdot", "x"), ("longdash", "triangle-up")]
pl.distinguish(fig, dict(zip(growth.variant.unique(), looks))).show()

# %% [markdown]
# ## 2 · Accuracy: released against eq7 and softmax
# From the `03_clip_training` run that trained `released` beside the paper's forms (same data,
# training seeds, budget), for each model where `released` was trained. Every accuracy is the mean
# over training seeds with a 95% interval that resamples seeds, then images. Each difference,
# released − eq7 and released − softmax, is paired by seed and by image; its p-value is
# Holm-adjusted across every cell of the table, and the verdict is the declared rule for "the same
# accuracy" (within ±0.05, `linrepro.study.rules`). With fewer than three seeds the comparison is
# exploratory: the interval then reflects the test images, not how training varies with the seed.

# %%
acc = rs.load_accuracy(train_runs)
results["accuracy"] = acc
if acc["status"] != "measured":
    display(Markdown(f"**Not run.** {acc['reason']}"))
elif not acc["rows"]:
    display(Markdown("**Not run.** The runs have no (model, domain) with `released` and a baseline both evaluated."))
else:
    cells, cmp = pd.DataFrame(acc["cells"]), pd.DataFrame(acc["rows"])
    display(
        Markdown(
            f"From {', '.join(f'`{s}`' for s in acc['sources'])}: {acc['seeds']} training seed(s)"
            + ("; one seed: exploratory." if acc["seeds"] < 3 else ".")
        )
    )
    display(seeded.wide_table(cells, ["model", "domain"], "attention", order=pl.ATTENTION_ORDER))
    display(
        cmp[
            [
                "model",
                "domain",
                "contrast",
                "diff",
                "ci_low",
                "ci_high",
                "p_value",
                "p_holm",
                "t_test_p",
                "seeds",
                "verdict",
            ]
        ].style.format(precision=3, na_rep="–")
    )
    fig = px.bar(
        cmp,
        x="domain",
        y="diff",
        color="baseline",
        barmode="group",
        facet_col="model",
        error_y=cmp["ci_high"] - cmp["diff"],
        error_y_minus=cmp["diff"] - cmp["ci_low"],
        color_discrete_map=pl.colour_map(cmp["baseline"].unique()),
        labels={"diff": "top-1 difference, released − baseline", "domain": "domain", "baseline": "baseline"},
        title="Zero-shot top-1: released − baseline (95% interval over seeds, then images)",
    )
    fig.add_hline(y=0, line_color="#57606a", line_width=1)
    pl.style(fig).show()

# %% [markdown]
# ## 3 · Speed on this machine
# One attention call of each variant on $(B, N, E)$ inputs, timed interleaved (each round times
# every variant once), median per point. eq4 and eq7 include their projections; `released` has none.
# Softmax's timing is notebook 02's subject.

# %%
speed = pd.DataFrame(
    rs.speed(
        speed_ns,
        batch=speed_batch,
        width=speed_width,
        heads=speed_heads,
        modes=speed_modes,
        runs=speed_runs,
        budget_s=speed_budget_s,
        device=dev,
        eq7_scale=eq7_scales[0],
        seed=seed,
    )
)
fig = px.line(
    speed,
    x="N",
    y="ms",
    color="variant",
    line_dash="mode",
    markers=True,
    log_x=True,
    log_y=True,
    labels={"N": "sequence length N (tokens)", "ms": "time per call (ms)"},
    title=f"Time per call on {dev} (B = {speed_batch}, E = {speed_width}, H = {speed_heads}, fp32)",
)
pl.style(fig, dash_by_size=False).show()
display(speed.pivot_table(index=["mode", "N"], columns="variant", values="vs_eq7").style.format("{:.2f}"))
results["speed"] = speed.to_dict("records")
results["speed_device"] = torch.cuda.get_device_name() if dev == "cuda" else "cpu"

# %%
results["takeaway"] = rs.takeaway(results)
save_results(results, "08_paper_vs_released_code")
