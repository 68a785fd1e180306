"""``outputs/site/index.html``: one static page linking every run's report.

Plain HTML with relative links and inline CSS: it opens from the file system, from any
folder, or from a static host, with no network.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from linrepro.study.runs import status_of
from linrepro.utils import project
from linrepro.utils.io import atomic_write_text, read_json

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1f2328}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;width:100%;margin:.5rem 0} th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} .ok{color:#1a7f37;font-weight:600} .failed{color:#cf222e;font-weight:600} .running{color:#9a6700;font-weight:600} .interrupted{color:#bc4c00;font-weight:600} .unreadable{color:#cf222e;font-weight:600}
.muted{color:#656d76;font-size:.9em} h3{margin-top:1.4rem}
table.ledger td{text-align:left} table.ledger td:nth-child(5){font-size:.9em}
.scope{border:1px solid #d0d7de;border-radius:8px;background:#f6f8fa;padding:.6rem 1rem;margin:1rem 0}
.scope h2{margin:.2rem 0 .4rem 0;border:0;font-size:1.15rem} .scope ul{margin:0;padding-left:1.2rem} .scope table{margin:0} .scope th{background:none;width:11rem;white-space:nowrap}
.scope td,.scope th{border-bottom:1px solid #e6e9ec;padding:.25rem .5rem} .headline{font-size:1.05rem;font-weight:600;margin:.6rem 0} table.ledger td:first-child{color:#656d76} code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
"""


def collect_runs(out_root: Path | None = None) -> list[dict]:
    """Every ``run.json`` below ``<outputs>/<profile>/<notebook>/<run-id>/``, and every recorded
    one below ``<outputs>/reference/<profile>/<notebook>/<run-id>/`` (``recorded`` True), newest
    first (by start time; a run whose run.json cannot be read has none and comes last).
    ``status`` is as :func:`linrepro.study.runs.status_of` sees it: a ``running`` run whose
    process is gone is ``interrupted``, with the reason in ``note``."""
    root = Path(out_root) if out_root else project.outputs_dir()
    runs = []
    found = [(p, False) for p in root.glob("*/*/*/run.json") if p.parts[-4] not in ("site", "interactive", "reference")]
    found += [(p, True) for p in root.glob("reference/*/*/*/run.json")]
    for meta_path, recorded in found:
        try:
            meta = read_json(meta_path, f"{meta_path.parts[-3]} run {meta_path.parts[-2]}: run.json")
            if not isinstance(meta, dict):
                raise ValueError(f"{meta_path} is not a JSON object")
            meta["status"], meta["note"] = ("ok", None) if recorded and meta.get("status") == "ok" else status_of(meta)
        except (OSError, ValueError) as e:
            meta = {
                "notebook": meta_path.parts[-3],
                "profile": meta_path.parts[-4],
                "run_id": meta_path.parts[-2],
                "status": "unreadable",
                "error": str(e),
            }
        meta.setdefault("notebook", meta_path.parts[-3])
        meta.setdefault("profile", meta_path.parts[-4])
        meta.setdefault("run_id", meta_path.parts[-2])
        meta["dir"] = meta_path.parent
        meta["recorded"] = recorded
        runs.append(meta)
    runs.sort(key=lambda m: (m.get("started", ""), m.get("run_id", "")), reverse=True)
    return runs


def _profile_label(meta: dict) -> str:
    return f"{meta.get('profile', '?')} (recorded)" if meta.get("recorded") else str(meta.get("profile", "?"))


def _row(meta: dict, site_dir: Path) -> str:
    status = meta.get("status", "unknown")
    report = meta["dir"] / "report.html"
    link = (
        f'<a href="{html.escape(os.path.relpath(report, site_dir))}">report</a>'
        if report.exists()
        else '<span class="muted">no report</span>'
    )
    err = meta.get("error") or meta.get("note") or ""
    err_html = f'<div class="muted">{html.escape(err.splitlines()[0])}</div>' if err else ""
    dur = meta.get("duration_s")
    return (
        f"<tr><td>{html.escape(_profile_label(meta))}</td>"
        f'<td class="{html.escape(status)}">{html.escape(status)}{err_html}</td>'
        f"<td>{html.escape(meta.get('started', '?'))}</td>"
        f"<td>{'' if dur is None else f'{dur:.0f} s'}</td>"
        f"<td><code>{html.escape(meta.get('run_id', '?'))}</code></td><td>{link}</td></tr>"
    )


