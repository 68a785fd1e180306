"""A fair race between softmax and linear attention (issue 17): each method at its own learning
rate, how many epochs each needs, LA − softmax at equal steps and at equal wall-clock, the image
tower's inference cost per image, and the accuracy–compute frontier.

Pure analysis. The input is a list of *rows* in :mod:`linrepro.study.seeded`'s format, one per
(run, evaluation domain): ``model``, ``attention``, ``seed``, ``domain``, ``correct`` (0/1 per
evaluated image, in one fixed order for every seed), ``top1``, ``chance``, ``n``, plus the keys
of the condition (:data:`CONDITION_KEYS`): ``lr``, ``epochs``, ``arm`` (:data:`ARMS`),
``resolution`` (px), ``train_s`` (measured training seconds of that run) and ``images_per_s``
(measured training throughput). Any attention other than ``base`` (``"softmax"``) is LA.

Every rule is declared here, as a module-level string, before any data is seen:
:data:`LR_RULE`, :data:`CONVERGENCE_RULE`, :data:`EQUAL_BUDGET_RULE`, :data:`COST_RULE`,
:data:`PARETO_RULE` and :data:`DECISION_RULE`.

**Mean over domains.** A run's summary accuracy is the mean of its per-domain top-1, each domain
weighing the same whatever its number of images (not the pooled accuracy over all images).
Its interval is :mod:`linrepro.study.stats`' two-stage bootstrap composed over domains: one draw of
seeds per resample, shared by every domain, then images drawn within each domain; with one domain
it is :func:`linrepro.study.stats.seed_image_interval` exactly (the same draws), and a paired
difference is :func:`linrepro.study.stats.paired_difference` exactly.

A condition's rows must be one condition: a (cell, seed, domain) seen twice is refused with the
keys in which its rows differ (filter the rows to one condition first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from linrepro.study import seeded, stats

BASE = "softmax"
ARMS = ("interpolated", "fine-tuned", "mixed")
CONDITION_KEYS = ("model", "attention", "lr", "epochs", "arm", "resolution")
MEAN_OVER_DOMAINS = "mean over domains"
CONFIDENCE = 0.95
ALPHA = 0.05  # Holm-adjusted significance level of a gain
NO_GAIN_MARGIN = 0.02  # top-1 (a fraction): a gain smaller than 2 points is "no gain"
MIN_SEEDS = 3  # fewer seeds: a comparison between trained models is exploratory (rules.decide's cap)
BASIS = "proxy"  # tiny CLIPs on rendered domains stand in for ViT-S/B/L on LAION-400M
CLOCK = "train_s: the sum of open_clip_train's per-step batch_time over the run's logged steps (race.training_seconds)"

LR_RULE = (
    "Per attention, the learning rate with the highest mean over seeds of the mean over domains of "
    "top-1 on the tuning split (each domain weighs the same); a tie goes to the smaller learning rate. "
    "Intervals: two-stage bootstrap, seeds then images, 95%. A chosen rate that is the smallest or the "
    "largest swept is an edge: the optimum may lie outside the sweep. The runner-up is the second-best "
    "rate; best − runner-up is paired by seed and image."
)
CONVERGENCE_RULE = (
    "Per seed, on the mean over domains of top-1: final = the accuracy at the largest epoch budget swept; "
    "the epochs to reach frac × final are interpolated linearly in log(epochs) between the last budget "
    "below frac × final and the first budget at or above it. A seed already at or above frac × final at "
    "the smallest budget is censored: its value is the smallest budget (read '<= smallest'). Mean and 95% "
    "interval over seeds (bootstrap over seeds); LA − softmax is paired by seed, with the seed-level "
    "paired t-test at >= 3 seeds. Seeds lacking a budget are left out and listed."
)
EQUAL_BUDGET_RULE = (
    "Equal steps: at each epoch budget, LA − softmax of the mean over domains of top-1, paired by seed "
    "and image (interval over seeds, then images). Equal wall-clock: per seed, LA's accuracy as a "
    "function of its measured training seconds (train_s) is interpolated piecewise linearly in "
    "log(train_s) over its epoch budgets and read at the softmax run's train_s for each budget; outside "
    "LA's measured range the value is missing and the note says so. LA − softmax, interval over seeds "
    "(bootstrap over seeds), seed-level paired t-test at >= 3 seeds."
)
COST_RULE = (
    "Inference cost of the image tower per image: FLOPs of one forward pass of encode_image, counted by "
    "torch.utils.flop_counter.FlopCounterMode (2 per multiply-add of every matrix product and "
    "convolution: patch embedding, q/k/v and output projections, MLP, the attention products and the "
    "final projection; element-wise work (norms, softmax, GELU, LayerNorm, sums) is not counted). LA is "
    "counted in its factorised form (backend='reference': K̂ᵀV and Q̂S, 4·N·D·Dv per head), whichever form "
    "the CPU dispatcher would run; softmax's fused CPU kernel, unknown to FlopCounterMode, is counted "
    "with torch's own SDPA formula (QKᵀ and PV, 4·N²·D per head), and nn.MultiheadAttention's fused eval "
    "fast path is switched off while counting (it hides projections and attention from the counter). Throughput: images/s of encode_image "
    "with the model's own backend, the median of `runs` batches timed in interleaved rounds over every (attention, "
    "resolution) after one warm-up batch each, so that a slow spell of a shared machine hits every configuration alike."
)
PARETO_RULE = (
    "Per domain, a point is dominated when another point has cost <= and accuracy >= with at least one "
    "strict; the frontier is the set of points no other point dominates (equal points are both kept)."
)
DECISION_RULE = (
    "Per domain, each LA condition (arm, resolution) is compared with the best softmax condition "
    "(highest mean top-1 over seeds; a tie goes to the cheaper) among those whose cost is <= the LA "
    "condition's cost. LA − softmax is paired by seed and image when both are at the same resolution "
    "(the same evaluation images), and by seed only otherwise (images resampled independently). "
    f"'LA buys accuracy at equal compute' if some comparison has LA − softmax > 0 with Holm-adjusted "
    f"bootstrap p < {ALPHA} across the domain's comparisons (checked first); 'no LA gain at equal compute' "
    f"if every comparison's 95% interval ends below +{NO_GAIN_MARGIN} top-1; otherwise 'inconclusive', "
    "also when no softmax condition costs as little as any LA condition. A verdict resting on fewer than "
    f"{MIN_SEEDS} seeds is exploratory and capped at 'inconclusive' (as rules.decide does between trained "
    "models). Basis: proxy."
)
VERDICTS = ("LA buys accuracy at equal compute", "no LA gain at equal compute", "inconclusive")


# --------------------------------------------------------------------------- grouping
def _require(rows: list[dict], keys: Sequence[str]) -> None:
    if not rows:
        raise ValueError("no rows")
    for r in rows:
        missing = [k for k in keys if r.get(k) is None]
        if missing:
            who = {k: r.get(k) for k in ("model", "attention", "seed", "domain") if k in r}
            raise ValueError(f"row {who} has no {missing}")


def _runs(rows: Iterable[dict], by: Sequence[str], key: str = "correct") -> dict[tuple, dict[int, dict[str, list]]]:
    """{cell of ``by``: {seed: {domain: outcomes}}}; a (cell, seed, domain) twice is refused, naming
    the condition keys in which the cell's rows differ."""
    out: dict[tuple, dict[int, dict[str, list]]] = {}
    members: dict[tuple, list[dict]] = {}
    for r in rows:
        cell = tuple(r.get(k) for k in by)
        seed, dom = int(r.get("seed", 0) or 0), r.get("domain")
        if r.get(key) is None:
            raise ValueError(f"{dict(zip(by, cell))} seed {seed} domain {dom!r} has no per-image '{key}' outcomes")
        members.setdefault(cell, []).append(r)
        per = out.setdefault(cell, {}).setdefault(seed, {})
        if dom in per:
            vary = [k for k in CONDITION_KEYS if k not in by and len({repr(m.get(k)) for m in members[cell]}) > 1]
            raise ValueError(
                f"{dict(zip(by, cell))}: seed {seed}, domain {dom!r} appears twice"
                + (f"; its rows differ in {vary}: select one condition first" if vary else "")
            )
        per[dom] = r[key]
    return out


