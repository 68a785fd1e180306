"""Train CLIP with softmax or linear attention through ``open_clip_train`` (not a new trainer).

linrepro only adds what open_clip_train lacks, as patches applied in this process:

* the attention swap: ``open_clip_train.main.create_model_and_transforms`` builds the model,
  then :func:`linrepro.clip.swap_attention` replaces its attention (parameter names unchanged,
  so checkpoints and ``--resume`` work as usual);
* linrepro's tiny model configs are registered (a config registered in another process is
  not seen by ``torchrun -m open_clip_train.main``, hence this launcher module);
* DDP on CPU: open_clip_train passes ``device_ids=[device]``, which DDP rejects for CPU
  modules; the launcher constructs DDP with ``device_ids=None`` there (gloo backend);
* checkpoints are written to a temp file and renamed, so a run killed while saving never
  leaves a corrupt ``epoch_N.pt`` for ``--resume latest`` to pick;
* one checkpoint per run, not one per epoch: :func:`open_clip_args` passes open_clip_train's
  ``--delete-previous-checkpoint`` (``epoch_N.pt`` is removed once ``epoch_N+1.pt`` is saved,
  so ``--resume latest`` always finds the newest one), and :func:`finalize_checkpoints` turns a
  finished run's last checkpoint into weights only (no optimizer state: a third of the size).
  Nothing reads an earlier epoch, and with no validation there is no "best" one to keep;
* per-step logging: open_clip_train's TensorBoard writer is replaced by :class:`StepLog`,
  which writes every scalar per step to ``steps.csv``/``steps.jsonl`` in the run folder, and
  stops the run with an error naming the step when the loss is not finite. On resume, logged
  steps from the resumed step on are dropped first, so the log has no gap and no repeat;
* ``--resume latest`` with no checkpoint to resume is an error (open_clip_train trains from
  scratch and exits 0); ``resume_missing_ok`` (``--resume-missing-ok``) opts in to a fresh start;
* a start that fails before the first step (a missing train CSV) removes what it created, so
  the same command works once the cause is fixed (open_clip_train refuses a second start with
  "Experiment already exists");
* every read of a checkpoint goes through :func:`load_checkpoint`, whose error names the file
  and the run (a truncated file gave a bare ``EOFError: Ran out of input``).

Use it in-process (:func:`run_open_clip_train`) or from the shell, one process or many::

    python -m linrepro.clip.train --attention eq7 -- --train-data data/train.csv ...
    torchrun --nproc_per_node 2 -m linrepro.clip.train --attention eq7 -- --train-data ...

(The ``--`` keeps torchrun from reading open_clip_train's ``--logs`` as its own ``--logs-specs``.)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from linrepro.attention import check_score_scale


class NonFiniteLossError(FloatingPointError):
    pass


class CheckpointError(RuntimeError):
    """A run's checkpoint is missing, truncated, corrupt or cannot be resumed; the message names
    the file and the run."""


class NothingToResumeError(FileNotFoundError):
    """``--resume latest`` found no checkpoint to resume."""


def _run_of(checkpoint: Path) -> Path:
    """The run folder of a checkpoint (``<run>/checkpoints/epoch_N.pt``)."""
    parent = Path(checkpoint).parent
    return parent.parent if parent.name == "checkpoints" else parent


def load_checkpoint(path: str | Path, run: str | Path | None = None, **kwargs) -> dict:
    """``torch.load`` a run's checkpoint on the CPU; a missing, truncated or corrupt file raises
    :class:`CheckpointError` naming the file and the run (default: the folder above ``checkpoints/``)."""
    p = Path(path)
    where = f"checkpoint {p} of run {Path(run) if run else _run_of(p)}"
    if not p.is_file():
        raise CheckpointError(f"{where} does not exist (was the run folder moved, or the file deleted?)")
    kwargs.setdefault("map_location", "cpu")
    kwargs.setdefault("weights_only", False)
    try:
        ck = torch.load(p, **kwargs)
    except Exception as e:
        raise CheckpointError(
            f"{where} cannot be read: it is truncated or corrupt ({type(e).__name__}: {e}). "
            f"Delete it and train that model again (or resume from an earlier checkpoint)"
        ) from e
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise CheckpointError(f"{where} is not an open_clip_train checkpoint (no state_dict)")
    return ck


class StepLog:
    """A ``SummaryWriter`` stand-in: one row per step with every scalar logged at that step.

    open_clip_train logs a step's scalars together, ending with the total ``train/loss``; the
    row is appended to ``steps.jsonl`` and ``steps.csv`` as soon as that arrives, so a run
    killed at any moment keeps every step it finished.
    """

    def __init__(self, log_dir: str, *args, **kwargs):
        self.dir = Path(log_dir).parent  # <logs>/<name>/ (open_clip_train passes .../tensorboard)
        self.jsonl = self.dir / "steps.jsonl"
        self.csv = self.dir / "steps.csv"
        self.rows: list[dict] = _read_jsonl(self.jsonl) if self.jsonl.exists() else []
        self._cur: dict | None = None
        self._truncated = False
        self._keys: list[str] | None = None
        self._last_report = float("-inf")

    def add_scalar(self, name: str, value, step: int | None = None, *args, **kwargs):
        value = float(value)
        if not name.startswith("train/") or step is None:
            return
        _started[0] = True
        if not self._truncated:  # first step of this process: forget steps a resumed run will redo
            self.rows = [r for r in self.rows if r["step"] < step]
            self._rewrite()
            self._truncated = True
        if self._cur is not None and self._cur["step"] != step:
            self._commit()
        if self._cur is None:
            self._cur = {"step": int(step)}
        self._cur[name.removeprefix("train/")] = value
        if name.endswith("loss") and not math.isfinite(value):
            self._commit()
            raise NonFiniteLossError(
                f"{name} is {value} at step {step}: training stopped (lower the learning rate, "
                f"or use fp32; checkpoints up to the last completed epoch are kept)"
            )
        if name == "train/loss":  # the total loss is the last scalar of a step
            self._commit()

    def _commit(self):
        if self._cur is None:
            return
        row, self._cur = self._cur, None
        if _mixed[0]:  # the side this step trained at (mixed-resolution runs)
            from linrepro.clip import flexres

            row["resolution"] = flexres.current()
        self.rows.append(row)
        self._report(row["step"])
        if self._keys is None or any(k not in self._keys for k in row):
            self._rewrite()
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._keys).writerow(row)

    def _report(self, step: int) -> None:
        """The model, step k/total and the time left, to the run's progress line (the terminal of
        ``linrepro run``/``reproduce``, never the report), at most every 2 s."""
        import time

        from linrepro.utils import progress

        now = time.monotonic()
        total = _total_steps[0]
        if now - self._last_report < 2.0 and (total is None or step + 1 < total):
            return
        self._last_report = now
        progress.status(f"training {self.dir.name}", step + 1, total, unit="step", key=str(self.dir))

    def _rewrite(self):
        from linrepro.utils.io import atomic_write_text

        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        self._keys = sorted({k for r in self.rows for k in r}, key=lambda k: (k != "step", k)) or None
        import io

        buf = io.StringIO()
        if self._keys:
            w = csv.DictWriter(buf, fieldnames=self._keys)
            w.writeheader()
            w.writerows(self.rows)
        atomic_write_text(self.csv, buf.getvalue())

    def flush(self):
        self._commit()

    def close(self):
        self._commit()

    def add_histogram(self, *a, **k):
        pass


def _ddp_class():
    base = torch.nn.parallel.DistributedDataParallel

    class CPUFriendlyDDP(base):
        """DDP that drops ``device_ids`` for CPU modules (open_clip_train always passes them)."""

        def __init__(self, module, device_ids=None, *args, **kwargs):
            if device_ids is not None and next(module.parameters()).device.type == "cpu":
                device_ids = None
            super().__init__(module, device_ids, *args, **kwargs)

    return base, CPUFriendlyDDP


@contextlib.contextmanager
def patched(
    attention: str,
    score_scale: float | str = 0.5,
    backend: str = "auto",
    quiet: bool = False,
    mixed_resolutions: tuple[int, ...] | None = None,
    seed: int = 0,
):
    """Apply linrepro's patches to open_clip_train for the duration of one training.

    ``mixed_resolutions``: each step trains at a side drawn from this set with ``seed``
    (:mod:`linrepro.clip.flexres`); the model must be built at the largest (``--force-image-size``).

    ``quiet``: open_clip_train's log goes to its ``out.log`` only, not to the console (a notebook
    stays readable). Either way its handlers are removed afterwards, so a second run in the same
    process does not write into the first run's log, and torch's own loggers stay at WARNING.
    """
    import logging

    import open_clip_train.main as ocm

    from linrepro import clip

    clip.register_models()
    if attention not in clip.ATTENTIONS:
        raise ValueError(f"attention must be one of {clip.ATTENTIONS}, got {attention!r}")
    orig_create = ocm.create_model_and_transforms
    orig_tb = ocm.tensorboard
    base, ddp = _ddp_class()

    def create(name, *args, **kwargs):
        model, pre_train, pre_val = orig_create(name, *args, **kwargs)
        clip.swap_attention(model, attention, score_scale=score_scale, backend=backend)
        if mixed_resolutions:
            from linrepro.clip import flexres

            flexres.install(model, mixed_resolutions, seed)
        _created.append(model)
        return model, pre_train, pre_val

    orig_setup = ocm.setup_logging
    handlers_before = list(logging.root.handlers)
    level_before = logging.root.level

    def setup_logging(log_file, level, include_host=False):
        orig_setup(log_file, level, include_host)
        for name in list(logging.root.manager.loggerDict):  # open_clip_train raised every logger to INFO
            if not name.startswith("open_clip"):
                logging.getLogger(name).setLevel(logging.WARNING)
        if quiet:  # console handlers go (open_clip_train's and any basicConfig one); out.log stays
            for h in list(logging.root.handlers):
                if type(h) is logging.StreamHandler:
                    logging.root.removeHandler(h)

    schedulers = {n: getattr(ocm, n) for n in ("cosine_lr", "const_lr", "const_lr_cooldown") if hasattr(ocm, n)}

    def counting(make):
        def wrapped(optimizer, base_lr, warmup_length, steps, *args, **kwargs):
            _total_steps[0] = int(steps)  # the run's total optimiser steps, for the progress line
            adjust = make(optimizer, base_lr, warmup_length, steps, *args, **kwargs)

            def stepped(step):  # called once per optimiser step: the step mixed resolutions draw on
                from linrepro.clip import flexres

                flexres.on_step(step)
                return adjust(step)

            return stepped

        return wrapped

    for n, make in schedulers.items():
        setattr(ocm, n, counting(make))
    ocm.create_model_and_transforms = create
    ocm.tensorboard = SimpleNamespace(SummaryWriter=StepLog)
    ocm.setup_logging = setup_logging
    torch.nn.parallel.DistributedDataParallel = ddp
    import warnings

    orig_save = torch.save

    def atomic_save(obj, f, *args, **kwargs):
        """open_clip_train writes epoch_N.pt in place: a kill mid-write left a corrupt checkpoint
        that ``--resume latest`` then picked. Write to a temp file and rename instead."""
        if isinstance(f, (str, os.PathLike)):
            tmp = f"{os.fspath(f)}.partial"
            orig_save(obj, tmp, *args, **kwargs)
            os.replace(tmp, f)
        else:
            orig_save(obj, f, *args, **kwargs)

    torch.save = atomic_save
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pin_memory.*")
            yield
    finally:
        torch.save = orig_save
        for n, make in schedulers.items():
            setattr(ocm, n, make)
        _total_steps[0] = None
        ocm.create_model_and_transforms = orig_create
        ocm.tensorboard = orig_tb
        ocm.setup_logging = orig_setup
        torch.nn.parallel.DistributedDataParallel = base
        for h in list(logging.root.handlers):
            if h not in handlers_before:
                logging.root.removeHandler(h)
                h.close()
        for h in handlers_before:
            if h not in logging.root.handlers:
                logging.root.addHandler(h)
        logging.root.setLevel(level_before)


def open_clip_args(
    *,
    model: str,
    train_data: str,
    logs: str,
    name: str,
    epochs: int,
    batch_size: int,
    lr: float,
    warmup: int = 10,
    wd: float = 0.1,
    workers: int = 0,
    precision: str = "fp32",
    seed: int = 0,
    dataset_type: str = "csv",
    train_num_samples: int | None = None,
    save_frequency: int = 1,
    resume: str | None = None,
    keep_all_checkpoints: bool = False,
    extra: list[str] | None = None,
) -> list[str]:
    """The open_clip_train command line for one run: every step logged, a checkpoint each epoch of
    which only the newest is kept (``keep_all_checkpoints``: every ``epoch_N.pt`` stays)."""
    args = [
        "--model",
        model,
        "--train-data",
        str(train_data),
        "--dataset-type",
        dataset_type,
        "--logs",
        str(logs),
        "--name",
        name,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--lr",
        str(lr),
        "--warmup",
        str(warmup),
        "--wd",
        str(wd),
        "--workers",
        str(workers),
        "--precision",
        precision,
        "--seed",
        str(seed),
        "--save-frequency",
        str(save_frequency),
        "--report-to",
        "tensorboard",
        "--log-every-n-steps",
        "1",
        "--zeroshot-frequency",
        "0",
        "--val-frequency",
        "0",
        "--device",
        "cuda" if torch.cuda.is_available() else "cpu",
    ]
    if not torch.cuda.is_available():  # DDP on CPU: gloo (named, so params.txt records it)
        args += ["--dist-backend", "gloo"]
    if dataset_type == "csv":
        args += ["--csv-img-key", "filepath", "--csv-caption-key", "title", "--csv-separator", "\t"]
    if train_num_samples:
        args += ["--train-num-samples", str(train_num_samples)]
    if not keep_all_checkpoints:
        if save_frequency != 1:  # open_clip_train deletes epoch_{N-1}.pt, which exists only at frequency 1
            raise ValueError("only the latest checkpoint can be kept with save_frequency 1")
        args += ["--delete-previous-checkpoint"]
    if resume:
        args += ["--resume", resume]
    return args + list(extra or [])


def _epoch_of(path: Path) -> int:
    return int(path.stem.split("_")[1])


def epoch_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """``epoch_N.pt`` files of a run's ``checkpoints/`` folder, oldest first."""
    d = Path(checkpoint_dir)
    found = [p for p in d.glob("epoch_*.pt") if p.stem.split("_")[1].isdigit()] if d.is_dir() else []
    return sorted(found, key=_epoch_of)


