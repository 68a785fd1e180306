"""Training grids for notebook 03: data export, one open_clip_train run per (model, attention),
zero-shot evaluation per domain. Each run's folder keeps open_clip_train's ``out.log``, one
checkpoint (the newest epoch: with optimizer state while the run can still be resumed, weights
only once it has finished) and linrepro's ``steps.csv``; ``summary.json`` is written last, so a
folder without it is a run that did not finish. Such a run is continued from its checkpoint only
when resuming is asked for (``resume=True``: ``linrepro run 03_clip_training --resume RUN_DIR``).

Paths in what a run folder stores (``summary.json``, the data ``manifest.json``, notebook 03's
``results.json``) are relative to the folder of that file (:func:`relative_paths`), so a moved
or copied run folder still works; readers resolve them (:func:`resolve_paths`,
:func:`load_training`), and absolute paths of older runs are used as they are.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from linrepro import clip, data
from linrepro.utils.io import write_json

PATH_KEYS = ("checkpoint", "run_dir", "dir", "train_csv", "classnames")  # the keys that hold paths


def _map_paths(obj, fn):
    if isinstance(obj, dict):
        return {k: fn(v) if k in PATH_KEYS and isinstance(v, str) and v else _map_paths(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_map_paths(v, fn) for v in obj]
    return obj


def relative_paths(obj, base):
    """A copy of ``obj`` (dicts and lists, any depth) whose paths (:data:`PATH_KEYS`, absolute or
    relative to the cwd) inside ``base`` are relative to it (POSIX, ``.`` for ``base`` itself);
    paths outside ``base`` are stored absolute."""
    import os

    base = Path(base).resolve()

    def rel(v: str) -> str:
        p = Path(os.path.normpath(Path(v).absolute()))  # a relative path here is relative to the cwd
        try:
            return p.relative_to(base).as_posix() or "."
        except ValueError:
            try:  # base may be reached through a symlink
                return p.resolve().relative_to(base).as_posix() or "."
            except ValueError:
                return str(p)

    return _map_paths(obj, rel)


def resolve_paths(obj, base):
    """The inverse of :func:`relative_paths`: relative paths are taken from ``base``; absolute
    ones (runs recorded before paths were stored relative) stay as they are."""
    import os

    base = Path(base).absolute()
    return _map_paths(obj, lambda v: v if Path(v).is_absolute() else os.path.normpath(base / v))


def load_training(run) -> dict:
    """The results.json of a ``03_clip_training`` run with every stored path resolved against the
    run folder (so a moved or copied run, or a published reference run, still finds its files)."""
    from linrepro.study.runs import load_results

    run = Path(run)
    return resolve_paths(load_results(run), run)


def _read_record(path: Path, what: str) -> dict:
    """A JSON record of a run folder, resolved against its folder; an unreadable one names the file."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{what} {path} cannot be read ({type(e).__name__}: {e}); delete it to redo that step") from e
    return resolve_paths(obj, path.parent)


def prepare_data(
    out_dir,
    domains,
    resolution: int,
    seed: int,
    val_fraction: float,
    n_per_domain: int | None,
    progress: bool = False,
    split: str = "train",
) -> dict:
    """Export the training split as an open_clip CSV (reused when the same settings exist).

    ``split="fit"``: train on the ``fit`` part of the training split only; the models are then
    evaluated on its ``tune`` part (``eval_split``), never on ``val`` (for choosing a setting
    such as the learning rate, see :mod:`linrepro.data`)."""
    if split not in ("train", "fit"):
        raise ValueError(f"split must be 'train' or 'fit' (the part of the training split to train on), got {split!r}")
    domains = list(domains)
    if isinstance(n_per_domain, dict):
        n_per_domain = {d: n for d, n in n_per_domain.items() if n} or None  # 0: that domain's default
        sizes = "-".join(f"{d}{n_per_domain[d]}" for d in sorted(n_per_domain)) if n_per_domain else "all"
    else:
        sizes = n_per_domain or "all"
    key = f"{'-'.join(domains)}_r{resolution}_s{seed}_v{val_fraction}_n{sizes}" + (
        "" if split == "train" else f"_{split}"
    )
    d = Path(out_dir) / key
    manifest = d / "manifest.json"
    if manifest.exists():
        return _read_record(manifest, "data manifest")
    t = time.perf_counter()
    csv_path, n = data.write_csv(
        d,
        domains=domains,
        split=split,
        resolution=resolution,
        seed=seed,
        val_fraction=val_fraction,
        n_per_domain=n_per_domain,
        progress=progress,
    )
    names = data.write_classnames(d, domains)
    info = {
        "dir": str(d),
        "train_csv": str(csv_path),
        "n_train": n,
        "classnames": str(names),
        "domains": domains,
        "resolution": resolution,
        "seed": seed,
        "val_fraction": val_fraction,
        "n_per_domain": n_per_domain,
        "split": split,
        "eval_split": "tune" if split == "fit" else "val",
        "export_s": time.perf_counter() - t,
    }
    write_json(manifest, relative_paths(info, d))
    return info


