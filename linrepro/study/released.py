"""Notebook 08: the paper's equations against the first author's released code, measured.

Every variant is built from one ``nn.MultiheadAttention`` (the same initial weights) and called as
an open_clip block calls its ``attn``: on the layer-normed input, with the text tower's additive
causal mask when ``causal``. The properties below are measured on those modules, never asserted:

* :func:`uses_projections`: does the output change when the projection weights change?
* :func:`jacobian_support` → :func:`locality`: which input tokens an output token depends on
  (head locality: share of the N tokens; causality: share of the later tokens j > i);
* :func:`score_stats`: the range of the weights each variant puts on v_j, and of q·k;
* :func:`norm_growth`: the log-log slope of the mean output norm against N;
* :func:`speed`: forward (and backward) time of eq4, eq7 and released side by side, interleaved;
* :func:`training_rows` / :func:`compare`: zero-shot top-1 of 03's runs with intervals over seeds
  and images, released − eq7 and released − softmax per (model, domain), paired by seed and image,
  Holm-corrected across the table, judged by :data:`linrepro.study.rules.SAME_ACCURACY`.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

from linrepro.attention import affine_scores, check_score_scale
from linrepro.clip import LinearMultiheadAttention, ReleasedMultiheadAttention, parameter_counts
from linrepro.clip.released import released_scores, scale_by_max_norm, split_heads
from linrepro.study.derivation import loglog_slope

F64 = torch.float64
FORMULAS = {
    "softmax": "W_o · softmax(q·kᵀ/√d) v, with q, k, v = W_in x; heads are feature slices",
    "eq4": "W_o · Σ_j (1 + q̂_i·k̂_j) v_j / Σ_j (1 + q̂_i·k̂_j), unit q̂, k̂ (paper Eq. 4); causal in the text tower",
    "eq7": "W_o · s Σ_j (1 + q̂_i·k̂_j) v_j, unit q̂, k̂ (paper Eq. 7); causal in the text tower",
    "released": "Σ_j (1 + q_i·k_j) v_j with q = k = v = x, heads by plain reshape, q, k divided by the "
    "largest row norm; no W_in, W_o, s or mask",
}
MIN_SEEDS = 3  # paired intervals and tests need at least this many seeds


def label(variant: str, score_scale=None) -> str:
    """A variant's row label: eq7 carries its score scale (``eq7 s=0.5``, ``eq7 s=1/N``)."""
    if variant != "eq7":
        return variant
    s = check_score_scale(score_scale)
    return f"eq7 s={s}" if isinstance(s, str) else f"eq7 s={s:g}"


def build_modules(
    width: int, heads: int, *, seed: int = 0, eq7_scales=(0.5,), dtype=F64, device="cpu", backend: str = "auto"
) -> dict[str, nn.Module]:
    """{label: attention module}: softmax (open_clip's own ``nn.MultiheadAttention``), eq4, eq7 at
    each score scale and released, all from one ``nn.MultiheadAttention(width, heads)`` init."""
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of heads {heads}")
    if not eq7_scales:
        raise ValueError("eq7_scales must name at least one score scale")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mha = nn.MultiheadAttention(width, heads, batch_first=True).to(device=device, dtype=dtype)
    mods: dict[str, nn.Module] = {"softmax": mha}
    mods["eq4"] = LinearMultiheadAttention.from_mha(mha, variant="eq4", backend=backend)
    for s in eq7_scales:
        mods[label("eq7", s)] = LinearMultiheadAttention.from_mha(
            mha, variant="eq7", score_scale=check_score_scale(s), backend=backend
        )
    mods["released"] = ReleasedMultiheadAttention.from_mha(mha)
    return mods


def variant_of(mod: nn.Module) -> str:
    return getattr(mod, "variant", "softmax")


def causal_mask(n: int, dtype=F64, device="cpu") -> torch.Tensor:
    """open_clip's text-tower mask: additive, −inf above the diagonal."""
    return torch.full((n, n), float("-inf"), dtype=dtype, device=device).triu(1)