def is_weights_only(checkpoint: str | Path) -> bool:
    """True for a checkpoint :func:`finalize_checkpoints` wrote (no optimizer state to resume from)."""
    return "optimizer" not in load_checkpoint(checkpoint, mmap=True)


def finalize_checkpoints(checkpoint_dir: str | Path) -> Path | None:
    """After a run has finished: keep its newest ``epoch_N.pt`` only, as weights only.

    Older epochs and leftovers of a kill mid-save (``*.partial``, open_clip_train's ``tmp.pt``)
    are deleted; the optimizer and grad-scaler state is dropped from the newest checkpoint (it
    only serves ``--resume``, which a finished run never needs). ``epoch`` and ``state_dict``
    stay, so :func:`linrepro.study.experiments.load_model` and open_clip's ``--pretrained`` read it as
    before. Written to a temp file and renamed. Returns the kept checkpoint (None if there is none).
    """
    d = Path(checkpoint_dir)
    ckpts = epoch_checkpoints(d)
    for p in ckpts[:-1] + sorted(d.glob("*.partial")) + ([d / "tmp.pt"] if (d / "tmp.pt").exists() else []):
        p.unlink(missing_ok=True)
    if not ckpts:
        return None
    last = ckpts[-1]
    ck = load_checkpoint(last)
    if "optimizer" in ck or "scaler" in ck:
        slim = {k: v for k, v in ck.items() if k not in ("optimizer", "scaler")}
        tmp = last.with_name(last.name + ".partial")
        torch.save(slim, tmp)
        os.replace(tmp, last)
    return last


