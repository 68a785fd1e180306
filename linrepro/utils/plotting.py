"""One visual language for every notebook: a plotly template, a fixed palette and figure helpers.

* **Colour means attention type**, everywhere: :data:`ATTENTION_COLOURS` (Okabe-Ito, safe for
  colour-blind readers). A variant not listed (added later) gets a colour of its own from
  :data:`EXTRA_COLOURS`, chosen from its name, so it is the same in every figure too.
* **Dash means model size**: S solid, B dashed, L dotted (:data:`SIZE_DASH`); markers follow size.
* **One order**: models S, B, L (:func:`model_order`), attention softmax first
  (:func:`attention_order`), domains in their declared order (the caller passes it).
* **Axis titles in words with units**: :func:`style` replaces an axis title that is a bare column
  name (``max_weight``, ``n_params_nonembed``) by its entry in :data:`AXIS_TITLES`.
* **Intervals**: :func:`wilson_interval` for an accuracy measured on n images;
  :func:`error_y` turns (low, high) columns into plotly's asymmetric error bars.

:func:`activate` (called by ``linrepro.study.runs.setup_notebook``) registers the ``linrepro``
template and makes it plotly's default, and sets pandas' display to three significant figures
with no truncated text. :func:`style` applies the palette to a finished figure; notebooks call
it on every figure they show (``plotting.style(fig).show()``), including figures that
``linrepro.study`` builds, so a trace named ``softmax`` or ``eq7, tiny-B`` is drawn in the same
colour in every report.
"""

from __future__ import annotations

import math
import numbers
import re
import zlib
from collections.abc import Iterable

# Okabe-Ito: distinguishable with every common colour-vision deficiency
ATTENTION_COLOURS: dict[str, str] = {
    "softmax": "#0072B2",  # blue
    "eq4": "#E69F00",  # orange
    "eq7": "#009E73",  # bluish green
    "released": "#CC79A7",  # reddish purple: the authors' released variant
}
EXTRA_COLOURS = ("#D55E00", "#56B4E9", "#8C6D31", "#7F7F7F", "#000000")  # later variants, by name
ATTENTION_ORDER = ("softmax", "eq4", "eq7", "released")
SIZE_ORDER = ("XS", "S", "M", "B", "L", "H", "g", "G")
SIZE_DASH = {"S": "solid", "B": "dash", "L": "dot", "XS": "longdash", "M": "dashdot", "H": "longdashdot"}
SIZE_SYMBOL = {"S": "circle", "B": "square", "L": "diamond", "XS": "triangle-up", "M": "x", "H": "cross"}
NEUTRAL = "#4D4D4D"  # reference lines, chance levels

# column names as they reach an axis, and what the axis should say
AXIS_TITLES: dict[str, str] = {
    "N": "sequence length N (tokens)",
    "n": "sequence length N (tokens)",
    "max_weight": "largest attention weight",
    "mean_weight": "mean attention weight",
    "mean_out_norm": "mean output norm ‖oᵢ‖",
    "FLOPs": "FLOPs per head",
    "n_params_nonembed": "non-embedding parameters",
    "n_params": "parameters",
    "compute": "training compute (FLOPs, 6·params·tokens)",
    "error": "zero-shot error (1 − top-1)",
    "loss": "training loss",
    "top1": "zero-shot top-1 accuracy",
    "top5": "zero-shot top-5 accuracy",
    "images_per_s": "throughput (images/s)",
    "peak_MB": "peak memory added (MiB)",
    "tokens": "tokens per image",
    "resolution": "image side (px)",
    "step": "training step",
    "model": "model",
    "domain": "domain",
    "attention": "attention",
}

_SIZE_RE = re.compile(r"(?:^|[-_/ ])(XS|S|M|B|L|H|g|G)(?:[-_/ ]|$|\d)")


# implementation names that mean softmax attention (timing figures: "sdpa-flash", "fa2", ...)
SOFTMAX_ALIASES = ("sdpa", "flash", "flashattention", "fa2", "flash-attn")


