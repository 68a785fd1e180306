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
# # 02 · Timing linear attention against softmax
#
# The paper times one attention layer on an H200 (B = 4, H = 8, D = 64, up to about
# $4\times10^6$ tokens; mean of 1000 runs after 100 warm-ups) and reports log-log slopes of
# about 1 for affine LA and about 2 for FlashAttention-2, with LA about $10^3$ times faster at
# the longest length. This notebook measures the same on the machine it runs on, or shows a
# recorded run (for example an H200 run under `outputs/reference/`); the report says which.
#
# Every timing below comes from `linrepro.study.bench` (also runnable as `python -m linrepro.runner.bench`).
# Skipped cases carry their reason; nothing extrapolated is mixed with measurements.

# %% tags=["parameters"]
reference_dir = ""  # a recorded bench folder to show instead of measuring (e.g. outputs/reference/h200/...)
device = "auto"  # {auto, cpu, cuda} where to time
batch = 1  # [1, ...) B
heads = 4  # [1, ...) H
head_dim = 64  # [1, ...) D, also Dv
dtype = "float32"  # {float32, float16, bfloat16} element type
la_log2 = [10, 18]  # non-empty [0, ...) LA sweep: N from 2^lo to 2^hi
softmax_log2 = [10, 14]  # non-empty [0, ...) softmax sweep: N from 2^lo to 2^hi
warmup = 1  # [0, ...) warm-up calls per point
runs = 3  # [1, ...) timed calls per point (fewer if a point passes the budget; the count used is recorded)
budget_s = 60.0  # (0, ...) time budget per point; a point predicted to exceed it is skipped with that reason
modes = ["fwd", "fwdbwd"]  # non-empty {fwd, fwdbwd} forward, forward+backward
variants = ["eq4", "eq7"]  # non-empty {eq4, eq7} LA variants
fit_from_n = {
    "linear": 8192,
    "softmax": 2048,
}  # [1, ...) per method ("linear", "softmax"): fit slopes from this N up; else from where time exceeds 2% of the largest

# %%
from IPython.display import Markdown, display

from linrepro.study import bench, timing
from linrepro.study.runs import run_dir, save_results, setup_notebook

setup_notebook()
cfg = bench.config_from_params(
    batch, heads, head_dim, dtype, la_log2, softmax_log2, warmup, runs, budget_s, modes, variants, fit_from_n
)
doc, source = bench.measure_or_load(cfg, reference_dir, device, run_dir("02_attention_timing"))
res = timing.analyse(doc, source, recorded=bool(reference_dir))
df = timing.frame(doc["cases"])
display(Markdown(source))

# %% [markdown]
# ## Time against N
# Each line is one implementation: `la-<backend>-<variant>` is linrepro's affine LA, `sdpa-<backend>`
# is PyTorch's `scaled_dot_product_attention` forced to one backend (so the recorded backend is
# the one that ran).

# %%
timing.fig_times(df).show()

# %%
skipped = df[df.status != "ok"][["impl", "mode", "n", "status", "reason"]]
print(f"{(df.status == 'ok').sum()} cases measured, {res['n_skipped']} skipped, {res['n_failed']} failed")
skipped.groupby(["impl", "mode", "status"]).agg(first_n=("n", "min"), reason=("reason", "first"))

# %% [markdown]
# ## Log-log slopes with 95% intervals
# An OLS fit of $\log t$ on $\log N$ over the range where each method is in its asymptotic
# regime: from `fit_from_n` (per method, set in the profile), or else from the first N whose
# time exceeds 2% of that implementation's largest measured time (below that, fixed per-call
# overheads dominate, and on a CPU the whole problem fits in cache). The fitted range is in the table.

# %%
fits = res["fits"]
fits.round(3)

# %% [markdown]
# ## Speed-up of LA over softmax
# The fastest LA implementation against the fastest softmax backend, at every N where both were
# measured in this run.

# %%
la_best, sm_best, sp = res["la_impl"], res["softmax_impl"], res["speedup"]
if len(sp):
    timing.fig_speedup(sp, la_best, sm_best).show()
sp

# %% [markdown]
# ## Memory
# Peak memory one call adds (GPU: `max_memory_allocated`; CPU: the rise of the process's peak
# resident set during the call, so small cases read as 0 when the allocator reuses pages).

# %%
timing.fig_memory(df).show()

# %% [markdown]
# ## Share of the memory roofline
# LA does about $D/2$ FLOP per byte, far below a GPU's ridge point: it is memory-bound, and its
# floor is the bytes of q, k, v and o over the copy bandwidth. On a GPU the copy bandwidth is
# measured in the same run; on a CPU this section reports achieved GB/s only.

# %%
bw = doc.get("copy_bandwidth_Bps")
roof = timing.roofline(df[df.method == "linear"], bw)
print("measured device-to-device copy bandwidth:", f"{bw / 1e12:.2f} TB/s" if bw else "not measured (no GPU)")
roof.groupby(["impl", "mode"]).tail(3).round(3)

# %% [markdown]
# ## The paper's claims against this run

# %%
display(Markdown(source))
res["claims"][["claim", "paper", "measured"]] if len(res["claims"]) else "no timing claim could be evaluated"

# %%
path = save_results(res, "02_attention_timing")
print("saved", path)
