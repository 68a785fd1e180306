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


# --------------------------------------------------------------------------- the recorded study first
def _params(d, params):
    import yaml

    (d / "params.yaml").write_text(yaml.safe_dump(params))
    return d


def test_the_ledger_prefers_the_recorded_study_per_notebook_and_names_it(tmp_path):
    study03 = _params(
        _run(tmp_path, "study", "03_clip_training", {"accuracy": []}, run_id="20260101-000000-study0", reference=True),
        {"seeds": [0, 1, 2], "seed": 0},
    )
    _params(
        _run(tmp_path, "cpu", "03_clip_training", {"accuracy": []}, run_id="20270101-000000-newcpu"), {"seed": 0}
    )  # newer, but the study is preferred
    cpu01 = _params(_run(tmp_path, "cpu", "01_kernel_derivation", DERIV), {"seed": 0})
    ev = claims.Evidence(tmp_path, ("study", "cpu"))
    assert ev.run("03_clip_training")[0] == study03
    assert ev.run("01_kernel_derivation")[0] == cpu01  # no study run of 01: the profile's own
    used = {
        r["notebook"]: r
        for r in claims.evidence_runs(
            tmp_path, ("study", "cpu"), ["01_kernel_derivation", "03_clip_training", "05_scaling_laws"]
        )
    }
    assert used["03_clip_training"] == {
        "notebook": "03_clip_training",
        "profile": "study",
        "run_id": "20260101-000000-study0",
        "recorded": True,
        "seeds": [0, 1, 2],
        "seed": 0,
        "link": "reference/study/03_clip_training/20260101-000000-study0/report.html",
    }
    assert used["01_kernel_derivation"]["profile"] == "cpu" and not used["01_kernel_derivation"]["recorded"]
    assert used["05_scaling_laws"]["run_id"] is None
    page = claims.evidence_runs_html(list(used.values()), tmp_path, tmp_path / "cpu" / "07_claims_ledger" / "x")
    assert "recorded (outputs/reference)" in page and "3 training seeds (0, 1, 2)" in page and "no finished run" in page
    assert "../../../reference/study/03_clip_training/20260101-000000-study0/report.html" in page
    # the seeds behind training findings are the recorded study's
    assert claims._seeds(ev) == 3


def _acc(model, att, dom, mean, lo, hi, seeds=3):
    return {
        "model": model,
        "attention": att,
        "domain": dom,
        "mean": mean,
        "ci_low": lo,
        "ci_high": hi,
        "seeds": seeds,
        "n_images": 400,
    }


def test_findings_report_intervals_over_seeds_and_read_decision_records(tmp_path):
    from linrepro.study import rules

    acc = [
        _acc("tiny-B", "softmax", "digits", 0.95, 0.93, 0.97),
        _acc("tiny-B", "softmax", "shapes", 0.85, 0.81, 0.88),
        _acc("tiny-B", "eq7", "digits", 0.90, 0.87, 0.93),
    ]
    d03 = _run(tmp_path, "study", "03_clip_training", {"accuracy": acc}, reference=True)
    _params(d03, {"seeds": [0, 1, 2]})
    decision = {
        **rules.decide(0.02, -0.05, 0.09, rules.SAME_EXPONENT, seeds=3, between_models=True),
        "label": "tiny-S…L eq7",
    }
    _run(tmp_path, "study", "05_scaling_laws", {"fits": {}, "same_law": {"decision": decision}}, reference=True)
    rel_rows = [
        {
            "model": "tiny-S",
            "domain": "digits",
            "baseline": "eq7",
            "diff": -0.10,
            "ci_low": -0.14,
            "ci_high": -0.06,
            "p_holm": 0.004,
            "verdict": "contradicted",
            "seeds": 3,
        },
        {
            "model": "tiny-S",
            "domain": "digits",
            "baseline": "softmax",
            "diff": -0.12,
            "ci_low": -0.16,
            "ci_high": -0.08,
            "p_holm": 0.004,
            "verdict": "contradicted",
            "seeds": 3,
        },
    ]
    head = {
        k: {"released": v}
        for k, v in {
            "text_future_share": 0.3,
            "norm_slope": 1.0,
            "vision_dot_min": -1.0,
            "uses_projections": False,
        }.items()
    }
    _run(
        tmp_path,
        "study",
        "08_paper_vs_released_code",
        {"headline": head, "accuracy": {"status": "measured", "rows": rel_rows, "seeds": 3}},
        reference=True,
    )
    rows = claims.findings(tmp_path, ("study", "cpu"))
    by = {r["topic"]: r for r in rows}
    t03 = by["zero-shot top-1 per domain after training (03)"]
    assert "tiny-B softmax: digits 0.950 [0.93, 0.97], shapes 0.850 [0.81, 0.88]" in t03["text"]
    assert "3 training seeds" in t03["text"] and "exploratory" not in t03["text"]
    assert "every domain reaches the issue's target of 0.80" in t03["text"]
    assert t03["link"].startswith("reference/study/03_clip_training/")
    t05 = by["same scaling law? (05)"]
    assert t05["verdict"] == "supported" and t05["rule"]["band"] == [-0.1, 0.1] and "tiny-S…L eq7" in t05["text"]
    t08 = by["released − eq7, zero-shot top-1 per domain (08)"]
    assert t08["verdict"] == "contradicted" and "tiny-S digits -0.100 [-0.140, -0.060]" in t08["text"]
    assert "released − softmax, zero-shot top-1 per domain (08)" in by


