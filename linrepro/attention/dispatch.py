"""``backend="auto"`` off CUDA: the exact form that a cost model, calibrated by measurement, predicts fastest.

The forms (all exact, all tested against the float64 reference for outputs and gradients):

* ``quadratic``: the N×N score matrix times V (:mod:`linrepro.attention.quadratic`), cheap for short N;
* ``reference``: the factorised einsum of :func:`linrepro.attention.linear_attention_reference`;
* ``torch``: the tiled path of :mod:`linrepro.attention.torch_path` (chunked prefix states if causal).

Cost model, per form and causality, of one forward + backward (what training spends):

    t = c₀ + c₁·BH·N·(D+Dv) + c₂·BH·N²·(D+Dv) + c₃·BH·N·D·Dv      (seconds; c ≥ 0)

a per-call overhead, the elementwise passes, the N×N products and the state products. The
coefficients are fitted (non-negative least squares on relative error) to times measured on this
machine by :func:`calibrate`, which writes them with their provenance to
``linrepro/attention/_calibration.py``: re-measure on another machine with
``python -m linrepro.attention.dispatch --calibrate``. A form is not considered where its
intermediate tensors would pass :data:`MAX_ELEMENTS` (the N×N matrices of ``quadratic``, the per-token
D×Dv states of the causal ``reference``).

The choice is visible: :func:`explain_choice` returns the predicted times and the pick, and the
logger ``linrepro.attention.dispatch`` logs each new (shape, dtype, causal) decision at DEBUG level.
"""

from __future__ import annotations

import functools
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FORMS = ("quadratic", "reference", "torch")
MAX_ELEMENTS = 1 << 25  # largest intermediate (N×N scores, causal per-token states) a form may build
TABLE = Path(__file__).with_name("_calibration.py")


def _features(bh: int, n: int, d: int, dv: int) -> list[float]:
    return [1.0, bh * n * (d + dv), bh * n * n * (d + dv), bh * n * d * dv]


def _too_big(form: str, bh: int, n: int, d: int, dv: int, causal: bool) -> bool:
    if form == "quadratic":
        return bh * n * n > MAX_ELEMENTS
    if form == "reference" and causal:
        return bh * n * d * dv > MAX_ELEMENTS
    return False


def _coefficients() -> dict:
    from linrepro.attention import _calibration

    return _calibration.COEFFICIENTS


