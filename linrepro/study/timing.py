"""Analysis of bench results: log-log slopes with 95% intervals, speed-ups, roofline, claims.

Measured rows and extrapolated rows never mix: :func:`extrapolate` returns rows flagged
``extrapolated=True`` in their own frame, and every table built from them says so.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass

import numpy as np
import pandas as pd
from scipy import stats


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
        return {
            "slope": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "n_points": int(len(n)),
            "n_from": int(n.min()) if len(n) else None,
            "n_to": int(n.max()) if len(n) else None,
        }
    r = stats.linregress(np.log(n), np.log(t))
    half = stats.t.ppf(0.975, len(n) - 2) * r.stderr
    return {
        "slope": float(r.slope),
        "ci_low": float(r.slope - half),
        "ci_high": float(r.slope + half),
        "n_points": int(len(n)),
        "n_from": int(n.min()),
        "n_to": int(n.max()),
        "intercept": float(r.intercept),
    }


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
    return pd.DataFrame(
        {"n": both, "la_s": a[both].values, "softmax_s": b[both].values, "speedup": (b[both] / a[both]).values}
    )


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
    rows = [
        {"impl": impl, "mode": mode, "n": n, "median_s": float(np.exp(c) * n**s), "extrapolated": True}
        for n in ns
        if n not in measured
    ]
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


def claims_table(
    df: pd.DataFrame, fits: pd.DataFrame, la_impl: str | None, sm_impl: str | None, mode: str = "fwd"
) -> pd.DataFrame:
    """The paper's timing claims next to what this run measured (no extrapolated number in it)."""

    def slope_of(impl):
        f = fits[(fits.impl == impl) & (fits["mode"] == mode)]
        if f.empty:
            return None, "not measured"
        r = f.iloc[0]
        if not np.isfinite(r.slope):
            return None, f"too few timed lengths in the fitted range ({int(r.n_points)} point(s); 3 needed)"
        return r.slope, f"{r.slope:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] over N = {r.n_from:,}…{r.n_to:,}"

    la_s, la_txt = slope_of(la_impl)
    sm_s, sm_txt = slope_of(sm_impl)
    sp = speedups(df, la_impl, sm_impl, mode) if la_impl and sm_impl else pd.DataFrame()
    if len(sp):
        last = sp.iloc[-1]
        sp_txt = f"{last.speedup:.3g}× at N = {int(last.n):,} (largest N where both were measured)"
    else:
        sp_txt = "not measured"
    return pd.DataFrame(
        [
            {"claim": "LA time grows as O(N) (log-log slope ≈ 1)", "paper": "≈ 1", "measured": la_txt, "value": la_s},
            {
                "claim": "softmax time grows as O(N²) (log-log slope ≈ 2)",
                "paper": "≈ 2",
                "measured": sm_txt,
                "value": sm_s,
            },
            {
                "claim": "LA ≈ 10³ × faster at ≈ 4×10⁶ tokens",
                "paper": "≈ 10³ at N ≈ 4.2×10⁶",
                "measured": sp_txt,
                "value": float(sp.speedup.iloc[-1]) if len(sp) else None,
            },
        ]
    )


# --------------------------------------------------------------------------- one analysis
def analyse(doc: dict, source: str, recorded: bool = False) -> dict:
    """Everything notebook 02 reports from a bench document, as its ``results.json`` holds it:
    slopes over the config's ``fit_from_n`` range, the fastest LA and softmax, their speed-up,
    the claims table and counts. The bench CLI (``--record``) and the notebook both call this."""
    df = frame(doc["cases"])
    cfg = doc.get("config", {})
    fits = slopes(df, n_min=cfg.get("fit_from_n") or None) if "status" in df else pd.DataFrame()
    la_best, sm_best = (fastest(df, "linear"), fastest(df, "softmax")) if len(fits) else (None, None)
    sp = speedups(df, la_best, sm_best) if la_best and sm_best else pd.DataFrame(columns=["n", "speedup"])
    at = sp[sp.n == 16384] if len(sp) else sp
    return {
        "source": source,
        "recorded": recorded,
        "config": cfg,
        "provenance": doc.get("provenance"),
        "fits": fits,
        "speedup": sp,
        "la_impl": la_best,
        "softmax_impl": sm_best,
        "speedup_at_16384": float(at.speedup.iloc[0]) if len(at) else None,
        "claims": claims_table(df, fits, la_best, sm_best) if len(fits) else pd.DataFrame(),
        "copy_bandwidth_Bps": doc.get("copy_bandwidth_Bps"),
        "n_cases": len(df),
        "n_skipped": int((df.status == "skipped").sum()) if "status" in df else 0,
        "n_failed": int((df.status == "failed").sum()) if "status" in df else 0,
    }


