"""scripts/record_study.py: the study's runs copied under outputs/reference/study/, small and still working."""

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location("record_study", ROOT / "scripts" / "record_study.py")
rec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rec)

JS = "/**\n* plotly.js v9.9.9\n* a stand-in\n*/\nwindow.Plotly = {newPlot: function () {}};" + " " * 5000
ID03, ID07 = "20260101-000002-cccccc", "20260101-000003-dddddd"


def _report(body: str, js: str = JS) -> str:
    # as linrepro.runner.report writes it: plotly.js inlined once in <head>, a link back to the site
    return (
        "<html><head><script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script charset="utf-8">{js}</script>\n</head><body><main>'
        '<div class="lr-top"><a href="../../../site/index.html">← all reports</a></div>'
        f"{body}</main></body></html>"
    )


def _run(out: Path, nb: str, run_id: str, results: dict, *, status="ok", report_body="", profile="study"):
    d = out / profile / nb / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"notebook": nb, "profile": profile, "run_id": run_id, "status": status}))
    (d / "results.json").write_text(json.dumps(results))
    (d / "params.yaml").write_text("seeds: [0, 1, 2]\nseed: 0\n")
    (d / "provenance.json").write_text("{}")
    (d / "report.html").write_text(_report(report_body))
    (d / f"{nb}.ipynb").write_text("{}")
    (d / "kernel.log").write_text("log")
    return d


def _study(out: Path) -> dict:
    """03 (with checkpoints, data and per-run summaries), an older 03, a newer failed 03, and a ledger."""
    summary = {
        "model": "tiny-S",
        "attention": "eq7",
        "seed": 0,
        "score_scale": "1/N",
        "checkpoint": "runs/tiny-S-eq7-seed0/checkpoints/epoch_1.pt",
        "run_dir": "runs/tiny-S-eq7-seed0",
        "zero_shot": [],
    }
    _run(out, "03_clip_training", "20250101-000000-old000", {"summaries": []})
    d03 = _run(out, "03_clip_training", ID03, {"summaries": [summary], "dataset": {"dir": "data/x"}})
    _run(out, "03_clip_training", "20270101-000000-failed", {}, status="failed")
    run = d03 / "runs" / "tiny-S-eq7-seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "epoch_1.pt").write_bytes(b"\0" * 200_000)
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.json").write_text("{}")
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "steps.csv").write_text("step,loss\n1,3.0\n")
    (run / "steps.jsonl").write_text("{}\n")
    (d03 / "data" / "x").mkdir(parents=True)
    (d03 / "data" / "x" / "train.csv").write_text("path,caption\n")
    link = f"study/03_clip_training/{ID03}/report.html#Zero-shot"
    d07 = _run(
        out,
        "07_claims_ledger",
        ID07,
        {
            "claims": [{"n": 1, "link": link, "source_run": str(d03)}],
            "evidence_runs": [
                {"notebook": "03_clip_training", "profile": "study", "run_id": ID03, "recorded": False, "link": link}
            ],
        },
        report_body=f'<a href="../../03_clip_training/{ID03}/report.html#Zero-shot">report</a>'
        '<a href="#top">top</a><a href="https://example.org/x">paper</a>',
    )
    return {"03": d03, "07": d07}


def test_records_the_newest_finished_runs_small_and_linked(tmp_path):
    out = tmp_path / "outputs"
    _study(out)
    m = rec.record("study", out, limit_mb=15)
    dest = out / "reference" / "study"
    r03, r07 = dest / "03_clip_training" / ID03, dest / "07_claims_ledger" / ID07
    assert sorted(p.name for p in dest.iterdir()) == [
        "03_clip_training",
        "07_claims_ledger",
        "RECORDED.json",
        "plotly.min.js",
    ]
    assert [d.name for d in (dest / "03_clip_training").iterdir()] == [ID03]  # the newest ok run, not the failed one
    files = sorted(p.relative_to(r03).as_posix() for p in r03.rglob("*") if p.is_file())
    assert files == [
        "params.yaml",
        "provenance.json",
        "report.html",
        "results.json",
        "run.json",
        "runs/tiny-S-eq7-seed0/steps.csv",
        "runs/tiny-S-eq7-seed0/summary.json",
    ]  # no checkpoints, data/, tensorboard/, logs or executed notebook
    # plotly.js once, shared, loaded by a relative path that resolves from each report
    assert (dest / "plotly.min.js").read_text() == JS
    for report in (r03 / "report.html", r07 / "report.html"):
        html = report.read_text()
        assert "plotly.js v9.9.9" not in html and "window.PlotlyConfig" in html
        src = re.search(r'<script charset="utf-8" src="([^"]+)"', html).group(1)
        assert src == "../../plotly.min.js" and (report.parent / src).resolve() == (dest / "plotly.min.js").resolve()
        # the link back to the site still reaches outputs/site/index.html
        back = re.search(r'href="([^"]*site/index\.html)"', html).group(1)
        assert (report.parent / back).resolve() == (out / "site" / "index.html").resolve()
    # the ledger's links between runs reach the recorded copies; absolute and anchor links are untouched
    html07 = (r07 / "report.html").read_text()
    assert f'href="../../03_clip_training/{ID03}/report.html#Zero-shot"' in html07
    assert 'href="#top"' in html07 and 'href="https://example.org/x"' in html07
    res = json.loads((r07 / "results.json").read_text())
    link = f"reference/study/03_clip_training/{ID03}/report.html#Zero-shot"
    assert res["claims"][0]["link"] == link and res["evidence_runs"][0]["link"] == link
    assert res["evidence_runs"][0]["recorded"] is True
    assert res["claims"][0]["source_run"] == f"reference/study/03_clip_training/{ID03}"
    assert json.loads((r03 / "run.json").read_text())["recorded"] == {"from": f"study/03_clip_training/{ID03}"}
    # the manifest: what was recorded, from where, what was dropped, the size
    assert m["bytes"] == sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert m["bytes"] < 100_000 and json.loads((dest / "RECORDED.json").read_text())["runs"][0]["run_id"] == ID03
    dropped = {g["why"] for g in m["runs"][0]["dropped"]}
    assert {"checkpoints/ is not recorded", "data/ is not recorded", ".ipynb files are not recorded"} <= dropped
    # the original runs are untouched
    assert (out / "study" / "03_clip_training" / ID03 / "runs/tiny-S-eq7-seed0/checkpoints/epoch_1.pt").exists()