def _domains(by_seed: dict[int, dict[str, list]]) -> list[str]:
    return list(dict.fromkeys(d for s in sorted(by_seed) for d in by_seed[s]))


def _strata(by_seed: dict[int, dict], seeds: Sequence[int], domains: Sequence[str], what: str) -> list[np.ndarray]:
    """One (seeds, images) array per domain; every seed needs every domain, on the same images."""
    for s in seeds:
        missing = [d for d in domains if d not in by_seed[s]]
        if missing:
            raise ValueError(f"{what}: seed {s} has no rows for domain(s) {missing}; every seed needs every domain")
    return [stats._outcomes([by_seed[s][d] for s in seeds], f"{what}, domain {d!r}") for d in domains]


# --------------------------------------------------------------------------- composed bootstrap
def _composed(
    groups: Sequence[np.ndarray], weights: Sequence[float], *, n_resamples: int, seed: int, confidence=CONFIDENCE
) -> dict:
    """Σ_g w_g · (mean over seeds of the mean over images of group g), resampled with stats' two-stage
    bootstrap: seeds drawn once per resample and shared by every group, images drawn within each group.
    The first group takes stats' own draws, so one group with weight 1 reproduces stats exactly."""
    stats._check(n_resamples, confidence)
    n_seeds = groups[0].shape[0]
    rng = np.random.default_rng(seed)
    seed_draws, images = stats._draws(n_seeds, groups[0].shape[1], n_resamples, rng)
    total = weights[0] * stats._resampled_means(groups[0], seed_draws, images)
    for g, w in zip(groups[1:], weights[1:], strict=True):
        images = rng.integers(0, g.shape[1], size=(n_resamples, n_seeds, g.shape[1]))
        total = total + w * stats._resampled_means(g, seed_draws, images)
    per_seed = sum(w * g.mean(axis=1) for g, w in zip(groups, weights, strict=True))
    a = (1 - confidence) / 2
    lo, hi = np.quantile(total, [a, 1 - a])
    tail = min((total <= 0).mean(), (total >= 0).mean())
    return {
        "mean": float(np.mean(per_seed)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": float(min(1.0, max(2 * tail, 1.0 / n_resamples))),
        "seeds": int(n_seeds),
        "n_images": int(sum(g.shape[1] for g in groups)),
        "per_seed": [float(x) for x in per_seed],
    }


def _domain_mean(by_seed: dict[int, dict], what: str, *, n_resamples: int, seed: int) -> dict:
    """Mean over seeds of the mean over domains, with its composed two-stage interval."""
    seeds, domains = sorted(by_seed), _domains(by_seed)
    groups = _strata(by_seed, seeds, domains, what)
    return _composed(groups, [1 / len(domains)] * len(domains), n_resamples=n_resamples, seed=seed)


def _t_test(per_a, per_b) -> float:
    """Seed-level paired t-test p (stats.paired_difference's), NaN under 3 seeds or no variation."""
    a, b = np.asarray(per_a, float), np.asarray(per_b, float)
    if len(a) < 3 or np.ptp(b - a) <= 1e-12 * max(1.0, float(np.abs(b - a).max())):  # equal up to round-off
        return float("nan")
    from scipy import stats as sps

    return float(sps.ttest_rel(b, a).pvalue)


def _domain_diff(
    a: dict[int, dict], b: dict[int, dict], what: str, *, paired_images: bool = True, n_resamples: int, seed: int
) -> dict | None:
    """B − A of the mean over domains on the seeds both have: paired by seed and image, or (with
    ``paired_images=False``: different evaluation images) by seed only. None without a common seed."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    da, db = _domains(a), _domains(b)
    if set(da) != set(db):
        raise ValueError(f"{what}: the two conditions have different domains: {da} and {db}")
    ga, gb = _strata(a, common, da, what), _strata(b, common, da, what)
    w = 1 / len(da)
    if paired_images:
        for d, x, y in zip(da, ga, gb, strict=True):
            if x.shape != y.shape:
                raise ValueError(
                    f"{what}, domain {d!r}: paired outcomes need the same images; got {x.shape} and {y.shape}"
                )
        r = _composed([y - x for x, y in zip(ga, gb, strict=True)], [w] * len(da), n_resamples=n_resamples, seed=seed)
    else:
        r = _composed([*gb, *ga], [w] * len(da) + [-w] * len(da), n_resamples=n_resamples, seed=seed)
    per_a = np.mean([x.mean(axis=1) for x in ga], axis=0)
    per_b = np.mean([y.mean(axis=1) for y in gb], axis=0)
    return {
        "diff": r["mean"],
        "ci_low": r["ci_low"],
        "ci_high": r["ci_high"],
        "p_value": r["p_value"],
        "t_test_p": _t_test(per_a, per_b),
        "seeds": len(common),
        "per_seed_diff": r["per_seed"],
    }


def _over_seeds(values: Sequence[float], *, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-seed values with a 95% bootstrap interval over seeds (stats' bootstrap with one
    outcome per seed); no interval (NaN) from one seed."""
    v = [float(x) for x in values]
    if not v:
        return float("nan"), float("nan"), float("nan")
    if len(v) < 2:
        return v[0], float("nan"), float("nan")
    r = stats.seed_image_interval([[x] for x in v], n_resamples=n_resamples, seed=seed)
    return r["mean"], r["ci_low"], r["ci_high"]


def _paired_over_seeds(a: Sequence[float], b: Sequence[float], *, n_resamples: int, seed: int) -> dict:
    """B − A per seed: mean, bootstrap interval over seeds, p, seed-level t-test (NaN under 2 seeds)."""
    if len(a) < 2:
        d = [float(y - x) for x, y in zip(a, b, strict=True)]
        nan = float("nan")
        return {"diff": d[0] if d else nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "t_test_p": nan}
    r = stats.paired_difference([[x] for x in a], [[y] for y in b], n_resamples=n_resamples, seed=seed)
    return {k: r[k] for k in ("diff", "ci_low", "ci_high", "p_value")} | {"t_test_p": _t_test(a, b)}


def _attention_order(atts: Iterable[str], base: str) -> list[str]:
    from linrepro.utils.plotting import attention_order

    atts = list(dict.fromkeys(atts))
    return [base] * (base in atts) + [a for a in attention_order(atts) if a != base]


# --------------------------------------------------------------------------- 1. learning rate
def choose_lr(
    rows: Iterable[dict], *, base_metric: str = "correct", n_resamples: int = 2000, seed: int = 0, base: str = BASE
) -> dict:
    """Each attention's learning rate by :data:`LR_RULE`, from rows of the tuning split.

    Returns ``chosen`` {attention: lr}, ``table`` (attention, lr, domain incl. the
    :data:`MEAN_OVER_DOMAINS` pseudo-domain, mean, ci_low, ci_high, seeds, n_images), ``edge``
    {attention: the chosen rate is the smallest or largest swept}, ``runner_up`` {attention:
    {lr, diff (best − runner-up), ci_low, ci_high, p, t_test_p, seeds}} (None with one rate swept),
    ``text`` {attention: one sentence} and ``rule``. ``base_metric``: the per-image outcome key."""
    import pandas as pd

    rows = list(rows)
    _require(rows, ("attention", "lr", "domain"))
    cells = _runs(rows, ("attention", "lr"), base_metric)
    per_domain = seeded.interval_frame(
        rows, by=("attention", "lr", "domain"), key=base_metric, n_resamples=n_resamples, seed=seed
    )
    means = {
        cell: _domain_mean(by_seed, f"attention {cell[0]!r}, lr {cell[1]!r}", n_resamples=n_resamples, seed=seed)
        for cell, by_seed in cells.items()
    }
    recs = [
        {k: r[k] for k in ("attention", "lr", "domain", "mean", "ci_low", "ci_high", "seeds", "n_images")}
        for r in per_domain.to_dict("records")
    ]
    recs += [
        {"attention": a, "lr": lr, "domain": MEAN_OVER_DOMAINS}
        | {k: m[k] for k in ("mean", "ci_low", "ci_high", "seeds", "n_images")}
        for (a, lr), m in means.items()
    ]
    atts = _attention_order((a for a, _ in cells), base)
    doms = list(dict.fromkeys(r["domain"] for r in rows)) + [MEAN_OVER_DOMAINS]
    table = pd.DataFrame(recs)
    table = table.assign(
        _a=table.attention.map(atts.index), _d=table.domain.map(doms.index), lr=table.lr.astype(float)
    ).sort_values(["_a", "lr", "_d"], kind="stable")
    table = table.drop(columns=["_a", "_d"]).reset_index(drop=True)

    chosen, edge, runner_up, text = {}, {}, {}, {}
    for att in atts:
        lrs = sorted(lr for a, lr in cells if a == att)
        ranked = sorted(lrs, key=lambda lr: -means[(att, lr)]["mean"])  # stable: a tie keeps the smaller rate
        best = ranked[0]
        chosen[att], edge[att] = best, best in (lrs[0], lrs[-1])
        m = means[(att, best)]
        text[att] = (
            f"{att}: lr {best:g}, mean over domains {seeded.cell_text(m['mean'], m['ci_low'], m['ci_high'], m['seeds'])}"
            f" (swept {', '.join(f'{x:g}' for x in lrs)})"
        )
        if edge[att]:
            side = "smallest" if len(lrs) > 1 and best == lrs[0] else "largest" if len(lrs) > 1 else "only"
            text[att] += f"; the {side} rate swept: the optimum may lie outside the sweep"
        runner_up[att] = None
        if len(ranked) > 1:
            second = ranked[1]
            d = _domain_diff(
                cells[(att, second)],
                cells[(att, best)],
                f"attention {att!r}, lr {best:g} vs {second:g}",
                n_resamples=n_resamples,
                seed=seed,
            )
            if d is not None:
                runner_up[att] = {
                    "lr": second,
                    "diff": d["diff"],
                    "ci_low": d["ci_low"],
                    "ci_high": d["ci_high"],
                    "p": d["p_value"],
                    "t_test_p": d["t_test_p"],
                    "seeds": d["seeds"],
                }
                text[att] += (
                    f"; best − runner-up (lr {second:g}): "
                    f"{seeded.cell_text(d['diff'], d['ci_low'], d['ci_high'], d['seeds'], signed=True)}"
                )
    return {"chosen": chosen, "table": table, "edge": edge, "runner_up": runner_up, "text": text, "rule": LR_RULE}


# --------------------------------------------------------------------------- 2. convergence
def _per_seed_accuracy(
    rows: list[dict], by: Sequence[str], key: str = "correct", *, same_domains_within: int | None = 1
) -> dict[tuple, dict[int, float]]:
    """{cell: {seed: mean over domains of top-1}}; every (cell, seed) needs the cell's domains, and
    cells that share their first ``same_domains_within`` keys (1: the attention; 0: all cells) share
    their domains, so that "mean over domains" means one thing along a curve."""
    cells = _runs(rows, by, key)
    out: dict[tuple, dict[int, float]] = {}
    seen: dict[tuple, tuple[tuple, list[str]]] = {}
    for cell, by_seed in cells.items():
        doms = _domains(by_seed)
        if same_domains_within is not None:
            group = cell[:same_domains_within]
            first = seen.setdefault(group, (cell, doms))
            if set(first[1]) != set(doms):
                raise ValueError(
                    f"{dict(zip(by, first[0]))} has domains {first[1]} but {dict(zip(by, cell))} has {doms}; "
                    "the mean over domains must be over the same domains"
                )
        groups = _strata(by_seed, sorted(by_seed), doms, str(dict(zip(by, cell))))
        per = np.mean([g.mean(axis=1) for g in groups], axis=0)
        out[cell] = dict(zip(sorted(by_seed), map(float, per), strict=True))
    return out


def epoch_accuracy(rows: Iterable[dict], *, n_resamples: int = 2000, seed: int = 0, base: str = BASE):
    """Mean over domains of top-1 per (attention, epochs), with the composed two-stage interval:
    columns attention, epochs, mean, ci_low, ci_high, seeds, n_images, per_seed (for a figure)."""
    import pandas as pd

    rows = list(rows)
    _require(rows, ("attention", "epochs", "domain"))
    cells = _runs(rows, ("attention", "epochs"))
    atts = _attention_order((a for a, _ in cells), base)
    recs = []
    for (att, ep), by_seed in sorted(cells.items(), key=lambda kv: (atts.index(kv[0][0]), kv[0][1])):
        m = _domain_mean(by_seed, f"attention {att!r}, epochs {ep}", n_resamples=n_resamples, seed=seed)
        recs.append({"attention": att, "epochs": ep} | {k: m[k] for k in m if k != "p_value"})
    return pd.DataFrame(recs)


def _epochs_to_reach(acc: dict[int, float], budgets: Sequence[int], frac: float) -> tuple[float, bool]:
    """(epochs to reach frac × final, censored) by linear interpolation in log(epochs)."""
    target = frac * acc[budgets[-1]]
    if acc[budgets[0]] >= target:
        return float(budgets[0]), True
    for lo, hi in zip(budgets, budgets[1:], strict=False):
        if acc[hi] >= target:
            t = (target - acc[lo]) / (acc[hi] - acc[lo])
            return float(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))), False
    raise AssertionError("unreachable: the final budget reaches frac × final")  # pragma: no cover


