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
# # 07 · The claims ledger
#
# The seed report lists 17 claims from arXiv:2604.10064 with a "verified" mark and a confidence.
# Here each one is checked against what this package measured in the notebooks before this one
# (`linrepro.study.claims` holds the checks and their tolerances). A verdict is one of
# **supported**, **contradicted**, **inconclusive** or **not testable here** (with the reason).
# Claims about the paper's setup cannot be verified without its code; their evidence says what
# linrepro's `paper` and `h200` profiles configure instead.

# %% tags=["parameters"]
evidence_profiles = []  # profiles whose runs are read, in order of preference (empty: this run's profile)

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
# ## Summary

# %%
c = s["counts"]
display(
    Markdown(
        f"Of {s['n']} claims: **{c['supported']} supported**, **{c['contradicted']} contradicted**, "
        f"**{c['inconclusive']} inconclusive**, **{c['not testable here']} not testable here** "
        f"(evidence from profile(s) {', '.join(profiles)}). The seed marked {s['seed_verified']} as verified; "
        f"{s['seed_verified_and_supported']} of those are supported here, and {s['seed_unverified_but_supported']} "
        f"claims the seed left unverified are supported by a measurement here."
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
counts = pd.DataFrame([{"verdict": v, "claims": n} for v, n in c.items()])
px.bar(
    counts, x="verdict", y="claims", color="verdict", text="claims", color_discrete_map=claims.COLOURS, title="Verdicts"
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
                )
            }
            for r in rows
        ],
    },
    "07_claims_ledger",
)
print("saved", path)
