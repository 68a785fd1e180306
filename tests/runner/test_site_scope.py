"""The index's first screen: the ledger's headline and a scope box computed from the runs."""

import json
import os
import re
from pathlib import Path

import yaml


def _run(root: Path, notebook: str, run_id: str, *, params: dict, results: dict, cuda=None, duration=60.0):
    d = root / "cpu" / notebook / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(
        json.dumps(
            {
                "notebook": notebook,
                "profile": "cpu",
                "run_id": run_id,
                "status": "ok",
                "error": None,
                "started": f"2026-01-01T00:{run_id[-2:]}:00+00:00",
                "duration_s": duration,
            }
        )
    )
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    (d / "results.json").write_text(json.dumps(results))
    (d / "provenance.json").write_text(
        json.dumps(
            {
                "git": {"commit": "feedfacecafe1234", "dirty": False},
                "python": "3.11.7",
                "versions": {"torch": "2.9.9", "triton": "3.8.0", "open_clip_torch": "3.3.0", "numpy": "2.4.6"},
                "device": {"cpu": "Test CPU 9000", "cpu_count": 2, "cuda": cuda},
            }
        )
    )
    (d / "report.html").write_text("<html></html>")
    return d


def _claim(n, verdict, basis, reason=None):
    return {
        "n": n,
        "claim": f"claim {n}",
        "kind": "math",
        "seed_verified": n == 1,
        "seed_confidence": 0.5,
        "verdict": verdict,
        "basis": basis,
        "reason": reason,
        "evidence": "e",
        "link": None,
        "rule": None,
        "group": f"g{n}",
    }


def _outputs(root: Path):
    _run(root, "01_kernel_derivation", "20260101-000001", params={"seed": 0}, results={}, duration=30)
    _run(
        root,
        "03_clip_training",
        "20260101-000002",
        params={
            "models": ["tiny-S", "tiny-B", "tiny-L"],
            "attentions": ["softmax", "eq7"],
            "domains": ["digits", "shapes", "glyphs"],
            "resolution": 32,
            "epochs": 14,
            "seed": 0,
        },
        results={"dataset": {"n_train": 1440}, "summaries": [{"n_params": 210_000}, {"n_params": 1_530_000}]},
        duration=540,
    )
    claims = [
        _claim(1, "supported", "by construction"),
        _claim(2, "contradicted", "proxy"),
        _claim(3, "not testable here", None, "needs an H200 run; none recorded"),
    ]
    summary = {
        "n": 3,
        "counts": {"supported": 1, "contradicted": 1, "inconclusive": 0, "not testable here": 1},
        "headline": "Of 3 claims, 0 were decided on the paper's setup and 1 on proxies.",
    }
    _run(
        root,
        "07_claims_ledger",
        "20260101-000003",
        params={},
        results={"claims": claims, "summary": summary, "findings": []},
    )


def test_first_screen_says_what_was_tested_on_what(tmp_path):
    from linrepro.runner.site import build_site

    _outputs(tmp_path)
    html = build_site(tmp_path).read_text()
    text = re.sub(r"<[^>]+>", "", html)
    scope = html[html.index("<section class=scope") : html.index("</section>")]
    # headline first, then the scope box, then the ledger
    assert html.index("Of 3 claims, 0 were decided") < html.index("<section class=scope") < html.index("id=ledger")
    for fact in (
        "Test CPU 9000, 2 cores, no GPU",
        "feedfaceca",
        "torch 2.9.9",
        "open_clip 3.3.0",
        "python 3.11.7",
        "10 min over 3 notebooks (profile cpu)",  # 30 + 540 + 60 s
        "paper text and code unavailable; equations reconstructed",
        "3 model sizes (tiny-S, tiny-B, tiny-L), 0.21–1.5 M parameters",
        "14 epochs on 1,440 synthetic image–caption pairs of 3 domains (digits, shapes, glyphs) rendered at 32 px",
        "one seed per run (seed 0)",
        "#3 (needs an H200 run; none recorded)",
        "nothing ran on a GPU",
        "no finished run in profile cpu of",
        "unverified",
    ):
        assert fact in scope, fact
    # the spec link resolves, relative to the site folder, to the spec file
    href = re.search(r'<a href="([^"]+)">the spec</a>', scope).group(1)
    assert (tmp_path / "site" / href).resolve() == (Path(__file__).parents[2] / "linrepro/attention/__init__.py")
    # the counts are the summary's and say what they count
    assert "Of the 3 claims: 1 supported, 1 contradicted, 0 inconclusive, 1 not testable here" in text
    assert "not counted in the verdicts above" in text


