"""The smoke site's reports read as articles (issue 15): no stderr block, no progress bar, no
absolute path; a footer and a link back to the index in every report; and one colour per
attention type in every figure of the site (read from the figures' JSON in the reports)."""

import json
import re
from pathlib import Path

import pytest

from linrepro.runner.report import ABSOLUTE_PATH, is_progress_line
from linrepro.utils import plotting as pl

ROOT = Path(__file__).resolve().parents[2]
_NEWPLOT = re.compile(r'Plotly\.newPlot\(\s*"([^"]+)",\s*')


def visible(html: str) -> str:
    """What a reader sees and can select: the page without scripts and style sheets."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)


def figures(html: str) -> list[list[dict]]:
    """The traces of every plotly figure a report draws (the JSON handed to Plotly.newPlot)."""
    dec = json.JSONDecoder()
    out = []
    for m in _NEWPLOT.finditer(html):
        data, _ = dec.raw_decode(html, m.end())
        out.append(data)
    return out


def trace_colour(tr: dict) -> str | None:
    if tr.get("type", "scatter") == "bar":
        c = (tr.get("marker") or {}).get("color")
    else:
        c = (tr.get("line") or {}).get("color") or (tr.get("marker") or {}).get("color")
    return c if isinstance(c, str) else None


def report_problems(out_root: Path) -> tuple[dict, dict]:
    """({report: [problem, ...]}, {attention: {colour: [report, ...]}}) over every report.html."""
    problems: dict[str, list[str]] = {}
    colours: dict[str, dict[str, list[str]]] = {}
    reports = sorted(p for p in Path(out_root).rglob("report.html") if "site" not in p.parts)
    assert reports, f"no reports under {out_root}"
    for rep in reports:
        name = str(rep.relative_to(out_root))
        html = rep.read_text()
        seen = visible(html)
        bad = problems.setdefault(name, [])
        if 'data-mime-type="application/vnd.jupyter.stderr"' in html:
            bad.append("a stderr block")
        text = re.sub(r"<[^>]+>", "", seen)
        bad += [f"progress bar: {line.strip()[:80]}" for line in text.splitlines() if is_progress_line(line)]
        bad += [f"absolute path: {p}" for p in ABSOLUTE_PATH.findall(seen)]
        bad += [f"absolute path: {p}" for p in (str(Path(out_root).resolve()), str(ROOT)) if p in seen]
        if '<footer class="lr-footer"' not in html or "hardware</th>" not in html or "commit</th>" not in html:
            bad.append("no provenance footer")
        back = re.search(r'<div class="lr-top"><a href="([^"]+)">', html)
        if not back or (rep.parent / back.group(1)).resolve() != (Path(out_root) / "site" / "index.html").resolve():
            bad.append(f"no link back to the index ({back.group(1) if back else 'none'})")
        for fig in figures(html):
            for tr in fig:
                if tr.get("type", "scatter") not in ("scatter", "scattergl", "bar"):
                    continue
                att = next((a for a in map(pl.attention_of, (tr.get("legendgroup"), tr.get("name"))) if a), None)
                if att:
                    colours.setdefault(att, {}).setdefault(str(trace_colour(tr)), []).append(name)
    return {k: v for k, v in problems.items() if v}, colours


@pytest.mark.notebook
def test_smoke_reports_are_articles_in_one_visual_language(smoke_outputs):
    out = Path(smoke_outputs["dir"])
    assert (out / "site" / "index.html").exists(), smoke_outputs["log"]
    problems, colours = report_problems(out)
    assert not problems, json.dumps(problems, indent=1)
    assert {"softmax", "eq7"} <= set(colours), colours  # the check saw the attention types
    for att, by_colour in colours.items():
        assert list(by_colour) == [pl.attention_colour(att)], (att, {c: sorted(set(r)) for c, r in by_colour.items()})