def zero_shot_domains(
    model,
    tokenizer,
    preprocess,
    domains,
    resolution: int,
    seed: int,
    val_fraction: float,
    n_per_domain,
    classnames_path: str | None = None,
    limit: int | None = None,
    split: str = "val",
) -> list[dict]:
    """Zero-shot top-1/top-5 on each bundled domain's held-out split (``split``: ``val``, or
    ``tune`` for a run trained on ``fit``), rendered at ``resolution``."""
    from linrepro.clip import zeroshot

    return [
        zeroshot.evaluate_set(
            model,
            tokenizer,
            preprocess,
            zeroshot.bundled(
                dom,
                seed=seed,
                val_fraction=val_fraction,
                n_per_domain=n_per_domain,
                classnames_path=classnames_path,
                limit=limit,
                split=split,
            ),
            resolution,
        )
        for dom in domains
    ]


def external_dataset(train_data: str, train_num_samples: int, eval_domains=(), resolution: int | None = None) -> dict:
    """A dataset record for data linrepro did not export (LAION-400M webdataset shards, a CSV);
    ``resolution``: the image side the models are trained at (None: each model's own)."""
    if not train_data:
        raise ValueError("train_data is empty")
    kind = "csv" if str(train_data).endswith(".csv") else "webdataset"
    if kind == "webdataset" and train_num_samples <= 0:
        raise ValueError(
            f"webdataset training needs train_num_samples > 0 (samples per epoch), got {train_num_samples}"
        )
    return {
        "train_csv": None,
        "train_data": str(train_data),
        "dataset_type": kind,
        "train_num_samples": train_num_samples or None,
        "domains": list(eval_domains),
        "resolution": int(resolution) if resolution else None,
        "seed": 0,
        "val_fraction": 0.2,
        "n_per_domain": None,
        "classnames": None,
    }


def _launch_torchrun(
    nproc: int, attention: str, score_scale: float, args: list[str], log_path: Path, mixed_resolutions=None
) -> None:
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "linrepro.clip.train",
        "--attention",
        attention,
        "--score-scale",
        str(score_scale),
        *(["--mixed-resolutions", ",".join(str(r) for r in mixed_resolutions)] if mixed_resolutions else []),
        "--",
        *args,
    ]
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("OMP_NUM_THREADS", "1")  # nproc processes share the CPU cores
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"torchrun exited with {r.returncode}; see {log_path}")