def call(mod: nn.Module, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """``mod`` called as an open_clip block calls its ``attn`` (on ln_1(x), which x stands for)."""
    mask = causal_mask(x.shape[1], x.dtype, x.device) if causal else None
    return mod(x, x, x, need_weights=False, attn_mask=mask)[0]


def tokens(batch: int, n: int, width: int, *, seed: int = 0, shared: float = 0.0, dtype=F64, device="cpu"):
    """Layer-normed tokens (what a block's attention sees): LN(shared·c + z), c one fixed random
    direction, z standard normal per token. ``shared`` > 0 makes the values share a direction."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(width, generator=g, dtype=F64)
    z = torch.randn(batch, n, width, generator=g, dtype=F64)
    x = nn.functional.layer_norm(shared * c + z, (width,))
    return x.to(device=device, dtype=dtype)


def uses_projections(mod: nn.Module, x: torch.Tensor, causal: bool = False) -> bool:
    """True when perturbing the in- and out-projection weights changes the output (measured)."""
    other = copy.deepcopy(mod)
    with torch.no_grad():
        for name in ("in_proj_weight", "out_proj.weight"):
            p = other.get_parameter(name)
            p.add_(torch.randn_like(p))
        return not torch.equal(call(mod, x, causal), call(other, x, causal))


def jacobian_support(mod: nn.Module, x: torch.Tensor, causal: bool = False, rel_tol: float = 1e-12) -> torch.Tensor:
    """(N, E, N, E) bool: output (i, f) depends on input (j, g), from the Jacobian of one sample
    (entries below ``rel_tol`` × the largest are read as 0). x: (1, N, E)."""
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must be one sample (1, N, E), got shape {tuple(x.shape)}")
    n, e = x.shape[1:]
    jac = torch.autograd.functional.jacobian(lambda t: call(mod, t, causal), x, vectorize=True)
    a = jac.detach().abs().reshape(n, e, n, e)
    return a > rel_tol * a.max()


def locality(support: torch.Tensor) -> dict:
    """From :func:`jacobian_support`: the mean share of the N input tokens an output token depends
    on (``token_share``), and of the later tokens j > i (``future_share``; 0 for a causal form)."""
    tok = support.any(dim=3).any(dim=1)  # (i, j): output token i depends on input token j
    n = tok.shape[0]
    later = torch.ones(n, n, dtype=torch.bool).triu(1)
    return {
        "token_share": tok.double().mean().item(),
        "future_share": (tok & later).sum().item() / max(int(later.sum()), 1),
        "tokens_per_row_min": int(tok.sum(1).min()),
        "tokens_per_row_max": int(tok.sum(1).max()),
    }


def _paper_qk(mod: nn.Module, x: torch.Tensor):
    """q, k (B, H, N, d) of a paper-form module: its in-projection, heads as feature slices."""
    b, n, e = x.shape
    h = mod.num_heads
    q, k, _ = nn.functional.linear(x, mod.in_proj_weight, mod.in_proj_bias).chunk(3, -1)
    return (t.reshape(b, n, h, e // h).transpose(1, 2) for t in (q, k))


def score_stats(mod: nn.Module, x: torch.Tensor, causal: bool = False) -> dict:
    """Range of the weights each variant puts on v_j (softmax probabilities; eq4's normalised and
    eq7's s(1 + q̂·k̂); released's 1 + q·k), of the dot products q·k inside them, and the smallest
    query-row norm (1 where queries are unit vectors). Masked (causal) entries are left out."""
    with torch.no_grad():
        v = variant_of(mod)
        n = x.shape[1]
        keep = ~torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1) if causal else None
        if v == "released":
            w = released_scores(x, mod.num_heads, eps=mod.eps)
            qn = scale_by_max_norm(split_heads(x, mod.num_heads), mod.eps)
            dots, keep = w - 1.0, None  # the released code applies no mask
        else:
            q, k = _paper_qk(mod, x)
            if v == "softmax":
                dots = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
                w = torch.softmax(dots.masked_fill(~keep, -math.inf) if causal else dots, dim=-1)
                qn = q
            else:
                s = mod.score_scale if v == "eq7" else 0.5
                w = affine_scores(q, k, variant=v, causal=causal, score_scale=s, eps=mod.eps)
                qn = nn.functional.normalize(q, dim=-1)
                dots = qn @ nn.functional.normalize(k, dim=-1).transpose(-1, -2)
        sel = (lambda t: t[..., keep]) if keep is not None else (lambda t: t.flatten())
        ws, ds = sel(w), sel(dots)
        return {
            "score_min": ws.min().item(),
            "score_max": ws.max().item(),
            "dot_min": ds.min().item(),
            "dot_max": ds.max().item(),
            "min_query_norm": torch.linalg.vector_norm(qn, dim=-1).min().item(),
        }


def norm_growth(mod: nn.Module, ns, width: int, *, seed: int = 0, shared: float = 1.0, causal: bool = False) -> dict:
    """Mean ‖o_i‖ at each N (tokens sharing a direction, ``shared``), and its log-log slope in N."""
    ns = [int(n) for n in ns]
    if len(ns) < 2:
        raise ValueError(f"norm growth needs at least two sequence lengths, got {ns}")
    p = next(mod.parameters())
    norms = []
    with torch.no_grad():
        for n in ns:
            x = tokens(1, n, width, seed=seed, shared=shared, dtype=p.dtype, device=p.device)
            norms.append(torch.linalg.vector_norm(call(mod, x, causal), dim=-1).mean().item())
    return {"ns": ns, "mean_norm": norms, "slope": loglog_slope(ns, norms)}


def property_table(
    width: int, heads: int, n_tokens: int, norm_ns, *, seed: int = 0, eq7_scales=(0.5, "1/N")
) -> list[dict]:
    """One row per variant, every entry measured on the modules of :func:`build_modules` (float64,
    the paper forms through ``linrepro.attention``'s reference backend)."""
    mods = build_modules(width, heads, seed=seed, eq7_scales=eq7_scales, backend="reference")
    x = tokens(1, n_tokens, width, seed=seed + 1)
    rows = []
    for name, mod in mods.items():
        text = locality(jacobian_support(mod, x, causal=True))
        vision = locality(jacobian_support(mod, x, causal=False))
        growth = norm_growth(mod, norm_ns, width, seed=seed + 2)
        rows.append(
            {
                "variant": name,
                "computes": FORMULAS[variant_of(mod)],
                "uses_projections": uses_projections(mod, x),
                "trainable_params": parameter_counts(mod)["trainable"],
                "text_future_share": text["future_share"],
                "vision_token_share": vision["token_share"],
                "vision_tokens_per_row": f"{vision['tokens_per_row_min']}–{vision['tokens_per_row_max']} of {n_tokens}",
                **{f"vision_{k}": v for k, v in score_stats(mod, x).items()},
                "text_score_max": score_stats(mod, x, causal=True)["score_max"],
                "norm_slope": growth["slope"],
                "norm_ns": growth["ns"],
                "mean_norms": growth["mean_norm"],
            }
        )
    return rows


# --------------------------------------------------------------------------- speed
def speed(
    ns,
    *,
    batch: int = 8,
    width: int = 256,
    heads: int = 4,
    modes=("fwd",),
    runs: int = 10,
    budget_s: float = 5.0,
    device: str = "cpu",
    eq7_scale=0.5,
    seed: int = 0,
) -> list[dict]:
    """Median time per call of the eq4, eq7 and released modules (fp32; the backend ``auto`` picks
    as in training: Triton on CUDA, a torch path on CPU), interleaved: each round times every variant
    once, so load on a shared machine hits all alike. One row per (variant, N, mode), with the ratio
    to eq7. (Softmax is notebook 02's subject; it is left out to keep this short.)"""
    from linrepro.utils.measure import time_fn

    dev = torch.device(device)
    bad = sorted(set(modes) - {"fwd", "fwd+bwd"})
    if bad or not modes:
        raise ValueError(f"modes must be a non-empty subset of ['fwd', 'fwd+bwd'], got {list(modes)}")
    mods = build_modules(width, heads, seed=seed, eq7_scales=(eq7_scale,), dtype=torch.float32, device=device)
    mods.pop("softmax")
    rows = []
    for n in ns:
        x = tokens(batch, int(n), width, seed=seed, dtype=torch.float32, device=device)
        for mode in modes:
            fns = {}
            for name, mod in mods.items():
                if mode == "fwd":
                    fns[name] = lambda mod=mod, x=x: _no_grad_call(mod, x)
                else:
                    xg = x.clone().requires_grad_(True)
                    fns[name] = lambda mod=mod, xg=xg: call(mod, xg).sum().backward()
            for fn in fns.values():  # warm-up (and a first failure surfaces here)
                fn()
            samples: dict[str, list[float]] = {k: [] for k in fns}
            t0 = time.perf_counter()
            for _ in range(runs):
                for k, fn in fns.items():
                    samples[k] += time_fn(fn, dev, warmup=0, runs=1, budget_s=budget_s)[0]
                if time.perf_counter() - t0 > budget_s:
                    break
            med = {k: statistics.median(v) for k, v in samples.items()}
            ref = med[label("eq7", eq7_scale)]
            for k, t in med.items():
                rows.append(
                    {
                        "variant": k,
                        "N": int(n),
                        "mode": mode,
                        "ms": t * 1e3,
                        "calls": len(samples[k]),
                        "vs_eq7": t / ref,
                        "batch": batch,
                        "width": width,
                        "heads": heads,
                        "device": str(dev),
                    }
                )
    return rows


def _no_grad_call(mod, x):
    with torch.no_grad():
        return call(mod, x)


# --------------------------------------------------------------------------- accuracy from 03's runs
def training_rows(trained: list[dict]) -> list[dict]:
    """Per-image zero-shot outcomes of 03_clip_training results (``load_training``), one row per
    (model, attention, training seed, domain) (:func:`linrepro.study.seeded.rows_from_summaries`).

    A run trains every seed itself (each summary has its ``seed``); its ``extra_summaries`` add the
    attentions that are not in its grid (``released``), while score-scale ablations of a grid
    attention are left out (they would clash with the grid's cells). Older input, one run per seed
    whose summaries carry no ``seed``, takes the seed of the run's dataset."""
    from linrepro.study.evaluation import eval_summaries
    from linrepro.study.seeded import rows_from_summaries

    rows = []
    for t in trained:
        data_seed = (t.get("dataset") or {}).get("seed", 0)
        rows += rows_from_summaries({**s, "seed": s.get("seed", data_seed)} for s in eval_summaries(t))
    return rows


def _rule(diff: dict, seeds: int) -> dict:
    from linrepro.study import rules

    return rules.decide(
        diff["diff"], diff["ci_low"], diff["ci_high"], rules.SAME_ACCURACY, seeds=seeds, between_models=True
    )


def compare(
    rows: list[dict], target: str = "released", baselines=("eq7", "softmax"), *, n_resamples: int = 2000
) -> dict:
    """target − baseline zero-shot top-1 per (model, domain), for the models that trained ``target``.

    ``cells``: each (model, attention, domain)'s mean over seeds with its 95% interval (bootstrap
    over seeds, then images: :func:`linrepro.study.seeded.interval_frame`). ``rows``: each contrast
    ``target − baseline`` paired by seed and image (:func:`linrepro.study.seeded.paired_frame`),
    with Holm's correction across every row of the table (both baselines together), and a verdict
    of the declared rule :data:`linrepro.study.rules.SAME_ACCURACY` (``rules.decide``: fewer than
    :data:`MIN_SEEDS` seeds is exploratory and at most inconclusive).
    Returns ``{"status": "measured" | "not run", "reason", "rows", "cells", "seeds"}``."""
    from linrepro.study import seeded
    from linrepro.study.evaluation import paired_contrasts

    present = sorted({r["attention"] for r in rows})
    if target not in present:
        return {
            "status": "not run",
            "reason": f"the 03_clip_training runs trained {present or 'nothing with zero-shot results'}, not "
            f"{target!r}: add {target!r} to 03's `attentions` or `extra_runs` to compare",
            "rows": [],
            "cells": [],
            "seeds": 0,
        }
    missing = [r for r in rows if r.get("correct") is None]
    if missing:
        m = missing[0]
        return {
            "status": "not run",
            "reason": f"the 03_clip_training run recorded no per-image outcomes ('correct') for {m['model']}/"
            f"{m['attention']} seed {m.get('seed')} on {m.get('domain')}: re-run 03 to compare with intervals",
            "rows": [],
            "cells": [],
            "seeds": 0,
        }
    models = [
        m
        for m in dict.fromkeys(r["model"] for r in rows)
        if any(r["model"] == m and r["attention"] == target for r in rows)
    ]
    keep = [r for r in rows if r["model"] in models and r["attention"] in (target, *baselines)]
    cells = seeded.interval_frame(keep, ("model", "attention", "domain"), n_resamples=n_resamples)
    pairs = [(target, base) for base in baselines if base in present]
    table = paired_contrasts(keep, ("model", "domain"), pairs=pairs, n_resamples=n_resamples)
    out = []
    if len(table):
        mean = {(c.model, c.attention, c.domain): c["mean"] for _, c in cells.iterrows()}
        for _, r in table.iterrows():
            n = int(r.seeds)
            rule = _rule(r, n)
            out.append(
                {
                    "model": r.model,
                    "domain": r.domain,
                    "baseline": r.baseline,
                    "contrast": f"{target} − {r.baseline}",
                    "seeds": n,
                    "n_images": int(r.n_images),
                    target: float(mean[(r.model, target, r.domain)]),
                    r.baseline: float(mean[(r.model, r.baseline, r.domain)]),
                    "diff": float(r["diff"]),
                    "ci_low": float(r.ci_low),
                    "ci_high": float(r.ci_high),
                    "p_value": float(r.p_value),
                    "t_test_p": None if r.t_test_p is None or r.t_test_p != r.t_test_p else float(r.t_test_p),
                    "p_holm": float(r.p_holm),
                    "verdict": rule["verdict"],
                    "rule": rule,
                    "basis": f"paired over {n} seeds and the images"
                    if n >= MIN_SEEDS
                    else f"{'one seed' if n == 1 else f'{n} seeds'}: exploratory (the interval is mostly over images)",
                }
            )
    seeds = max((int(c) for c in cells.seeds), default=0) if len(cells) else 0
    return {
        "status": "measured",
        "reason": None,
        "rows": out,
        "cells": cells.drop(columns=["per_seed"]).to_dict("records") if len(cells) else [],
        "seeds": seeds,
    }


def load_accuracy(train_runs=(), *, n_resamples: int = 2000) -> dict:
    """:func:`compare` over 03_clip_training results: the run folders in ``train_runs`` (one run
    that trained every seed, or older runs of one seed each), or the latest finished run of this
    profile. Named folders must exist; with none named and no finished run, the comparison is
    ``not run`` with the reason."""
    from linrepro.study.experiments import load_training
    from linrepro.study.runs import find_run

    if train_runs:
        sources = [find_run("03_clip_training", str(r)) for r in train_runs]
    else:
        try:
            sources = [find_run("03_clip_training")]
        except FileNotFoundError as e:
            return {"status": "not run", "reason": str(e), "rows": [], "cells": [], "seeds": 0, "sources": []}
    result = compare(training_rows([load_training(s) for s in sources]), n_resamples=n_resamples)
    return {**result, "sources": [str(s) for s in sources]}


def dependence_map(mod: nn.Module, x: torch.Tensor, causal: bool = False) -> np.ndarray:
    """(N, N) 0/1: output token i depends on input token j (from :func:`jacobian_support`)."""
    return jacobian_support(mod, x, causal).any(dim=3).any(dim=1).to(torch.int64).numpy()


def model_parameter_counts(models, attentions=("eq7", "released")) -> list[dict]:
    """Total, trainable and frozen parameters of each (model, attention) as linrepro.clip builds it."""
    from linrepro import clip

    rows = []
    for m in models:
        for a in attentions:
            model, _, _ = clip.create_model(m, a)
            rows.append({"model": m, "attention": a, **parameter_counts(model)})
    return rows


def headline(props: list[dict]) -> dict:
    """The measured facts the claims ledger cites, keyed by variant label."""
    by = {r["variant"]: r for r in props}
    keys = (
        "uses_projections",
        "trainable_params",
        "text_future_share",
        "vision_token_share",
        "vision_score_min",
        "vision_score_max",
        "vision_dot_min",
        "vision_dot_max",
        "vision_min_query_norm",
        "norm_slope",
    )
    return {k: {v: by[v][k] for v in by} for k in keys}


def takeaway(results: dict) -> str:
    """Markdown: what notebook 08 found, from its own results (property headline, accuracy, speed)."""
    h = results.get("headline") or {}
    try:
        rel = {k: v["released"] for k, v in h.items()}
    except (KeyError, TypeError, AttributeError):
        return "The property table could not be summarised."
    text = (
        f"The authors' released operator is not the paper's Eq. 7: it uses no projections, its text tower sees "
        f"**{rel['text_future_share']:.0%}** of later tokens (the paper's causal forms: 0), a vision token sees "
        f"only **{rel['vision_token_share']:.0%}** of the others (its 'heads' are runs of tokens), its weights reach "
        f"**{rel['vision_score_max']:.2f}** (Eq. 7 with s = ½: at most 1) and its output norm grows as "
        f"N^{rel['norm_slope']:.2f}."
    )
    acc = results.get("accuracy") or {}
    rows = [r for r in acc.get("rows") or [] if r.get("diff") is not None]
    if acc.get("status") == "measured" and rows:
        worst = min(rows, key=lambda r: r["diff"])
        seeds = acc.get("seeds") or worst.get("seeds") or 0
        text += (
            f" Trained side by side ({seeds} training seed{'s' if seeds != 1 else ''}"
            + ("; one seed: exploratory" if seeds == 1 else "; exploratory" if seeds < MIN_SEEDS else "")
            + f"), the largest gap is {worst.get('model', '')} {worst.get('domain', '')} released − "
            f"{worst.get('baseline', '?')} {worst['diff']:+.3f}"
            + (f" [{worst['ci_low']:+.3f}, {worst['ci_high']:+.3f}]" if worst.get("ci_low") is not None else "")
            + (f", Holm-adjusted p = {worst['p_holm']:.2g}" if worst.get("p_holm") is not None else "")
            + (f": {worst['verdict']} for 'the same accuracy' (±0.05)" if worst.get("verdict") else "")
            + "."
        )
    else:
        text += f" Accuracy: not run ({acc.get('reason', 'no 03 run trained it')})."
    speed = [r for r in results.get("speed") or [] if r.get("variant") == "released" and r.get("mode") == "fwd"]
    if speed:
        last = max(speed, key=lambda r: r["N"])
        text += f" Its forward took {last['vs_eq7']:.2f}× eq7's time at N = {last['N']:,} on {results.get('speed_device', 'this machine')}."
    return text + " Basis: proxy (float64 modules and tiny shapes on this machine)."
