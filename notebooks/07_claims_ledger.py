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
# # 07 · The claims ledger
#
# The seed report lists 17 claims from arXiv:2604.10064 with a "verified" mark and a confidence.
# Here each one is checked against what this package measured in the notebooks before this one.
#
# **The rule, declared before any run** (`linrepro.study.rules`): every numeric claim has a band
# fixed in code (for example a softmax time slope of 2 ± 0.25). A claim is **supported** when the
# 95% interval of its measurement lies inside the band, **contradicted** when the interval lies
# wholly outside, and **inconclusive** otherwise (the interval's width is stated). **Not testable
# here** says what is missing.
#
# **Every verdict states its basis**: `paper setup` (measured on the paper's own setup), `proxy`
# (measured on a stand-in: this CPU for an H200, tiny CLIPs for ViT-S/B/L), `configuration`
# (what linrepro's profiles set, which says nothing about the paper) or `by construction` (true
# by algebra or by a chosen constant, with the condition stated). Only measurements are findings,
# and claims that share one measurement count once.

# %% tags=["parameters"]
evidence_profiles = ["study", "cpu"]  # per notebook, the first of these with a run: the recorded study, else own

# %%
import pandas as pd
import plotly.express as px
from IPython.display import HTML, Markdown, display

from linrepro.study import claims
from linrepro.study.runs import current_profile, outputs_root, run_dir, save_results, setup_notebook

setup_notebook()
profiles = tuple(evidence_profiles) or (current_profile(),)
rows = claims.evaluate(outputs_root(), profiles)
s = claims.summary(rows)
here = run_dir("07_claims_ledger")

# %% [markdown]
# ## Which runs this ledger reads
# For each notebook, the first of the profiles above that has a finished run of it: the `cpu` and
# `smoke` ledgers read the recorded study (`outputs/reference/study/`) where it exists and their own
# runs otherwise. The seeds are the training seeds behind a trained model's numbers.

# %%
used = claims.evidence_runs(outputs_root(), profiles)
display(HTML(claims.evidence_runs_html(used, outputs_root(), here)))

# %% [markdown]
# ## Summary

# %%
display(Markdown(f"**{s['headline']}**"))
m = s["measurements"]
display(
    Markdown(
        f"Measurements behind the claims: {m['n']} distinct ("
        + ", ".join(f"{n} {v}" for v, n in m["counts"].items() if n)
        + f"), from profile(s) {', '.join(profiles)}. The seed marked {s['seed_verified']} claims as verified; "
        f"{s['seed_verified_and_supported']} of those are supported here (any basis)."
    )
)
unreadable = [r for r in rows if r.get("reason") == "unreadable evidence"]
if unreadable:  # a truncated or corrupt results.json: those claims say so, the others are unaffected
    display(
        Markdown(
            "**Unreadable evidence** for claim(s) "
            + ", ".join(str(r["n"]) for r in unreadable)
            + ": "
            + "; ".join(sorted({f"`{r['source_run']}`" for r in unreadable}))
            + ". Re-run those notebooks, or remove the broken run folders."
        )
    )
grid = pd.DataFrame(
    [{"basis": b, "verdict": v, "claims": n} for b, row in s["by_basis"].items() for v, n in row.items() if n]
)
px.bar(
    grid,
    x="basis",
    y="claims",
    color="verdict",
    text="claims",
    color_discrete_map=claims.COLOURS,
    category_orders={"basis": list(s["by_basis"]), "verdict": list(claims.VERDICTS)},
    labels={"basis": "basis of the verdict", "claims": "number of claims"},
    title="Verdict × basis of the 17 claims",
).show()

# %% [markdown]
# ## The ledger

# %%
display(HTML(claims.ledger_html(rows, outputs_root(), here)))

# %% [markdown]
# ## Beyond the 17 claims: the seed's question
# What the training, scaling and resolution notebooks of this profile found, line by line as they
# computed it.

# %%
found = claims.findings(outputs_root(), profiles)
display(HTML(claims.findings_html(found, outputs_root(), here)))

# %%
path = save_results(
    {
        "profiles": list(profiles),
        "evidence_runs": used,
        "summary": s,
        "findings": found,
        "claims": [
            {
                k: r[k]
                for k in (
                    "n",
                    "claim",
                    "kind",
                    "seed_verified",
                    "seed_confidence",
                    "verdict",
                    "evidence",
                    "numbers",
                    "reason",
                    "link",
                    "source_run",
                    "basis",
                    "rule",
                    "group",
                )
            }
            for r in rows
        ],
        "takeaway": s["headline"],
    },
    "07_claims_ledger",
)
