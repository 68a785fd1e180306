"""The real `linrepro` CLI, called as a user would (a subprocess), on the real notebooks and on a
tiny throw-away project (LINREPRO_ROOT) for the failure paths."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
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


# sleeps until a signal comes (for the interrupted-run tests)
SLEEPER = """\
# %% tags=["parameters"]
seconds = 60  # [0, ...) how long to sleep

# %%
import time
from linrepro.study.runs import run_dir
(run_dir() / "started").write_text("yes")
time.sleep(seconds)
"""

# writes until the disk is full (for the full-disk test)
FILLER = """\
# %% tags=["parameters"]
chunk_kb = 64  # [1, ...) size of each write

# %%
from linrepro.study.runs import run_dir
with open(run_dir() / "filler", "wb") as f:
    while True:
        f.write(bytes(chunk_kb * 1024))
        f.flush()
"""


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_tiny.py").write_text(TINY)
    (tmp_path / "notebooks" / "02_sleep.py").write_text(SLEEPER)
    (tmp_path / "notebooks" / "03_fill.py").write_text(FILLER)
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "01_tiny.yaml").write_text("n: 4\n")
    (tmp_path / "params" / "smoke" / "02_sleep.yaml").write_text("seconds: 60\n")
    (tmp_path / "params" / "smoke" / "03_fill.yaml").write_text("chunk_kb: 64\n")
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
    for d in (ok, bad):  # the space set aside for a full disk is given back; the kernel's log is kept
        assert not (d / ".linrepro-reserve").exists() and (d / "kernel.log").exists()
    assert all(m["pid"] != os.getpid() and m["host"] == socket.gethostname() for m in metas)
    # plotly.js is stored once per run: in the report (self-contained), not in the executed notebook
    stored = (ok / "01_tiny.ipynb").read_text()
    assert "plotly.js v" not in stored and "application/vnd.plotly.v1+json" in stored
    assert (ok / "01_tiny.ipynb").stat().st_size < 200_000
    assert (ok / "report.html").read_text().count("plotly.js v") == 1
    r = cli("site", env=env, cwd=tiny)
    index = Path(r.stdout.strip()).read_text()
    runs_table = index.split("<h2 id=reports>", 1)[1]  # the scope box above has tables of its own
    assert runs_table.count("<tr>") == 3 and "failed" in runs_table and "failing on purpose" in runs_table


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


# ------------------------------------------------------------------ runs that end early say so (issue 13, item 6)
def _procs_with(needle: str) -> list[int]:
    """Pids of live processes whose command line or working folder mentions ``needle`` (Linux /proc)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and int(d.name) != os.getpid() and (needle in cmd or cwd == needle):
            found.append(int(d.name))
    return found


def _wait_gone(needle: str, timeout: float = 30) -> list[int]:
    end = time.time() + timeout
    while (left := _procs_with(needle)) and time.time() < end:
        time.sleep(0.5)
    for pid in left:  # what the test started and left behind: end it, then fail
        os.kill(pid, signal.SIGKILL)
    return left


