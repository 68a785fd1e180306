"""The one visual language (linrepro.utils.plotting) and tables that read (linrepro.utils.tables)."""

import math

import numpy as np
import pandas as pd
import plotly.express as px
import pytest

from linrepro.utils import plotting as pl
from linrepro.utils import tables as tb


# ----------------------------------------------------------------------------------- tables
@pytest.mark.parametrize(
    "x, text",
    [
        (0.935933, "0.936"),
        (0.1, "0.100"),
        (12.3456, "12.3"),
        (123.456, "123"),
        (12345.6, "12,346"),
        (16384.0, "16,384"),
        (-0.0081234, "-0.00812"),
        (3.2e-05, "3.20e-05"),
        (0, "0"),
        (float("nan"), "—"),
        (None, "—"),
        ("text", "text"),
    ],
)
def test_three_significant_figures(x, text):
    assert tb.fmt_sig(x) == text


def test_fmt_sig_keeps_three_significant_digits_over_magnitudes():
    rng = np.random.default_rng(0)
    for x in 10 ** rng.uniform(-2.9, 2.9, 200):
        s = tb.fmt_sig(x).replace(",", "")
        assert math.isclose(float(s), x, rel_tol=5e-3), (x, s)  # 3 s.f.: within half a unit of the 3rd digit


def test_tidy_drops_empty_columns_formats_and_never_truncates():
    long = "a reason that is much longer than pandas' fifty-character default column width, kept whole"
    df = pd.DataFrame({"acc": [0.935933, 0.5], "empty": [np.nan, np.nan], "why": [long, "short"]})
    html = tb.tidy(df).to_html()
    assert "empty" not in html and "0.936" in html and "0.935933" not in html
    assert long in html and "…" not in html and "text-align: left" in html
    assert list(tb.drop_empty_columns(df).columns) == ["acc", "why"]


def test_accuracy_table_shows_interval_and_n_in_model_order():
    df = pd.DataFrame(
        {
            "model": ["tiny-L", "tiny-L", "tiny-S", "tiny-S", "tiny-B", "tiny-B"],
            "attention": ["eq7", "softmax"] * 3,
            "domain": ["digits"] * 6,
            "top1": [0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
            "n": [150] * 6,
        }
    )
    st = tb.accuracy_table(df, "top1", "n")
    assert [i for i in st.data.index] == [
        ("tiny-S", "softmax"),
        ("tiny-S", "eq7"),
        ("tiny-B", "softmax"),
        ("tiny-B", "eq7"),
        ("tiny-L", "softmax"),
        ("tiny-L", "eq7"),
    ]
    lo, hi = pl.wilson_interval(0.8, 150)
    assert st.data.loc[("tiny-S", "softmax"), "digits"] == f"0.800 [{tb.fmt_sig(lo, 2)}, {tb.fmt_sig(hi, 2)}] n=150"


# ----------------------------------------------------------------------------------- intervals
def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for k, n in ((0, 10), (3, 10), (140, 150), (150, 150), (1, 1)):
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = pl.wilson_interval(k / n, n)
        assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12), (k, n)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        pl.wilson_interval(0.5, 0)
    with pytest.raises(ValueError, match=r"accuracy must lie in \[0, 1\], got 1.5"):
        pl.wilson_interval(1.5, 10)


# ----------------------------------------------------------------------------------- palette
def test_attention_names_and_sizes_are_read_from_labels():
    assert [pl.attention_of(n) for n in ("softmax", "eq7 s=1/N", "tiny-B, eq4", "softmax (measured)")] == [
        "softmax",
        "eq7",
        "eq4",
        "softmax",
    ]
    assert pl.attention_of("softmax: b = 0.21 [0.1, 0.3]") == "softmax"
    assert pl.attention_of("digits") is None and pl.attention_of("tiny-S") is None
    assert [pl.size_of(m) for m in ("tiny-S", "ViT-B-16", "ViT-L-14", "digits")] == ["S", "B", "L", None]
    assert pl.model_order(["tiny-L", "tiny-S", "ViT-B-16", "other", "tiny-B"]) == [
        "tiny-S",
        "ViT-B-16",
        "tiny-B",
        "tiny-L",
        "other",
    ]
    assert pl.attention_order(["eq7", "new9", "softmax", "released", "eq4"]) == [
        "softmax",
        "eq4",
        "eq7",
        "released",
        "new9",
    ]