def convergence(rows: Iterable[dict], *, frac: float = 0.95, n_resamples: int = 2000, seed: int = 0, base: str = BASE):
    """Epochs to reach ``frac`` × final accuracy, per attention and per LA − softmax pair, by
    :data:`CONVERGENCE_RULE`.

    Columns: attention (or ``"eq7 - softmax"``), kind (``method``/``paired``), frac, budgets,
    final_epochs, mean, ci_low, ci_high, t_test_p (paired rows, >= 3 seeds), seeds, censored (seeds
    at or above the target at the smallest budget; paired: seeds where either is), per_seed,
    incomplete_seeds (left out: a budget missing) and text. The accuracy per (attention,
    epochs) for the figure is :func:`epoch_accuracy` of the same rows."""
    import pandas as pd

    if not (isinstance(frac, (int, float)) and 0 < frac <= 1):
        raise ValueError(f"frac must be in (0, 1], got {frac!r}")
    rows = list(rows)
    _require(rows, ("attention", "epochs", "domain"))
    acc = _per_seed_accuracy(rows, ("attention", "epochs"))
    atts = _attention_order((a for a, _ in acc), base)
    result: dict[str, dict[int, tuple[float, bool]]] = {}
    recs = []
    for att in atts:
        budgets = sorted({int(e) for a, e in acc if a == att})
        if any(e <= 0 for e in budgets):
            raise ValueError(f"attention {att!r}: epochs must be positive for log(epochs), got {budgets}")
        seeds = sorted({s for (a, _), per in acc.items() if a == att for s in per})
        complete = [s for s in seeds if all(s in acc[(att, e)] for e in budgets)]
        per = {s: _epochs_to_reach({e: acc[(att, e)][s] for e in budgets}, budgets, frac) for s in complete}
        result[att] = per
        vals = [per[s][0] for s in complete]
        mean, lo, hi = _over_seeds(vals, n_resamples=n_resamples, seed=seed)
        n_cens = sum(per[s][1] for s in complete)
        recs.append(
            {
                "attention": att,
                "kind": "method",
                "frac": frac,
                "budgets": budgets,
                "final_epochs": budgets[-1],
                "mean": mean,
                "ci_low": lo,
                "ci_high": hi,
                "t_test_p": float("nan"),
                "seeds": len(complete),
                "censored": n_cens,
                "per_seed": vals,
                "incomplete_seeds": [s for s in seeds if s not in complete],
                "text": _convergence_text(att, mean, lo, hi, len(complete), n_cens, budgets, frac),
            }
        )
    if base in result:
        for att in atts:
            if att == base:
                continue
            common = sorted(set(result[base]) & set(result[att]))
            if not common:
                continue
            a = [result[base][s][0] for s in common]
            b = [result[att][s][0] for s in common]
            d = _paired_over_seeds(a, b, n_resamples=n_resamples, seed=seed)
            n_cens = sum(result[base][s][1] or result[att][s][1] for s in common)
            text = f"{att} − {base}: {seeded.cell_text(d['diff'], d['ci_low'], d['ci_high'], len(common), True)} epochs"
            if not math.isnan(d["t_test_p"]):
                text += f", paired t-test p = {d['t_test_p']:.3g}"
            if len(common) < 2:
                text += " (1 seed: no interval)"
            if n_cens:
                text += f" ({n_cens} seed(s) censored on one side: the difference is then a bound)"
            recs.append(
                {
                    "attention": f"{att} - {base}",
                    "kind": "paired",
                    "frac": frac,
                    "budgets": sorted({int(e) for a_, e in acc if a_ in (att, base)}),
                    "final_epochs": float("nan"),
                    "mean": d["diff"],
                    "ci_low": d["ci_low"],
                    "ci_high": d["ci_high"],
                    "t_test_p": d["t_test_p"],
                    "seeds": len(common),
                    "censored": n_cens,
                    "per_seed": [y - x for x, y in zip(a, b, strict=True)],
                    "incomplete_seeds": [],
                    "text": text,
                }
            )
    df = pd.DataFrame(recs)
    df.attrs["rule"] = CONVERGENCE_RULE
    return df