def latest_ledger(runs: list[dict]) -> dict | None:
    """The newest finished ``07_claims_ledger`` run (any profile), with its results; with
    ``results_error`` instead if its results.json cannot be read (``error`` is run.json's own field)."""
    done = [
        m
        for m in runs
        if m.get("notebook") == "07_claims_ledger" and m.get("status") == "ok" and (m["dir"] / "results.json").exists()
    ]
    if not done:
        return None
    meta = max(done, key=lambda m: m.get("started", ""))
    try:
        return {
            **meta,
            "results": read_json(
                meta["dir"] / "results.json", f"07_claims_ledger run {meta['dir'].name}: results.json"
            ),
        }
    except (OSError, ValueError) as e:
        return {**meta, "results_error": str(e)}


def _ledger_section(ledger: dict | None, root: Path, site_dir: Path) -> str:
    from linrepro.study.claims import findings_html, ledger_html

    if ledger is None:
        return (
            "<h2 id=ledger>Claims ledger</h2><p>No finished <code>07_claims_ledger</code> run yet: "
            "run <code>linrepro reproduce --profile cpu</code>.</p>"
        )
    report = os.path.relpath(ledger["dir"] / "report.html", site_dir)
    try:
        if ledger.get("results_error"):
            raise ValueError(ledger["results_error"])
        res = ledger["results"]
        c, n_claims = res["summary"]["counts"], res["summary"]["n"]
        claims = ledger_html(res["claims"], root, site_dir)
        found = findings_html(res.get("findings", []), root, site_dir)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return (
            f"<h2 id=ledger>Claims ledger</h2><p class=unreadable>The latest <code>07_claims_ledger</code> run's "
            f"results cannot be read: {html.escape(str(e) if isinstance(e, ValueError) else f'{type(e).__name__}: {e}')} "
            f'(<a href="{html.escape(report)}">its report</a>). Run <code>linrepro run 07_claims_ledger</code> again.</p>'
        )
    counts = ", ".join(f"<b>{n}</b> {html.escape(v)}" for v, n in c.items())  # the summary's counts, not re-counted
    return (
        f"<h2 id=ledger>Claims ledger</h2><p>The seed report's {n_claims} claims, each checked "
        f"against this package's runs (ledger run of profile {html.escape(_profile_label(ledger))}, "
        f"{html.escape(ledger.get('started', '?'))}). Of the {n_claims} claims: {counts}. "
        f'<a href="{html.escape(report)}">ledger report</a></p>'
        + claims
        + "<h2 id=findings>Beyond the claims: the seed's question</h2>"
        + f"<p class=muted>What the training, scaling and resolution runs found. These findings are not "
        f"among the {n_claims} claims, and their words (a scaling law “contradicted”, say) are not "
        "counted in the verdicts above.</p>" + found
    )


# --------------------------------------------------------------------------- the scope box
SPEC_PATH = "linrepro/attention/__init__.py"  # the written spec of the paper's math (its docstring)
SEED_MARKS = (
    "The <b>seed's mark</b> column is the seed report's own assessment, made before any run: "
    "“verified” (✓ in the seed report) means it checked the claim against the documents it retrieved, "
    "“unverified” (×) that it did not, and the number is its confidence in the claim, from 0 to 1. "
    "It is independent of the verdict, which comes from this package's runs: “unverified” beside a "
    "green “supported” means the seed could not verify a claim that these runs support."
)


def _headline(ledger: dict | None) -> str:
    try:
        text = ledger["results"]["summary"]["headline"] if ledger else None
    except (KeyError, TypeError):
        text = None
    return f"<p class=headline>{html.escape(str(text))}</p>" if text else ""


def evidence_runs(runs: list[dict], profile: str | None, ledger: dict | None = None) -> dict[str, dict]:
    """The run of each notebook the ledger read: the ledger's own list (``evidence_runs`` in its
    results: per notebook, the recorded study's run or the profile's own), matched to the runs on
    disk; for an older ledger without that list, the newest finished run of each notebook in
    ``profile``."""
    listed = None
    try:
        listed = ledger["results"].get("evidence_runs") if ledger else None
    except (KeyError, TypeError, AttributeError):
        listed = None
    out: dict[str, dict] = {}
    if isinstance(listed, list):
        for e in listed:
            if not isinstance(e, dict) or not e.get("run_id"):
                continue
            same = [m for m in runs if (m.get("notebook"), m.get("run_id")) == (e.get("notebook"), e.get("run_id"))]
            # the run as listed (recorded or not); else its other copy (a ledger recorded with its runs)
            same.sort(key=lambda m: bool(m.get("recorded")) != bool(e.get("recorded")))
            if same:
                out[e["notebook"]] = same[0]
        return out
    for m in runs:  # newest first
        if m.get("status") == "ok" and m.get("profile") == profile and m.get("notebook") not in out:
            out[m["notebook"]] = m
    return out


