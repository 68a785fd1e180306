"""Tables that read: about three significant figures, no all-empty columns, no cut-off text,
text left-aligned, and n beside every accuracy."""

from __future__ import annotations

from linrepro.utils.plotting import fmt_sig  # used here, and notebooks import it from here


def drop_empty_columns(df):
    """``df`` without the columns in which every value is missing (NaN / None)."""
    return df.loc[:, ~df.isna().all(axis=0)]


def with_n(df, value: str, n: str = "n", interval: tuple[str, str] | None = None, sig: int = 3):
    """Strings ``0.936 (n = 150)`` (or ``0.936 [0.89, 0.96], n = 150`` with ``interval`` columns)
    for a table that shows an accuracy next to the number of images it was measured on."""
    out = []
    for _, r in df.iterrows():
        s = fmt_sig(r[value], sig)
        if interval is not None:
            s += f" [{fmt_sig(r[interval[0]], 2)}, {fmt_sig(r[interval[1]], 2)}]"
        out.append(f"{s} (n = {int(r[n]):,})" if r[n] == r[n] else s)
    return out


_CSS = [
    {"selector": "td, th", "props": "text-align: left; white-space: normal;"},
    {"selector": "td.num", "props": "text-align: right; font-variant-numeric: tabular-nums;"},
]


def tidy(df, sig: int = 3, caption: str | None = None, drop_empty: bool = True, index: bool = True):
    """A pandas Styler for publishing: all-empty columns dropped, numbers to ``sig`` significant
    figures (missing: —), text left-aligned and never truncated, an optional caption."""
    import pandas as pd

    if drop_empty:
        df = drop_empty_columns(df)
    num = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    st = df.style.format(lambda v: fmt_sig(v, sig), subset=num, na_rep="—")
    st = st.set_table_styles(_CSS)
    st = st.set_td_classes(pd.DataFrame({c: ["num" if c in num else ""] * len(df) for c in df.columns}, index=df.index))
    if caption:
        st = st.set_caption(caption)
    if not index:
        st = st.hide(axis="index")
    return st


def accuracy_table(
    df,
    value: str = "top1",
    n: str = "n",
    index=("model", "attention"),
    columns: str = "domain",
    domains=None,
    level: float = 0.95,
    caption: str | None = None,
):
    """A published accuracy table: each cell ``0.936 [0.89, 0.96] n=150`` (the accuracy, its
    Wilson ``level`` interval and the number of images), rows in S/B/L and softmax-first order,
    columns in the declared domain order."""
    import pandas as pd

    from linrepro.utils.plotting import sort_frame, wilson_interval

    d = df.copy()
    lo, hi = wilson_interval(d[value], d[n], level)
    d["_cell"] = [
        f"{fmt_sig(v)} [{fmt_sig(a, 2)}, {fmt_sig(b, 2)}] n={int(k):,}"
        for v, a, b, k in zip(d[value], lo, hi, d[n], strict=True)
    ]
    wide = d.pivot_table(index=list(index), columns=columns, values="_cell", aggfunc="first", sort=False)
    if domains is not None:
        wide = wide[[c for c in domains if c in wide.columns]]
    wide = sort_frame(wide)
    wide.columns = pd.Index(list(wide.columns), name=None)
    name = {"top1": "top-1", "top5": "top-5"}.get(value, value)
    cap = caption or f"{name} accuracy [{level:.0%} Wilson interval] and n, the number of images it was measured on"
    return tidy(wide, caption=cap)