def _convergence_text(att, mean, lo, hi, seeds, censored, budgets, frac) -> str:
    smallest = budgets[0]
    if seeds == 0:
        return f"{att}: no seed has every budget {budgets}"
    if censored == seeds:
        return (
            f"{att}: <= {smallest:g} epochs: every seed ({seeds}) is at or above {frac:g} × final at the "
            f"smallest budget" + (" (1 seed: no interval)" if seeds == 1 else "")
        )
    text = f"{att}: {seeded.cell_text(mean, lo, hi, seeds)} epochs to {frac:g} × final (at {budgets[-1]:g})"
    if seeds == 1:
        text += " (1 seed: no interval)"
    if censored:
        text += f"; {censored} of {seeds} seed(s) censored: already there at the smallest budget, counted as <= {smallest:g}"
    return text


# --------------------------------------------------------------------------- 3. equal budget
def _train_seconds(rows: list[dict]) -> dict[tuple, float]:
    """{(attention, epochs, seed): train_s}; a run's domain rows must agree on it."""
    out: dict[tuple, float] = {}
    for r in rows:
        k = (r["attention"], r["epochs"], int(r.get("seed", 0) or 0))
        t = r.get("train_s")
        if t is None or not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(
                f"run attention {k[0]!r} epochs {k[1]} seed {k[2]}: train_s must be a positive number, got {t!r}"
            )
        if k in out and not math.isclose(out[k], float(t), rel_tol=1e-9):
            raise ValueError(
                f"run attention {k[0]!r} epochs {k[1]} seed {k[2]}: train_s differs between its domain rows "
                f"({out[k]!r} and {t!r}); one run has one training time"
            )
        out[k] = float(t)
    return out