def test_a_later_variant_gets_a_stable_colour_of_its_own():
    c = pl.attention_colour("eq9")
    assert c in pl.EXTRA_COLOURS and c == pl.attention_colour("eq9, tiny-B")
    assert c not in pl.ATTENTION_COLOURS.values()
    assert len(set(pl.ATTENTION_COLOURS.values())) == len(pl.ATTENTION_COLOURS)


def _curves(order):
    rows = [
        {"step": s, "loss": 1.0 / (s + 1), "model": m, "attention": a}
        for m in ("tiny-S", "tiny-B", "tiny-L")
        for a in order
        for s in range(3)
    ]
    return px.line(pd.DataFrame(rows), x="step", y="loss", color="model", line_dash="attention")


def test_style_colours_by_attention_and_dashes_by_size_whatever_plotly_chose():
    """plotly colours by order of appearance (here by model); style() makes colour mean attention."""
    pl.activate()
    for order in (["softmax", "eq7", "eq4"], ["eq4", "eq7", "softmax"]):
        fig = pl.style(_curves(order))
        for tr in fig.data:
            model, att = (x.strip() for x in tr.name.split(","))
            assert tr.line.color == pl.ATTENTION_COLOURS[att], tr.name
            assert tr.line.dash == pl.SIZE_DASH[pl.size_of(model)], tr.name
    assert fig.layout.yaxis.title.text == pl.AXIS_TITLES["loss"] and fig.layout.xaxis.title.text == "training step"


def test_accuracy_bars_have_intervals_and_the_palette():
    df = pd.DataFrame(
        {
            "model": ["tiny-B", "tiny-B", "tiny-S", "tiny-S"],
            "attention": ["eq7", "softmax"] * 2,
            "domain": ["shapes", "shapes", "digits", "digits"],
            "top1": [0.5, 0.6, 0.7, 0.8],
            "n": [40] * 4,
        }
    )
    fig = pl.accuracy_bars(df, domains=["digits", "shapes"], chance={"digits": 0.1, "shapes": 0.2})
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name: t.marker.color for t in bars} == {"softmax": "#0072B2", "eq7": "#009E73"}
    for t in bars:
        assert t.error_y.array is not None and all(np.asarray(t.error_y.array) > 0)
    assert fig.layout.xaxis.categoryarray == ("digits", "shapes")
    assert [a.text for a in fig.layout.annotations] == ["tiny-S", "tiny-B"]  # S before B, "model=" gone


def test_label_confusion_names_classes_and_axes():
    import plotly.graph_objects as go

    fig = go.Figure(go.Heatmap(z=[[1, 0], [0, 1]]))
    pl.label_confusion(fig, ["cat", "dog"])
    assert list(fig.data[0].x) == ["cat", "dog"] and list(fig.data[0].y) == ["cat", "dog"]
    assert [a.text for a in fig.layout.annotations] == ["predicted class", "true class"]
    with pytest.raises(ValueError, match="a 2×2 matrix but 3 class names"):
        pl.label_confusion(go.Figure(go.Heatmap(z=[[1, 0], [0, 1]])), ["a", "b", "c"])


def test_coinciding_curves_are_detected_for_a_caption():
    assert pl.coincide([1.0, 2.0], [1.0, 2.01]) == pytest.approx(0.01 / 2.01)
    assert pl.coincide([1.0, 2.0], [1.0, 3.0]) is None


def test_accuracy_bars_take_given_intervals_instead_of_wilson():
    import pandas as pd

    df = pd.DataFrame(
        {
            "model": ["tiny-S"] * 2,
            "attention": ["softmax", "eq7"],
            "domain": ["digits"] * 2,
            "top1": [0.9, 0.8],
            "ci_low": [0.85, 0.6],
            "ci_high": [0.93, 0.95],
            "n_images": [360, 360],
        }
    )
    fig = pl.accuracy_bars(df, value="top1", lo="ci_low", hi="ci_high")
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars["softmax"].error_y.array) == pytest.approx([0.03])
    assert list(bars["eq7"].error_y.arrayminus) == pytest.approx([0.2])
    assert "Wilson" not in fig.layout.title.text
