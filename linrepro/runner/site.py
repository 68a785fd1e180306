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
table.ledger td:nth-child(5){font-size:.9em} table.ledger td:first-child{color:#656d76} code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
"""


def collect_runs(out_root: Path | None = None) -> list[dict]:
    """Every ``run.json`` below ``<outputs>/<profile>/<notebook>/<run-id>/``, newest first (by start
    time; a run whose run.json cannot be read has none and comes last). ``status`` is as
    :func:`linrepro.study.runs.status_of` sees it: a ``running`` run whose process is gone is
    ``interrupted``, with the reason in ``note``."""
    root = Path(out_root) if out_root else project.outputs_dir()
    runs = []
    for meta_path in root.glob("*/*/*/run.json"):
        if meta_path.parts[-4] in ("site", "interactive"):
            continue
        try:
            meta = read_json(meta_path, f"{meta_path.parts[-3]} run {meta_path.parts[-2]}: run.json")
            if not isinstance(meta, dict):
                raise ValueError(f"{meta_path} is not a JSON object")
            meta["status"], meta["note"] = status_of(meta)
        except (OSError, ValueError) as e:
            meta = {
                "notebook": meta_path.parts[-3],
                "profile": meta_path.parts[-4],
                "run_id": meta_path.parts[-2],
                "status": "unreadable",
                "error": str(e),
            }
        meta["dir"] = meta_path.parent
        runs.append(meta)
    runs.sort(key=lambda m: (m.get("started", ""), m.get("run_id", "")), reverse=True)
    return runs


def _row(meta: dict, site_dir: Path) -> str:
    status = meta.get("status", "unknown")
    report = meta["dir"] / "report.html"
    link = (
        f'<a href="{html.escape(os.path.relpath(report, site_dir))}">report</a>'
        if report.exists()
        else '<span class="muted">no report</span>'
    )
    err = meta.get("error") or meta.get("note") or ""
    err_html = f'<div class="muted">{html.escape(err.splitlines()[0][:240])}</div>' if err else ""
    dur = meta.get("duration_s")
    return (
        f"<tr><td>{html.escape(meta.get('profile', '?'))}</td>"
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
    counts = ", ".join(f"<b>{n}</b> {html.escape(v)}" for v, n in c.items())
    return (
        f"<h2 id=ledger>Claims ledger</h2><p>The seed report's {n_claims} claims, each checked "
        f"against this package's runs (profile {html.escape(ledger.get('profile', '?'))}, "
        f"{html.escape(ledger.get('started', '?'))}): {counts}. "
        f'<a href="{html.escape(report)}">ledger report</a></p>'
        + claims
        + "<h2 id=findings>Beyond the claims: the seed's question</h2>"
        + found
    )


def build_site(out_root: Path | None = None) -> Path:
    root = Path(out_root) if out_root else project.outputs_dir()
    site_dir = root / "site"
    site_dir.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(root)
    by_nb: dict[str, list[dict]] = {}
    for m in runs:
        by_nb.setdefault(m.get("notebook", "?"), []).append(m)
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>linrepro reports</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>linrepro</h1><p class=muted>Linear attention in CLIP-style transformers "
        "(arXiv:2604.10064). The claims ledger first, then every run of every notebook, newest first. "
        "Everything opens offline.</p>",
        _ledger_section(latest_ledger(runs), root, site_dir),
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
