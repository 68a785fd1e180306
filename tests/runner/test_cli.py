"""The real `linrepro` CLI, called as a user would (a subprocess), on the real notebooks and on a
tiny throw-away project (LINREPRO_ROOT) for the failure paths."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, cwd=ROOT):
    e = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "linrepro", *args], capture_output=True, text=True, env=e, cwd=cwd, timeout=600
    )


def test_params_lists_every_parameter():
    r = cli("params", "01_kernel_derivation")
    assert r.returncode == 0, r.stderr
    for name, typ in [("seed", "int"), ("check_ns", "list"), ("score_scale", "float")]:
        assert any(line.split()[:2] == [name, typ] for line in r.stdout.splitlines()), r.stdout
    assert "smoke" in r.stdout and "cpu" in r.stdout


def test_unknown_key_exits_2_and_names_it():
    r = cli("run", "01_kernel_derivation", "--profile", "smoke", "-p", "no_such_param=1")
    assert r.returncode == 2
    assert "no_such_param" in r.stderr and "seed" in r.stderr  # valid keys listed


def test_typo_suggests_closest_key():
    r = cli("run", "01", "--profile", "smoke", "-p", "score_scal=0.3")
    assert r.returncode == 2 and "Did you mean 'score_scale'" in r.stderr


def test_wrong_type_exits_2():
    r = cli("run", "01_kernel_derivation", "--profile", "smoke", "-p", "seed=abc")
    assert r.returncode == 2 and "'seed'" in r.stderr and "int" in r.stderr


def test_score_scale_parameter_takes_a_number_or_1_over_n(tmp_path):
    r = cli("run", "03_clip_training", "--profile", "smoke", "-p", "score_scale=1/M")
    assert r.returncode == 2 and "'score_scale'" in r.stderr and "'1/M'" in r.stderr
    r = cli("run", "03_clip_training", "--profile", "smoke", "-p", "score_scale=-0.5")
    assert r.returncode == 2 and "-0.5" in r.stderr
    from linrepro.runner.params import resolve

    nb = ROOT / "notebooks" / "03_clip_training.py"
    assert resolve(nb, "smoke", {"score_scale": "1 / N"})["score_scale"] == "1/N"
    assert resolve(nb, "smoke", {"score_scale": 0.25})["score_scale"] == 0.25


def test_missing_profile_exits_2():
    r = cli("run", "01_kernel_derivation", "--profile", "nope")
    assert r.returncode == 2 and "nope" in r.stderr and "smoke" in r.stderr


def test_unknown_notebook_exits_2():
    r = cli("run", "01_kernel_derivatoin", "--profile", "smoke")
    assert r.returncode == 2 and "01_kernel_derivation" in r.stderr


# ------------------------------------------------------------------ a tiny project
TINY = """\
# %% tags=["parameters"]
n = 3  # how many
fail = False  # raise on purpose
data_dir: "ExistingPath" = ""  # must exist when given

# %%
import plotly.express as px
from linrepro.study.runs import save_results, setup_notebook
setup_notebook()
if fail:
    raise RuntimeError("failing on purpose")
px.line(x=list(range(n)), y=[i * i for i in range(n)]).show()
save_results({"n": n})
"""


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_tiny.py").write_text(TINY)
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "01_tiny.yaml").write_text("n: 4\n")
    (tmp_path / "params" / "broken").mkdir()
    (tmp_path / "params" / "broken" / "01_tiny.yaml").write_text("n: [1, 2\n")
    (tmp_path / "params" / "badtype").mkdir()
    (tmp_path / "params" / "badtype" / "01_tiny.yaml").write_text("n: 2.5\n")
    return tmp_path


def env_for(root):
    return {"LINREPRO_ROOT": str(root), "LINREPRO_OUTPUTS": str(root / "outputs")}


def runs_of(root):
    return sorted((root / "outputs").glob("*/*/*/run.json"))


def test_malformed_and_badly_typed_profiles_exit_2(tiny):
    r = cli("run", "01_tiny", "--profile", "broken", env=env_for(tiny), cwd=tiny)
    assert r.returncode == 2 and "01_tiny.yaml" in r.stderr and "malformed" in r.stderr
    r = cli("run", "01_tiny", "--profile", "badtype", env=env_for(tiny), cwd=tiny)
    assert r.returncode == 2 and "'n'" in r.stderr
    r = cli("run", "01_tiny", "--profile", "smoke", "-p", "data_dir=no/such/dir", env=env_for(tiny), cwd=tiny)
    assert r.returncode == 2 and "data_dir" in r.stderr and "no/such/dir" in r.stderr
    assert runs_of(tiny) == []  # nothing executed


@pytest.mark.slow
def test_runs_are_recorded_never_overwritten_and_failures_marked(tiny):
    env = env_for(tiny)
    assert cli("run", "01_tiny", "--profile", "smoke", "--no-progress", env=env, cwd=tiny).returncode == 0
    r = cli("run", "01_tiny", "--profile", "smoke", "-p", "fail=true", "--no-progress", env=env, cwd=tiny)
    assert r.returncode == 1
    metas = [json.loads(p.read_text()) for p in runs_of(tiny)]
    assert sorted(m["status"] for m in metas) == ["failed", "ok"]
    ok = next(p.parent for p, m in zip(runs_of(tiny), metas) if m["status"] == "ok")
    bad = next(p.parent for p, m in zip(runs_of(tiny), metas) if m["status"] == "failed")
    assert json.loads((ok / "results.json").read_text()) == {"n": 4}
    assert (ok / "params.yaml").read_text().startswith("n: 4")
    prov = json.loads((ok / "provenance.json").read_text())
    assert prov["versions"]["torch"] and prov["date"] and "cpu" in prov["device"]
    assert "failing on purpose" in next(m for m in metas if m["status"] == "failed")["error"]
    assert not (bad / "results.json").exists() and (bad / "report.html").exists()
    # plotly.js is stored once per run: in the report (self-contained), not in the executed notebook
    stored = (ok / "01_tiny.ipynb").read_text()
    assert "plotly.js v" not in stored and "application/vnd.plotly.v1+json" in stored
    assert (ok / "01_tiny.ipynb").stat().st_size < 200_000
    assert (ok / "report.html").read_text().count("plotly.js v") == 1
    r = cli("site", env=env, cwd=tiny)
    index = Path(r.stdout.strip()).read_text()
    assert index.count("<tr>") == 3 and "failed" in index and "failing on purpose" in index


def test_site_lists_runs_newest_first(tmp_path):
    from linrepro.runner.site import collect_runs

    out = tmp_path / "outputs"
    started = {"run-a": "2026-01-02T10:00:00Z", "run-b": "2026-01-03T09:00:00Z", "run-c": "2026-01-01T23:00:00Z"}
    for i, (rid, t) in enumerate(started.items()):
        d = out / ("cpu" if i == 1 else "smoke") / "01_tiny" / rid
        d.mkdir(parents=True)
        (d / "run.json").write_text(
            json.dumps({"notebook": "01_tiny", "profile": d.parts[-3], "run_id": rid, "status": "ok", "started": t})
        )
    broken = out / "smoke" / "01_tiny" / "run-z"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    assert [m["run_id"] for m in collect_runs(out)] == ["run-b", "run-a", "run-c", "run-z"]
    r = cli("site", "--out", str(out))
    assert r.returncode == 0, r.stderr
    index = Path(r.stdout.strip()).read_text()
    assert index.index("run-b") < index.index("run-a") < index.index("run-c") < index.index("run-z")
    assert "newest first" in index