def attention_of(name: str) -> str | None:
    """The attention type a trace or label names: ``softmax``, ``eq7 s=1/N`` → ``eq7``,
    ``tiny-B, eq4`` → ``eq4``, ``la-torch-eq7`` → ``eq7``, ``sdpa-math`` → ``softmax``; None when
    it names none (``tiny-S``, ``digits``)."""
    for part in re.split(r"[,;|·()]", str(name)):
        for token in re.split(r"[\s:=/-]+", part.strip()):
            if token in ATTENTION_COLOURS or re.fullmatch(r"eq\d+[a-z]?", token):
                return token
            if token.lower() in SOFTMAX_ALIASES:
                return "softmax"
    return None


def attention_colour(attention: str) -> str:
    """The colour of an attention type; a variant not in :data:`ATTENTION_COLOURS` gets one of
    :data:`EXTRA_COLOURS` chosen from its name (the same in every figure and every run)."""
    base = attention_of(attention) or str(attention)
    if base in ATTENTION_COLOURS:
        return ATTENTION_COLOURS[base]
    return EXTRA_COLOURS[zlib.crc32(base.encode()) % len(EXTRA_COLOURS)]


def colour_map(attentions: Iterable[str]) -> dict[str, str]:
    """``color_discrete_map`` for plotly express: every value → its attention's colour."""
    return {a: attention_colour(a) for a in attentions}


def size_of(model: str) -> str | None:
    """The size letter of a model name: ``tiny-S`` → S, ``ViT-B-16`` → B; None if it has none."""
    m = _SIZE_RE.search(str(model))
    return m.group(1) if m else None


def model_order(models: Iterable[str]) -> list[str]:
    """Distinct model names, smallest first (S, B, L, …); names without a size keep their order, last."""
    uniq = list(dict.fromkeys(models))
    rank = {s: i for i, s in enumerate(SIZE_ORDER)}
    return sorted(uniq, key=lambda m: (rank.get(size_of(m) or "", len(rank)), uniq.index(m)))


def attention_order(attentions: Iterable[str]) -> list[str]:
    """Distinct attention names, softmax first, then eq4, eq7, released, then others as given."""
    uniq = list(dict.fromkeys(attentions))
    rank = {a: i for i, a in enumerate(ATTENTION_ORDER)}
    return sorted(uniq, key=lambda a: (rank.get(attention_of(a) or "", len(rank)), uniq.index(a)))


def sort_frame(df, domains: Iterable[str] | None = None):
    """Rows of a frame (or a frame's MultiIndex) in the one order: model S/B/L, softmax first,
    domains as declared. Works on columns or index levels named model / attention / domain."""
    import pandas as pd

    keys = {}
    names = [*(df.index.names or []), *df.columns] if isinstance(df, pd.DataFrame) else list(df.index.names)
    if "model" in names:
        order = model_order(_values(df, "model"))
        keys["model"] = {m: i for i, m in enumerate(order)}
    if "attention" in names:
        order = attention_order(_values(df, "attention"))
        keys["attention"] = {a: i for i, a in enumerate(order)}
    if "domain" in names and domains is not None:
        keys["domain"] = {d: i for i, d in enumerate(domains)}
    if not keys:
        return df

    def key(s):
        return s.map(lambda v: keys[s.name].get(v, len(keys[s.name]))) if s.name in keys else s

    in_index = [k for k in keys if k in (df.index.names or [])]
    if in_index:
        return df.sort_index(level=in_index, key=key, sort_remaining=False)
    return df.sort_values(list(keys), key=key, kind="stable")


def _values(df, name):
    return df[name] if name in getattr(df, "columns", []) else df.index.get_level_values(name)


def category_orders(df, domains: Iterable[str] | None = None) -> dict[str, list]:
    """``category_orders`` for plotly express from a frame's model / attention / domain columns."""
    out: dict[str, list] = {}
    if "model" in df:
        out["model"] = model_order(df["model"])
    if "attention" in df:
        out["attention"] = attention_order(df["attention"])
    if "domain" in df:
        out["domain"] = list(domains) if domains is not None else list(dict.fromkeys(df["domain"]))
    return out


