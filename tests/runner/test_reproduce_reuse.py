"""`linrepro reproduce` reuses finished work (issue 16): a notebook whose newest run has the same
source, parameters and package code is taken as it is; any change runs it, and everything after it,
again; `--fresh` runs everything anew; a resumable notebook continues in its own folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

NB = """\
# %% tags=["parameters"]
n = 3  # how many

# %%
from linrepro.study.runs import save_results, setup_notebook
setup_notebook()
save_results({"n": n})
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params" / "two").mkdir(parents=True)
    for stem in ("01_first", "02_second"):
        (tmp_path / "notebooks" / f"{stem}.py").write_text(NB)
        (tmp_path / "params" / "two" / f"{stem}.yaml").write_text("n: 2\n")
    return tmp_path


def _reproduce(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, LINREPRO_ROOT=str(root), LINREPRO_OUTPUTS=str(root / "outputs"))
    return subprocess.run(
        [sys.executable, "-m", "linrepro", "reproduce", "--profile", "two", "--no-progress", *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=600,
    )


def _runs(root: Path, stem: str) -> list[Path]:
    return sorted((root / "outputs" / "two" / stem).iterdir())


@pytest.mark.slow
def test_reproduce_reuses_unchanged_runs_and_reruns_from_the_first_change(tmp_path):
    root = _project(tmp_path)
    r = _reproduce(root)
    assert r.returncode == 0, r.stdout + r.stderr
    first = {s: _runs(root, s) for s in ("01_first", "02_second")}
    assert all(len(v) == 1 for v in first.values())
    meta = json.loads((first["01_first"][0] / "run.json").read_text())
    assert set(meta["fingerprint"]) == {"notebook", "params", "code"}

    r = _reproduce(root)  # nothing changed: both reused, no new folder
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("reused") == 2, r.stdout
    assert {s: _runs(root, s) for s in first} == first

    # the second notebook's parameters change: the first is reused, the second runs again
    (root / "params" / "two" / "02_second.yaml").write_text("n: 5\n")
    r = _reproduce(root)
    assert r.returncode == 0 and r.stdout.count("reused") == 1, r.stdout
    assert len(_runs(root, "01_first")) == 1 and len(_runs(root, "02_second")) == 2
    assert json.loads((_runs(root, "02_second")[-1] / "results.json").read_text())["n"] == 5

    # the first notebook's source changes: it and everything after it run again
    (root / "notebooks" / "01_first.py").write_text(NB.replace("how many", "how many (edited)"))
    r = _reproduce(root)
    assert r.returncode == 0 and "reused" not in r.stdout, r.stdout
    assert len(_runs(root, "01_first")) == 2 and len(_runs(root, "02_second")) == 3

    r = _reproduce(root, "--fresh")  # --fresh: everything anew
    assert r.returncode == 0 and "reused" not in r.stdout, r.stdout
    assert len(_runs(root, "01_first")) == 3 and len(_runs(root, "02_second")) == 4


def test_a_failed_run_is_never_reused(tmp_path):
    from linrepro.runner.execute import _previous, fingerprint

    root = _project(tmp_path)
    nb = root / "notebooks" / "01_first.py"
    fp = fingerprint(nb, {"n": 2})
    run = root / "outputs" / "two" / "01_first" / "20260101-000000-aaaaaa"
    run.mkdir(parents=True)
    (run / "results.json").write_text("{}")
    for status, expected in (("ok", "same"), ("failed", "failed")):
        (run / "run.json").write_text(json.dumps({"status": status, "fingerprint": fp}))
        assert _previous(run.parent, fp) == (run, expected)
    # other parameters or another notebook: not the same run at all
    (run / "run.json").write_text(json.dumps({"status": "ok", "fingerprint": fp}))
    assert _previous(run.parent, fingerprint(nb, {"n": 3})) == (None, None)
    # other code: found, but not reusable as it is
    (run / "run.json").write_text(json.dumps({"status": "ok", "fingerprint": {**fp, "code": "0" * 16}}))
    assert _previous(run.parent, fp) == (run, "changed since")
    # a resumable notebook (03) finds its own run by its parameters, whatever its source now is
    other_source = {**fp, "notebook": "f" * 16}
    assert _previous(run.parent, other_source) == (None, None)
    assert _previous(run.parent, other_source, resumable=True) == (run, "changed since")
    assert yaml.safe_dump({"n": 2})  # the parameters are digested as YAML


def test_code_digest_changes_with_the_code(tmp_path, monkeypatch):
    from linrepro.utils import provenance

    a = provenance.code_digest()
    assert a == provenance.code_digest() and len(a) == 16
    assert provenance.code_digest(provenance.TRAINING_CODE) != a
    # evaluation code is not training code: re-evaluating never forces retraining
    assert not any("zeroshot" in p or "retrieval" in p for p in provenance.TRAINING_CODE)


def test_a_resumed_run_keeps_the_time_of_its_earlier_executions(tmp_path):
    from linrepro.runner.execute import _resumed_meta

    (tmp_path / "run.json").write_text(json.dumps({"started": "t0", "duration_s": 100.0, "status": "interrupted"}))
    m = _resumed_meta(tmp_path, {"started": "t1"})
    assert (m["started"], m["resumed"], m["earlier_s"], m["executions_s"]) == ("t0", ["t1"], 100.0, [100.0])
    # a second resumption: the total so far, each execution listed
    (tmp_path / "run.json").write_text(json.dumps({**m, "duration_s": 130.0, "executions_s": [100.0, 30.0]}))
    m = _resumed_meta(tmp_path, {"started": "t2"})
    assert (m["earlier_s"], m["executions_s"], m["resumed"]) == (130.0, [100.0, 30.0], ["t1", "t2"])


def test_a_docstring_or_comment_edit_keeps_the_code_digest_but_a_code_edit_changes_it(tmp_path):
    from linrepro.utils.provenance import _normalised_source

    def src(text):
        p = tmp_path / "m.py"
        p.write_text(text)
        return _normalised_source(p)

    base = src('"""Module."""\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    assert src('"""Module, corrected."""\n\ndef f(x):\n    """Two times x."""\n    return 2 * x  # doubled\n') == base
    assert src("def f(x):\n    return 2 * x\n") == base  # no docstrings at all
    assert src('"""Module."""\n\ndef f(x):\n    """Twice x."""\n    return 3 * x\n') != base
    assert src("def f(x):\n    return 'a'\n") != src("def f(x):\n    return 'b'\n")  # other strings count
