"""Notebook 09's training: a fair race between softmax and linear attention on one model.

Four stages, each a set of open_clip_train runs (:func:`linrepro.study.experiments.run_jobs`:
finished runs are reused, unfinished ones continue when resuming, several train at once on CPU):

1. **learning-rate sweep** (:func:`lr_sweep`): every (attention, lr, seed), trained on the ``fit``
   part of the training split and scored on its ``tune`` part, never on ``val``;
2. **epoch sweep** (:func:`epoch_sweep`): every (attention, epochs, seed) at the learning rate
   chosen for that attention, on the whole training split, scored on ``val``; the longest runs
   are the *base* models of the resolution arms;
3. **mixed-resolution training** (trained with stage 2): each step at a side drawn from a set,
   the positional embedding resampled to the step's grid (:mod:`linrepro.clip.flexres`);
4. **fine-tuning** (:func:`finetune_arm`): each base model trained on at each evaluation side for a
   small fixed budget, the same for both attentions.

:func:`arm_rows` evaluates the three resolution arms (interpolation only, fine-tuned, mixed) on
``val`` at every side, as rows for :mod:`linrepro.study.seeded` and :mod:`linrepro.study.frontier`.
"""

from __future__ import annotations

from pathlib import Path

from linrepro.study import evaluation
from linrepro.study import experiments as ex
from linrepro.study.seeded import rows_from_summaries

#: what each summary contributes to its rows (the condition it was trained under)
_CONDITION = ("lr", "epochs", "train_s", "images_per_s", "mixed_resolutions")


def _tag(lr: float) -> str:
    return f"{float(lr):g}".replace(".", "p").replace("-", "m")


def training_seconds(summary: dict) -> float | None:
    """A run's training time: the sum of open_clip_train's per-step ``batch_time`` (each optimiser
    step, data loading included) from its step log, so that a run resumed after an interruption
    counts every step once (``summary["train_s"]`` times one execution only). Start-up,
    checkpointing and evaluation are left out, alike for every run. None without a step log."""
    from linrepro.clip.train import read_steps

    return ex.step_seconds(read_steps(summary["run_dir"]) if summary.get("run_dir") else [])


def rows(summaries: list[dict], **extra) -> list[dict]:
    """Each summary's own zero-shot evaluation as seeded rows, with its training condition;
    ``train_s`` is :func:`training_seconds` (the summary's own when there is no step log)."""
    out = []
    for s in summaries:
        cond = {k: s.get(k) for k in _CONDITION}
        measured = training_seconds(s)
        if measured is not None:
            cond["train_s"] = measured
        for r in rows_from_summaries([s]):
            out.append({**r, **cond, **extra})
    return out


def _job(model, attention, dataset, out_dir, name, *, seed, epochs, lr, **kw) -> dict:
    return {
        "model_name": model,
        "attention": attention,
        "dataset": dataset,
        "out_dir": str(out_dir),
        "name": name,
        "seed": seed,
        "epochs": epochs,
        "lr": float(lr),
        **kw,
    }


def _check_positive(name: str, values, kind=float) -> list:
    vals = list(values)
    if not vals:
        raise ValueError(f"{name} must not be empty")
    bad = [v for v in vals if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0]
    if bad or (kind is int and any(int(v) != v for v in vals)):
        raise ValueError(f"{name} must be positive {'integers' if kind is int else 'numbers'}, got {bad or vals}")
    if len(set(vals)) != len(vals):
        raise ValueError(f"{name} lists a value twice: {vals}")
    return [kind(v) for v in vals]


def lr_sweep(
    model: str,
    attentions,
    lrs,
    dataset: dict,
    out_dir,
    *,
    seeds,
    epochs: int,
    workers: int = 1,
    log=print,
    **kw,
) -> list[dict]:
    """Stage 1: every (attention, lr, seed) on ``dataset`` (exported with ``split="fit"``, so each
    run is scored on ``tune``). Run names ``lr<lr>-<model>-<attention>-seed<k>``."""
    lrs = _check_positive("lrs", lrs)
    if dataset.get("eval_split") != "tune":
        raise ValueError(
            "the learning-rate sweep is judged on the tune split: prepare its data with split='fit' "
            f"(this dataset is scored on {dataset.get('eval_split', 'val')!r})"
        )
    jobs = [
        _job(model, att, dataset, out_dir, f"lr{_tag(lr)}-{model}-{att}-seed{sd}", seed=sd, epochs=epochs, lr=lr, **kw)
        for att in attentions
        for lr in lrs
        for sd in seeds
    ]
    return ex.run_jobs(jobs, workers=workers, log=log)