def report_text(doc: dict, res: dict) -> str:
    """A terminal summary of a sweep: times, failures, slopes over the fitted range, speed-ups."""
    lines = [summary_table(doc["cases"])]
    df = frame(doc["cases"])
    bad = df[df.status == "failed"] if "status" in df else df.iloc[:0]
    if len(bad):
        lines.append(f"\n{len(bad)} case(s) FAILED:")
        for r in bad.drop_duplicates(["impl", "reason"]).itertuples():
            lines.append(f"  {r.impl} {r.mode} N={int(r.n):,}: {r.reason}")
    fits = res["fits"]
    if len(fits):
        lines.append("\nlog-log slopes (95% interval), fitted from fit_from_n or where time passes 2% of the largest:")
        for r in fits.itertuples():
            if not np.isfinite(r.slope):
                lines.append(f"  {r.impl:<14} {r.mode:<7} too few points in the fitted range ({r.n_points})")
                continue
            lines.append(
                f"  {r.impl:<14} {r.mode:<7} {r.slope:6.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]  "
                f"N = {r.n_from:,}…{r.n_to:,}"
            )
    la, sm = res["la_impl"], res["softmax_impl"]
    if la and sm:
        for mode in doc.get("config", {}).get("modes", ("fwd",)):
            sp = speedups(df, la, sm, mode)
            if len(sp):
                lines.append(
                    f"speed-up {sm}/{la} ({mode}): "
                    + ", ".join(f"N={int(r.n):,}: {r.speedup:.1f}×" for r in sp.itertuples())
                )
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def fig_times(df: pd.DataFrame, extrapolated: pd.DataFrame | None = None):
    import plotly.express as px

    ok = df[df.status == "ok"].copy()
    ok["time (s)"] = ok.median_s
    fig = px.line(
        ok.sort_values("n"),
        x="n",
        y="time (s)",
        color="impl",
        facet_col="mode",
        markers=True,
        log_x=True,
        log_y=True,
        hover_data=["runs", "mean_s", "peak_mem_bytes"],
        title="Median time per call against sequence length N (log-log)",
    )
    if extrapolated is not None and len(extrapolated):
        import plotly.graph_objects as go

        for impl, g in extrapolated.groupby("impl"):
            fig.add_trace(
                go.Scatter(
                    x=g.n, y=g.median_s, mode="lines+markers", line=dict(dash="dot"), name=f"{impl} (EXTRAPOLATED)"
                ),
                row=1,
                col=1,
            )
    return fig


def fig_speedup(sp: pd.DataFrame, la_impl: str, sm_impl: str):
    import plotly.express as px

    return px.line(
        sp,
        x="n",
        y="speedup",
        markers=True,
        log_x=True,
        log_y=True,
        title=f"Speed-up {sm_impl} time / {la_impl} time (forward), measured side by side",
    )


def fig_memory(df: pd.DataFrame):
    import plotly.express as px

    ok = df[(df.status == "ok") & df.peak_mem_bytes.notna()].copy()
    ok["peak memory (MiB)"] = ok.peak_mem_bytes / 2**20
    ok = ok[ok["peak memory (MiB)"] > 0]
    return px.line(
        ok.sort_values("n"),
        x="n",
        y="peak memory (MiB)",
        color="impl",
        facet_col="mode",
        markers=True,
        log_x=True,
        log_y=True,
        title="Peak memory added by one call against N",
    )