def predicted_seconds(form: str, bh: int, n: int, d: int, dv: int, causal: bool) -> float:
    """The model's forward + backward time of ``form`` at this shape (inf where the form is not considered)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    if _too_big(form, bh, n, d, dv, causal):
        return float("inf")
    c = _coefficients()[f"{form}/{'causal' if causal else 'full'}"]
    return float(sum(ci * fi for ci, fi in zip(c, _features(bh, n, d, dv))))


@functools.lru_cache(maxsize=4096)
def _choose(bh: int, n: int, d: int, dv: int, causal: bool, key: str) -> str:
    costs = {f: predicted_seconds(f, bh, n, d, dv, causal) for f in FORMS}
    form = min(costs, key=costs.__getitem__)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "backend='auto' picks %s for BH=%d N=%d D=%d Dv=%d causal=%s (%s); predicted fwd+bwd %s",
            form,
            bh,
            n,
            d,
            dv,
            causal,
            key,
            ", ".join(f"{f} {t * 1e3:.3g} ms" for f, t in costs.items()),
        )
    return form


def choose_form(q: torch.Tensor, v: torch.Tensor, *, variant: str = "eq7", causal: bool = False) -> str:
    """The form ``backend="auto"`` runs for these inputs off CUDA (one of :data:`FORMS`)."""
    b, h, n, d = q.shape
    return _choose(b * h, n, d, v.shape[-1], bool(causal), f"{variant}, {q.dtype}")


def explain_choice(b: int, h: int, n: int, d: int, dv: int | None = None, *, causal: bool = False) -> dict:
    """{"choice": form, "predicted_ms": {form: ms}} for a (B, H, N, D, Dv) call off CUDA."""
    dv = d if dv is None else dv
    costs = {f: predicted_seconds(f, b * h, n, d, dv, causal) * 1e3 for f in FORMS}
    return {"choice": min(costs, key=costs.__getitem__), "predicted_ms": costs}


# --------------------------------------------------------------------------- calibration
def _time_form(form: str, b: int, h: int, n: int, d: int, dv: int, causal: bool, reps: int) -> float:
    from linrepro.attention import linear_attention

    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(b, h, n, d, generator=g).requires_grad_(True) for _ in range(2))
    v = torch.randn(b, h, n, dv, generator=g).requires_grad_(True)
    go = torch.randn(b, h, n, dv, generator=g)

    def run():
        o = linear_attention(q, k, v, variant="eq7", causal=causal, score_scale="1/N", backend=form)
        torch.autograd.grad(o, (q, k, v), go)

    run()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


CALIBRATION_GRID = {
    "bh": (8, 128),
    "n": (8, 16, 32, 64, 128, 256, 512, 1024, 2048),
    "d": (32, 64),
}


def calibrate(reps: int = 5, write: bool = True, grid: dict | None = None, progress: bool = False) -> dict:
    """Measure every form's forward + backward (fp32, eq7) over ``grid`` on this machine, fit the cost
    model and (``write``) store it in ``linrepro/attention/_calibration.py``. Returns
    {"coefficients": ..., "samples": [...], "provenance": ...}. Run it alone on the machine (timings)."""
    import numpy as np
    from scipy.optimize import nnls

    grid = grid or CALIBRATION_GRID
    samples: list[dict] = []
    for causal in (False, True):
        for form in FORMS:
            for bh in grid["bh"]:
                for d in grid["d"]:
                    for n in grid["n"]:
                        if _too_big(form, bh, n, d, d, causal):
                            continue
                        t = _time_form(form, bh, 1, n, d, d, causal, reps)
                        samples.append({"form": form, "causal": causal, "bh": bh, "n": n, "d": d, "dv": d, "s": t})
                        if progress:
                            print(
                                f"{form:9s} causal={causal!s:5s} BH={bh:3d} D={d} N={n:5d} {t * 1e3:9.3f} ms",
                                flush=True,
                            )
    coeffs = {}
    for causal in (False, True):
        for form in FORMS:
            rows = [s for s in samples if s["form"] == form and s["causal"] == causal]
            a = np.array([_features(int(s["bh"]), int(s["n"]), int(s["d"]), int(s["dv"])) for s in rows])
            times = np.array([float(s["s"]) for s in rows])
            col = a.max(0)
            col[col == 0] = 1.0
            x, _ = nnls(a / times[:, None] / col, np.ones(times.shape[0]))  # relative error, columns scaled
            coeffs[f"{form}/{'causal' if causal else 'full'}"] = [float(v) for v in x / col]
    from linrepro.utils.provenance import device_info, git_commit, now_utc

    prov = {"date": now_utc(), "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32"}
    prov.update({"device": device_info(), "git": git_commit()})
    if write:
        _write_table(coeffs, prov)
        _choose.cache_clear()
    return {"coefficients": coeffs, "samples": samples, "provenance": prov}


def _literal(x) -> str:
    """A Python literal in ruff-format's style (double quotes), for the generated table."""
    if isinstance(x, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in x.items()) + "}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in x) + "]"
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=True)
    return repr(x)  # numbers, bools, None


def _write_table(coeffs: dict, prov: dict) -> None:
    from linrepro.utils.io import atomic_write_text

    lines = [
        '"""Cost-model coefficients of ``backend="auto"`` (see linrepro.attention.dispatch), fitted to times',
        "measured by ``python -m linrepro.attention.dispatch --calibrate``. Generated: do not edit by hand.",
        '"""',
        "",
        "PROVENANCE = {",
        *(f"    {_literal(k)}: {_literal(v)}," for k, v in prov.items()),
        "}",
        "",
        "COEFFICIENTS = {",
        *(f"    {_literal(k)}: {_literal(v)}," for k, v in coeffs.items()),
        "}",
        "",
    ]
    atomic_write_text(TABLE, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--calibrate"]:
        res = calibrate(progress=True)
        for k, v in res["coefficients"].items():
            print(k, [f"{c:.3g}" for c in v])
        print(f"written to {TABLE}")
        return 0
    print("usage: python -m linrepro.attention.dispatch --calibrate   (measure and write the cost model)")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