def epoch_sweep(
    model: str,
    chosen_lr: dict,
    epochs_list,
    dataset: dict,
    out_dir,
    *,
    seeds,
    workers: int = 1,
    mixed_resolutions=(),
    mixed_dataset: dict | None = None,
    log=print,
    **kw,
) -> tuple[list[dict], list[dict]]:
    """Stages 2 and 3 in one pool: every (attention, epochs, seed) at ``chosen_lr[attention]``
    (names ``e<epochs>-<model>-<attention>-seed<k>``), and, with ``mixed_resolutions``, one
    mixed-resolution run per (attention, seed) for the longest budget on ``mixed_dataset``
    (rendered at the largest side; names ``mixed-<model>-<attention>-seed<k>``). Returns
    ``(epoch runs, mixed runs)``. The costliest runs start first."""
    epochs_list = sorted(_check_positive("epochs", epochs_list, int))
    longest = epochs_list[-1]
    mixed = []
    if mixed_resolutions:
        from linrepro.clip import flexres

        res = flexres.check_resolutions(mixed_resolutions)
        if mixed_dataset is None or int(mixed_dataset.get("resolution") or 0) != res[-1]:
            raise ValueError(f"mixed-resolution training needs its data rendered at the largest side {res[-1]}")
        mixed = [
            _job(
                model,
                att,
                mixed_dataset,
                out_dir,
                f"mixed-{model}-{att}-seed{sd}",
                seed=sd,
                epochs=longest,
                lr=lr,
                **{**kw, "image_size": res[-1]},
                mixed_resolutions=list(res),
            )
            for att, lr in chosen_lr.items()
            for sd in seeds
        ]
    sweep = [
        _job(model, att, dataset, out_dir, f"e{e}-{model}-{att}-seed{sd}", seed=sd, epochs=e, lr=lr, **kw)
        for e in reversed(epochs_list)
        for att, lr in chosen_lr.items()
        for sd in seeds
    ]
    done = ex.run_jobs(mixed + sweep, workers=workers, log=log)  # equal model cost: this order is kept
    return done[len(mixed) :], done[: len(mixed)]


def finetune_arm(
    bases: list[dict],
    dataset: dict,
    resolutions,
    out_dir,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    warmup: int,
    workers: int = 1,
    log=print,
) -> list[dict]:
    """Stage 4: each base model trained on at each side in ``resolutions`` (above its own) for
    ``epochs`` at ``lr``, the same for every attention, on the training data rendered at that
    side (open_clip's ``--pretrained`` interpolates the positional embedding once, on load).
    Names ``ft<side>-<base run name>``."""
    jobs = []
    for r in sorted({int(r) for r in resolutions}):
        for b in bases:
            job = evaluation.finetune_job(
                b,
                dataset,
                r,
                out_dir,
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                warmup=warmup,
                name=f"ft{r}-{Path(b['run_dir']).name}",
            )
            jobs.append(job)
    return ex.run_jobs(jobs, workers=workers, log=log)


def arm_rows(
    bases: list[dict],
    finetuned: list[dict],
    mixed: list[dict],
    sets,
    resolutions,
    trained_at: int,
    *,
    progress: bool = True,
) -> list[dict]:
    """Zero-shot rows of the three arms at every side of ``resolutions`` on ``sets`` (``val``):

    * ``interpolated``: the base models, positional embedding interpolated on load;
    * ``fine-tuned``: at ``trained_at`` the base models themselves, above it their fine-tuned runs;
    * ``mixed``: the mixed-resolution models, at every side.

    Each row carries ``arm``, ``resolution`` and the training condition of its run."""
    res = sorted({int(r) for r in resolutions})

    def tagged(summaries, got, arm):
        by_key = {(s["model"], s["attention"], int(s.get("seed", 0))): s for s in summaries}
        out = []
        for r in got:
            s = by_key[(r["model"], r["attention"], int(r.get("seed", 0)))]
            out.append({**r, **{k: s.get(k) for k in _CONDITION}, "arm": arm})
        return out

    out = tagged(bases, evaluation.resolution_sweep(bases, sets, res, progress=progress), "interpolated")
    out += [{**r, "arm": "fine-tuned"} for r in out if r["resolution"] == trained_at]
    tuned = [s for s in finetuned if int(s["data_resolution"]) in res]
    for r in sorted({int(s["data_resolution"]) for s in tuned}):
        here = [s for s in tuned if int(s["data_resolution"]) == r]
        out += tagged(here, evaluation.evaluate_runs(here, sets, r, progress=progress), "fine-tuned")
    if mixed:
        out += tagged(mixed, evaluation.resolution_sweep(mixed, sets, res, progress=progress), "mixed")
    return out