def equal_budget(rows: Iterable[dict], *, n_resamples: int = 2000, seed: int = 0, base: str = BASE):
    """LA − softmax at equal steps and at equal wall-clock, by :data:`EQUAL_BUDGET_RULE`.

    One row per (comparison, LA attention, softmax epoch budget): comparison (``equal steps`` /
    ``equal wall-clock``), attention, epochs, train_s (softmax's, mean over the seeds used),
    la_train_s (equal steps) or la_epochs (LA's epochs at that time, log-log interpolated), diff,
    ci_low, ci_high, p_value, t_test_p, seeds, per_seed, interval (what is resampled), clock (how
    wall-clock was measured: :data:`CLOCK`) and note."""
    import pandas as pd

    rows = list(rows)
    _require(rows, ("attention", "epochs", "domain"))
    clock = _train_seconds(rows)
    cells = _runs(rows, ("attention", "epochs"))
    acc = _per_seed_accuracy(rows, ("attention", "epochs"), same_domains_within=0)
    atts = _attention_order((a for a, _ in cells), base)
    if base not in atts:
        raise ValueError(f"no {base!r} rows to compare with; attentions: {atts}")
    nan = float("nan")
    recs = []
    base_budgets = sorted({e for a, e in cells if a == base})
    for att in (a for a in atts if a != base):
        la_budgets = sorted({e for a, e in cells if a == att})
        for e in base_budgets:
            if (att, e) not in cells:
                continue
            d = _domain_diff(
                cells[(base, e)], cells[(att, e)], f"epochs {e}, {att} vs {base}", n_resamples=n_resamples, seed=seed
            )
            if d is None:
                continue
            common = sorted(set(cells[(base, e)]) & set(cells[(att, e)]))
            recs.append(
                {
                    "comparison": "equal steps",
                    "attention": att,
                    "epochs": e,
                    "train_s": float(np.mean([clock[(base, e, s)] for s in common])),
                    "la_train_s": float(np.mean([clock[(att, e, s)] for s in common])),
                    "la_epochs": float(e),
                    **{k: d[k] for k in ("diff", "ci_low", "ci_high", "p_value", "t_test_p", "seeds")},
                    "per_seed": d["per_seed_diff"],
                    "interval": "seeds, then images",
                    "clock": CLOCK,
                    "note": "",
                }
            )
        for e in base_budgets:
            seeds = sorted(acc[(base, e)])
            used, sm, la, la_ep, t_used, outside = [], [], [], [], [], []
            for s in seeds:
                pts = sorted((clock[(att, le, s)], acc[(att, le)][s], le) for le in la_budgets if s in acc[(att, le)])
                if not pts:
                    continue
                t = clock[(base, e, s)]
                ts = np.log([p[0] for p in pts])
                if not ts[0] <= math.log(t) <= ts[-1]:
                    outside.append(f"seed {s}: {t:.3g} s vs LA [{pts[0][0]:.3g}, {pts[-1][0]:.3g}] s")
                    continue
                used.append(s)
                t_used.append(t)
                sm.append(acc[(base, e)][s])
                la.append(float(np.interp(math.log(t), ts, [p[1] for p in pts])))
                la_ep.append(float(math.exp(np.interp(math.log(t), ts, np.log([p[2] for p in pts])))))
            note = ""
            if outside:
                note = "softmax's train_s outside LA's measured range (no value): " + "; ".join(outside)
            d = (
                _paired_over_seeds(sm, la, n_resamples=n_resamples, seed=seed)
                if used
                else {"diff": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "t_test_p": nan}
            )
            if len(used) == 1:
                note = (note + "; " if note else "") + "1 seed: no interval"
            recs.append(
                {
                    "comparison": "equal wall-clock",
                    "attention": att,
                    "epochs": e,
                    "train_s": float(np.mean(t_used))
                    if t_used
                    else float(np.mean([clock[(base, e, s)] for s in seeds])),
                    "la_train_s": float(np.mean(t_used)) if t_used else nan,
                    "la_epochs": float(np.mean(la_ep)) if la_ep else nan,
                    **d,
                    "seeds": len(used),
                    "per_seed": [y - x for x, y in zip(sm, la, strict=True)],
                    "interval": "seeds",
                    "clock": CLOCK,
                    "note": note,
                }
            )
    df = pd.DataFrame(recs)
    df.attrs["rule"] = EQUAL_BUDGET_RULE
    return df


