"""The claims ledger against the seed's own table, and verdicts from synthetic run folders."""

import json
from pathlib import Path

import pytest

from linrepro.runner.site import build_site
from linrepro.study import claims

SEED = (
    Path(__file__).parents[1] / "fixtures" / "seed_report.txt"
)  # the seed report (000_962666856d199753.txt), kept in the repo


def _seed_table():
    lines = SEED.read_text().split("Claim\tVerified\tConfidence", 1)[1].split("References", 1)[0]
    rows = []
    for line in lines.strip().splitlines():
        if "\t" in line:
            text, mark, conf = line.rsplit("\t", 2)
            rows.append((text.strip(), mark.strip() == "✓", float(conf)))
    return rows


def test_the_17_claims_are_the_seeds():
    seed = _seed_table()
    assert len(seed) == 17 == len(claims.CLAIMS)
    for c, (text, verified, conf) in zip(claims.CLAIMS, seed):
        assert c.claim == text and c.seed_verified == verified and c.seed_confidence == conf


def _run(root, profile, nb, results, status="ok", run_id="20260101-000000-aaaaaa", reference=False):
    d = root / ("reference" if reference else "") / profile / nb / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(
        json.dumps(
            {
                "notebook": nb,
                "profile": profile,
                "run_id": run_id,
                "status": status,
                "started": "2026-01-01T00:00:00+00:00",
                "error": None if status == "ok" else "boom",  # as linrepro.runner.execute writes it
            }
        )
    )
    (d / "results.json").write_text(json.dumps(results))
    (d / "report.html").write_text("<html></html>")
    return d


def _timing(la_slope, la_ci, sm_slope, sm_ci, speedup=None, device_cuda=None):
    fits = [
        {
            "impl": "la",
            "mode": "fwd",
            "method": "linear",
            "slope": la_slope,
            "ci_low": la_ci[0],
            "ci_high": la_ci[1],
            "n_from": 8192,
            "n_to": 2**18,
        },
        {
            "impl": "sm",
            "mode": "fwd",
            "method": "softmax",
            "slope": sm_slope,
            "ci_low": sm_ci[0],
            "ci_high": sm_ci[1],
            "n_from": 2048,
            "n_to": 2**15,
        },
    ]
    return {
        "fits": fits,
        "la_impl": "la",
        "softmax_impl": "sm",
        "source": "Measured in this run on test (cpu).",
        "speedup": speedup or [],
        "config": {"warmup": 100, "runs": 1000},
        "provenance": {"device": {"cuda": device_cuda}},
    }


DERIV = {
    "factorisation_max_rel_err": 1e-15,
    "params": {"score_scale": 0.5},
    "dot_range": {"n_pairs": 10, "D": 64, "min": -1.0, "max": 1.0},
    "weight_properties": {
        "noncausal": {"eq7_min_score": 0.0, "eq7_max_score": 1.0},
        "causal": {"eq7_min_score": 0.0, "eq7_max_score": 1.0},
    },
    "needle_max_weight_loglog_slope": {"eq4": -0.99, "eq7": 0.0},
    "output_norm_loglog_slope": {"eq4": -0.5, "eq7": 0.5},
}


def _by_n(rows):
    return {r["n"]: r for r in rows}


def test_verdicts_follow_the_measurements(tmp_path):
    _run(tmp_path, "cpu", "01_kernel_derivation", DERIV)
    _run(
        tmp_path,
        "cpu",
        "02_attention_timing",
        _timing(0.95, (0.9, 1.0), 1.4, (1.35, 1.45), [{"n": 32768, "speedup": 180.0}]),
    )
    rows = claims.evaluate(tmp_path, ("cpu",))
    assert len(rows) == 17 and all(r["verdict"] in claims.VERDICTS and r["evidence"] for r in rows)
    v = _by_n(rows)
    assert v[2]["verdict"] == v[5]["verdict"] == "supported"  # LA slope 0.95
    assert v[1]["verdict"] == v[6]["verdict"] == "contradicted"  # softmax slope 1.4, CI excludes 2
    assert "1.40" in v[1]["evidence"] and v[1]["numbers"]["slope"] == 1.4
    assert v[7]["verdict"] == "not testable here" and "H200" in v[7]["reason"]
    assert v[9]["verdict"] == "not testable here" and "LAION-400M" in v[9]["reason"]
    for n in (14, 15, 16, 17):
        assert v[n]["verdict"] == "supported", v[n]
    assert v[2]["link"].startswith("cpu/02_attention_timing/") and "#Log-log" in v[2]["link"]


def test_bad_math_is_contradicted_and_missing_runs_are_not_testable(tmp_path):
    bad = json.loads(json.dumps(DERIV))
    bad["weight_properties"]["causal"]["eq7_max_score"] = 1.7
    bad["dot_range"]["max"] = 1.2
    _run(tmp_path, "cpu", "01_kernel_derivation", bad)
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert v[17]["verdict"] == "contradicted" and v[15]["verdict"] == "contradicted"
    assert v[1]["verdict"] == "not testable here" and "02_attention_timing" in v[1]["evidence"]