# --------------------------------------------------------------------------- presentation
def jsonable(x):
    """A frame (records), or a dict/list holding frames, as plain JSON values (NaN → None)."""
    import math

    import numpy as np
    import pandas as pd

    if isinstance(x, pd.DataFrame):
        return [jsonable(r) for r in x.to_dict("records")]
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def brief(summaries: list[dict]) -> list[dict]:
    """Run summaries for results.json without their per-image outcomes (each run's own
    ``summary.json`` keeps them): every other field, and top-1 per domain."""
    return [
        {k: v for k, v in s.items() if k != "zero_shot"}
        | {"top1": {z["domain"]: z["top1"] for z in s.get("zero_shot") or []}}
        for s in summaries
    ]


def grid_learning_rates(profile: str | None = None) -> dict | None:
    """The peak learning rate per attention of notebook 03's grid in this profile: its latest
    finished run's parameters (``lr``, overridden per attention by ``lrs``), else the profile's
    parameter file; None when neither exists."""
    import yaml

    from linrepro.study.runs import current_profile, find_run
    from linrepro.utils import project

    profile = profile or current_profile()
    params, source = None, None
    try:
        run = find_run("03_clip_training", profile=profile)
        if (run / "params.yaml").is_file():
            params, source = yaml.safe_load((run / "params.yaml").read_text()) or {}, f"run {run.name}"
    except FileNotFoundError:
        pass
    if params is None:
        f = project.params_dir() / profile / "03_clip_training.yaml"
        if not f.is_file():
            return None
        params, source = yaml.safe_load(f.read_text()) or {}, f"params/{profile}/03_clip_training.yaml"
    lr, per = params.get("lr", 0.001), params.get("lrs") or {}
    return {
        "lrs": {a: float(per.get(a, lr)) for a in params.get("attentions") or ["softmax", "eq7"]},
        "source": source,
    }


def grid_lr_note(grid: dict | None, chosen: dict) -> str:
    """Whether 03's grid trains each attention at the rate chosen here (computed, not assumed)."""
    if not grid:
        return "No 03_clip_training run or parameter file in this profile: nothing to compare the choice with."
    parts, same = [], True
    for att, lr in chosen.items():
        g = grid["lrs"].get(att)
        ok = g is not None and abs(g - lr) <= 1e-12 * max(1.0, lr)
        same &= ok
        parts.append(
            f"{att}: grid {g:g}, chosen {lr:g}" + ("" if ok else " (differs)")
            if g is not None
            else f"{att}: not in the grid"
        )
    head = (
        "03's grid trains every method at the rate chosen here"
        if same
        else "**03's grid does not train every method at the rate chosen here**: its accuracies compare methods at "
        "rates this sweep did not pick (set `lrs` in 03's parameters to the chosen values and retrain)"
    )
    return f"{head} ({grid['source']}): " + "; ".join(parts) + "."