_created: list = []
_mixed = [False]  # this process trains at mixed resolutions
_started = [False]  # set by StepLog when this process logs its first training step
_total_steps: list[int | None] = [None]  # set from open_clip_train's scheduler: its total step count


def _log_base(argv: list[str]) -> tuple[Path | None, str | None]:
    """(``<logs>/<name>``, ``--resume`` value) of an open_clip_train command line (no folder
    when it has no ``--name``: open_clip_train then makes a dated one)."""
    from open_clip_train.params import parse_args

    a = parse_args(list(argv))
    if not a.name or not a.logs or str(a.logs).lower() == "none":
        return None, a.resume
    return Path(a.logs) / a.name, a.resume


def check_resume(run: Path, resume: str | None, missing_ok: bool = False) -> Path | None:
    """What ``--resume latest`` would resume in ``run``: its newest ``epoch_N.pt`` (opened here,
    so a truncated one fails before training). None (a fresh start) only with ``missing_ok``;
    otherwise a missing checkpoint raises :class:`NothingToResumeError` and a finished run's
    (weights only) :class:`CheckpointError`."""
    if resume != "latest":
        return None
    ckpt_dir = run / "checkpoints"
    found = epoch_checkpoints(ckpt_dir)
    if not found:
        if missing_ok:
            return None
        raise NothingToResumeError(
            f"--resume latest: nothing to resume in {ckpt_dir} (no epoch_N.pt checkpoint). Leave out "
            f"--resume to train from scratch, or pass --resume-missing-ok (resume_missing_ok=True) to start fresh when there is nothing to resume"
        )
    if is_weights_only(found[-1]):
        raise CheckpointError(
            f"checkpoint {found[-1]} of run {run} holds weights only (the run finished): nothing to resume"
        )
    return found[-1]