def test_a_recorded_h200_run_decides_the_speedup_claim(tmp_path):
    _run(tmp_path, "cpu", "02_attention_timing", _timing(1.0, (0.9, 1.1), 2.0, (1.9, 2.1)))
    _run(
        tmp_path,
        "h200",
        "02_attention_timing",
        _timing(
            1.0,
            (0.95, 1.05),
            1.98,
            (1.9, 2.05),
            [{"n": 2**22, "speedup": 950.0, "speedup_low": 900.0, "speedup_high": 1000.0, "sliced": True}],
            {"name": "NVIDIA H200"},
        ),
        reference=True,
    )
    h200 = tmp_path / "reference/h200/02_attention_timing/20260101-000000-aaaaaa/results.json"
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    # sliced softmax with no slice check recorded: not validated, so not decided
    assert v[7]["verdict"] == "inconclusive" and "not validated" in v[7]["evidence"]
    res = json.loads(h200.read_text())
    res["slice_checks"] = [{"impl": "sm", "mode": "fwd", "n": 2**19, "rel_diff": 0.03, "agrees": True}]
    h200.write_text(json.dumps(res))
    v = _by_n(claims.evaluate(tmp_path, ("cpu",)))
    assert v[7]["verdict"] == "supported" and "950" in v[7]["evidence"], v[7]
    assert v[7]["basis"] == "proxy"  # an H200, but _timing's config is not the paper's shape
    assert v[3]["verdict"] == "not testable here" and v[3]["basis"] == "configuration"
    assert v[7]["link"].startswith("reference/h200/")
    res["speedup"][0].pop("speedup_low")  # no interval: never more than inconclusive
    h200.write_text(json.dumps(res))
    assert _by_n(claims.evaluate(tmp_path, ("cpu",)))[7]["verdict"] == "inconclusive"


def test_site_puts_the_ledger_first_and_shows_failures(tmp_path):
    _run(tmp_path, "cpu", "01_kernel_derivation", DERIV)
    _run(tmp_path, "cpu", "03_clip_training", {}, status="failed", run_id="20260101-000001-bbbbbb")
    rows = claims.evaluate(tmp_path, ("cpu",))
    _run(
        tmp_path,
        "cpu",
        "07_claims_ledger",
        {"summary": claims.summary(rows), "claims": rows},
        run_id="20260101-000002-cccccc",
    )
    index = build_site(tmp_path)
    page = index.read_text()
    assert page.index("Claims ledger") < page.index("id=reports")
    assert page.count("<td class='verdict'") == 17
    assert 'class="failed">failed' in page
    # links are relative to the site folder and point at existing reports
    assert "href='../cpu/01_kernel_derivation/20260101-000000-aaaaaa/report.html#" in page
    assert "<math" in page  # the claims' LaTeX is MathML


def test_unreadable_evidence_is_shown_with_its_path_and_the_ledger_goes_on(tmp_path):
    """A truncated results.json of one run: the claims that read it say so, with the path; every
    other claim, the findings and the site are computed as usual (issue 13, item 9)."""
    _run(tmp_path, "cpu", "01_kernel_derivation", DERIV)
    bad = _run(tmp_path, "cpu", "03_clip_training", {"digits_top1": {"tiny-S/eq7": 0.9}})
    (bad / "results.json").write_text('{"digits_top1": {"tiny-S/eq7": 0.')
    rows = claims.evaluate(tmp_path, ("cpu",))
    v = _by_n(rows)
    assert len(rows) == 17
    for n in (8,):  # the claim whose evidence is the 03 run
        assert v[n]["verdict"] == "inconclusive" and v[n]["reason"] == "unreadable evidence", v[n]
        assert str(bad / "results.json") in v[n]["evidence"] and "03_clip_training run" in v[n]["evidence"]
        assert v[n]["source_run"] == str(bad)
    for n in (15, 16, 17):  # the 01 run is fine
        assert v[n]["verdict"] == "supported", v[n]
    again = claims.Evidence(tmp_path, ("cpu",))
    for _ in range(2):  # asked twice, still unreadable (never "has not run")
        with pytest.raises(claims.UnreadableEvidence, match="results.json"):
            again.run("03_clip_training")
    found = claims.findings(tmp_path, ("cpu",))
    (row,) = [r for r in found if "(03)" in r["topic"]]
    assert "unreadable" in row["text"] and str(bad / "results.json") in row["text"] and row["link"] is None
    assert "unreadable" in claims.findings_html(found, tmp_path, tmp_path)
    _run(
        tmp_path,
        "cpu",
        "07_claims_ledger",
        {"summary": claims.summary(rows), "claims": rows, "findings": found},
        run_id="20260101-000002-cccccc",
    )
    page = build_site(tmp_path).read_text()
    assert page.count("<td class='verdict'") == 17 and str(bad / "results.json") in page


def test_the_site_survives_an_unreadable_ledger(tmp_path):
    led = _run(tmp_path, "cpu", "07_claims_ledger", {}, run_id="20260101-000002-cccccc")
    (led / "results.json").write_text('{"summary": {"cou')
    page = build_site(tmp_path).read_text()
    assert "cannot be read" in page and str(led / "results.json") in page
    (led / "results.json").write_text('{"summary": {}}')
    assert "cannot be read" in build_site(tmp_path).read_text()


def test_notebook_07_runs_through_an_unreadable_training_run(tmp_path):
    """The real `linrepro run 07_claims_ledger` with a truncated 03 results.json beside a good 01 run."""
    import os
    import subprocess
    import sys

    _run(tmp_path, "smoke", "01_kernel_derivation", DERIV)
    bad = _run(tmp_path, "smoke", "03_clip_training", {})
    (bad / "results.json").write_text('{"summaries": [')
    r = subprocess.run(
        [sys.executable, "-m", "linrepro", "run", "07_claims_ledger", "--profile", "smoke", "--no-progress"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        env=dict(os.environ),
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (led,) = tmp_path.glob("smoke/07_claims_ledger/*/results.json")
    res = json.loads(led.read_text())
    v = _by_n(res["claims"])
    assert v[8]["reason"] == "unreadable evidence" and str(bad / "results.json") in v[8]["evidence"]
    assert v[15]["verdict"] == "supported"
    assert any("unreadable" in f["text"] for f in res["findings"])
    assert "Unreadable evidence" in (led.parent / "report.html").read_text()