def fig_lr(table, chosen: dict):
    """Tune-split top-1 (mean over domains) against the learning rate, per attention, with
    intervals; the chosen rate of each marked."""
    import plotly.express as px

    from linrepro.study.frontier import MEAN_OVER_DOMAINS
    from linrepro.utils import plotting

    d = table[table.domain == MEAN_OVER_DOMAINS].sort_values("lr").copy()
    d["plus"], d["minus"] = d.ci_high - d["mean"], d["mean"] - d.ci_low
    fig = px.line(
        d,
        x="lr",
        y="mean",
        color="attention",
        error_y="plus",
        error_y_minus="minus",
        markers=True,
        log_x=True,
        color_discrete_map=plotting.colour_map(d.attention),
        labels={"lr": "peak learning rate", "mean": "tune top-1, mean over domains"},
        title="Learning-rate sweep: tune-split top-1 (mean over seeds, 95% interval); the chosen rate is circled",
    )
    for att, lr in chosen.items():
        row = d[(d.attention == att) & (d.lr == lr)]
        if len(row):
            fig.add_scatter(
                x=[lr],
                y=[float(row["mean"].iloc[0])],
                mode="markers",
                marker={"size": 16, "symbol": "circle-open", "color": plotting.colour_map([att])[att]},
                name=f"{att}: chosen {lr:g}",
            )
    return fig


def fig_arms(acc, domains):
    """Val top-1 against the evaluation side, per arm (columns) and domain (rows), softmax and LA
    with intervals."""
    import plotly.express as px

    from linrepro.utils import plotting

    d = acc.copy()
    d["plus"], d["minus"] = d.ci_high - d["mean"], d["mean"] - d.ci_low
    return px.line(
        d,
        x="resolution",
        y="mean",
        color="attention",
        facet_col="arm",
        facet_row="domain",
        error_y="plus",
        error_y_minus="minus",
        markers=True,
        category_orders={
            "arm": [a for a in ("interpolated", "fine-tuned", "mixed") if a in set(d.arm)],
            "domain": list(domains),
        },
        color_discrete_map=plotting.colour_map(d.attention),
        labels={"resolution": "evaluation side (px)", "mean": "val top-1"},
        title="Three resolution arms: val top-1 against the side (mean over seeds, 95% interval)",
        height=260 * len(domains) + 120,
    )


def highest_resolution_contrasts(contrast):
    """Each arm's LA − softmax rows at the highest side it was evaluated at."""
    if not len(contrast):
        return contrast
    top = contrast.groupby("arm").resolution.transform("max")
    return contrast[contrast.resolution == top].reset_index(drop=True)


def arms_text(top) -> str:
    """One line per arm: LA − softmax per domain at its highest side, with interval and Holm p."""
    if not len(top):
        return "No arm has both methods evaluated."
    from linrepro.study.seeded import cell_text

    lines = []
    for arm, g in top.groupby("arm", sort=False):
        cells = [
            f"{r.domain} {cell_text(r['diff'], r.ci_low, r.ci_high, r.seeds, True)} (Holm p = {r.p_holm:.2g})"
            for _, r in g.iterrows()
        ]
        lines.append(f"- **{arm}** at {int(g.resolution.iloc[0])} px, LA − softmax: " + "; ".join(cells))
    return "\n".join(lines)


def choice_text(choice: dict) -> str:
    """:func:`linrepro.study.frontier.choose_lr`'s text (one per attention) as one line."""
    t = choice.get("text", "")
    return "; ".join(str(v) for v in t.values()) if isinstance(t, dict) else str(t)


def takeaway(choice: dict, conv, budget, top, decision: dict, n_seeds: int | None = None) -> str:
    """The notebook's conclusions, each computed from the numbers above it; with fewer than 3
    training seeds they open by saying they are exploratory."""
    lines = []
    if n_seeds is not None and n_seeds < 3:
        lines.append(
            f"**Exploratory: {n_seeds} training seed{'s' if n_seeds != 1 else ''}.** Intervals cover the images "
            "only (or are missing), so nothing below is a finding; the study profile runs 3 seeds."
        )
    lines.append(f"**Learning rate.** {choice_text(choice)}")
    lines += [f"**Convergence.** {t}" for t in conv.text]
    if len(budget):
        last = budget[budget.comparison == "equal steps"].sort_values("epochs").tail(1)
        for _, r in last.iterrows():
            lines.append(
                f"**Equal steps ({int(r.epochs)} epochs).** LA − softmax {r['diff']:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] "
                "(mean over domains of val top-1)."
            )
    lines.append("**Resolution arms, at the highest side.**\n" + arms_text(top))
    lines.append(f"**Accuracy against compute.** {decision['overall']}")
    return "\n\n".join(lines)