def test_one_seed_findings_say_exploratory(tmp_path):
    d03 = _run(
        tmp_path, "cpu", "03_clip_training", {"accuracy": [_acc("tiny-B", "softmax", "digits", 0.6, 0.5, 0.7, seeds=1)]}
    )
    _params(d03, {"seed": 0})
    t03 = claims.findings(tmp_path, ("study", "cpu"))[0]
    assert "1 training seed; one seed: exploratory" in t03["text"] and "not every domain reaches" in t03["text"]


def test_findings_read_05_and_06_decision_records_as_those_notebooks_write_them(tmp_path):
    from linrepro.study import rules

    def dec(est, lo, hi, band, **extra):
        return {**rules.decide(est, lo, hi, band, seeds=3, between_models=True), **extra}

    fits = [
        dec(
            0.03,
            -0.2,
            0.25,
            rules.SAME_EXPONENT,
            fit="error vs n_params_nonembed",
            attention="eq7",
            label="inconclusive (underpowered)",
        ),
        dec(
            0.01, -0.05, 0.06, rules.SAME_EXPONENT, fit="loss vs n_params_nonembed", attention="eq7", label="supported"
        ),
    ]
    overall = {
        "verdict": "inconclusive",
        "label": "inconclusive (the fits disagree: error: underpowered; loss: supported)",
    }
    _run(
        tmp_path,
        "study",
        "05_scaling_laws",
        {"fits": {}, "decisions": fits, "verdict": overall, "margin": 0.1},
        reference=True,
    )
    per_att = {
        "eq7": dec(-0.02, -0.04, 0.01, rules.SAME_ACCURACY, attention="eq7", answer="no: eq7 keeps its accuracy")
    }
    per_res = {"eq7": {48: dec(-0.2, -0.3, -0.1, rules.SAME_ACCURACY, attention="eq7", resolution=48)}}
    _run(
        tmp_path,
        "study",
        "06_resolution_domain",
        {"conclusions": ["- a line"], "decisions": per_att, "by_res": per_res},
        reference=True,
    )
    by = {}
    for r in claims.findings(tmp_path, ("study",)):
        by.setdefault(r["topic"], []).append(r)
    (f05,) = by["same scaling law? (05)"]
    assert f05["verdict"] == "inconclusive" and f05["text"].startswith("inconclusive (the fits disagree")
    assert "error vs n_params_nonembed eq7: 0.03, 95% CI [-0.2, 0.25]" in f05["text"]
    (f06,) = by[
        "does LA degrade more across resolutions? (06)"
    ]  # the per-attention decision, not the per-resolution one
    assert f06["verdict"] == "supported" and f06["text"].startswith("eq7: no: eq7 keeps its accuracy.")
    assert [r["text"] for r in by["domains × resolutions (06)"]] == ["a line"]


def test_findings_read_09s_fair_race(tmp_path):
    results = {
        "seeds": [0, 1, 2],
        "chosen_lr": {"softmax": 0.002, "eq7": 0.004},
        "grid_lrs": {"lrs": {"softmax": 0.002, "eq7": 0.002}, "source": "params/study/03_clip_training.yaml"},
        "lr_choice": {"text": {"softmax": "softmax: lr 0.002", "eq7": "eq7: lr 0.004 (edge)"}},
        "convergence": [{"text": "softmax: 9.1 [8.0, 10] epochs"}, {"text": "eq7 − softmax: +3.0 [1.0, 5.0] epochs"}],
        "highest_resolution": [
            {
                "arm": "mixed",
                "resolution": 96,
                "domain": "digits",
                "diff": 0.01,
                "ci_low": -0.02,
                "ci_high": 0.03,
                "p_holm": 0.5,
                "seeds": 3,
            },
            {
                "arm": "mixed",
                "resolution": 96,
                "domain": "shapes",
                "diff": -0.2,
                "ci_low": -0.3,
                "ci_high": -0.1,
                "p_holm": 0.01,
                "seeds": 3,
            },
            {
                "arm": "interpolated",
                "resolution": 96,
                "domain": "digits",
                "diff": 0.0,
                "ci_low": -0.01,
                "ci_high": 0.01,
                "p_holm": 0.9,
                "seeds": 3,
            },
        ],
        "frontier": {
            "overall": "At equal inference cost: no LA gain in 1 of 1 domain(s).",
            "domains": {"digits": {"text": "digits: no gain."}},
        },
    }
    _run(tmp_path, "study", "09_fair_race", results)
    rows = [r for r in claims.findings(tmp_path, ("study",)) if "(09)" in r["topic"]]
    by = {r["topic"]: r for r in rows}
    lr = by["learning rate per method (09)"]
    assert "eq7: lr 0.004" in lr["text"] and "does not train each method at its chosen rate" in lr["text"]
    assert "+3.0 [1.0, 5.0]" in by["does LA need more epochs? (09)"]["text"]
    mixed = by["LA − softmax at the highest side, mixed arm (09)"]
    assert mixed["verdict"] is None  # one domain inside ±0.05, one wholly outside: no single verdict
    assert "shapes -0.200 [-0.300, -0.100] (Holm p = 0.01; contradicted)" in mixed["text"]
    assert by["LA − softmax at the highest side, interpolated arm (09)"]["verdict"] == "supported"
    assert by["does LA's cheaper inference buy accuracy at equal compute? (09)"]["text"].startswith(
        "At equal inference cost"
    )
    assert all(r["basis"] == "proxy" for r in rows)
