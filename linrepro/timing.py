"""Analysis of bench results: log-log slopes with 95% intervals, speed-ups, roofline, claims.

Measured rows and extrapolated rows never mix: :func:`extrapolate` returns rows flagged
``extrapolated=True`` in their own frame, and every table built from them says so.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass

import numpy as np
import pandas as pd
from scipy import stats

PAPER = {
    "la_slope": 1.0,
    "softmax_slope": 2.0,
    "speedup_at_4M": 1e3,
    "n_4M": 4_194_304,
}


def frame(cases) -> pd.DataFrame:
    rows = [asdict(c) if is_dataclass(c) else dict(c) for c in cases]
    df = pd.DataFrame(rows)
    if "extra" in df:
        df = df.drop(columns="extra")
    return df


def fit_slope(n, t, n_min: int | None = None) -> dict:
    """OLS of log t on log N over points with N ≥ n_min: slope, 95% interval, fitted range."""
    n, t = np.asarray(n, float), np.asarray(t, float)
    keep = np.isfinite(t) & (t > 0)
    if n_min is not None:
        keep &= n >= n_min
    n, t = n[keep], t[keep]
    if len(n) < 3:
        return {"slope": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "n_points": int(len(n)), "n_from": int(n.min()) if len(n) else None,
                "n_to": int(n.max()) if len(n) else None}
    r = stats.linregress(np.log(n), np.log(t))
    half = stats.t.ppf(0.975, len(n) - 2) * r.stderr
    return {"slope": float(r.slope), "ci_low": float(r.slope - half), "ci_high": float(r.slope + half),
            "n_points": int(len(n)), "n_from": int(n.min()), "n_to": int(n.max()),
            "intercept": float(r.intercept)}


def asymptotic_start(n, t, frac: float = 0.02) -> int | None:
    """Smallest N from which time exceeds ``frac`` of the largest measured time.

    Below it fixed overheads (launches, Python) dominate and the slope is not the algorithm's.
    """
    n, t = np.asarray(n, float), np.asarray(t, float)
    ok = np.isfinite(t)
    if not ok.any():
        return None
    n, t = n[ok], t[ok]
    cut = frac * t.max()
    above = n[t >= cut]
    start = int(above.min())
    # keep at least three points when there are three
    if (n >= start).sum() < 3 and len(n) >= 3:
        start = int(np.sort(n)[-3])
    return start


def slopes(df: pd.DataFrame, n_min: dict | int | None = None, frac: float = 0.02) -> pd.DataFrame:
    """One fitted slope per (impl, mode). ``n_min`` fixes the fit's start (per method or overall);
    otherwise :func:`asymptotic_start` picks it and the table states it."""
    out = []
    ok = df[df.status == "ok"]
    for (impl, mode), g in ok.groupby(["impl", "mode"]):
        g = g.sort_values("n")
        method = g.method.iloc[0]
        start = n_min.get(method) if isinstance(n_min, dict) else n_min
        if start is None:
            start = asymptotic_start(g.n, g.median_s, frac)
        out.append({"impl": impl, "mode": mode, "method": method, **fit_slope(g.n, g.median_s, start)})
    return pd.DataFrame(out)


def speedups(df: pd.DataFrame, la_impl: str, softmax_impl: str, mode: str = "fwd") -> pd.DataFrame:
    """softmax time / LA time at every N both measured, in the same run."""
    ok = df[(df.status == "ok") & (df["mode"] == mode)]
    a = ok[ok.impl == la_impl].set_index("n").median_s
    b = ok[ok.impl == softmax_impl].set_index("n").median_s
    both = a.index.intersection(b.index)
    return pd.DataFrame({"n": both, "la_s": a[both].values, "softmax_s": b[both].values,
                         "speedup": (b[both] / a[both]).values})


def fastest(df: pd.DataFrame, method: str, mode: str = "fwd") -> str | None:
    """The implementation of ``method`` with the lowest time at the largest N they all reached."""
    ok = df[(df.status == "ok") & (df.method == method) & (df["mode"] == mode)]
    if ok.empty:
        return None
    common = ok.groupby("impl").n.max().min()
    at = ok[ok.n == common]
    return str(at.sort_values("median_s").impl.iloc[0])


def extrapolate(df: pd.DataFrame, fits: pd.DataFrame, impl: str, mode: str, ns) -> pd.DataFrame:
    """Times predicted from a fitted power law, flagged ``extrapolated=True``. Never measurements."""
    f = fits[(fits.impl == impl) & (fits["mode"] == mode)]
    if f.empty or not np.isfinite(f.slope.iloc[0]):
        return pd.DataFrame(columns=["impl", "mode", "n", "median_s", "extrapolated"])
    s, c = f.slope.iloc[0], f.intercept.iloc[0]
    measured = set(df[(df.impl == impl) & (df["mode"] == mode) & (df.status == "ok")].n)
    rows = [{"impl": impl, "mode": mode, "n": n, "median_s": float(np.exp(c) * n ** s), "extrapolated": True}
            for n in ns if n not in measured]
    return pd.DataFrame(rows)


def roofline(df: pd.DataFrame, bandwidth_Bps: float | None) -> pd.DataFrame:
    """% of the measured copy bandwidth reached: io_bytes / time / bandwidth (LA is memory-bound)."""
    ok = df[(df.status == "ok")].copy()
    if not bandwidth_Bps:
        ok["pct_of_copy_bw"] = np.nan
    else:
        ok["pct_of_copy_bw"] = 100 * ok.io_bytes / ok.median_s / bandwidth_Bps
    ok["achieved_GBps"] = ok.io_bytes / ok.median_s / 1e9
    return ok[["impl", "mode", "n", "median_s", "io_bytes", "achieved_GBps", "pct_of_copy_bw"]]


def summary_table(cases) -> str:
    df = frame(cases)
    ok = df[df.status == "ok"]
    if ok.empty:
        return "no case ran"
    piv = ok.pivot_table(index="n", columns=["mode", "impl"], values="median_s") * 1e3
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.3g}".format):
        return "median time (ms)\n" + piv.to_string()


def claims_table(df: pd.DataFrame, fits: pd.DataFrame, la_impl: str | None, sm_impl: str | None,
                 mode: str = "fwd") -> pd.DataFrame:
    """The paper's timing claims next to what this run measured (no extrapolated number in it)."""
    def slope_of(impl):
        f = fits[(fits.impl == impl) & (fits["mode"] == mode)]
        if f.empty:
            return None, "not measured"
        r = f.iloc[0]
        return r.slope, f"{r.slope:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] over N = {r.n_from:,}…{r.n_to:,}"

    la_s, la_txt = slope_of(la_impl)
    sm_s, sm_txt = slope_of(sm_impl)
    sp = speedups(df, la_impl, sm_impl, mode) if la_impl and sm_impl else pd.DataFrame()
    if len(sp):
        last = sp.iloc[-1]
        sp_txt = f"{last.speedup:.3g}× at N = {int(last.n):,} (largest N where both were measured)"
    else:
        sp_txt = "not measured"
    return pd.DataFrame([
        {"claim": "LA time grows as O(N) (log-log slope ≈ 1)", "paper": "≈ 1", "measured": la_txt,
         "value": la_s},
        {"claim": "softmax time grows as O(N²) (log-log slope ≈ 2)", "paper": "≈ 2", "measured": sm_txt,
         "value": sm_s},
        {"claim": "LA ≈ 10³ × faster at ≈ 4×10⁶ tokens", "paper": "≈ 10³ at N ≈ 4.2×10⁶", "measured": sp_txt,
         "value": float(sp.speedup.iloc[-1]) if len(sp) else None},
    ])