def _shown_html(ev: dict[str, dict], files: dict[str, dict], site_dir: Path) -> str:
    """Per notebook: the run shown (profile, recorded or not, run id, training seeds), linked."""
    if not ev:
        return "no finished runs yet"
    items = []
    for nb, m in sorted(ev.items()):
        p = (files.get(nb) or {}).get("params") or {}
        seeds = p.get("seeds")
        seed = f"; {len(seeds)} training seeds" if isinstance(seeds, list) and seeds else ""
        report = m["dir"] / "report.html"
        run = html.escape(str(m.get("run_id", "?")))
        run = f'<a href="{html.escape(os.path.relpath(report, site_dir))}">{run}</a>' if report.exists() else run
        items.append(
            f"<li>{html.escape(nb)}: {html.escape(_profile_label(m))} run <code>{run}</code>{html.escape(seed)}</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def _run_files(meta: dict) -> dict:
    from linrepro.runner.report import run_context

    return run_context(meta["dir"])


def _join(items) -> str:
    items = list(dict.fromkeys(str(i) for i in items if i is not None and str(i) != ""))
    return ", ".join(items) if items else "not recorded"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _model_scale(files: dict | None) -> str:
    """Model scale and training data, from a 03_clip_training run's params.yaml and results.json."""
    if not files:
        return "no finished 03_clip_training run in this profile: no CLIP was trained"
    p, r = files.get("params") or {}, files.get("results") or {}
    models, atts = p.get("models") or [], p.get("attentions") or []
    summ = r.get("summaries") or [] if isinstance(r, dict) else []
    sizes = [s.get("n_params") for s in summ if isinstance(s, dict) and isinstance(s.get("n_params"), (int, float))]
    ds = r.get("dataset") if isinstance(r, dict) else None
    text = f"{len(models)} model size{'s' if len(models) != 1 else ''} ({', '.join(map(str, models))})"
    if sizes:
        text += f", {min(sizes) / 1e6:.2g}–{max(sizes) / 1e6:.2g} M parameters"
    text += f", each with {' and '.join(map(str, atts))} attention"
    if p.get("train_data"):
        text += f"; trained on {p['train_data']}"
    else:
        n_train = ds.get("n_train") if isinstance(ds, dict) else None
        doms = p.get("domains") or []
        text += (
            f"; trained {p.get('epochs', '?')} epoch{'s' if p.get('epochs') != 1 else ''} on "
            + (f"{n_train:,} " if isinstance(n_train, int) else "")
            + f"synthetic image–caption pairs of {len(doms)} domain{'s' if len(doms) != 1 else ''} "
            f"({', '.join(map(str, doms))}) rendered at {p.get('resolution', '?')} px, "
            "not LAION-400M; evaluated zero-shot on their held-out splits, not ImageNet-21K"
        )
    return text


def _seeds(files: dict[str, dict]) -> str:
    """What the seeds behind the shown runs are: a notebook's ``seeds`` list are training seeds (its
    intervals are over seeds, then images); a single ``seed`` elsewhere seeds that notebook's own
    random draws (a bootstrap, random inputs) and is not a repetition of a model."""
    seeds: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for nb, f in files.items():
        p = f.get("params") or {}
        many = p.get("seeds")
        if isinstance(many, list) and many:
            seeds[nb] = [str(v) for v in many]
        elif "seed" in p:
            single[nb] = str(p["seed"])
    if not seeds and not single:
        return "not recorded"
    if all(len(v) == 1 for v in seeds.values()):
        values = sorted(set(single.values()) | {v for vs in seeds.values() for v in vs})
        return (
            f"one seed per run ({'seed ' + ', '.join(values)}): every interval shown is over images or "
            "steps within a run, none over seeds"
        )
    parts = [f"{nb}: {len(v)} seeds ({', '.join(v)})" for nb, v in seeds.items() if len(v) > 1]
    if single:
        parts.append(
            "one seed each for the other notebooks' own random draws, not repeated models ("
            + ", ".join(f"{nb} {v}" for nb, v in single.items())
            + ")"
        )
    return "; ".join(parts)


def _not_tested(ledger: dict | None, files: dict[str, dict], profile: str | None, site_dir: Path) -> str:
    from linrepro.utils import project as _project

    items = []
    try:
        rows = ledger["results"]["claims"] if ledger else []
        untestable = [r for r in rows if r.get("verdict") == "not testable here" or r.get("basis", "x") is None]
        if untestable:
            items.append(
                f"{len(untestable)} of the {len(rows)} claims could not be tested here: "
                + "; ".join(
                    f"#{r.get('n')} ({r.get('reason') or r.get('evidence') or 'see the ledger'})" for r in untestable
                )
            )
    except (KeyError, TypeError):
        pass
    cuda = [((f.get("provenance") or {}).get("device") or {}).get("cuda") for f in files.values()]
    if files and not any(cuda):
        items.append("nothing ran on a GPU: the Triton kernels and GPU timings were not measured in these runs")
    try:
        missing = [nb for nb in _project.list_notebooks() if nb not in files]
    except (OSError, FileNotFoundError):
        missing = []
    if missing and profile:
        items.append(f"no finished run in profile {profile} of {', '.join(missing)}")
    items.append("the paper's own models, data (LAION-400M) and ImageNet-21K evaluation")
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def scope_html(runs: list[dict], ledger: dict | None, site_dir: Path) -> str:
    """What was tested, on what, with what confidence: computed from the runs the ledger reads
    (the newest finished run of each notebook in the ledger's profile), their provenance.json,
    params.yaml and results.json."""
    from linrepro.runner.report import commit_text, hardware_text
    from linrepro.utils import project as _project

    profile = ledger.get("profile") if ledger else (runs[0].get("profile") if runs else None)
    ev = evidence_runs(runs, profile, ledger)
    files = {nb: _run_files(m) for nb, m in ev.items()}
    profs = sorted({_profile_label(m) for m in ev.values()}) or [str(profile)]
    provs = [f.get("provenance") for f in files.values() if f.get("provenance")]
    total = sum(m.get("duration_s") or 0 for m in ev.values())
    starts = sorted(m.get("started", "") for m in ev.values() if m.get("started"))
    versions: dict = {}
    for pv in provs:
        for k, v in (pv.get("versions") or {}).items():
            versions.setdefault(k, set()).add(v)
    pys = {pv.get("python") for pv in provs if pv.get("python")}
    ver = ", ".join(
        f"{name} {_join(sorted(versions.get(k, {None}) - {None}))}"
        for k, name in (("torch", "torch"), ("triton", "triton"), ("open_clip_torch", "open_clip"), ("numpy", "numpy"))
        if versions.get(k, {None}) - {None}
    )
    if pys:
        ver = f"python {_join(sorted(pys))}, " + ver
    try:
        spec = os.path.relpath(_project.root() / SPEC_PATH, site_dir)
    except FileNotFoundError:
        spec = SPEC_PATH
    rows = [
        ("runs shown", _shown_html(ev, files, site_dir)),
        ("hardware", html.escape(_join(hardware_text(pv) for pv in provs)) if provs else "no finished runs yet"),
        (
            "run time",
            html.escape(
                f"{_duration(total)} over {len(ev)} notebook{'s' if len(ev) != 1 else ''} "
                f"(profile{'s' if len(profs) != 1 else ''} {', '.join(profs)}), "
                f"{starts[0][:16].replace('T', ' ')} to {starts[-1][:16].replace('T', ' ')} UTC"
            )
            if starts
            else "no finished runs yet",
        ),
        ("commit", "<code>" + html.escape(_join(commit_text(pv) for pv in provs)) + "</code>"),
        ("versions", html.escape(ver) or "not recorded"),
        (
            "the paper",
            "paper text and code unavailable; equations reconstructed (what is known and what is "
            f'reconstructed: <a href="{html.escape(spec)}">the spec</a>, the docstring of '
            f"<code>{SPEC_PATH}</code>)",
        ),
        ("models and data", html.escape(_model_scale(files.get("03_clip_training")))),
        ("seeds", html.escape(_seeds(files))),
        ("not tested", _not_tested(ledger, files, profile, site_dir)),
        ("the seed's marks", SEED_MARKS),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<section class=scope id=scope><h2>Scope of these runs</h2><table>{body}</table></section>"


def build_site(out_root: Path | None = None) -> Path:
    root = Path(out_root) if out_root else project.outputs_dir()
    site_dir = root / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(root)
    ledger = latest_ledger(runs)
    by_nb: dict[str, list[dict]] = {}
    for m in runs:
        by_nb.setdefault(m.get("notebook", "?"), []).append(m)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>linrepro reports</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>linrepro</h1><p class=muted>Linear attention in CLIP-style transformers "
        "(arXiv:2604.10064). The scope of these runs, the claims ledger, then every run of every "
        "notebook, newest first. Everything opens offline.</p>",
        _headline(ledger),
        scope_html(runs, ledger, site_dir),
        _ledger_section(ledger, root, site_dir),
        "<h2 id=reports>Reports</h2>",
    ]
    if not runs:
        parts.append("<p>No runs yet. Run <code>linrepro reproduce --profile cpu</code>.</p>")
    for nb in sorted(by_nb):
        parts.append(
            f'<h3 id="{html.escape(nb)}">{html.escape(nb)}</h3><table><tr><th>profile</th>'
            "<th>status</th><th>started (UTC)</th><th>time</th><th>run</th><th></th></tr>"
        )
        parts.extend(_row(m, site_dir) for m in by_nb[nb])  # collect_runs' order: newest first
        parts.append("</table>")
    parts.append("</body></html>\n")
    index = site_dir / "index.html"
    atomic_write_text(index, "\n".join(parts))
    return index
