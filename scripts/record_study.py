"""Record a profile's finished runs under ``outputs/reference/<profile>/``: the study's recorded result.

    python scripts/record_study.py                  # the study profile, from outputs/study/
    python scripts/record_study.py --profile cpu --out /tmp/x/outputs --limit-mb 15

For each notebook it copies the newest run whose run.json says ``ok`` (and that has a
results.json) from ``<out>/<profile>/<notebook>/<run-id>/`` to
``<out>/reference/<profile>/<notebook>/<run-id>/``, keeping what the reports, the site and the
claims ledger read, and nothing that is large or can be rebuilt:

kept
    results.json, params.yaml, provenance.json, run.json, report.html, the run's other small
    results (``*.json``, ``*.csv``, ``*.yaml``, ``*.txt`` up to 1 MB each), at any depth (03's
    per-run ``runs/<name>/summary.json`` and ``steps.csv`` among them);
dropped
    checkpoints (``checkpoints/``, ``*.pt``), the rendered training data (``data/``), tensorboard
    logs, logs (``*.log``, ``*.jsonl``) and the executed notebook (``*.ipynb``: report.html
    shows the same outputs, results.json holds the numbers). Summaries still name their
    checkpoints; :func:`linrepro.clip.train.load_checkpoint` then says the file does not exist.

Every report.html inlines plotly.js (~4.8 MB). In the recorded copy it is replaced by one shared
``<dest>/plotly.min.js``, loaded by a relative ``<script src>``: the reports still draw offline
from ``file://``. Relative links (a report's link back to the site, the ledger's links to other
runs) are re-pointed at the recorded copies, and so are the ledger's ``link``/``source_run``
fields in its results.json. ``RECORDED.json`` lists what was recorded, from where, and the size.

The copy is built beside the destination and swapped in only when complete and within
``--limit-mb`` (default 15 MB, the size the issue allows in git): a run over the limit stops with
an error naming the largest files, and leaves any previous recording as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

KEEP_SUFFIXES = (".json", ".csv", ".yaml", ".yml", ".txt")
REPORT = "report.html"
DROP_DIRS = ("checkpoints", "data", "tensorboard", "__pycache__", ".ipynb_checkpoints")
MAX_FILE_BYTES = 1 << 20  # a small result file; anything larger is dropped and listed
LIMIT_MB = 15.0
PLOTLY_NAME = "plotly.min.js"
MANIFEST = "RECORDED.json"
_LINK = re.compile(r"""(\b(?:href|src)=)(["'])(?!(?:[a-z][a-z0-9+.-]*:|//|#|/))([^"'#?]*)([^"']*)\2""", re.I)


class RecordError(RuntimeError):
    """Recording cannot go on; the message says why and what to do."""


def _project():
    from linrepro.utils import project

    return project


def latest_runs(out_root: Path, profile: str) -> dict[str, Path]:
    """{notebook: newest finished run folder} under ``<out_root>/<profile>/``, in notebook order."""
    from linrepro.study.runs import finished_runs

    base = Path(out_root) / profile
    if not base.is_dir():
        raise RecordError(
            f"no runs of profile {profile!r}: {base} does not exist. Run `linrepro reproduce --profile {profile}` first."
        )
    try:
        order = _project().list_notebooks()
    except (OSError, FileNotFoundError):
        order = []
    names = sorted(
        (d.name for d in base.iterdir() if d.is_dir()),
        key=lambda n: (n not in order, order.index(n) if n in order else 0, n),
    )
    runs = {}
    for nb in names:
        done = finished_runs(base / nb)
        if done:
            runs[nb] = done[-1]
    if not runs:
        raise RecordError(f"no finished run (run.json status ok, with results.json) under {base}")
    return runs


STEPS = "steps.csv"  # open_clip_train's per-step log of each 03 model: thinned when recorded
STEPS_COLUMNS = ("step", "loss", "lr", "samples_per_second")


def compact_json(obj) -> str:
    """JSON without indentation: per-image outcome lists (30 models × 5,000 MNIST digits in 04)
    written one number per line made 04's results.json 3.9 MB; compact, 0.8 MB. Same values."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def thin_steps(text: str, sig: int = 5) -> str:
    """A 03 model's ``steps.csv`` as recorded: every step, but only :data:`STEPS_COLUMNS` (the
    loss curve, the schedule and the speed), numbers to ``sig`` significant figures. The full log
    is ~300 kB a model; nothing reads it back (``read_steps`` reads ``steps.jsonl``), and 30 of
    them would take 9 of the recording's 15 MB."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    cols = [c for c in STEPS_COLUMNS if rows and c in rows[0]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([r[c] if c == "step" else f"{float(r[c]):.{sig}g}" for c in cols])
    return buf.getvalue()


def _keep(rel: Path, size: int) -> str | None:
    """None to keep the file at ``rel`` (relative to its run folder), else the reason it is dropped."""
    if any(part in DROP_DIRS for part in rel.parts[:-1]):
        return f"{next(p for p in rel.parts[:-1] if p in DROP_DIRS)}/ is not recorded"
    if rel.as_posix() == REPORT:
        return None
    if rel.suffix.lower() not in KEEP_SUFFIXES:
        return f"{rel.suffix or 'no suffix'} files are not recorded"
    if size > MAX_FILE_BYTES and rel.as_posix() != "results.json":  # a run's results are always kept
        return f"larger than {MAX_FILE_BYTES >> 20} MB"
    return None


def _retarget(text: str, old_dir: Path, new_dir: Path, moved: dict[Path, Path], out_root: Path) -> str:
    """Relative ``href``/``src`` links of a report written in ``old_dir``, re-pointed so that they
    reach the same target from ``new_dir``: a recorded run's copy where the target was in a
    recorded run, else the same file in the outputs folder. Links leaving the outputs folder stay."""

    def new_target(target: Path) -> Path:
        for old, new in moved.items():
            if target == old or old in target.parents:
                return new / target.relative_to(old)
        return target

    def sub(m: re.Match) -> str:
        path = m.group(3)
        if not path:
            return m.group(0)
        target = Path(os.path.normpath(old_dir / path))
        if not target.is_relative_to(out_root):
            return m.group(0)
        rel = os.path.relpath(new_target(target), new_dir)
        return f"{m.group(1)}{m.group(2)}{Path(rel).as_posix()}{m.group(4)}{m.group(2)}"

    return _LINK.sub(sub, text)


def _retarget_json(obj, moved_rel: dict[str, str], moved_abs: dict[Path, Path], out_root: Path, dest_root: Path):
    """The ledger's ``link`` (relative to the outputs folder) and ``source_run`` (a path) fields,
    re-pointed at the recorded copies."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "link" and isinstance(v, str) and v:
                path, sep, anchor = v.partition("#")
                for old, new in moved_rel.items():
                    if path == old or path.startswith(old + "/"):
                        path = new + path[len(old) :]
                        if "recorded" in obj:  # the ledger's list of the runs it read
                            out["recorded"] = True
                        break
                out[k] = path + sep + anchor
            elif k == "source_run" and isinstance(v, str) and v:
                p = Path(v) if Path(v).is_absolute() else out_root / v
                p = Path(os.path.normpath(p))
                hit = next((new for old, new in moved_abs.items() if p == old), None)
                out[k] = hit.relative_to(dest_root).as_posix() if hit else v
            else:
                out[k] = _retarget_json(v, moved_rel, moved_abs, out_root, dest_root)
        return out
    if isinstance(obj, list):
        return [_retarget_json(v, moved_rel, moved_abs, out_root, dest_root) for v in obj]
    return obj


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n / 1e3:.1f} kB"


