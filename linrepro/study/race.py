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


def rows(summaries: list[dict], **extra) -> list[dict]:
    """Each summary's own zero-shot evaluation as seeded rows, with its training condition."""
    out = []
    for s in summaries:
        cond = {k: s.get(k) for k in _CONDITION}
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
