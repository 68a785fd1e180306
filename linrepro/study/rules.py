"""Decision rules for the claims ledger and the findings, declared here before any run.

One rule judges every numeric claim: each has a **band** fixed in this module (for example a
softmax time slope of 2 ± 0.25), and a measured estimate comes with a 95% interval.

* ``supported``: the whole interval lies inside the band;
* ``contradicted``: the whole interval lies outside the band;
* ``inconclusive``: anything else (the interval straddles an edge of the band, or is wider than
  it), and the interval's width is stated.

An estimate without an interval is never more than ``inconclusive``. A finding about variation
between trained models that rests on one seed is "exploratory" and capped at ``inconclusive``.

Every verdict also states its **basis** (:data:`BASES`):

``paper setup``
    measured on the paper's own setup (an H200 run at the paper's shape and dtype);
``proxy``
    measured on a stand-in: this CPU for the H200, tiny CLIPs on rendered 32 px domains for
    ViT-S/B/L on LAION-400M;
``configuration``
    what linrepro's profiles set up to match the paper, which says nothing about the paper;
``by construction``
    true by algebra or by a chosen constant, under a condition that is stated.

Only ``paper setup`` and ``proxy`` verdicts are measurements, and only they count as findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable here")
BASES = ("paper setup", "proxy", "configuration", "by construction")
MEASURED = ("paper setup", "proxy")
RULE = (
    "supported if the 95% interval lies inside the band, contradicted if it lies wholly outside, inconclusive otherwise"
)


@dataclass(frozen=True)
class Band:
    """The values of ``quantity`` that agree with a claim: [lo, hi], fixed before any run."""

    quantity: str
    lo: float
    hi: float
    unit: str = ""

    def __post_init__(self):
        if not self.lo < self.hi:
            raise ValueError(f"band for {self.quantity!r} must have lo < hi, got [{self.lo}, {self.hi}]")

    def text(self) -> str:
        mid, half = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2
        return f"{self.quantity} in [{self.lo:g}, {self.hi:g}]" + (f" ({mid:g} ± {half:g})" if mid else "")


# --------------------------------------------------------------------------- the declared bands
#: Time against N, forward, log-log slope: O(N²) softmax, O(N) LA. ±0.25 separates 1 from 2 with
#: room for the fixed costs that bend the low end of a measured curve.
SOFTMAX_SLOPE = Band("softmax forward-time log-log slope", 1.75, 2.25)
LA_SLOPE = Band("LA forward-time log-log slope", 0.75, 1.25)
#: "≈ 10³ lower time at 4×10⁶ tokens": within half a decade of 10³.
SPEEDUP_4M = Band("log10 of softmax/LA time at N ≥ 2^21", 2.5, 3.5)
#: "The same scaling law": an equivalence margin on the exponent difference b(LA) − b(softmax).
EXPONENT_MARGIN = 0.1
SAME_EXPONENT = Band("b(LA) − b(softmax), power-law exponent difference", -EXPONENT_MARGIN, EXPONENT_MARGIN)
#: LA − softmax top-1 (a fraction): "no worse than softmax" within 5 points, used by 05/06 findings.
ACCURACY_MARGIN = 0.05
SAME_ACCURACY = Band("LA − softmax top-1", -ACCURACY_MARGIN, ACCURACY_MARGIN)
#: a sliced softmax point (one (batch, head) slice × B·H) must match the full call within 10%.
SLICE_AGREEMENT = 0.10

BANDS = {
    "softmax_slope": SOFTMAX_SLOPE,
    "la_slope": LA_SLOPE,
    "speedup_4m": SPEEDUP_4M,
    "same_exponent": SAME_EXPONENT,
    "same_accuracy": SAME_ACCURACY,
}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def decide(estimate, ci_low, ci_high, band: Band, *, seeds: int | None = None, between_models: bool = False) -> dict:
    """The verdict of ``band`` on an estimate with its 95% interval, and the numbers behind it.

    ``seeds``/``between_models``: a question about variation between trained models that rests
    on fewer than 3 seeds is exploratory and capped at ``inconclusive``."""
    if not isinstance(band, Band):
        raise TypeError(f"band must be a Band, got {type(band).__name__}")
    out = {
        "estimate": estimate if _finite(estimate) else None,
        "ci_low": ci_low if _finite(ci_low) else None,
        "ci_high": ci_high if _finite(ci_high) else None,
        "band": [band.lo, band.hi],
        "quantity": band.quantity,
        "rule": RULE,
        "seeds": seeds,
    }
    if out["ci_low"] is None or out["ci_high"] is None:
        out.update(verdict="inconclusive", width=None, why="no 95% interval")
    else:
        lo, hi = sorted((float(ci_low), float(ci_high)))
        out.update(ci_low=lo, ci_high=hi, width=hi - lo)
        if band.lo <= lo and hi <= band.hi:
            out.update(verdict="supported", why="the interval lies inside the band")
        elif hi < band.lo or lo > band.hi:
            out.update(verdict="contradicted", why="the interval lies wholly outside the band")
        else:
            out.update(
                verdict="inconclusive",
                why=f"the interval (width {hi - lo:.3g}) is not wholly inside or outside the band "
                f"(width {band.hi - band.lo:.3g})",
            )
    if between_models and (seeds or 0) < 3 and out["verdict"] != "inconclusive":
        out.update(
            decided_before_cap=out["verdict"],
            verdict="inconclusive",
            why=f"exploratory: {seeds or 0} seed(s); a question about variation between models needs ≥ 3 "
            f"(would read {out['verdict']} on these intervals)",
        )
    out["text"] = rule_text(out)
    return out


def rule_text(r: dict) -> str:
    """One line: estimate, interval, band, verdict and why."""
    est = "no estimate" if r.get("estimate") is None else f"{r['estimate']:.3g}"
    ci = "no interval" if r.get("ci_low") is None else f"95% CI [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
    lo, hi = r["band"]
    return f"{est}, {ci}; band [{lo:g}, {hi:g}] → {r['verdict']} ({r['why']})"


def check_basis(basis: str | None) -> str | None:
    if basis is not None and basis not in BASES:
        raise ValueError(f"unknown basis {basis!r}; expected one of {BASES}")
    return basis


def is_paper_setup(provenance: dict | None, config: dict | None) -> bool:
    """Was a timing run measured on the paper's setup: an H200, B=4, H=8, D=64, bf16?
    CPU-only evidence never is."""
    dev = ((provenance or {}).get("device") or {}).get("cuda") or {}
    name = dev.get("name") if isinstance(dev, dict) else str(dev)
    c = config or {}
    shape = (c.get("batch"), c.get("heads"), c.get("head_dim"), c.get("dtype")) == (4, 8, 64, "bfloat16")
    return bool(name) and "H200" in str(name) and shape
