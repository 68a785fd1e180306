"""Tables over training seeds: every accuracy as the mean over seeds with a 95% interval from the
two-stage bootstrap (seeds, then images; :mod:`linrepro.study.stats`), and every LA − softmax
difference paired by seed and image, with Holm's correction across the cells of one table.

The input is a list of *rows*, one per (model, attention, seed, evaluation set[, resolution]):
dicts with at least ``model``, ``attention``, ``seed``, ``domain`` and ``correct`` (the 0/1
outcome of each evaluated image, in one fixed order for every seed). Rows from 03's own
evaluation (``summary["zero_shot"]``), 04 (:func:`linrepro.study.evaluation.evaluate_runs`) and
06 (:func:`linrepro.study.evaluation.resolution_sweep`) all have that form. Outcomes other than
zero-shot hits (retrieval hits) are passed with ``key``.

One seed gives an interval over images only; the tables say how many seeds each cell has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from linrepro.study import stats


def rows_from_summaries(summaries: Iterable[dict]) -> list[dict]:
    """03's summaries as rows: one per (run, domain) of its zero-shot evaluation."""
    return [
        {"model": s["model"], "attention": s["attention"], "seed": s.get("seed", 0), **z}
        for s in summaries
        for z in s.get("zero_shot") or []
    ]


def _key(row: dict, by: Sequence[str]) -> tuple:
    return tuple(row.get(k) for k in by)


def _grouped(rows: Iterable[dict], by: Sequence[str], key: str) -> dict[tuple, dict[int, list]]:
    """{cell: {seed: outcomes}}; a seed evaluated twice in one cell raises (it would be counted twice)."""
    out: dict[tuple, dict[int, list]] = {}
    for r in rows:
        if key not in r or r[key] is None:
            raise ValueError(f"row {_key(r, by)} seed {r.get('seed')} has no per-image '{key}' outcomes")
        cell = out.setdefault(_key(r, by), {})
        seed = int(r.get("seed", 0) or 0)
        if seed in cell:
            raise ValueError(f"cell {_key(r, by)} has seed {seed} twice")
        cell[seed] = list(r[key])
    return out


def interval_frame(
    rows: Iterable[dict],
    by: Sequence[str] = ("model", "attention", "domain"),
    key: str = "correct",
    *,
    n_resamples: int = 2000,
    seed: int = 0,
):
    """One row per cell of ``by``: ``mean`` over seeds, ``ci_low``/``ci_high`` (95%, seeds then
    images), ``seeds`` and ``n_images``, plus ``per_seed`` means."""
    import pandas as pd

    recs = []
    for cell, by_seed in _grouped(rows, by, key).items():
        seeds = sorted(by_seed)
        r = stats.seed_image_interval([by_seed[s] for s in seeds], n_resamples=n_resamples, seed=seed)
        recs.append(
            {
                **dict(zip(by, cell, strict=True)),
                **{k: r[k] for k in ("mean", "ci_low", "ci_high")},
                "seeds": r["seeds"],
                "n_images": r["n_images"],
                "per_seed": r["per_seed"],
            }
        )
    return pd.DataFrame(recs)


def paired_frame(
    rows: Iterable[dict],
    by: Sequence[str] = ("model", "domain"),
    key: str = "correct",
    *,
    base: str = "softmax",
    others: Sequence[str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
):
    """``other − base`` for every cell of ``by`` and every attention in ``others`` (default: all
    but ``base``), paired by seed and image (only the seeds both have). Columns: ``attention``,
    ``diff``, ``ci_low``, ``ci_high``, ``p_value`` (bootstrap), ``t_test_p`` (seed-level, ≥ 3 seeds),
    ``p_holm`` (Holm across the rows returned: the cells of one table), ``seeds``, ``n_images``."""
    import pandas as pd

    rows = list(rows)
    grouped = _grouped(rows, (*by, "attention"), key)
    atts = list(dict.fromkeys(r["attention"] for r in rows))
    others = [a for a in (others or atts) if a != base]
    recs = []
    cells = list(dict.fromkeys(c[:-1] for c in grouped))
    for cell in cells:
        b = grouped.get((*cell, base))
        if not b:
            continue
        for att in others:
            o = grouped.get((*cell, att))
            if not o:
                continue
            common = sorted(set(b) & set(o))
            if not common:
                continue
            d = stats.paired_difference(
                [b[s] for s in common], [o[s] for s in common], n_resamples=n_resamples, seed=seed
            )
            recs.append(
                {
                    **dict(zip(by, cell, strict=True)),
                    "attention": att,
                    "diff": d["diff"],
                    "ci_low": d["ci_low"],
                    "ci_high": d["ci_high"],
                    "p_value": d["p_value"],
                    "t_test_p": d["t_test_p"],
                    "seeds": d["seeds"],
                    "n_images": d["n_images"],
                    "per_seed_diff": d["per_seed_diff"],
                }
            )
    df = pd.DataFrame(recs)
    if len(df):
        df["p_holm"] = stats.holm(df.p_value.tolist())
    return df


def cell_text(mean: float, lo: float, hi: float, seeds: int | None = None, signed: bool = False) -> str:
    """``0.936 [0.89, 0.96]`` (``+0.012 [-0.01, +0.03]`` when ``signed``), with ``×3`` seeds when given."""
    from linrepro.utils.tables import fmt_sig

    def f(v, sig=3):
        s = fmt_sig(v, sig)
        return ("+" + s if signed and not s.startswith(("-", "−")) and float(v) != 0 else s) if v == v else "—"

    return f"{f(mean)} [{f(lo, 2)}, {f(hi, 2)}]" + (f" ×{seeds}" if seeds else "")


def wide_table(df, index: Sequence[str], columns: str, value: str = "mean", *, signed: bool = False, order=None):
    """``df`` (from :func:`interval_frame` or :func:`paired_frame`) as a published table: a cell
    ``mean [lo, hi] ×seeds`` per (index, column), rows in the one model/attention order."""
    import pandas as pd

    from linrepro.utils.plotting import sort_frame

    d = df.copy()
    d["_cell"] = [
        cell_text(m, lo, hi, s, signed) for m, lo, hi, s in zip(d[value], d.ci_low, d.ci_high, d.seeds, strict=True)
    ]
    wide = d.pivot_table(index=list(index), columns=columns, values="_cell", aggfunc="first", sort=False)
    if order is not None:
        wide = wide[[c for c in order if c in wide.columns]]
    wide = sort_frame(wide)
    wide.columns = pd.Index(list(wide.columns), name=None)
    return wide