# ----------------------------------------------------------------------------------- intervals
def wilson_interval(accuracy, n, level: float = 0.95):
    """Wilson score interval of an accuracy measured on ``n`` independent images (arrays welcome).
    Returns (low, high). ``n`` must be ≥ 1 and accuracy in [0, 1]."""
    import numpy as np
    from scipy.stats import norm

    p = np.asarray(accuracy, dtype=float)
    nn = np.asarray(n, dtype=float)
    if np.any(nn < 1) or np.any(~np.isfinite(nn)):
        raise ValueError(f"wilson_interval: n must be >= 1, got {n!r}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"wilson_interval: accuracy must lie in [0, 1], got {accuracy!r}")
    z = float(norm.ppf(0.5 + level / 2))
    denom = 1 + z**2 / nn
    centre = (p + z**2 / (2 * nn)) / denom
    half = z * np.sqrt(p * (1 - p) / nn + z**2 / (4 * nn**2)) / denom
    return centre - half, centre + half


def error_y(value, low, high) -> dict:
    """plotly ``error_y`` (or ``error_x``) for asymmetric intervals around ``value``."""
    import numpy as np

    v, lo, hi = (np.asarray(a, dtype=float) for a in (value, low, high))
    return {"type": "data", "symmetric": False, "array": list(hi - v), "arrayminus": list(v - lo), "thickness": 1.2}


def add_accuracy_intervals(df, value: str = "top1", n: str = "n", level: float = 0.95):
    """A copy of ``df`` with ``<value>_lo``, ``<value>_hi`` (Wilson) and ``<value>_plus``,
    ``<value>_minus`` (the bar lengths plotly express's ``error_y``/``error_y_minus`` take)."""
    out = df.copy()
    lo, hi = wilson_interval(out[value], out[n], level)
    out[f"{value}_lo"], out[f"{value}_hi"] = lo, hi
    out[f"{value}_plus"], out[f"{value}_minus"] = hi - out[value], out[value] - lo
    return out


# ----------------------------------------------------------------------------------- numbers
def fmt_sig(x, sig: int = 3, na: str = "—") -> str:
    """A number to about ``sig`` significant figures, without exponent where one is not needed:
    0.935933 → 0.936, 12345.6 → 12,346, 16384.0 → 16,384, 3.2e-05 → 3.2e-05, NaN → —."""
    if x is None or isinstance(x, bool):
        return na if x is None else str(x)
    if not isinstance(x, numbers.Real):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return na
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 10 ** (sig - 1) and (a >= 10**sig or float(x).is_integer()):
        return f"{x:,.0f}"
    if a < 1e-3 or a >= 1e15:
        return f"{x:.{sig - 1}e}"
    decimals = max(sig - 1 - math.floor(math.log10(a)), 0)
    return f"{x:.{decimals}f}"


# ----------------------------------------------------------------------------------- template
TEMPLATE_NAME = "linrepro"


def template():
    """The ``linrepro`` plotly template: plotly_white, a readable font, axis lines with outside
    ticks, and the attention colours first in the colourway."""
    import plotly.graph_objects as go
    import plotly.io as pio

    t = go.layout.Template(pio.templates["plotly_white"])
    t.layout.colorway = [*ATTENTION_COLOURS.values(), *EXTRA_COLOURS]
    t.layout.font = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}
    t.layout.title = {"font": {"size": 15}, "x": 0, "xanchor": "left"}
    # the legend stays at plotly's place, right of the plot: above it, it collides with titles and facet labels
    t.layout.margin = {"t": 80, "l": 70, "r": 20, "b": 60}
    t.layout.xaxis = {"showline": True, "linecolor": "#888", "ticks": "outside", "zeroline": False}
    t.layout.yaxis = {"showline": True, "linecolor": "#888", "ticks": "outside", "zeroline": False}
    t.layout.coloraxis = {"colorbar": {"thickness": 12}}
    return t


def activate() -> None:
    """Make the ``linrepro`` template plotly's default, and pandas show ~3 significant figures
    with no cut-off text (no "…")."""
    import plotly.io as pio

    pio.templates[TEMPLATE_NAME] = template()
    pio.templates.default = TEMPLATE_NAME
    try:
        import pandas as pd

        pd.set_option("display.float_format", fmt_sig)
        pd.set_option("display.max_colwidth", None)
        pd.set_option("display.max_columns", 50)
        pd.set_option("display.width", 200)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass


# ----------------------------------------------------------------------------------- styling
def _trace_labels(tr) -> list[str]:
    return [str(x) for x in (getattr(tr, "legendgroup", None), getattr(tr, "name", None)) if x]


def style(fig, dash_by_size: bool = True, retitle: bool = True):
    """Apply the palette to a finished figure (in place; returns it).

    * every scatter/bar trace whose name or legend group names an attention type takes that
      type's colour (lines, markers, bars, error bars);
    * with ``dash_by_size``, a trace whose name also names a model size takes that size's dash
      and marker symbol;
    * axis titles that are bare column names (see :data:`AXIS_TITLES`) become words with units.
    """
    for tr in fig.data:
        if tr.type not in ("scatter", "scattergl", "bar"):
            continue
        labels = _trace_labels(tr)
        att = next((a for a in map(attention_of, labels) if a), None)
        size = next((s for s in (size_of(x) for lab in labels for x in lab.split(",")) if s), None)
        if att is not None:
            c = attention_colour(att)
            if tr.type == "bar":
                tr.marker.color = c
            else:
                tr.line.color = c
                if not isinstance(tr.marker.color, (list, tuple)) or tr.marker.color is None:
                    tr.marker.color = c
            for err in ("error_y", "error_x"):
                e = getattr(tr, err, None)
                if e is not None and (e.array is not None or e.value is not None):
                    e.color = NEUTRAL if tr.type == "bar" else c  # on a bar, the bar's own colour hides it
        if dash_by_size and size is not None and tr.type != "bar":
            tr.line.dash = SIZE_DASH.get(size, tr.line.dash)
            if tr.mode and "markers" in tr.mode:
                tr.marker.symbol = SIZE_SYMBOL.get(size, tr.marker.symbol)
    if retitle:
        retitle_axes(fig)
    return fig


def distinguish(fig, styles: dict[str, tuple[str, str]], opacity: float = 0.85):
    """Curves that may coincide stay visible: each trace named in ``styles`` gets its own
    (dash, marker symbol), the others dash-dot and x; then :func:`style` (colour: attention type)."""
    for tr in fig.data:
        if tr.type not in ("scatter", "scattergl"):
            continue
        dash, symbol = styles.get(tr.name, ("dashdot", "x"))
        tr.update(line_dash=dash, marker_symbol=symbol, marker_size=9, opacity=opacity)
    return style(fig, dash_by_size=False)


def retitle_axes(fig):
    """Axis titles that are bare column names → words with units (:data:`AXIS_TITLES`)."""
    layout = fig.layout
    for key in list(layout.to_plotly_json()):
        if key.startswith(("xaxis", "yaxis")):
            ax = layout[key]
            text = ax.title.text if ax.title else None
            if text in AXIS_TITLES:
                ax.title.text = AXIS_TITLES[text]
    for ann in layout.annotations or ():  # facet titles "inputs=needle" → "needle"
        if ann.text and "=" in ann.text and ann.text.count("=") == 1 and " " not in ann.text:
            ann.text = ann.text.split("=", 1)[1]
    return fig