# --------------------------------------------------------------------------- 4. image costs
# products by weights (not attention): everything else the counter sees in an image tower is attention
_WEIGHT_OPS = (
    "aten.mm",
    "aten.addmm",
    "aten.convolution",
    "aten._convolution",
    "aten.cudnn_convolution",
    "aten.convolution_overrideable",
    "aten._slow_conv2d_forward",
)


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_image_flops(model, resolution: int, *, backend: str = "reference") -> dict:
    """FLOPs of one image through ``model.encode_image`` by :data:`COST_RULE`: ``flops_per_image``,
    ``attention_flops_per_image`` (the attention products alone) and ``by_op``. LA modules run
    ``backend`` during the count (the factorised form) and get their own backend back after it.
    Raises when the counter sees no attention product (an attention path invisible to it)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from linrepro.clip import LinearMultiheadAttention, attention_of

    la = [m for m in model.modules() if isinstance(m, LinearMultiheadAttention)]
    old, was_training = [m.backend for m in la], model.training
    p = next(model.parameters())
    x = torch.zeros(1, 3, int(resolution), int(resolution), device=p.device, dtype=p.dtype)
    mapping = {}
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is not None:
        mapping[cpu_sdpa] = _sdpa_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        for m in la:
            m.backend = backend
        model.eval()
        # nn.MultiheadAttention's eval fast path (one fused op: projections and attention) is invisible
        # to the counter; the same products run unfused while counting
        torch.backends.mha.set_fastpath_enabled(False)
        with counter, torch.no_grad():
            model.encode_image(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, b in zip(la, old, strict=True):
            m.backend = b
        model.train(was_training)
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    attention = sum(v for k, v in by_op.items() if k not in _WEIGHT_OPS)
    if attention == 0:
        raise RuntimeError(
            f"FlopCounterMode counted no attention product for a {attention_of(model)} model at {resolution} px "
            f"(ops counted: {sorted(by_op)}): its attention path is invisible to the counter"
        )
    return {"flops_per_image": sum(by_op.values()), "attention_flops_per_image": attention, "by_op": by_op}


def image_costs(
    model_factory: Callable,
    resolutions: Sequence[int],
    *,
    attentions: Sequence[str] = ("softmax", "eq7"),
    batch: int = 8,
    runs: int = 3,
    device="cpu",
    count_backend: str = "reference",
):
    """Inference cost of the image tower per image, by :data:`COST_RULE`, for every attention and
    resolution: columns attention, resolution, tokens, flops_per_image, attention_flops_per_image,
    images_per_s, s_per_image, batch, runs, count.

    ``model_factory(attention, resolution)`` returns an eval model (or
    :func:`linrepro.clip.create_model`'s tuple), e.g. ``lambda a, r:
    experiments.load_model(summaries[a], resolution=r)[0]``."""
    import time

    import pandas as pd
    import torch

    from linrepro.clip import zeroshot

    if runs < 1 or batch < 1:
        raise ValueError(f"batch and runs must be >= 1, got batch={batch}, runs={runs}")
    configs = [(att, int(res)) for att in attentions for res in resolutions]
    models, counts, inputs = {}, {}, {}
    for att, res in configs:
        model = model_factory(att, res)
        model = (model[0] if isinstance(model, tuple) else model).to(device).eval()
        models[(att, res)] = model
        counts[(att, res)] = count_image_flops(model, res, backend=count_backend)
        inputs[(att, res)] = torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(0)).to(device)

    def once(key) -> float:
        sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            models[key].encode_image(inputs[key])
            sync()
            return time.perf_counter() - t0

    for key in configs:  # warm-up: every configuration once before any timing
        once(key)
    times: dict[tuple, list[float]] = {key: [] for key in configs}
    for _ in range(runs):  # interleaved: a slow spell of the machine hits every configuration alike
        for key in configs:
            times[key].append(once(key))
    recs = []
    for key in configs:
        att, res = key
        c, med = counts[key], float(np.median(times[key]))
        recs.append(
            {
                "attention": att,
                "resolution": res,
                "tokens": zeroshot.image_tokens(models[key]),
                "flops_per_image": c["flops_per_image"],
                "attention_flops_per_image": c["attention_flops_per_image"],
                "images_per_s": batch / med,
                "s_per_image": med / batch,
                "batch": batch,
                "runs": runs,
                "count": f"FlopCounterMode, matrix products; LA backend {count_backend!r}; "
                f"time: median of {runs} interleaved batches after one warm-up each",
            }
        )
    df = pd.DataFrame(recs)
    df.attrs["rule"] = COST_RULE
    return df


# --------------------------------------------------------------------------- 5. Pareto frontier
def pareto(points, *, cost: str = "cost", acc: str = "acc"):
    """The non-dominated points of each domain, by :data:`PARETO_RULE`, sorted by domain then cost.
    ``points``: a frame with domain, ``cost``, ``acc`` (and any other columns, kept)."""
    missing = [c for c in ("domain", cost, acc) if c not in points]
    if missing:
        raise ValueError(f"points need columns {missing}; got {list(points.columns)}")
    keep = []
    for _, g in points.groupby("domain", sort=False):
        c, a = g[cost].to_numpy(float), g[acc].to_numpy(float)
        for i, idx in enumerate(g.index):
            dominated = ((c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))).any()
            if not dominated:
                keep.append(idx)
    out = points.loc[keep]
    domains = list(dict.fromkeys(points["domain"]))
    return out.assign(_d=out["domain"].map(domains.index)).sort_values(["_d", cost], kind="stable").drop(columns="_d")


# --------------------------------------------------------------------------- 6. decision
def _cost_lookup(costs, cost: str) -> tuple[dict[tuple, float], str]:
    """{(attention, resolution): cost} and the cost's name; throughput becomes seconds per image."""
    if cost not in costs:
        raise ValueError(f"costs has no column {cost!r}; columns: {list(costs.columns)}")
    name = "s_per_image" if cost == "images_per_s" else cost
    out = {}
    for r in costs.to_dict("records"):
        v = float(r[cost])
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"cost {cost!r} of {r['attention']!r} at {r['resolution']} px must be positive, got {v}")
        out[(r["attention"], int(r["resolution"]))] = 1.0 / v if cost == "images_per_s" else v
    return out, name