def _default_signals():
    """In the child: SIGINT and SIGHUP as a terminal session has them. A shell that runs the tests
    in the background (``make test &``) starts them ignored, and an ignored signal stays ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start_sleeper(root, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "linrepro", "run", "02_sleep", "--profile", "smoke", "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, **env_for(root)),
        cwd=root,
        preexec_fn=_default_signals,
    )


def _wait_started(root, proc, timeout=180) -> Path:
    end = time.time() + timeout
    while time.time() < end:
        found = list((root / "outputs").glob("smoke/02_sleep/*/started"))
        if found:
            return found[0].parent
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the notebook did not start: {proc.communicate()}")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_records_an_interrupted_run_and_says_where_in_one_line(tiny, sig):
    """`timeout`, a batch scheduler, a dropped SSH session and Ctrl-C: run.json says interrupted
    (not running forever), with the pid and host; the user gets one line naming the partial run."""
    p = _start_sleeper(tiny)
    try:
        run = _wait_started(tiny, p)
        p.send_signal(getattr(signal, sig))
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 128 + getattr(signal, sig), (p.returncode, err)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted" and sig in meta["error"], meta
    assert meta["pid"] == p.pid and meta["host"] == socket.gethostname() and meta["finished"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(run) in lines[0] and "interrupted" in lines[0], err
    assert _wait_gone(str(tiny)) == []  # the kernel went with it
    index = Path(cli("site", env=env_for(tiny), cwd=tiny).stdout.strip()).read_text()
    assert 'class="interrupted">interrupted' in index and sig in index


def test_a_killed_run_is_shown_interrupted_by_the_site_and_find_run(tiny, monkeypatch):
    """SIGKILL (or a power cut) leaves run.json at "running": its recorded pid is gone, so the site
    and find_run call it interrupted."""
    p = _start_sleeper(tiny, "-p", "seconds=20")
    try:
        run = _wait_started(tiny, p)
        p.kill()
        p.wait(timeout=60)
    finally:
        p.kill()
    _wait_gone(str(tiny))
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "running" and meta["pid"] == p.pid
    index = Path(cli("site", env=env_for(tiny), cwd=tiny).stdout.strip()).read_text()
    assert 'class="interrupted">interrupted' in index and f"process {p.pid}" in index
    from linrepro.study.runs import find_run, run_status

    assert run_status(run)[0] == "interrupted"
    monkeypatch.setenv("LINREPRO_OUTPUTS", str(tiny / "outputs"))
    monkeypatch.delenv("LINREPRO_RUN_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=f"{run.name}.*interrupted"):
        find_run("02_sleep", profile="smoke")
    with pytest.raises(FileNotFoundError, match="interrupted"):
        find_run("02_sleep", str(run))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_timeout_on_a_smoke_training_leaves_an_interrupted_run(tmp_path):
    """The acceptance command: `timeout 15 linrepro run 03_clip_training --profile smoke --out T`, with
    more epochs than 15 s can train (on a quiet machine the smoke profile itself can finish in time)."""
    e = dict(os.environ)
    r = subprocess.run(
        ["timeout", "15", sys.executable, "-m", "linrepro", "run", "03_clip_training", "--profile", "smoke"]
        + ["-p", "epochs=40", "--out", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        env=e,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 124, r.stderr
    (meta_path,) = tmp_path.glob("smoke/03_clip_training/*/run.json")
    meta = json.loads(meta_path.read_text())
    assert meta["status"] == "interrupted" and "SIGTERM" in meta["error"], meta
    assert str(meta_path.parent) in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    assert _wait_gone(str(tmp_path)) == []  # no training left running
    index = Path(cli("site", "--out", str(tmp_path)).stdout.strip()).read_text()
    assert 'class="interrupted">interrupted' in index


def _in_tmpfs(mount: Path, size: str, command: str, ro: bool = False) -> subprocess.CompletedProcess:
    """``command`` (sh) with a fresh tmpfs of ``size`` on ``mount``, in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f"mount -t tmpfs -o {opts} tmpfs {mount} && {command}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "mount" in r.stderr and ("Operation not permitted" in r.stderr or "unshare failed" in r.stderr):
        pytest.skip(f"no private tmpfs here: {r.stderr.strip()}")
    return r


def test_a_full_disk_still_leaves_the_error_record(tiny):
    """A run that fills the disk: run.json says failed with the error, and error.txt is not empty."""
    disk, keep = tiny / "disk", tiny / "kept"
    disk.mkdir()
    cmd = (
        f"LINREPRO_ROOT={tiny} {sys.executable} -m linrepro run 03_fill --profile smoke --no-progress --out {disk}; "
        f"echo rc=$?; cp -a {disk} {keep}"
    )
    r = _in_tmpfs(disk, "6m", cmd)
    assert "rc=1" in r.stdout, r.stdout + r.stderr
    (run,) = keep.glob("smoke/03_fill/*")
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and "No space left on device" in meta["error"], meta
    assert "No space left on device" in (run / "error.txt").read_text()


# ------------------------------------------------------------------ parameter ranges (issue 13, item 10)
@pytest.mark.parametrize(
    "stem, override",
    [
        ("03_clip_training", "epochs=0"),
        ("01_kernel_derivation", "check_ns=[]"),
        ("01_kernel_derivation", "n_queries=-5"),
        ("03_clip_training", "warmup=-3"),
        ("02_attention_timing", "warmup=-3"),
        ("02_attention_timing", "runs=0"),
        ("03_clip_training", "lr=-1e-3"),
    ],
)
def test_out_of_range_parameters_exit_2_naming_the_key(stem, override, tmp_path):
    r = cli("run", stem, "--profile", "smoke", "-p", override, "--out", str(tmp_path))
    key = override.split("=")[0]
    assert r.returncode == 2 and f"'{key}'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_float_parameters_take_yaml_exponents():
    """YAML 1.1 reads 1e-3 as a string; a float parameter takes it as 0.001."""
    from linrepro.runner.params import ParamError, parse_overrides, resolve

    nb = ROOT / "notebooks" / "03_clip_training.py"
    assert resolve(nb, "smoke", parse_overrides(["lr=1e-3"]))["lr"] == 0.001
    assert resolve(nb, "smoke", parse_overrides(["lr=5E-4"]))["lr"] == 0.0005
    for bad in ("lr=abc", "lr=1e-3x", "seed=1e3"):
        with pytest.raises(ParamError, match=repr(bad.split("=")[0])):
            resolve(nb, "smoke", parse_overrides([bad]))


RANGES = """\
# %% tags=["parameters"]
a = 1  # [1, ...) at least one
b = 0.5  # (0, 1) strictly inside
c = [1, 2]  # non-empty [1, 10] each between 1 and 10
d = {"x": 1}  # [0, ...) values not negative
e = "auto"  # {auto, cpu, cuda} where
f = ["fwd"]  # non-empty {fwd, fwdbwd} modes
g = ""  # (empty: none) not a range, just help
h = -2.5  # [-3.5, -1] negative
"""