# --------------------------------------------------------------------------- run or load
def config_from_params(batch, heads, head_dim, dtype, la_log2, softmax_log2, warmup, runs, budget_s,
                       modes, variants) -> dict:
    import torch

    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype; use float32, float16 or bfloat16")
    for name, rng in (("la_log2", la_log2), ("softmax_log2", softmax_log2)):
        if len(rng) != 2 or rng[0] > rng[1] or rng[0] < 0:
            raise ValueError(f"{name} must be [lo, hi] with 0 ≤ lo ≤ hi, got {rng!r}")
    bad = [m for m in modes if m not in ("fwd", "fwdbwd")]
    if bad:
        raise ValueError(f"modes must be fwd and/or fwdbwd, got {bad}")
    return dict(batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, la_log2=tuple(la_log2),
                softmax_log2=tuple(softmax_log2), warmup=warmup, runs=runs, budget_s=float(budget_s),
                modes=tuple(modes), variants=tuple(variants))


def measure_or_load(cfg: dict, reference_dir: str, device: str, out_dir) -> tuple[dict, str]:
    """Either load a recorded ``bench.json`` (e.g. outputs/reference/h200/…) or measure now.

    Returns the bench document and a sentence saying which it is, for the report.
    """
    from pathlib import Path

    import torch

    from linrepro import bench, project

    if reference_dir:
        p = Path(reference_dir)
        p = p if p.is_absolute() else project.root() / p
        doc = bench.load(p)
        dev = doc["provenance"]["device"]
        name = (dev.get("cuda") or {}).get("name") or dev.get("cpu")
        return doc, (f"**Recorded run**, loaded from `{reference_dir}`: measured on {name} on "
                     f"{doc['provenance']['date']} (commit {str(doc['provenance']['git'].get('commit'))[:10]}). "
                     "Not measured in this run.")
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA device")
    cases = bench.sweep(cfg, dev)
    bw = bench.copy_bandwidth(dev)
    doc = bench.write(cases, Path(out_dir), cfg, {"copy_bandwidth_Bps": bw})
    dev_info = doc["provenance"]["device"]
    name = (dev_info.get("cuda") or {}).get("name") or dev_info.get("cpu")
    return doc, f"**Measured in this run** on {name} ({dev.type}), {doc['provenance']['date']}."