def test_scope_names_the_gpu_when_one_was_used(tmp_path):
    from linrepro.runner.site import build_site

    _run(
        tmp_path,
        "02_attention_timing",
        "20260101-000001",
        params={"seeds": [0, 1, 2]},
        results={},
        cuda={"name": "NVIDIA H200", "count": 1, "cuda_version": "12.8"},
    )
    html = build_site(tmp_path).read_text()
    scope = html[html.index("<section class=scope") : html.index("</section>")]
    assert "1 × NVIDIA H200 (CUDA 12.8)" in scope and "nothing ran on a GPU" not in scope
    assert "02_attention_timing: 3 seeds (0, 1, 2)" in scope
    assert "no finished 03_clip_training run in this profile" in scope
    assert os.path.exists(tmp_path / "site" / "index.html")


def _recorded(root: Path, notebook: str, run_id: str, *, params: dict, results: dict):
    """A recorded study run: outputs/reference/study/<notebook>/<run-id>/."""
    d = _run(root / "reference" / "_", notebook, run_id, params=params, results=results)  # built under cpu/, moved
    target = root / "reference" / "study" / notebook / run_id
    target.parent.mkdir(parents=True, exist_ok=True)
    d.rename(target)
    meta = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**meta, "profile": "study", "pid": 999999999, "status": "ok"}))
    return target


def test_site_lists_recorded_runs_and_a_fresh_clone_shows_the_recorded_study(tmp_path):
    from linrepro.runner.site import build_site, collect_runs

    r03 = _recorded(
        tmp_path,
        "03_clip_training",
        "20260101-000002",
        params={"seeds": [0, 1, 2], "seed": 0, "models": ["tiny-B"]},
        results={"summaries": []},
    )
    link = "reference/study/03_clip_training/20260101-000002/report.html"
    ledger = {
        "claims": [_claim(1, "supported", "by construction")],
        "summary": {"n": 1, "counts": {"supported": 1}, "headline": "Of 1 claims, recorded."},
        "findings": [],
        "evidence_runs": [
            {
                "notebook": "03_clip_training",
                "profile": "study",
                "run_id": "20260101-000002",
                "recorded": True,
                "seeds": [0, 1, 2],
                "link": link,
            },
        ],
    }
    _recorded(tmp_path, "07_claims_ledger", "20260101-000003", params={}, results=ledger)
    runs = collect_runs(tmp_path)
    assert {(m["notebook"], m["recorded"], m["status"]) for m in runs} == {
        ("03_clip_training", True, "ok"),
        ("07_claims_ledger", True, "ok"),  # a recorded run's pid is not this machine's: still ok
    }
    html = build_site(tmp_path).read_text()
    scope = html[html.index("<section class=scope") : html.index("</section>")]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", scope))
    assert "runs shown 03_clip_training: study (recorded) run 20260101-000002 ; 3 training seeds" in text
    assert "(profile study (recorded))" in text
    assert "ledger run of profile study (recorded)" in html and "Of 1 claims, recorded." in html
    assert "<td>study (recorded)</td>" in html  # the reports table marks them
    site = tmp_path / "site"
    for href in re.findall(r'href="([^"#]+)', html):  # every report link works from the site folder
        if not href.startswith("http"):
            assert (site / href).resolve().exists(), href
    assert (site / os.path.relpath(r03 / "report.html", site)).exists()


def test_the_scope_shows_the_runs_the_ledger_read_across_profiles(tmp_path):
    from linrepro.runner.site import build_site

    _recorded(tmp_path, "03_clip_training", "20260101-000002", params={"seeds": [0, 1, 2]}, results={})
    _run(tmp_path, "03_clip_training", "20260101-000009", params={"seed": 0}, results={})  # newer cpu run, not read
    _run(tmp_path, "01_kernel_derivation", "20260101-000001", params={"seed": 0}, results={})
    ev = [
        {"notebook": "01_kernel_derivation", "profile": "cpu", "run_id": "20260101-000001", "recorded": False},
        {"notebook": "03_clip_training", "profile": "study", "run_id": "20260101-000002", "recorded": True},
    ]
    summary = {"n": 0, "counts": {}, "headline": "h"}
    _run(
        tmp_path,
        "07_claims_ledger",
        "20260101-000010",
        params={},
        results={"claims": [], "summary": summary, "evidence_runs": ev},
    )
    html = build_site(tmp_path).read_text()
    scope = re.sub(
        r"\s+", " ", re.sub(r"<[^>]+>", " ", html[html.index("<section class=scope") : html.index("</section>")])
    )
    assert "01_kernel_derivation: cpu run 20260101-000001" in scope
    assert "03_clip_training: study (recorded) run 20260101-000002 ; 3 training seeds" in scope
    assert "20260101-000009" not in scope and "profiles cpu, study (recorded)" in scope