def test_recorded_paths_resolve_and_a_missing_checkpoint_is_named(tmp_path):
    from linrepro.clip.train import CheckpointError
    from linrepro.study.experiments import load_model, load_training

    out = tmp_path / "outputs"
    _study(out)
    rec.record("study", out)
    r03 = out / "reference" / "study" / "03_clip_training" / ID03
    t = load_training(r03)
    s = t["summaries"][0]
    assert Path(s["run_dir"]) == r03 / "runs" / "tiny-S-eq7-seed0" and Path(s["run_dir"], "summary.json").exists()
    with pytest.raises(CheckpointError, match=r"epoch_1\.pt of run .* does not exist"):
        load_model(s)


def test_over_the_limit_stops_and_keeps_the_previous_recording(tmp_path):
    out = tmp_path / "outputs"
    _study(out)
    rec.record("study", out)
    before = (out / "reference" / "study" / "RECORDED.json").read_text()
    with pytest.raises(rec.RecordError, match=r"over the 0\.001 MB limit; largest files: plotly\.min\.js \(5\.1 kB\)"):
        rec.record("study", out, limit_mb=0.001)
    assert (out / "reference" / "study" / "RECORDED.json").read_text() == before
    assert [p.name for p in (out / "reference").iterdir()] == ["study"]  # no half-written copy left beside it
    assert rec.main(["--out", str(out), "--limit-mb", "0.001"]) == 1


def test_two_plotly_versions_get_two_shared_files(tmp_path):
    out = tmp_path / "outputs"
    d = _study(out)
    other = JS.replace("v9.9.9", "v9.9.10")
    (d["07"] / "report.html").write_text(_report("", js=other))
    m = rec.record("study", out)
    dest = out / "reference" / "study"
    assert len(m["plotly_js"]) == 2 and "plotly.min.js" in m["plotly_js"]
    src = re.search(r'src="([^"]+)"', (dest / "07_claims_ledger" / ID07 / "report.html").read_text()).group(1)
    assert (dest / "07_claims_ledger" / ID07 / src).resolve().read_text() == other


def test_nothing_to_record_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(rec.RecordError, match="no runs of profile 'study'"):
        rec.record("study", tmp_path)
    assert rec.main(["--out", str(tmp_path)]) == 1
    assert "linrepro reproduce --profile study" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "reference" / "study")


def test_recorded_steps_keep_every_step_and_the_loss_curve_only():
    text = (
        "step,batch_time,contrastive_loss,data_time,loss,lr,samples_per_second,samples_per_second_per_gpu,scale\n"
        "0,0.1424429,4.3130264,0.0190372,4.313026428222656,4e-05,449.3027120306503,449.30271,14.2857\n"
        "1,0.1107,4.20971,0.017,4.209712345,8e-05,542.2049,542.2,14.28\n"
    )
    out = rec.thin_steps(text)
    assert out.splitlines() == ["step,loss,lr,samples_per_second", "0,4.313,4e-05,449.3", "1,4.2097,8e-05,542.2"]
    assert len(out) < len(text) / 2


def test_a_large_results_json_is_kept_compact_with_the_same_values(tmp_path):
    """04's results (per-image outcomes of 30 models × 5,000 MNIST digits) pass the 1 MB file limit:
    results are always recorded, without indentation, and read back equal."""
    out = tmp_path / "outputs"
    big = {"rows": [{"model": f"m{i}", "correct": [i % 2] * 5000} for i in range(40)], "takeaway": "t"}
    d = _run(out, "04_zero_shot_eval", "20260101-000000-big000", {})
    (d / "results.json").write_text(json.dumps(big, indent=1))  # as save_results writes it
    assert (d / "results.json").stat().st_size > rec.MAX_FILE_BYTES
    rec.record("study", out, limit_mb=15)
    kept = out / "reference" / "study" / "04_zero_shot_eval" / "20260101-000000-big000" / "results.json"
    assert json.loads(kept.read_text()) == big
    assert kept.stat().st_size < (d / "results.json").stat().st_size / 2