def frontier_points(rows: Iterable[dict], costs, *, cost: str = "flops_per_image", n_resamples=2000, seed=0):
    """The points of the frontier figure: per (domain, attention, arm, resolution) the mean top-1
    over seeds with its two-stage interval (``acc``, ci_low, ci_high, seeds), joined with ``cost``
    from :func:`image_costs`' frame (on attention, resolution)."""
    rows = list(rows)
    _require(rows, ("attention", "arm", "resolution", "domain"))
    _runs(rows, ("domain", "attention", "arm", "resolution"))
    lookup, name = _cost_lookup(costs, cost)
    df = seeded.interval_frame(
        rows, by=("domain", "attention", "arm", "resolution"), n_resamples=n_resamples, seed=seed
    ).rename(columns={"mean": "acc"})
    df["resolution"] = df.resolution.astype(int)
    missing = sorted({(a, r) for a, r in zip(df.attention, df.resolution, strict=True)} - set(lookup))
    if missing:
        raise ValueError(f"costs has no {name} for (attention, resolution) {missing}; it has {sorted(lookup)}")
    df["cost"] = [lookup[(a, r)] for a, r in zip(df.attention, df.resolution, strict=True)]
    df["cost_name"] = name
    return df


def _point(cond: tuple, cost: float, mean: float) -> dict:
    att, arm, res = cond
    return {"attention": att, "arm": arm, "resolution": int(res), "cost": cost, "mean": mean}


def frontier_decision(
    rows: Iterable[dict],
    costs,
    *,
    cost: str = "flops_per_image",
    base: str = BASE,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """Does LA buy accuracy at equal inference compute? :data:`DECISION_RULE`, per domain.

    ``rows`` carry arm and resolution; ``costs`` is :func:`image_costs`' frame (joined on attention,
    resolution); ``cost``: a column of it (``images_per_s`` is turned into seconds per image).
    Returns ``domains`` {domain: {verdict, basis, la_point, softmax_point, diff, ci_low, ci_high,
    p_holm, seeds, pairing, text}}, ``overall`` (one sentence), ``comparisons`` (every comparison,
    a frame), ``cost`` (its name) and ``rule``. The reported comparison is the gain (smallest p_holm,
    then largest diff) when LA buys accuracy, else the one whose interval reaches highest."""
    import pandas as pd

    rows = list(rows)
    _require(rows, ("attention", "arm", "resolution", "domain"))
    cells = _runs(rows, ("attention", "arm", "resolution"))
    lookup, name = _cost_lookup(costs, cost)
    missing = sorted({(a, int(r)) for a, _, r in cells} - set(lookup))
    if missing:
        raise ValueError(f"costs has no {name} for (attention, resolution) {missing}; it has {sorted(lookup)}")
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    nan = float("nan")
    recs, out = [], {}
    for dom in domains:
        here = {c: {s: {dom: per[dom]} for s, per in by_seed.items() if dom in per} for c, by_seed in cells.items()}
        here = {c: v for c, v in here.items() if v}
        mean = {c: float(np.mean([np.mean(per[dom]) for per in v.values()])) for c, v in here.items()}
        price = {c: lookup[(c[0], int(c[2]))] for c in here}
        soft = [c for c in here if c[0] == base]
        comps, skipped = [], []
        for la in (c for c in here if c[0] != base):
            cands = [c for c in soft if price[c] <= price[la]]
            if not cands:
                skipped.append(la)
                continue
            best = max(cands, key=lambda c: (mean[c], -price[c]))
            same_res = int(best[2]) == int(la[2])
            what = f"domain {dom!r}: {la} vs {best}"
            lens = {len(per[dom]) for c in (la, best) for per in here[c].values()}
            paired = same_res and len(lens) == 1
            d = _domain_diff(here[best], here[la], what, paired_images=paired, n_resamples=n_resamples, seed=seed)
            if d is None:
                skipped.append(la)
                continue
            comps.append(
                {
                    "domain": dom,
                    "la_attention": la[0],
                    "la_arm": la[1],
                    "la_resolution": int(la[2]),
                    "la_cost": price[la],
                    "la_mean": mean[la],
                    "softmax_arm": best[1],
                    "softmax_resolution": int(best[2]),
                    "softmax_cost": price[best],
                    "softmax_mean": mean[best],
                    **{k: d[k] for k in ("diff", "ci_low", "ci_high", "p_value", "t_test_p", "seeds")},
                    "pairing": "seed and image" if paired else "seed only",
                    "_la": la,
                    "_sm": best,
                }
            )
        if comps:
            for c, p in zip(comps, stats.holm([c["p_value"] for c in comps]), strict=True):
                c["p_holm"] = p
        gains = [c for c in comps if c["diff"] > 0 and c["p_holm"] < ALPHA]
        if not comps:
            verdict, pick = "inconclusive", None
            why = f"no {base} condition costs as little as any LA condition ({name})"
        elif gains:
            verdict = VERDICTS[0]
            pick = min(gains, key=lambda c: (c["p_holm"], -c["diff"]))
            why = f"LA − {base} > 0 with Holm p = {pick['p_holm']:.3g} < {ALPHA} across {len(comps)} comparison(s)"
        else:
            pick = max(comps, key=lambda c: c["ci_high"])
            if all(c["ci_high"] < NO_GAIN_MARGIN for c in comps):
                verdict = VERDICTS[1]
                why = f"every comparison's 95% interval ends below +{NO_GAIN_MARGIN} ({len(comps)} comparison(s))"
            else:
                verdict = "inconclusive"
                why = f"no gain significant after Holm, and an interval reaches +{NO_GAIN_MARGIN} or more"
        seeds = min((c["seeds"] for c in comps), default=0)
        if verdict != "inconclusive" and seeds < MIN_SEEDS:
            why = f"exploratory: {seeds} seed(s) < {MIN_SEEDS}; would read '{verdict}' ({why})"
            verdict = "inconclusive"
        res = {"verdict": verdict, "basis": BASIS, "la_point": None, "softmax_point": None}
        res |= {"diff": nan, "ci_low": nan, "ci_high": nan, "p_holm": nan, "seeds": seeds, "pairing": None}
        if pick is not None:
            res |= {
                "la_point": _point(pick["_la"], pick["la_cost"], pick["la_mean"]),
                "softmax_point": _point(pick["_sm"], pick["softmax_cost"], pick["softmax_mean"]),
                **{k: pick[k] for k in ("diff", "ci_low", "ci_high", "p_holm", "pairing")},
            }
            la, sm = pick["_la"], pick["_sm"]
            pairing = (
                "paired by seed and image"
                if pick["pairing"] == "seed and image"
                else "paired by seed only (different evaluation images)"
            )
            res["text"] = (
                f"{dom}: {verdict}. {la[0]} {la[1]} @ {la[2]} px ({name} {pick['la_cost']:.3g}) − best {base} as cheap, "
                f"{sm[1]} @ {sm[2]} px ({pick['softmax_cost']:.3g}): "
                f"{seeded.cell_text(pick['diff'], pick['ci_low'], pick['ci_high'], pick['seeds'], True)}, "
                f"{pairing}, Holm p = {pick['p_holm']:.3g}; {why}. Basis: {BASIS}."
            )
        else:
            res["text"] = f"{dom}: {verdict}; {why}. Basis: {BASIS}."
        if skipped:
            res["text"] += (
                f" Not compared (no {base} condition as cheap): {[f'{a} {b} @ {c} px' for a, b, c in skipped]}."
            )
        out[dom] = res
        recs += comps
    table = pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in recs])
    return {
        "domains": out,
        "overall": _overall(out, name),
        "comparisons": table,
        "cost": name,
        "rule": DECISION_RULE,
    }