def label_confusion(
    fig, classnames: list[list[str]] | list[str], true_title: str = "true class", pred_title: str = "predicted class"
):
    """Class names on the axes of a figure of confusion-matrix heatmaps (one list per heatmap, in
    trace order, or one list for all), and axis titles saying which axis is true and which predicted."""
    heatmaps = [tr for tr in fig.data if tr.type == "heatmap"]
    if classnames and isinstance(classnames[0], str):
        classnames = [list(classnames)] * len(heatmaps)  # type: ignore[list-item]
    if len(classnames) != len(heatmaps):
        raise ValueError(f"label_confusion: {len(heatmaps)} heatmaps but {len(classnames)} class-name lists")
    for tr, names in zip(heatmaps, classnames, strict=True):
        n = len(tr.z)
        if len(names) != n:
            raise ValueError(f"label_confusion: a {n}×{n} matrix but {len(names)} class names: {names}")
        tr.x, tr.y = list(names), list(names)
        tr.hovertemplate = "true %{y} → predicted %{x}: %{z:.2f}<extra></extra>"
    # one title per side for the whole grid (per-panel titles collide with the panel below)
    fig.for_each_xaxis(lambda a: a.update(title_text=None, tickangle=-45, tickfont={"size": 9}))
    fig.for_each_yaxis(lambda a: a.update(title_text=None, tickfont={"size": 9}))
    fig.add_annotation(text=pred_title, x=0.5, y=0, xref="paper", yref="paper", yshift=-75, showarrow=False)
    fig.add_annotation(
        text=true_title, x=0, y=0.5, xref="paper", yref="paper", xshift=-95, textangle=-90, showarrow=False
    )
    fig.update_layout(margin={"l": 120, "b": 110})
    if fig.layout.coloraxis is not None:
        fig.update_coloraxes(colorbar_title_text="share of the true class")
    return fig


def coincide(y1, y2, rtol: float = 0.02) -> float | None:
    """The largest relative gap between two curves if they coincide within ``rtol`` (for a
    caption: "eq4 and eq7 s=1/N coincide to within 1.3%"), else None."""
    import numpy as np

    a, b = np.asarray(y1, dtype=float), np.asarray(y2, dtype=float)
    if a.shape != b.shape or a.size == 0:
        return None
    gap = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))
    return gap if gap <= rtol and math.isfinite(gap) else None


def accuracy_bars(
    df,
    x: str = "domain",
    value: str = "top1",
    n: str = "n",
    facet_col: str | None = "model",
    domains: Iterable[str] | None = None,
    chance: dict | float | None = None,
    title: str | None = None,
    level: float = 0.95,
    lo: str | None = None,
    hi: str | None = None,
):
    """Grouped bars of an accuracy, coloured by attention, with Wilson ``level`` intervals over the
    ``n`` images of each bar (or, with ``lo`` and ``hi``, the interval those columns hold: e.g.
    over seeds and images), models in S/B/L order, domains in their declared order, and a dotted
    chance line (one number, or {domain: chance} drawn as a marker per domain)."""
    import plotly.express as px

    if lo is not None and hi is not None:
        d = df.copy()
        d[f"{value}_lo"], d[f"{value}_hi"] = d[lo], d[hi]
        d[f"{value}_plus"], d[f"{value}_minus"] = d[hi] - d[value], d[value] - d[lo]
        if n not in d:
            n = "n_images" if "n_images" in d else f"{value}_lo"
    else:
        d = add_accuracy_intervals(df, value, n, level)
    fig = px.bar(
        d,
        x=x,
        y=value,
        color="attention",
        barmode="group",
        facet_col=facet_col if facet_col in d else None,
        error_y=f"{value}_plus",
        error_y_minus=f"{value}_minus",
        category_orders=category_orders(d, domains),
        color_discrete_map=colour_map(d["attention"]),
        hover_data={n: True, f"{value}_lo": ":.3f", f"{value}_hi": ":.3f"},
        labels={value: AXIS_TITLES.get(value, value), x: AXIS_TITLES.get(x, x)},
        title=title
        or f"{AXIS_TITLES.get(value, value)} with {level:.0%} "
        + ("intervals" if lo is not None else "Wilson intervals"),
    )
    if isinstance(chance, (int, float)):
        fig.add_hline(y=float(chance), line_dash="dot", line_color=NEUTRAL)
    elif isinstance(chance, dict):
        import plotly.graph_objects as go

        xs = [k for k in category_orders(d, domains).get(x, list(chance)) if k in chance]
        ncols = d[facet_col].nunique() if facet_col in d else 1
        for j in range(1, ncols + 1):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[chance[k] for k in xs],
                    mode="markers",
                    marker={"symbol": "line-ew-open", "size": 28, "color": NEUTRAL, "line": {"width": 2}},
                    name="chance",
                    showlegend=j == 1,
                ),
                row=1 if ncols > 1 else None,
                col=j if ncols > 1 else None,
            )
    fig.update_yaxes(range=[0, 1.05])
    return style(fig)