def _clean_failed_start(base: Path, existed: bool, before: set[Path]) -> None:
    """Remove what a start that failed before its first step created (a retry then starts clean)."""
    import shutil

    if not existed:
        shutil.rmtree(base, ignore_errors=True)
        return
    for p in sorted(set(base.rglob("*")) - before, key=lambda q: len(q.parts), reverse=True):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def run_open_clip_train(
    argv: list[str],
    attention: str = "softmax",
    score_scale: float | str = 0.5,
    backend: str = "auto",
    quiet: bool = False,
    resume_missing_ok: bool = False,
    mixed_resolutions=None,
):
    """Run ``open_clip_train.main.main(argv)`` in this process with the patches applied.

    ``mixed_resolutions``: sides (e.g. ``(32, 48, 64)``) to draw one from per step
    (:mod:`linrepro.clip.flexres`); ``--force-image-size`` must be the largest, and the training
    data should be rendered at that side.

    Returns the trained model (the first one open_clip_train built). ``--resume latest`` with no
    checkpoint raises :class:`NothingToResumeError` unless ``resume_missing_ok``. When the run
    fails before it logged a step, the files it created in ``<logs>/<name>/`` are removed (on
    rank 0), so a retry is not refused as an existing experiment. With
    ``LINREPRO_DUMP_WEIGHTS=DIR`` set, every rank saves its final state_dict to
    ``DIR/rank<R>.pt`` (the DDP test compares them).
    """
    import open_clip_train.main as ocm

    base, resume = _log_base(argv)
    existed = base is not None and base.exists()
    if base is not None:
        check_resume(base, resume, resume_missing_ok)
        if resume != "latest" and (base / "out.log").exists():
            raise RuntimeError(
                f"open_clip_train would refuse to start: the experiment {base} already exists (it has an "
                f"out.log). Resume it with --resume latest, or delete the folder to train it again"
            )
    before = set(base.rglob("*")) if existed else set()
    mixed_resolutions, seed = check_mixed(argv, mixed_resolutions)
    _created.clear()
    _mixed[0] = bool(mixed_resolutions)
    _started[0] = False
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        with patched(attention, score_scale, backend, quiet, mixed_resolutions, seed):
            rc = ocm.main(list(argv))
        if rc not in (None, 0):
            raise RuntimeError(f"open_clip_train exited with {rc} (see its out.log); arguments: {' '.join(argv)}")
    except BaseException:
        if base is not None and rank0 and not _started[0]:
            _clean_failed_start(base, existed, before)
        raise
    model = _created[0] if _created else None
    dump = os.environ.get("LINREPRO_DUMP_WEIGHTS")
    if dump and model is not None:
        Path(dump).mkdir(parents=True, exist_ok=True)
        rank = int(os.environ.get("RANK", "0"))
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(dump) / f"rank{rank}.pt")
        if mixed_resolutions:
            from linrepro.clip import flexres

            (Path(dump) / f"rank{rank}.resolutions.json").write_text(json.dumps(flexres.history()))
    return model


