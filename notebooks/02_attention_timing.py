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
la_log2 = [10, 19]  # non-empty [0, ...) LA sweep: N from 2^lo to 2^hi
softmax_log2 = [10, 14]  # non-empty [0, ...) softmax sweep: N from 2^lo to 2^hi
warmup = 1  # [0, ...) warm-up calls per point
runs = 5  # [1, ...) timed calls per point (fewer if a point passes the budget; the count used is recorded)
budget_s = 60.0  # (0, ...) time budget per point; a point predicted to exceed it is skipped with that reason
modes = ["fwd", "fwdbwd"]  # non-empty {fwd, fwdbwd} forward, forward+backward
variants = ["eq4", "eq7"]  # non-empty {eq4, eq7} LA variants
fit_from_n = {
    "linear": 92682,
    "softmax": 2048,
}  # [1, ...) per method ("linear", "softmax"): fit slopes from this N up; else from where time exceeds 2% of the largest
points_per_octave = {
    "linear": 2,
    "softmax": 1,
}  # [1, 8] N values per doubling, per method ("linear", "softmax"); more points make the robust slope tighter
slice_from_n = 0  # [0, ...) time softmax on one (batch, head) slice × B·H from this N (0: past int32 on CUDA)
threads = 0  # [0, ...) CPU threads to time with (0: the cores other processes leave free at the start)

# %%
from IPython.display import Markdown, display

from linrepro.study import bench, timing
from linrepro.study.runs import run_dir, save_results, setup_notebook

setup_notebook()
cfg = bench.config_from_params(**{k: globals()[k] for k in bench.CONFIG_KEYS})  # the parameters above
doc, source = bench.measure_or_load(cfg, reference_dir, device, run_dir("02_attention_timing"))
res = timing.analyse(doc, source, recorded=bool(reference_dir))
df = timing.frame(doc["cases"])
display(Markdown(source + (" " + timing.load_note(res["sweep"]) if timing.load_note(res["sweep"]) else "")))

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
# The repetitions of every implementation at one N are **interleaved** (A B A B …, not A A B B),
# so a burst of load on a shared machine slows them alike, and each point's time is the
# **minimum** over its repetitions (the median is kept beside it). The slope is a **Theil–Sen**
# fit of $\log t$ on $\log N$: the median of the slopes between every pair of points, which one
# slow point cannot swing; its 95% interval comes from Kendall's tau. The fit runs over the range
# where each method is in its asymptotic regime: from `fit_from_n` (per method, set in the
# profile), or else from the first N whose time exceeds 2% of that implementation's largest
# (below that, fixed per-call overheads dominate, and on a CPU the whole problem fits in cache).
# The fitted range, and how many of its points were sliced, are in the table.
# On a CPU the sweep runs with as many threads as the cores other processes leave free when it
# starts (`threads = 0`): a parallel region with more threads than free cores waits a scheduler
# time slice at each barrier, which slows the many small regions of the chunked LA path 10-30×
# and would bend its curve. The threads used and the busy cores seen are stated at the top.

# %%
fits = res["fits"]
fits.round(3)

# %% [markdown]
# ## Speed-up of LA over softmax
# The fastest LA implementation against the fastest softmax backend, at every N where both were
# measured in this run (minimum times; the interval spans the ratios of minima and medians).
# Past the int32 index limit of FlashAttention-style kernels (B·H·N·D ≥ 2³¹) softmax is timed on
# one (batch, head) slice and multiplied by B·H: its heads are independent. Such points are
# marked `sliced`, and at the last N where the full call still runs, a sliced call is timed beside
# it to check that the two agree within 10%.

# %%
la_best, sm_best, sp = res["la_impl"], res["softmax_impl"], res["speedup"]
if len(sp):
    timing.fig_speedup(sp, la_best, sm_best).show()
sp

# %%
checks = res["slice_checks"]
if len(checks):
    display(Markdown("**Slice checks** (one slice × B·H against the full call, same run):"))
    display(checks)
else:
    print("no softmax point was sliced in this run, so no slice check was needed")

# %% [markdown]
# ## Memory
# Peak memory one call adds (GPU: `max_memory_allocated`; CPU: the rise of the process's peak
# resident set during the call, so small cases read as 0 when the allocator reuses pages).

# %%
timing.fig_memory(df).show()

# %% [markdown]
# ## Against the roofline
# Beside every measured point, the roofline's floor: the larger of its bytes over the copy
# bandwidth and its FLOPs over the matmul peak, both **measured in this run** on this device.
# LA does about $D/2$ FLOP per byte: far below a GPU's ridge point (memory-bound there), above a
# CPU's (compute-bound here). The ratio of the two floors at one N is the largest speed-up any
# implementation could show on this machine.

# %%
bw, peak = doc.get("copy_bandwidth_Bps"), doc.get("matmul_peak_flops")
roof = timing.roofline(df, bw, peak)
best = res["best_possible_speedup"]
display(
    Markdown(
        f"Measured in this run: copy bandwidth **{bw / 1e9:.3g} GB/s**, matmul peak **{peak / 1e9:.3g} GFLOP/s**."
        if bw and peak
        else "Copy bandwidth and matmul peak were not measured in this run (a recorded run from before they were)."
    )
)
if best:
    display(
        Markdown(
            f"At N = {best['n']:,} the roofline allows softmax/LA = **{best['ratio']:.3g}×**; this run measured "
            f"**{best['measured']:.3g}×**."
        )
    )
roof.groupby(["impl", "mode"]).tail(3).round(3)

# %% [markdown]
# ## The paper's claims against this run

# %%
display(Markdown(source))
res["claims"][["claim", "paper", "measured"]] if len(res["claims"]) else "no timing claim could be evaluated"

# %%
res["takeaway"] = timing.takeaway(res)
save_results(res, "02_attention_timing")