@pytest.mark.parametrize(
    "key, bad, good",
    [
        ("a", 0, 1),
        ("b", 1.0, 0.999),
        ("b", 0, 1e-9),
        ("c", [], [10]),
        ("c", [1, 11], [1, 10]),
        ("d", {"x": -1}, {}),
        ("e", "gpu", "cuda"),
        ("f", ["fwd", "bwd"], ["fwdbwd"]),
        ("f", [], ["fwd"]),
        ("h", -4, -3.5),
    ],
)
def test_ranges_declared_in_the_parameters_cell(tmp_path, key, bad, good):
    from linrepro.runner.params import ParamError, notebook_params, validate

    nb = tmp_path / "01_ranges.py"
    nb.write_text(RANGES)
    schema = notebook_params(nb)
    assert schema["a"].help == "at least one" and schema["g"].help == "(empty: none) not a range, just help"
    assert schema["g"].range == "" and schema["c"].range == "non-empty [1, 10]"
    validate(schema, {k: p.default for k, p in schema.items()}, "defaults")
    assert validate(schema, {key: good}, "-p")[key] == good
    with pytest.raises(ParamError, match=f"-p: parameter {key!r} .*{re.escape(schema[key].range)}"):
        validate(schema, {key: bad}, "-p")


def test_a_default_outside_its_own_range_is_refused(tmp_path):
    from linrepro.runner.params import ParamError, notebook_params

    nb = tmp_path / "01_bad.py"
    nb.write_text('# %% tags=["parameters"]\nepochs = 0  # [1, ...) epochs\n')
    with pytest.raises(ParamError, match="01_bad.py.*'epochs'.*default"):
        notebook_params(nb)
    nb.write_text('# %% tags=["parameters"]\nepochs = 1  # [1, ..., 3] epochs\n')
    with pytest.raises(ParamError, match=r"01_bad.py.*'epochs'.*\[1, \.\.\., 3\]"):
        notebook_params(nb)


def test_every_notebook_declares_ranges_and_every_profile_keeps_them():
    import yaml

    from linrepro.runner.params import notebook_params, validate
    from linrepro.utils.project import list_notebooks

    must = {
        "01_kernel_derivation": ["check_ns", "check_ds", "n_queries", "head_dim", "decay_ns", "norm_ns"],
        "02_attention_timing": ["warmup", "runs", "batch", "heads", "head_dim", "budget_s", "modes"],
        "03_clip_training": ["epochs", "warmup", "lr", "batch_size", "nproc", "val_fraction", "models"],
        "05_scaling_laws": ["n_resamples"],
        "06_resolution_domain": ["resolutions", "throughput_batch", "throughput_runs", "finetune_epochs"],
    }
    for stem in list_notebooks():
        schema = notebook_params(ROOT / "notebooks" / f"{stem}.py")
        for key in must.get(stem, []):
            assert schema[key].range, f"{stem}: {key} declares no range"
        for prof in (ROOT / "params").glob(f"*/{stem}.yaml"):
            values = yaml.safe_load(prof.read_text()) or {}
            validate(schema, {k: v for k, v in values.items() if schema[k].type != "path"}, str(prof))


def test_params_command_shows_the_ranges():
    r = cli("params", "03_clip_training")
    line = next(x for x in r.stdout.splitlines() if x.startswith("epochs "))
    assert "[1, ...)" in line and "training epochs per model" in line


# ------------------------------------------------------------------ bad --profile and --out (issue 13, item 11)
def test_a_profile_given_as_a_path_is_a_one_line_error(tiny):
    prof = tiny / "elsewhere"
    prof.mkdir()
    (prof / "01_tiny.yaml").write_text("n: 2\n")
    for args in (("run", "01_tiny", "--profile", str(prof)), ("reproduce", "--profile", str(prof))):
        r = cli(*args, env=env_for(tiny), cwd=tiny)
        assert r.returncode == 2 and str(prof) in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert runs_of(tiny) == [] and list(prof.iterdir()) == [prof / "01_tiny.yaml"]


def test_out_on_a_file_is_a_one_line_error(tiny):
    f = tiny / "a-file"
    f.write_text("x")
    r = cli("run", "01_tiny", "--profile", "smoke", "--out", str(f), env=env_for(tiny), cwd=tiny)
    assert r.returncode == 2 and str(f) in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_out_on_a_read_only_folder_is_a_one_line_error(tiny):
    ro = tiny / "ro"
    ro.mkdir()
    cmd = (
        f"LINREPRO_ROOT={tiny} {sys.executable} -m linrepro run 01_tiny --profile smoke --no-progress --out {ro}; "
        "echo rc=$?"
    )
    r = _in_tmpfs(ro, "1m", cmd, ro=True)
    assert "rc=2" in r.stdout and str(ro) in r.stderr and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "read-only" in r.stderr.lower() and len(r.stderr.strip().splitlines()) == 1, r.stderr