def train_and_evaluate(
    model_name: str,
    attention: str,
    dataset: dict,
    out_dir,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    warmup: int,
    precision: str = "fp32",
    seed: int = 0,
    score_scale: float | str = 0.5,
    eval_domains=None,
    quiet: bool = True,
    nproc: int = 1,
    name: str | None = None,
    extra_args: list[str] | None = None,
    image_size: int | None = None,
    resume: bool = False,
    mixed_resolutions=None,
) -> dict:
    """One open_clip_train run with ``attention`` (``batch_size`` is global: each of ``nproc``
    torchrun processes takes ``batch_size // nproc``), then zero-shot on each domain's val split.

    A finished run (``summary.json``) is reused. An unfinished one (a folder without it) is an
    error unless ``resume``: then it continues from its latest checkpoint with open_clip_train's
    ``--resume latest`` (the step log drops the steps it redoes), or starts again when it was
    stopped before its first checkpoint. Only the newest checkpoint is kept, and once
    ``summary.json`` is written it is made weights only (:func:`linrepro.clip.train.finalize_checkpoints`).
    ``image_size``: the side the model takes (``--force-image-size`` when it is not the model's own).
    ``mixed_resolutions``: train each step at a side drawn from this set (:mod:`linrepro.clip.flexres`);
    the model is built at the largest, which should be ``image_size`` and the data's resolution.
    """
    import shutil

    from linrepro.clip.train import (
        epoch_checkpoints,
        finalize_checkpoints,
        is_weights_only,
        open_clip_args,
        read_steps,
        run_open_clip_train,
    )

    if nproc < 1 or batch_size % nproc:
        raise ValueError(f"batch_size {batch_size} must be a multiple of nproc {nproc}")
    logs = Path(out_dir)
    name = name or f"{model_name}-{attention}"
    run = logs / name
    from linrepro.utils.provenance import TRAINING_CODE, code_digest

    if mixed_resolutions:
        from linrepro.clip import flexres

        mixed_resolutions = list(flexres.check_resolutions(mixed_resolutions))
        image_size = image_size or mixed_resolutions[-1]
        if int(image_size) != mixed_resolutions[-1]:
            raise ValueError(
                f"a mixed-resolution run is built at its largest side {mixed_resolutions[-1]}, not {image_size}"
            )
    code = code_digest(TRAINING_CODE + (("linrepro/clip/flexres.py",) if mixed_resolutions else ()))
    if (run / "summary.json").exists():
        done = _read_record(run / "summary.json", "summary")
        if done.get("training_code", code) != code:  # runs from before the digest was kept are taken as they are
            raise RuntimeError(
                f"{run} was trained with other training code (digest {done['training_code']}, now {code}: "
                f"{', '.join(TRAINING_CODE)} changed since); delete the folder to train it again with this code"
            )
        asked = {
            "model": model_name,
            "attention": attention,
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "mixed_resolutions": mixed_resolutions,
        }
        other = {k: (done.get(k), v) for k, v in asked.items() if k in done or v is not None if done.get(k) != v}
        if other:
            raise RuntimeError(
                f"{run} is a finished run with other settings than asked ("
                + ", ".join(f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in other.items())
                + "); use another name or out_dir, or delete the folder to train it again"
            )
        ckpt = done.get("checkpoint")
        if ckpt and Path(ckpt).is_file() and not is_weights_only(ckpt):  # killed before it was finalized
            finalize_checkpoints(Path(ckpt).parent)
        return done
    extra_args = list(extra_args or []) + _force_size_args(model_name, image_size, extra_args)
    ckpts = epoch_checkpoints(run / "checkpoints")
    if ckpts and is_weights_only(ckpts[-1]):
        raise RuntimeError(
            f"{run} finished (its checkpoint {ckpts[-1].name} holds weights only, nothing to "
            f"resume from) but has no summary.json; delete the folder to train it again"
        )
    if run.exists() and not resume:
        raise RuntimeError(
            f"{run} is an unfinished run (no summary.json; "
            + (f"its latest checkpoint is {ckpts[-1].name}" if ckpts else "no checkpoint yet")
            + "). Continue it with resume=True (`linrepro run 03_clip_training --resume <run folder>`; "
            "LINREPRO_RESUME=1 in JupyterLab), or delete the folder to train it again"
        )
    if run.exists() and not ckpts:  # stopped before its first checkpoint: nothing to continue from
        shutil.rmtree(run)
    resume_from = "latest" if ckpts else None
    resumed_from = ckpts[-1].name if ckpts else None
    args = open_clip_args(
        model=model_name,
        train_data=dataset.get("train_data") or dataset["train_csv"],
        logs=logs,
        name=name,
        epochs=epochs,
        batch_size=batch_size // nproc,
        lr=lr,
        warmup=warmup,
        precision=precision,
        seed=seed,
        resume=resume_from,
        dataset_type=dataset.get("dataset_type", "csv"),
        train_num_samples=dataset.get("train_num_samples"),
        extra=extra_args,
    )
    t = time.perf_counter()
    if nproc == 1:
        model = run_open_clip_train(
            args, attention=attention, score_scale=score_scale, quiet=quiet, mixed_resolutions=mixed_resolutions
        )
    else:
        _launch_torchrun(nproc, attention, score_scale, args, run / "torchrun.log", mixed_resolutions)
        model = None
    train_s = time.perf_counter() - t
    steps = read_steps(run)
    this_execution = train_s
    if resume_from and step_seconds(steps) is not None:  # this execution trained only the steps left
        train_s = step_seconds(steps)
    ckpts = epoch_checkpoints(run / "checkpoints")
    summary = {
        "model": model_name,
        "attention": attention,
        "score_scale": score_scale,
        "seed": seed,
        "training_code": code,
        "epochs": epochs,
        "batch_size": batch_size,
        "nproc": nproc,
        "lr": lr,
        "train_s": train_s,
        "steps": len(steps),
        "extra_args": list(extra_args),
        "data_resolution": dataset.get("resolution"),
        "data_split": dataset.get("split", "train"),
        "eval_split": dataset.get("eval_split", "val"),
        **({"mixed_resolutions": mixed_resolutions} if mixed_resolutions else {}),
        "checkpoint": str(ckpts[-1]) if ckpts else None,
        "run_dir": str(run),
    }
    if resume_from:  # train_s: every logged step's time; this execution's own time kept beside it
        summary["resumed_from"] = resumed_from
        summary["train_s_this_execution"] = this_execution
    if model is None:
        model, _, _ = load_model(summary)
    import open_clip

    _, _, preprocess = open_clip.create_model_and_transforms(model_name, **_image_size_kw(extra_args))
    tokenizer = open_clip.get_tokenizer(model_name)
    domains = dataset["domains"] if eval_domains is None else eval_domains
    zs = (
        zero_shot_domains(
            model,
            tokenizer,
            preprocess,
            domains,
            dataset["resolution"] or 224,
            dataset["seed"],
            dataset["val_fraction"],
            dataset["n_per_domain"],
            dataset["classnames"],
            split=dataset.get("eval_split", "val"),
        )
        if domains
        else []
    )
    tail = [s["loss"] for s in steps[-max(1, len(steps) // 10) :]]
    summary.update(
        {
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_params_nonembed": sum(p.numel() for n, p in model.named_parameters() if "token_embedding" not in n),
            "final_loss": statistics.fmean(tail) if tail else None,
            "images_per_s": statistics.median(s["samples_per_second"] for s in steps[1:]) if len(steps) > 1 else None,
            "zero_shot": zs,
        }
    )
    write_json(run / "summary.json", relative_paths(summary, run))
    finalize_checkpoints(run / "checkpoints")  # the run is done: the newest checkpoint, weights only
    return summary


def step_seconds(steps: list[dict]) -> float | None:
    """A run's training time from its step log: the sum of open_clip_train's per-step
    ``batch_time`` (data loading included). A resumed run's log holds every step once, so this
    counts the whole training, not one execution. None when a step has no time (or no steps)."""
    times = [float(r["batch_time"]) for r in steps if r.get("batch_time") is not None]
    return float(sum(times)) if steps and len(times) == len(steps) else None


def training_seeds(seeds, seed: int) -> list[int]:
    """The training seeds of a grid: ``seeds`` (each changes the initialisation and the data
    order), or ``[seed]`` when it is empty. Duplicates and negative or non-integer seeds raise."""
    out = list(seeds or []) or [seed]
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ValueError(f"seeds must be non-negative integers, got {bad}")
    dup = sorted({s for s in out if out.count(s) > 1})
    if dup:
        raise ValueError(f"seeds must be distinct, got {dup} more than once in {out}")
    return out


def run_name(model: str, attention: str, seed: int, n_seeds: int, suffix: str = "") -> str:
    """A run's folder name: ``<model>-<attention>[<suffix>]``, with ``-seed<k>`` when a grid has
    several training seeds (one seed keeps the old names, so older runs still resume)."""
    return f"{model}-{attention}{suffix}" + (f"-seed{seed}" if n_seeds > 1 else "")


def _die_with_parent() -> None:
    """A pool worker ends when the process that started it does (Linux ``PR_SET_PDEATHSIG``), so
    that a stopped or killed notebook never leaves a training running."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _job(kw: dict, threads: int) -> dict:
    """One :func:`train_and_evaluate` in a worker process, on ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    return train_and_evaluate(**kw)


def _cost(job: dict) -> float:
    """Relative cost of a job, to start the largest first when runs go in parallel."""
    import open_clip

    clip.register_models()
    cfg = open_clip.get_model_config(job["model_name"]) or {}
    v = cfg.get("vision_cfg", {})
    return float(v.get("layers", 1)) * float(v.get("width", 1)) ** 2


def run_jobs(jobs: list[dict], *, workers: int = 1, log=print) -> list[dict]:
    """Run :func:`train_and_evaluate` for each job (its keyword arguments); the summaries come
    back in the jobs' order. ``workers`` > 1 trains that many runs at once, each in its own
    process on one CPU thread (tiny models use a core badly: two single-threaded runs train
    about 1.4× as many images per second as one run on two threads, measured on this 2-core
    machine), largest models first. A finished run is reused as always; a failed one raises
    after the others have finished, so that no finished work is lost."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    todo = [i for i, j in enumerate(jobs) if not (Path(j["out_dir"]) / j["name"] / "summary.json").exists()]
    out: list[dict | None] = [None] * len(jobs)
    if workers == 1 or len(todo) <= 1 or torch.cuda.is_available():
        for i, j in enumerate(jobs):
            out[i] = train_and_evaluate(**j)
            log(describe(out[i]))
        return out  # type: ignore[return-value]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    for i, j in enumerate(jobs):  # finished runs first: reused, no process needed
        if i not in todo:
            out[i] = train_and_evaluate(**j)
            log(describe(out[i]))
    order = sorted(todo, key=lambda i: -_cost(jobs[i]))
    errors = []
    log(f"training {len(order)} run(s), {workers} at a time, one CPU thread each")
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent) as pool:
        futures = {pool.submit(_job, jobs[i], 1): i for i in order}
        for k, f in enumerate(as_completed(futures), 1):
            i = futures[f]
            try:
                out[i] = f.result()
                log(f"[{k}/{len(order)}] " + describe(out[i]))
            except Exception as e:  # the others go on; their runs are kept
                errors.append(f"{jobs[i]['name']}: {type(e).__name__}: {e}")
                log(f"[{k}/{len(order)}] {jobs[i]['name']} FAILED: {type(e).__name__}: {e}")
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(order)} run(s) failed: " + "; ".join(errors))
    return out  # type: ignore[return-value]


def train_grid(
    models,
    attentions,
    dataset: dict,
    out_dir,
    *,
    batch_sizes: dict | None = None,
    batch_size: int = 64,
    seeds=(),
    seed: int = 0,
    workers: int = 1,
    lrs: dict | None = None,
    log=print,
    **kw,
) -> list[dict]:
    """Every (model, attention, training seed), in that order; each run's one-line result is
    logged as it finishes. ``seeds``: the training seeds (empty: ``[seed]``); each summary
    records its ``seed``. ``workers``: runs trained at once (:func:`run_jobs`). ``lrs``: a peak
    learning rate per attention (e.g. chosen by notebook 09's sweep), overriding ``lr``."""
    seeds = training_seeds(seeds, seed)
    lrs = dict(lrs or {})
    unknown = sorted(set(lrs) - set(attentions))
    if unknown:
        raise ValueError(f"lrs names attention(s) {unknown} that are not in the grid's {list(attentions)}")
    bad = {a: v for a, v in lrs.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
    if bad:
        raise ValueError(f"lrs must be positive numbers, got {bad}")
    jobs = [
        {
            "model_name": m,
            "attention": att,
            "dataset": dataset,
            "out_dir": str(out_dir),
            "batch_size": (batch_sizes or {}).get(m, batch_size),
            "seed": sd,
            "name": run_name(m, att, sd, len(seeds)),
            **kw,
            **({"lr": float(lrs[att])} if att in lrs else {}),
        }
        for m in models
        for att in attentions
        for sd in seeds
    ]
    summaries = run_jobs(jobs, workers=workers, log=log)
    for s, j in zip(summaries, jobs, strict=True):
        s.setdefault("seed", j["seed"])
    return summaries


def native_image_size(model_name: str) -> int:
    """The image side an open_clip model config takes (224 for ViT-S/B/L-16, 32 for the tiny ones)."""
    import open_clip

    clip.register_models()
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ValueError(f"unknown model {model_name!r}; linrepro's: {clip.model_names()}")
    size = cfg["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _force_size_args(model_name: str, image_size: int | None, extra_args) -> list[str]:
    if not image_size or "--force-image-size" in list(extra_args or []):
        return []
    return [] if int(image_size) == native_image_size(model_name) else ["--force-image-size", str(int(image_size))]


def _image_size_kw(extra_args) -> dict:
    extra = list(extra_args or [])
    return (
        {"force_image_size": int(extra[extra.index("--force-image-size") + 1])} if "--force-image-size" in extra else {}
    )


def train_variants(
    variants: list[dict],
    dataset: dict,
    out_dir,
    *,
    batch_size: int = 64,
    seeds=(),
    seed: int = 0,
    workers: int = 1,
    log=print,
    **kw,
) -> list[dict]:
    """Extra runs under the same budget, each a dict with ``model``, ``attention`` and optionally
    ``score_scale`` (an ablation next to the main grid, e.g. Eq. 7 with s = ½ against s = 1/N, or
    the authors' released code), once per training seed as the grid."""
    from linrepro.attention import check_score_scale

    seeds = training_seeds(seeds, seed)
    jobs = []
    for v in variants:
        unknown = set(v) - {"model", "attention", "score_scale"}
        if unknown or "model" not in v or "attention" not in v:
            raise ValueError(f"an extra run needs 'model' and 'attention' (and may set 'score_scale'); got {v!r}")
        scale = check_score_scale(v.get("score_scale", kw.get("score_scale", 0.5)))
        tag = str(scale).replace("/", "over")
        for sd in seeds:
            jobs.append(
                {
                    "model_name": v["model"],
                    "attention": v["attention"],
                    "dataset": dataset,
                    "out_dir": str(out_dir),
                    "batch_size": batch_size,
                    **{**kw, "score_scale": scale},
                    "seed": sd,
                    # the score scale names an Eq. 4/7 ablation; the released code has its own (s = 1)
                    "name": run_name(
                        v["model"],
                        v["attention"],
                        sd,
                        len(seeds),
                        f"-s{tag}" if v["attention"] in ("eq4", "eq7") else "",
                    ),
                }
            )
    out = run_jobs(jobs, workers=workers, log=lambda line: log(line))
    for s, j in zip(out, jobs, strict=True):
        s.setdefault("seed", j["seed"])
    return out


def load_model(summary: dict, device="cpu", resolution: int | None = None):
    """Rebuild a trained model from its summary (checkpoint, attention, score scale).

    With ``resolution``, the model takes images of that side: the vision tower's positional
    embedding is interpolated with open_clip's ``resize_pos_embed`` (bicubic), as open_clip does
    when it loads a checkpoint at another image size.
    """
    from open_clip.model import resize_pos_embed

    kw = {"force_image_size": int(resolution)} if resolution else _image_size_kw(summary.get("extra_args"))
    model, preprocess, tokenizer = clip.create_model(
        summary["model"], summary["attention"], score_scale=summary.get("score_scale", 0.5), **kw
    )
    from linrepro.clip.train import CheckpointError, load_checkpoint

    if not summary.get("checkpoint"):
        raise CheckpointError(
            f"run {summary.get('run_dir')} ({summary['model']}/{summary['attention']}) has no checkpoint"
        )
    ck = load_checkpoint(summary["checkpoint"], summary.get("run_dir"), map_location=device)
    sd = {k.removeprefix("module."): v for k, v in ck["state_dict"].items()}
    resize_pos_embed(sd, model)
    model.load_state_dict(sd)
    return model.to(device).eval(), preprocess, tokenizer


# --------------------------------------------------------------------------- tables and figures
def steps_frame(summaries: list[dict]):
    """All logged steps of all runs, with model, attention and epoch-free step index."""
    import pandas as pd

    from linrepro.clip.train import read_steps

    frames = []
    for s in summaries:
        df = pd.DataFrame(read_steps(s["run_dir"]))
        if len(df):
            df["model"], df["attention"], df["seed"] = s["model"], s["attention"], s.get("seed", 0)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def results_frame(summaries: list[dict]):
    """One row per (model, attention, domain): zero-shot top-1/top-5, with training facts."""
    import pandas as pd

    rows = []
    for s in summaries:
        for z in s["zero_shot"]:
            rows.append(
                {
                    "model": s["model"],
                    "attention": s["attention"],
                    "seed": s.get("seed", 0),
                    "domain": z["domain"],
                    "resolution": z["resolution"],
                    "top1": z["top1"],
                    "top5": z["top5"],
                    "chance": z["chance"],
                    "n_val": z["n"],
                    "final_loss": s["final_loss"],
                    "train_s": s["train_s"],
                    "train_images_per_s": s["images_per_s"],
                    "n_params": s["n_params"],
                }
            )
    return pd.DataFrame(rows)


def fig_curves(steps, y: str = "loss", smooth: int = 10):
    import plotly.express as px

    df = steps.copy()
    keys = [k for k in ("model", "attention", "seed") if k in df.columns]
    df[y] = df.groupby(keys)[y].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    return px.line(
        df,
        x="step",
        y=y,
        color="model",
        line_dash="attention",
        title=f"Training {y} (rolling mean over {smooth} steps): softmax solid, LA dashed",
    )


def sample_grid(domains, resolution: int, seed: int = 0) -> dict:
    """One rendered image per class of each domain: an (n, H, W, 3) array and the captions."""
    import numpy as np

    images, captions, names = [], [], []
    for dom in domains:
        spec = data.domain_spec(dom)
        ds = data.MixedDomainDataset(domains=(dom,), split="train", resolution=resolution, seed=seed)
        seen = {}
        for i in range(len(ds)):
            _, _, label = ds.entry(i)
            if label not in seen:
                seen[label] = i
            if len(seen) == len(spec.classnames):
                break
        for label in sorted(seen):
            s = ds[seen[label]]
            images.append(np.asarray(s.image))
            captions.append(s.caption)
            names.append(f"{dom}: {spec.classnames[label]}")
    return {"image": np.stack(images), "captions": captions, "names": names}


def describe(s: dict) -> str:
    """One line per finished run for the notebook's log."""
    top1 = ", ".join(f"{z['domain']} {z['top1']:.3f}" for z in s.get("zero_shot", [])) or "no zero-shot domains"
    ips = f"{s['images_per_s']:6.0f}" if s.get("images_per_s") else "     ?"
    loss = f"{s['final_loss']:.3f}" if s.get("final_loss") is not None else "?"
    cond = f", lr {s['lr']:g}" if s.get("lr") is not None else ""
    cond += f", {s['epochs']} ep" if s.get("epochs") is not None else ""
    cond += f", mixed {'/'.join(map(str, s['mixed_resolutions']))} px" if s.get("mixed_resolutions") else ""
    return (
        f"{s['model']:>8} {s['attention']:>8} seed {s.get('seed', 0)}{cond}: {s['train_s']:6.0f} s, {ips} img/s, final loss {loss}; "
        f"zero-shot top-1 {top1}"
    )
