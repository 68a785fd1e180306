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
    """One row per case; ``role`` is "point", or "slice check" for the sliced call timed beside a
    full one (kept out of fits, speed-ups and plots of the sweep)."""
    rows = [asdict(c) if is_dataclass(c) else dict(c) for c in cases]
    for r in rows:
        r["role"] = (r.get("extra") or {}).get("role", "point")
        r.setdefault("sliced", False)
        r.setdefault("predicted_s", None)
    df = pd.DataFrame(rows)
    if "extra" in df:
        df = df.drop(columns="extra")
    return df


def _points(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep's points: ok, not slice checks (a frame built elsewhere may lack the columns)."""
    if not len(df):
        return df
    df = df.assign(
        role=df["role"] if "role" in df else "point",
        sliced=df["sliced"].fillna(False).astype(bool) if "sliced" in df else False,
    )
    return df[(df.status == "ok") & (df.role == "point")]


FIT_STAT = "min_s"
FIT_METHOD = (
    "Theil–Sen (the median of the pairwise slopes, which one slow point cannot swing) of log t on "
    "log N, t the minimum over the interleaved repetitions at each N; 95% interval from Kendall's tau"
)


def fit_slope(n, t, n_min: int | None = None) -> dict:
    """Robust log-log slope of t against N over points with N ≥ n_min: the Theil–Sen estimate
    with its 95% interval (:data:`FIT_METHOD`), and the fitted range."""
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
    r = stats.theilslopes(np.log(t), np.log(n), alpha=0.95)
    return {
        "slope": float(r.slope),
        "ci_low": float(r.low_slope),
        "ci_high": float(r.high_slope),
        "n_points": int(len(n)),
        "n_from": int(n.min()),
        "n_to": int(n.max()),
        "intercept": float(r.intercept),
        "method": "theil-sen",
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
    ok = _points(df)
    for (impl, mode), g in ok.groupby(["impl", "mode"]):
        g = g.sort_values("n")
        method = g.method.iloc[0]
        start = n_min.get(method) if isinstance(n_min, dict) else n_min
        if start is None:
            start = asymptotic_start(g.n, g[FIT_STAT], frac)
        f = fit_slope(g.n, g[FIT_STAT], start)
        in_fit = g[g.n >= (start or 0)]
        f["n_sliced"] = int(in_fit.sliced.sum())
        f["stat"] = FIT_STAT
        out.append({"impl": impl, "mode": mode, "method": method, **f})
    return pd.DataFrame(out)


def speedups(df: pd.DataFrame, la_impl: str, softmax_impl: str, mode: str = "fwd") -> pd.DataFrame:
    """softmax time / LA time at every N both measured, in the same run, from the minimum over
    the interleaved repetitions; the interval spans the ratio of minima and medians both ways
    (softmax min / LA median … softmax median / LA min). ``sliced``: softmax was timed on one
    (batch, head) slice × B·H at that N."""
    ok = _points(df)
    ok = ok[ok["mode"] == mode]
    a = ok[ok.impl == la_impl].set_index("n")
    b = ok[ok.impl == softmax_impl].set_index("n")
    both = a.index.intersection(b.index)
    a, b = a.loc[both], b.loc[both]
    return pd.DataFrame(
        {
            "n": both,
            "la_s": a[FIT_STAT].values,
            "softmax_s": b[FIT_STAT].values,
            "speedup": (b[FIT_STAT] / a[FIT_STAT]).values,
            "speedup_low": (b.min_s / a.median_s).values,
            "speedup_high": (b.median_s / a.min_s).values,
            "sliced": b.sliced.values.astype(bool),
        }
    )


def slice_checks(df: pd.DataFrame, tolerance: float | None = None) -> pd.DataFrame:
    """Each slice check: at the same N, mode and implementation, the full call's time against one
    (batch, head) slice × B·H; ``agrees`` when they differ by at most ``tolerance`` (default
    :data:`linrepro.study.rules.SLICE_AGREEMENT`)."""
    from linrepro.study.rules import SLICE_AGREEMENT

    tol = SLICE_AGREEMENT if tolerance is None else tolerance
    ok = df[df.status == "ok"] if len(df) else df
    rows = []
    for c in ok[ok.role == "slice check"].itertuples() if len(ok) else ():
        full = ok[(ok.role == "point") & (ok.impl == c.impl) & (ok["mode"] == c.mode) & (ok.n == c.n) & ~ok.sliced]
        if full.empty:
            continue
        f = float(full[FIT_STAT].iloc[0])
        rel = c.min_s / f - 1
        rows.append(
            {
                "impl": c.impl,
                "mode": c.mode,
                "n": int(c.n),
                "full_s": f,
                "sliced_x_bh_s": float(c.min_s),
                "rel_diff": rel,
                "tolerance": tol,
                "agrees": bool(abs(rel) <= tol),
            }
        )
    return pd.DataFrame(
        rows, columns=["impl", "mode", "n", "full_s", "sliced_x_bh_s", "rel_diff", "tolerance", "agrees"]
    )


def fastest(df: pd.DataFrame, method: str, mode: str = "fwd") -> str | None:
    """The implementation of ``method`` with the lowest time at the largest N they all reached."""
    ok = _points(df)
    ok = ok[(ok.method == method) & (ok["mode"] == mode)]
    if ok.empty:
        return None
    common = ok.groupby("impl").n.max().min()
    at = ok[ok.n == common]
    return str(at.sort_values(FIT_STAT).impl.iloc[0])


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


def roofline(df: pd.DataFrame, bandwidth_Bps: float | None, peak_flops: float | None = None) -> pd.DataFrame:
    """Each measured point beside its roofline prediction (:func:`linrepro.study.bench.predict_s`:
    the larger of bytes ÷ copy bandwidth and FLOPs ÷ matmul peak, both measured in the same run):
    achieved bandwidth and FLOP rate, % of each, and measured ÷ predicted time."""
    ok = _points(df).copy()
    t = ok[FIT_STAT]
    ok["achieved_GBps"] = ok.io_bytes / t / 1e9
    ok["pct_of_copy_bw"] = 100 * ok.io_bytes / t / bandwidth_Bps if bandwidth_Bps else np.nan
    flops = ok.flops if "flops" in ok else pd.Series(np.nan, index=ok.index)
    ok["achieved_GFLOPs"] = flops / t / 1e9
    ok["pct_of_matmul_peak"] = 100 * flops / t / peak_flops if peak_flops else np.nan
    pred = pd.to_numeric(ok.predicted_s, errors="coerce") if "predicted_s" in ok else np.nan
    ok["predicted_s"] = pred
    ok["measured_over_predicted"] = t / pred
    cols = ["impl", "mode", "n", "sliced", FIT_STAT, "predicted_s", "measured_over_predicted", "achieved_GBps"]
    cols += ["pct_of_copy_bw", "achieved_GFLOPs", "pct_of_matmul_peak"]
    return ok[cols]


def best_possible_speedup(df: pd.DataFrame, la_impl: str | None, sm_impl: str | None, mode: str = "fwd"):
    """The ratio of roofline predictions, softmax ÷ LA, at the largest N where both were measured:
    the most any implementation could gain on this machine (None without predictions)."""
    sp = speedups(df, la_impl, sm_impl, mode) if la_impl and sm_impl else pd.DataFrame()
    if sp.empty or "predicted_s" not in df:
        return None
    n = int(sp.n.max())
    ok = _points(df)
    pick = ok[(ok.n == n) & (ok["mode"] == mode)].set_index("impl").predicted_s
    try:
        return {"n": n, "ratio": float(pick[sm_impl] / pick[la_impl]), "measured": float(sp.speedup.iloc[-1])}
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def summary_table(cases) -> str:
    df = frame(cases)
    ok = _points(df)
    if ok.empty:
        return "no case ran"
    piv = ok.pivot_table(index="n", columns=["mode", "impl"], values=FIT_STAT) * 1e3
    note = " (* = softmax timed on one (batch, head) slice × B·H)" if ok.sliced.any() else ""
    if ok.sliced.any():
        sliced_n = set(ok[ok.sliced].n)
        piv.index = [f"{n}*" if n in sliced_n else str(n) for n in piv.index]
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.float_format", "{:.3g}".format):
        return f"minimum time over the interleaved repetitions (ms){note}\n" + piv.to_string()


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
        "matmul_peak_flops": doc.get("matmul_peak_flops"),
        "fit_method": FIT_METHOD,
        "slice_checks": slice_checks(df) if "status" in df else pd.DataFrame(),
        "best_possible_speedup": best_possible_speedup(df, la_best, sm_best) if len(fits) else None,
        "runs_used": runs_used(df) if "status" in df else [],
        "sweep": doc.get("sweep") or {},
        "n_cases": len(df),
        "n_skipped": int((df.status == "skipped").sum()) if "status" in df else 0,
        "n_failed": int((df.status == "failed").sum()) if "status" in df else 0,
    }


def takeaway(res: dict) -> str:
    """One markdown sentence of what a timing run found: the forward slopes of the fastest LA and
    softmax with their 95% intervals, the speed-up at the largest common N, and where it ran."""
    fits = res.get("fits")
    if fits is None or not len(fits) or not res.get("la_impl") or not res.get("softmax_impl"):
        return "No slope could be fitted in this run (too few timed lengths)."

    def slope(impl):
        f = fits[(fits.impl == impl) & (fits["mode"] == "fwd")]
        if f.empty or not np.isfinite(f.slope.iloc[0]):
            return "no slope (too few points)"
        r = f.iloc[0]
        return f"slope **{r.slope:.2f}** [95% CI {r.ci_low:.2f}, {r.ci_high:.2f}]"

    la, sm = res["la_impl"], res["softmax_impl"]
    dev = (res.get("provenance") or {}).get("device") or {}
    where = (dev.get("cuda") or {}).get("name") if isinstance(dev.get("cuda"), dict) else None
    where = where or dev.get("cpu") or "this machine"
    text = f"Forward time against N: LA ({la}) {slope(la)}, softmax ({sm}) {slope(sm)}"
    sp = res.get("speedup")
    if sp is not None and len(sp):
        last = sp.iloc[-1]
        text += f"; at N = {int(last.n):,} LA was **{last.speedup:.3g}×** faster" + (
            " (softmax sliced)" if bool(last.get("sliced", False)) else ""
        )
    basis = "the paper's setup" if "H200" in str(where) else "a proxy for the paper's H200"
    return text + f". Measured on {where} ({basis})."


def runs_used(df: pd.DataFrame) -> list[dict]:
    """The warm-up and timed calls actually used at each (implementation, mode, N): the time
    budget can cut the runs at large N while the config still reads its full count."""
    ok = _points(df)
    return [
        {
            "impl": r.impl,
            "mode": r.mode,
            "n": int(r.n),
            "warmup": int(r.warmup),
            "runs": int(r.runs),
            "sliced": bool(r.sliced),
        }
        for r in ok.sort_values(["impl", "mode", "n"]).itertuples()
    ]


def load_note(sweep: dict) -> str | None:
    """One sentence on the CPU threads used and how busy the machine was, or None (GPU runs)."""
    if not sweep or sweep.get("cpu_threads") is None:
        return None
    b0, b1 = sweep.get("busy_cores_before"), sweep.get("busy_cores_after")
    seen = ", ".join(f"{w} {b:.1f}" for w, b in (("before", b0), ("after", b1)) if b is not None)
    return (
        f"Timed with {sweep['cpu_threads']} CPU thread(s); other processes kept {seen or 'an unknown number of'} "
        "core(s) busy (before / after the sweep)."
    )


def report_text(doc: dict, res: dict) -> str:
    """A terminal summary of a sweep: times, failures, slopes over the fitted range, speed-ups."""
    lines = [summary_table(doc["cases"])]
    note = load_note(doc.get("sweep") or {})
    if note:
        lines.append(note)
    df = frame(doc["cases"])
    bad = df[df.status == "failed"] if "status" in df else df.iloc[:0]
    if len(bad):
        lines.append(f"\n{len(bad)} case(s) FAILED:")
        for r in bad.drop_duplicates(["impl", "reason"]).itertuples():
            lines.append(f"  {r.impl} {r.mode} N={int(r.n):,}: {r.reason}")
    fits = res["fits"]
    if len(fits):
        lines.append(
            "\nlog-log slopes (95% interval; Theil–Sen on the minimum time), fitted from fit_from_n or where "
            "time passes 2% of the largest:"
        )
        for r in fits.itertuples():
            if not np.isfinite(r.slope):
                lines.append(f"  {r.impl:<14} {r.mode:<7} too few points in the fitted range ({r.n_points})")
                continue
            sl = f"  ({int(r.n_sliced)} sliced)" if getattr(r, "n_sliced", 0) else ""
            lines.append(
                f"  {r.impl:<14} {r.mode:<7} {r.slope:6.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]  "
                f"N = {r.n_from:,}…{r.n_to:,}{sl}"
            )
    la, sm = res["la_impl"], res["softmax_impl"]
    if la and sm:
        for mode in doc.get("config", {}).get("modes", ("fwd",)):
            sp = speedups(df, la, sm, mode)
            if len(sp):
                lines.append(
                    f"speed-up {sm}/{la} ({mode}): "
                    + ", ".join(f"N={int(r.n):,}{'*' if r.sliced else ''}: {r.speedup:.1f}×" for r in sp.itertuples())
                )
    checks = res.get("slice_checks")
    if checks is not None and len(checks):
        for r in checks.itertuples():
            lines.append(
                f"slice check {r.impl} {r.mode} N={r.n:,}: one slice × B·H = {r.sliced_x_bh_s:.4g} s against the full "
                f"call {r.full_s:.4g} s ({r.rel_diff:+.1%}; {'agrees' if r.agrees else 'DISAGREES'} within {r.tolerance:.0%})"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
#: line dash per backend: the colour says the attention type (linrepro.utils.plotting), the dash
#: which implementation of it, so two backends of one type never hide each other
BACKEND_DASH = {
    "torch": "solid",
    "triton": "dot",
    "flash": "solid",
    "math": "dash",
    "efficient": "dot",
    "cudnn": "dashdot",
}


def style_impls(fig):
    """linrepro's palette on a figure whose traces are implementations (``la-torch-eq7``,
    ``sdpa-math``, possibly followed by ``, <symbol group>``): colour by attention type, dash by
    backend, axis titles in words."""
    from linrepro.utils import plotting as pl

    for tr in fig.data:
        if tr.type != "scatter" or not tr.name:
            continue
        impl = tr.name.split(",")[0].strip()
        backend = impl.split("-")[1] if impl.startswith(("la-", "sdpa-")) and "-" in impl else None
        if backend in BACKEND_DASH and "EXTRAPOLATED" not in tr.name:
            tr.line.dash = BACKEND_DASH[backend]
    return pl.style(fig, dash_by_size=False)


def fig_times(df: pd.DataFrame, extrapolated: pd.DataFrame | None = None):
    import plotly.express as px

    ok = _points(df).copy()
    ok["time (s)"] = ok[FIT_STAT]
    ok["timed"] = np.where(ok.sliced, "one (batch, head) slice × B·H", "full call")
    fig = px.line(
        ok.sort_values("n"),
        x="n",
        y="time (s)",
        color="impl",
        facet_col="mode",
        symbol="timed",
        markers=True,
        log_x=True,
        log_y=True,
        hover_data=["runs", "median_s", "predicted_s", "peak_mem_bytes"],
        labels={"n": "sequence length N (tokens)"},
        title="Time per call (minimum over interleaved repetitions) against sequence length N (log-log)",
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
    return style_impls(fig)


def fig_speedup(sp: pd.DataFrame, la_impl: str, sm_impl: str):
    """softmax ÷ LA time against N, with the interval from minima and medians; sliced points marked."""
    import plotly.graph_objects as go

    from linrepro.utils import plotting as pl

    sp = sp.sort_values("n")
    lo = sp.get("speedup_low", sp.speedup)
    hi = sp.get("speedup_high", sp.speedup)
    sliced = sp.get("sliced", pd.Series(False, index=sp.index)).astype(bool)
    fig = go.Figure(
        go.Scatter(
            x=sp.n,
            y=sp.speedup,
            mode="lines+markers",
            name="speed-up",  # no attention type in the name: the palette leaves it neutral
            marker_symbol=["diamond-open" if x else "circle" for x in sliced],
            error_y=dict(type="data", symmetric=False, array=hi - sp.speedup, arrayminus=sp.speedup - lo),
            line_color=pl.NEUTRAL,
        )
    )
    fig.update_xaxes(type="log", title="sequence length N (tokens)")
    fig.update_yaxes(type="log", title="speed-up: softmax time ÷ LA time")
    fig.update_layout(
        title=f"Speed-up {sm_impl} ÷ {la_impl} (forward), measured side by side"
        + (" (open diamonds: softmax sliced)" if sliced.any() else "")
    )
    return fig


def fig_memory(df: pd.DataFrame):
    import plotly.express as px

    ok = df[(df.status == "ok") & df.peak_mem_bytes.notna()].copy()
    ok["peak memory (MiB)"] = ok.peak_mem_bytes / 2**20
    ok = ok[ok["peak memory (MiB)"] > 0]
    fig = px.line(
        ok.sort_values("n"),
        x="n",
        y="peak memory (MiB)",
        color="impl",
        facet_col="mode",
        markers=True,
        log_x=True,
        log_y=True,
        labels={"n": "sequence length N (tokens)"},
        title="Peak memory added by one call against N",
    )
    return style_impls(fig)