# --------------------------------------------------------------------------- figures
def fig_times(df: pd.DataFrame, extrapolated: pd.DataFrame | None = None):
    import plotly.express as px

    ok = df[df.status == "ok"].copy()
    ok["time (s)"] = ok.median_s
    fig = px.line(ok.sort_values("n"), x="n", y="time (s)", color="impl", facet_col="mode", markers=True,
                  log_x=True, log_y=True, hover_data=["runs", "mean_s", "peak_mem_bytes"],
                  title="Median time per call against sequence length N (log-log)")
    if extrapolated is not None and len(extrapolated):
        import plotly.graph_objects as go

        for impl, g in extrapolated.groupby("impl"):
            fig.add_trace(go.Scatter(x=g.n, y=g.median_s, mode="lines+markers", line=dict(dash="dot"),
                                     name=f"{impl} (EXTRAPOLATED)"), row=1, col=1)
    return fig


def fig_speedup(sp: pd.DataFrame, la_impl: str, sm_impl: str):
    import plotly.express as px

    return px.line(sp, x="n", y="speedup", markers=True, log_x=True, log_y=True,
                   title=f"Speed-up {sm_impl} time / {la_impl} time (forward), measured side by side")


def fig_memory(df: pd.DataFrame):
    import plotly.express as px

    ok = df[(df.status == "ok") & df.peak_mem_bytes.notna()].copy()
    ok["peak memory (MiB)"] = ok.peak_mem_bytes / 2 ** 20
    ok = ok[ok["peak memory (MiB)"] > 0]
    return px.line(ok.sort_values("n"), x="n", y="peak memory (MiB)", color="impl", facet_col="mode",
                   markers=True, log_x=True, log_y=True, title="Peak memory added by one call against N")