def record(
    profile: str = "study",
    out_root: Path | None = None,
    *,
    limit_mb: float = LIMIT_MB,
    runs: dict[str, Path] | None = None,
) -> dict:
    """Record ``profile``'s newest finished runs (or ``runs``: {notebook: folder}) under
    ``<out_root>/reference/<profile>/``. Returns the manifest (also written as RECORDED.json).
    Raises :class:`RecordError` when there is nothing to record or the copy exceeds ``limit_mb``."""
    from linrepro.runner.report import externalise_plotlyjs

    out_root = Path(out_root or _project().outputs_dir()).absolute()
    runs = {nb: Path(d).absolute() for nb, d in (runs or latest_runs(out_root, profile)).items()}
    dest = out_root / "reference" / profile
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{profile}.recording-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the recording is for everyone to read
    try:
        moved = {d: dest / nb / d.name for nb, d in runs.items()}
        moved_rel = {
            Path(os.path.relpath(d, out_root)).as_posix(): Path(os.path.relpath(new, out_root)).as_posix()
            for d, new in moved.items()
        }
        plotly: dict[str, str] = {}  # sha256 of a plotly.js text -> its file name in dest
        entries = []
        for nb, src in runs.items():
            target = tmp / nb / src.name
            kept, dropped = [], []
            for f in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = f.relative_to(src)
                why = _keep(rel, f.stat().st_size)
                if why:
                    dropped.append({"path": rel.as_posix(), "bytes": f.stat().st_size, "why": why})
                    continue
                out = target / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                if rel.as_posix() == REPORT:
                    text = f.read_text(encoding="utf-8")
                    new_dir = moved[src]
                    text = _retarget(text, src, new_dir, moved, out_root)
                    names = []
                    for js in externalise_plotlyjs(text, "")[1]:
                        h = hashlib.sha256(js.encode()).hexdigest()
                        if h not in plotly:
                            plotly[h] = PLOTLY_NAME if not plotly else f"plotly-{h[:10]}.min.js"
                            (tmp / plotly[h]).write_text(js, encoding="utf-8")
                        names.append(plotly[h])
                    for name in names:  # one copy at a time, each pointed at its own shared file
                        rel_js = Path(os.path.relpath(dest / name, new_dir)).as_posix()
                        text = _replace_first_plotlyjs(text, rel_js)
                    out.write_text(text, encoding="utf-8")
                elif rel.as_posix() == "run.json":
                    meta = json.loads(f.read_text())
                    if isinstance(meta, dict):
                        meta["recorded"] = {"from": Path(os.path.relpath(src, out_root)).as_posix()}
                    out.write_text(json.dumps(meta, indent=2) + "\n")  # small, and read by people
                elif rel.as_posix() == "results.json" and nb == "07_claims_ledger":
                    res = json.loads(f.read_text())
                    res = _retarget_json(res, moved_rel, moved, out_root, out_root)
                    out.write_text(compact_json(res))
                elif rel.suffix == ".json":  # the same data without indentation: 04's results 3.9 → 0.8 MB
                    out.write_text(compact_json(json.loads(f.read_text())))
                elif rel.name == STEPS:
                    out.write_text(thin_steps(f.read_text()))
                else:
                    shutil.copy2(f, out)
                kept.append(rel.as_posix())
            entries.append(
                {
                    "notebook": nb,
                    "run_id": src.name,
                    "from": Path(os.path.relpath(src, out_root)).as_posix(),
                    "kept": kept,
                    "dropped": _summarise(dropped),
                }
            )
        total = _size(tmp)
        manifest = {
            "profile": profile,
            "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": entries,
            "plotly_js": sorted(plotly.values()),
            "bytes": total,
            "limit_bytes": int(limit_mb * 1e6),
        }
        manifest_text = json.dumps(manifest, indent=1) + "\n"
        total += len(manifest_text.encode())
        manifest["bytes"] = total
        if total > limit_mb * 1e6:
            big = sorted((f for f in tmp.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size)[:5]
            raise RecordError(
                f"the recorded {profile} runs would take {_mb(total)}, over the {limit_mb:g} MB limit; largest files: "
                + ", ".join(f"{f.relative_to(tmp).as_posix()} ({_mb(f.stat().st_size)})" for f in big)
                + f". Nothing was changed under {dest}."
            )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        old = None
        if dest.exists():
            old = dest.with_name(f".{profile}.replaced-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _replace_first_plotlyjs(text: str, src: str) -> str:
    from linrepro.runner import report

    m = report._PLOTLYJS.search(text)
    if not m:
        return text
    new, _ = report.externalise_plotlyjs(m.group(0), src)
    return text[: m.start()] + new + text[m.end() :]


def _summarise(dropped: list[dict]) -> list[dict]:
    """Dropped files grouped by reason: count and bytes, with a few examples."""
    by: dict[str, dict] = {}
    for d in dropped:
        g = by.setdefault(d["why"], {"why": d["why"], "files": 0, "bytes": 0, "examples": []})
        g["files"] += 1
        g["bytes"] += d["bytes"]
        if len(g["examples"]) < 3:
            g["examples"].append(d["path"])
    return list(by.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="study", help="the profile whose runs are recorded (default: study)")
    ap.add_argument("--out", default=None, help="the outputs folder (default: the project's outputs/)")
    ap.add_argument("--limit-mb", type=float, default=LIMIT_MB, help=f"fail above this size (default {LIMIT_MB:g})")
    a = ap.parse_args(argv)
    try:
        m = record(a.profile, Path(a.out) if a.out else None, limit_mb=a.limit_mb)
    except RecordError as e:
        print(f"record_study: {e}", file=sys.stderr)
        return 1
    dest = Path(a.out or _project().outputs_dir()) / "reference" / a.profile
    for r in m["runs"]:
        drop = sum(d["files"] for d in r["dropped"])
        print(f"  {r['notebook']:<28} {r['run_id']}  {len(r['kept'])} files kept, {drop} dropped")
    print(
        f"recorded {len(m['runs'])} runs of profile {a.profile} in {dest}: {_mb(m['bytes'])} (limit {a.limit_mb:g} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