def _overall(out: dict[str, dict], cost_name: str) -> str:
    n = len(out)
    parts = []
    for v in VERDICTS:
        doms = [d for d, r in out.items() if r["verdict"] == v]
        if doms:
            parts.append(f"{v} in {len(doms)} of {n} domain(s) ({', '.join(doms)})")
    return f"At equal inference cost ({cost_name} of the image tower): " + "; ".join(parts) + f". Basis: {BASIS}."


# --------------------------------------------------------------------------- 7. contrasts, figures
def arm_contrasts(
    rows: Iterable[dict],
    *,
    by: Sequence[str] = ("arm", "resolution", "domain"),
    base: str = BASE,
    n_resamples: int = 2000,
    seed: int = 0,
):
    """LA − softmax per (arm, resolution, domain), paired by seed and image, Holm across the table:
    :func:`linrepro.study.seeded.paired_frame`."""
    return seeded.paired_frame(rows, by=by, base=base, n_resamples=n_resamples, seed=seed)


def fig_frontier(points, frontier=None, *, title: str | None = None):
    """Top-1 against inference cost (log x) with intervals: colour = attention, symbol = arm, one
    facet per domain, the Pareto frontier (:func:`pareto` of ``points`` unless given) as a line."""
    import plotly.express as px
    import plotly.graph_objects as go

    from linrepro.utils import plotting

    d = points.copy()
    d["acc_plus"], d["acc_minus"] = d.ci_high - d.acc, d.acc - d.ci_low
    front = pareto(points) if frontier is None else frontier
    name = str(d["cost_name"].iloc[0]) if "cost_name" in d and len(d) else "cost"
    domains = list(dict.fromkeys(d["domain"]))
    fig = px.scatter(
        d,
        x="cost",
        y="acc",
        color="attention",
        symbol="arm",
        facet_col="domain",
        log_x=True,
        error_y="acc_plus",
        error_y_minus="acc_minus",
        hover_data=[c for c in ("resolution", "seeds") if c in d],
        category_orders=plotting.category_orders(d, domains),
        color_discrete_map=plotting.colour_map(d["attention"]),
        labels={"cost": f"inference cost per image ({name})", "acc": "zero-shot top-1 accuracy"},
        title=title or "Accuracy against inference compute, with the Pareto frontier",
    )
    for j, dom in enumerate(domains, start=1):
        f = front[front["domain"] == dom].sort_values("cost")
        fig.add_trace(
            go.Scatter(
                x=f["cost"],
                y=f["acc"],
                mode="lines",
                line={"color": plotting.NEUTRAL, "dash": "dot"},
                name="Pareto frontier",
                legendgroup="Pareto frontier",
                showlegend=j == 1,
            ),
            row=1,
            col=j,
        )
    return plotting.style(fig, dash_by_size=False)


def fig_convergence(acc, conv=None, *, title: str | None = None):
    """Top-1 (mean over domains) against epochs (log x), one line per attention with its interval
    (:func:`epoch_accuracy`); with ``conv`` (:func:`convergence`), a dotted line at each method's
    epochs to converge."""
    import plotly.express as px

    from linrepro.utils import plotting

    d = acc.copy()
    d["mean_plus"], d["mean_minus"] = d.ci_high - d["mean"], d["mean"] - d.ci_low
    fig = px.line(
        d,
        x="epochs",
        y="mean",
        color="attention",
        markers=True,
        log_x=True,
        error_y="mean_plus",
        error_y_minus="mean_minus",
        category_orders=plotting.category_orders(d),
        color_discrete_map=plotting.colour_map(d["attention"]),
        labels={"epochs": "training epochs", "mean": "zero-shot top-1 (mean over domains)"},
        title=title or "Accuracy against training epochs",
    )
    if conv is not None:
        for r in conv[conv.kind == "method"].itertuples():
            if math.isfinite(r.mean):
                fig.add_vline(x=r.mean, line_dash="dot", line_color=plotting.attention_colour(r.attention))
    return plotting.style(fig, dash_by_size=False)
