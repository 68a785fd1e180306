"""Run records as the notebooks and the site read them: a truncated artefact names its file and
run, and a run whose process is gone is interrupted, not running."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from linrepro.study import runs


def _run(root, status="ok", results="{}", run_id="20260101-000000-aaaaaa", **meta):
    d = root / "cpu" / "03_clip_training" / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"notebook": "03_clip_training", "status": status, **meta}))
    if results is not None:
        (d / "results.json").write_text(results)
    return d


def test_a_truncated_results_json_names_the_file_and_the_run(tmp_path):
    d = _run(tmp_path, results='{"models": [1, 2')
    with pytest.raises(
        ValueError, match=f"03_clip_training run {d.name}.*{re.escape(str(d / 'results.json'))}.*truncated"
    ):
        runs.load_results(d)
    d2 = _run(tmp_path, results=None, run_id="20260101-000000-bbbbbb")
    with pytest.raises(FileNotFoundError, match=f"run {d2.name}.*{re.escape(str(d2 / 'results.json'))}"):
        runs.load_results(d2)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_running_run_whose_process_is_gone_is_interrupted(tmp_path):
    me = runs.process_record()
    assert me["pid"] == os.getpid() and me["host"] == socket.gethostname()
    alive = _run(tmp_path, "running", None, "r-alive", **me)
    assert runs.run_status(alive) == ("running", None)
    dead = _run(tmp_path, "running", None, "r-dead", **{**me, "pid": _dead_pid()})
    status, note = runs.run_status(dead)
    assert status == "interrupted" and "gone" in note
    if me.get("pid_started") is not None:  # the pid now belongs to another process
        reused = _run(tmp_path, "running", None, "r-reused", **{**me, "pid_started": me["pid_started"] - 1})
        assert runs.run_status(reused)[0] == "interrupted"
    if me.get("boot_id"):  # the machine rebooted since
        rebooted = _run(tmp_path, "running", None, "r-boot", **{**me, "boot_id": "another-boot"})
        assert runs.run_status(rebooted)[0] == "interrupted"
    elsewhere = _run(tmp_path, "running", None, "r-other", **{**me, "host": "another-host", "pid": _dead_pid()})
    assert runs.run_status(elsewhere) == ("running", "on another-host: cannot check its process from here")
    old = _run(tmp_path, "running", None, "r-old")  # recorded before pids were
    assert runs.run_status(old)[0] == "running"
    assert runs.run_status(_run(tmp_path, "ok", "{}", "r-ok")) == ("ok", None)
    broken = tmp_path / "cpu" / "03_clip_training" / "r-broken"
    broken.mkdir()
    (broken / "run.json").write_text('{"status": "ru')
    status, note = runs.run_status(broken)
    assert status == "unreadable" and str(broken / "run.json") in note


def test_find_run_refuses_an_unfinished_run_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LINREPRO_OUTPUTS", str(tmp_path))
    monkeypatch.delenv("LINREPRO_RUN_DIR", raising=False)
    bad = _run(
        tmp_path, "running", '{"partial": true}', "20260102-000000-a", **{**runs.process_record(), "pid": _dead_pid()}
    )
    with pytest.raises(FileNotFoundError, match="20260102-000000-a, is interrupted"):
        runs.find_run("03_clip_training")
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(bad))}.*interrupted"):
        runs.find_run("03_clip_training", str(bad))
    ok = _run(tmp_path, "ok", "{}", "20260101-000000-a")
    assert runs.find_run("03_clip_training") == ok
    no_record = tmp_path / "published"
    no_record.mkdir()
    (no_record / "results.json").write_text("{}")
    assert runs.find_run("03_clip_training", str(no_record)) == no_record  # a copied folder without run.json