def _vision_cfg(model: str) -> dict:
    """The ``vision_cfg`` of open_clip model ``model`` (linrepro's configs registered); ``{}`` when
    there is no such config or it cannot be read (then nothing is checked against it)."""
    import open_clip

    from linrepro import clip

    clip.register_models()
    try:
        cfg = open_clip.get_model_config(model) or {}
    except Exception:  # a missing local-dir config, an unreachable hf-hub one: open_clip_train says why
        return {}
    vision = cfg.get("vision_cfg") if isinstance(cfg, dict) else None
    return vision if isinstance(vision, dict) else {}


def _first(value):
    """A side given as an int or as ``[h, w]``: its first entry (None stays None)."""
    return value[0] if isinstance(value, (list, tuple)) and value else value


def check_mixed(argv: list[str], mixed_resolutions) -> tuple[tuple[int, ...] | None, int]:
    """``(sides, seed)`` of a mixed-resolution run (``(None, 0)`` without one); ValueError when
    the set is bad (a side not a multiple of the model's patch size, read from its open_clip
    config, included), the model is not built at its largest side, or the scheduler is skipped."""
    if not mixed_resolutions:
        return None, 0
    from open_clip_train.params import parse_args

    from linrepro.clip import flexres

    flexres.check_resolutions(mixed_resolutions)  # the set itself first, before open_clip_train's arguments
    a = parse_args(list(argv))
    vision = _vision_cfg(a.model)
    patch = _first(vision.get("patch_size"))
    res = flexres.check_resolutions(mixed_resolutions, int(patch) if patch else None)
    if a.skip_scheduler:
        raise ValueError("mixed resolutions draw each step's side from the scheduler's step: drop --skip-scheduler")
    size = _first(a.force_image_size)
    if size is None:  # the model's own side
        size = _first(vision.get("image_size"))
    if size is None or int(size) != res[-1]:
        raise ValueError(
            f"mixed resolutions {list(res)}: build the model at the largest side "
            f"(--force-image-size {res[-1]}), got --force-image-size {size}"
        )
    return res, int(a.seed)


def _read_jsonl(path: Path) -> list[dict]:
    """The rows of a ``steps.jsonl``. A last line cut short (a kill mid-append) is dropped; any other
    unreadable line raises a ValueError naming the file and the line."""
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {i + 1}: not a JSON row ({e})") from None
    return rows


def read_steps(run_dir: str | Path) -> list[dict]:
    p = Path(run_dir) / "steps.jsonl"
    return _read_jsonl(p) if p.exists() else []


def _prog() -> str:
    """The launcher's name in usage and error lines: the module actually run (``python -m
    linrepro.train`` is this launcher under a short name), this module otherwise."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return f"python -m {name}" if name in ("linrepro.train", "linrepro.clip.train") else "python -m linrepro.clip.train"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, theirs = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(
        prog=_prog(),
        description="open_clip_train with linrepro's attention swap; open_clip_train's own arguments follow `--`.",
    )
    from linrepro import clip

    ap.add_argument("--attention", default="softmax", choices=list(clip.ATTENTIONS))
    ap.add_argument(
        "--score-scale",
        type=check_score_scale,
        default=0.5,
        help="s in Eq. 7: a positive number, or 1/N for the per-length scale",
    )
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "triton", "reference", "quadratic"])
    ap.add_argument(
        "--resume-missing-ok",
        action="store_true",
        help="with --resume latest: train from scratch when there is no checkpoint (default: an error)",
    )
    ap.add_argument(
        "--mixed-resolutions",
        default=None,
        help="train each step at a side drawn from this set, e.g. 32,48,64 (the model is built at the "
        "largest: pass open_clip_train's --force-image-size with it; data rendered at that side)",
    )
    a, rest = ap.parse_known_args(ours)
    try:
        check_mixed(rest + theirs, a.mixed_resolutions)
    except ValueError as e:
        ap.error(str(e))
    try:
        run_open_clip_train(
            rest + theirs,
            a.attention,
            a.score_scale,
            a.backend,
            resume_missing_ok=a.resume_missing_ok,
            mixed_resolutions=a.mixed_resolutions,
        )
    except (NothingToResumeError, CheckpointError) as e:
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _one_thread_per_cpu_rank() -> None:
    """Under torchrun on CPU, one OpenMP thread per rank unless OMP_NUM_THREADS says otherwise. torch
    read the variable when it was imported (at the top of this module), so setting it now changes
    nothing by itself: torch's thread count is set too. A caller's OMP_NUM_THREADS is left alone
    (torch already honoured it on import)."""
    if os.environ.get("LOCAL_RANK") is None or "OMP_NUM_THREADS" in os.environ:
        return
    if not torch.cuda.is_available():
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


if __name__ == "__main__":
    _one_thread_per_cpu_rank()
    sys.exit(main())
