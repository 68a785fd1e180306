"""The timing harness: a real `python -m linrepro.runner.bench` call, and the analysis on known data."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from linrepro.runner import bench as bench_cli
from linrepro.study import bench, timing

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args, timeout=300) -> subprocess.CompletedProcess:
    """The real bench CLI, ``python -m linrepro.runner.bench ARGS``, from the repository root."""
    cmd = [sys.executable, "-m", "linrepro.runner.bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_cli_tiny_sweep(tmp_path):
    r = _bench(
        "--profile",
        "smoke",
        "--out",
        str(tmp_path),
        "--la-log2",
        "6",
        "8",
        "--softmax-log2",
        "6",
        "7",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--impls",
        "la-torch-eq7",
        "sdpa-math",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["provenance"]["versions"]["torch"] and doc["provenance"]["device"]["cpu"]
    cases = doc["cases"]
    assert {c["impl"] for c in cases} == {"la-torch-eq7", "sdpa-math"}
    ns = bench.grid(bench_cli.load_config("smoke", {"la_log2": [6, 8], "softmax_log2": [6, 7]})[0])
    assert ns["linear"] == [64, 91, 128, 181, 256] and ns["softmax"] == [64, 128]  # the profile's points per octave
    assert len(cases) == 2 * (5 + 2)  # fwd and fwdbwd
    for c in cases:
        assert c["status"] == "ok" and c["runs"] == 2 and c["median_s"] > 0 and c["mean_s"] >= c["min_s"]
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert len(rows) == len(cases)
    assert "minimum time over the interleaved repetitions (ms)" in r.stdout and "log-log slopes" in r.stdout


def test_cli_rejects_unknown_implementation(tmp_path):
    r = _bench("--profile", "smoke", "--out", str(tmp_path), "--impls", "la-cuda-eq9", timeout=120)
    assert r.returncode == 2 and "la-cuda-eq9" in r.stderr


def _synthetic(exponent, ns, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [3e-9 * n**exponent * float(np.exp(rng.normal(0, noise))) for n in ns]


def test_fit_slope_recovers_known_exponents():
    ns = [2**e for e in range(10, 19)]
    for k in (1.0, 2.0):
        f = timing.fit_slope(ns, _synthetic(k, ns, noise=0.05))
        assert f["ci_low"] <= k <= f["ci_high"] and abs(f["slope"] - k) < 0.1
        assert (f["n_from"], f["n_to"], f["n_points"]) == (ns[0], ns[-1], len(ns))
    f = timing.fit_slope(ns, _synthetic(1.0, ns), n_min=2**15)
    assert f["n_from"] == 2**15 and f["n_points"] == 4 and f["slope"] == pytest.approx(1.0)


def _frame():
    ns = [2**e for e in range(10, 15)]
    rows = []
    for impl, method, k in (("la-torch-eq7", "linear", 1.0), ("sdpa-flash", "softmax", 2.0)):
        for n, t in zip(ns, _synthetic(k, ns)):
            rows.append(
                dict(impl=impl, method=method, mode="fwd", n=n, status="ok", median_s=t, min_s=t, io_bytes=4 * n * 256)
            )
    rows.append(
        dict(
            impl="sdpa-flash",
            method="softmax",
            mode="fwd",
            n=2**15,
            status="skipped",
            median_s=None,
            min_s=None,
            io_bytes=None,
        )
    )
    return pd.DataFrame(rows)


def test_speedups_slopes_claims_and_extrapolation_are_marked():
    df = _frame()
    sp = timing.speedups(df, "la-torch-eq7", "sdpa-flash")
    assert list(sp.n) == [2**e for e in range(10, 15)]
    assert sp.speedup.tolist() == pytest.approx([n for n in sp.n])  # n²/n with equal constants
    fits = timing.slopes(df, n_min=0)
    assert dict(zip(fits.impl, fits.slope.round(6))) == {"la-torch-eq7": 1.0, "sdpa-flash": 2.0}
    ext = timing.extrapolate(df, fits, "sdpa-flash", "fwd", [2**14, 2**22])
    assert list(ext.n) == [2**22] and ext.extrapolated.all()  # the measured N is never "extrapolated"
    claims = timing.claims_table(df, fits, "la-torch-eq7", "sdpa-flash")
    assert claims.value.tolist()[:2] == pytest.approx([1.0, 2.0]) and "16,384" in claims.measured.iloc[2]
    roof = timing.roofline(df[df.method == "linear"], bandwidth_Bps=1e9)
    assert (roof.pct_of_copy_bw > 0).all()


def test_budget_prediction_skips_with_reason():
    cfg = dict(bench_cli.load_config("smoke")[0], budget_s=1.0, warmup=1)
    prev = [
        bench.Case("x", "softmax", "math", None, "fwd", n, 1, 1, 8, "float32", "cpu", median_s=t)
        for n, t in ((1024, 0.01), (2048, 0.04))
    ]
    assert bench._predicted_too_slow(prev, 4096, cfg) is None  # 0.16 s predicted
    reason = bench._predicted_too_slow(prev, 16384, cfg)  # 2.56 s predicted
    assert reason and "budget" in reason and "2.56" in reason


def test_cpu_peak_memory_sees_an_allocation_that_reuses_freed_memory():
    """A 16 MB temporary, made after the same temporary was freed: glibc (its mmap threshold raised
    by the first free) serves it from heap memory the process already holds, which read as 0."""
    from linrepro.utils.measure import measure_peak

    def fn():
        return torch.ones(4 * 2**20).sum()  # 16 MB of float32

    fn()
    fn()
    peak = measure_peak(fn, torch.device("cpu"))
    if peak is None:
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert 15 * 2**20 <= peak <= 100 * 2**20


# --------------------------------------------------------------------------- one config
@pytest.mark.parametrize("profile", ["smoke", "cpu", "h200"])
def test_cli_and_notebook_resolve_one_config(profile):
    """The bench CLI and notebook 02 read the same grid, run counts and fit ranges for a profile:
    both go through the notebook's parameters cell and params/<profile>/02_attention_timing.yaml."""
    import yaml

    from linrepro.runner import params
    from linrepro.utils import project

    nb = project.notebooks_dir() / "02_attention_timing.py"
    values = params.resolve(nb, profile, {})  # what `linrepro run 02 --profile P` injects
    cfg, _ = bench_cli.load_config(profile)  # what `python -m linrepro.runner.bench --profile P` sweeps
    assert cfg["la_log2"] == tuple(values["la_log2"]) and cfg["softmax_log2"] == tuple(values["softmax_log2"])
    assert (cfg["runs"], cfg["warmup"], cfg["budget_s"]) == (values["runs"], values["warmup"], values["budget_s"])
    assert cfg["fit_from_n"] == values["fit_from_n"]
    raw = yaml.safe_load((project.params_dir() / profile / "02_attention_timing.yaml").read_text())
    for key in ("la_log2", "softmax_log2", "runs", "warmup", "fit_from_n"):
        if key in raw:  # the profile file wins over the notebook's defaults
            got = cfg[key]
            assert (list(got) if isinstance(got, tuple) else got) == raw[key], key
    assert not hasattr(bench, "PROFILES") and not hasattr(bench_cli, "PROFILES")


def test_cli_records_the_profile_config_and_fits_from_its_range(tmp_path):
    r = _bench(
        "--profile",
        "smoke",
        "--out",
        str(tmp_path),
        "--la-log2",
        "6",
        "8",
        "--softmax-log2",
        "6",
        "6",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--modes",
        "fwd",
        "--impls",
        "la-torch-eq7",
        "sdpa-math",
        "--record",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    want, _ = bench_cli.load_config(
        "smoke", {"la_log2": [6, 8], "softmax_log2": [6, 6], "runs": 1, "warmup": 0, "modes": ["fwd"]}
    )
    assert doc["config"] == json.loads(json.dumps(want)) and doc["sweep"]["status"] == "complete"
    # --record: a finished 02 run folder, in the layout the ledger reads
    run = json.loads((tmp_path / "run.json").read_text())
    res = json.loads((tmp_path / "results.json").read_text())
    assert run["status"] == "ok" and run["notebook"] == "02_attention_timing"
    assert res["la_impl"] == "la-torch-eq7" and res["config"]["fit_from_n"] == {} and res["n_failed"] == 0


def test_unknown_profile_exits_2_naming_it(tmp_path):
    r = _bench("--profile", "h300", "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2 and "h300" in r.stderr


# --------------------------------------------------------------------------- crash-proof
_TINY = dict(
    batch=1,
    heads=1,
    head_dim=8,
    dtype="float32",
    la_log2=(4, 7),
    softmax_log2=(4, 5),
    warmup=0,
    runs=1,
    budget_s=5.0,
    modes=("fwd",),
    variants=("eq7",),
    fit_from_n={},
)


def test_a_case_that_raises_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """An exception that is not a RuntimeError (a missing module, a Triton CompilationError) in a later
    case: earlier cases stay in bench.json, the case is 'failed' with its reason, later N still run."""
    real = bench._la_fn

    def flaky(backend, variant):
        fn = real(backend, variant)

        def call(q, k, v):
            if q.shape[-2] == 2**5:
                raise ModuleNotFoundError("No module named 'linrepro.kernels'")
            return fn(q, k, v)

        return call

    monkeypatch.setattr(bench, "_la_fn", flaky)
    impls = [("la-torch-eq7", "linear", "torch", "eq7"), ("sdpa-math", "softmax", "math", None)]
    doc = bench.measure(_TINY, "cpu", tmp_path, impls, progress=False)
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["cases"] == json.loads(json.dumps(doc["cases"]))
    by = {(c["impl"], c["n"]): c for c in on_disk["cases"]}
    assert by[("la-torch-eq7", 16)]["status"] == "ok"
    bad = by[("la-torch-eq7", 32)]
    assert bad["status"] == "failed" and "ModuleNotFoundError" in bad["reason"] and "linrepro.kernels" in bad["reason"]
    assert by[("la-torch-eq7", 64)]["status"] == "ok" and by[("la-torch-eq7", 128)]["status"] == "ok"
    assert by[("sdpa-math", 32)]["status"] == "ok"


def test_a_killed_sweep_keeps_what_it_measured(tmp_path):
    """bench.json is rewritten after every case: a kill after the third case leaves three cases on disk."""
    seen = []

    def kill_after_three(cases):
        bench.write(cases, tmp_path, _TINY, {"sweep": {"status": "running"}})
        seen.append(len(cases))
        if len(cases) == 3:
            raise KeyboardInterrupt

    impls = [("la-torch-eq7", "linear", "torch", "eq7")]
    with pytest.raises(KeyboardInterrupt):
        bench.sweep(_TINY, "cpu", impls, progress=False, on_case=kill_after_three)
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [c["n"] for c in doc["cases"]] == [16, 32, 64] and doc["sweep"]["status"] == "running"


def test_inputs_are_drawn_once_per_n_and_shared(monkeypatch):
    calls = []
    real = bench.make_inputs
    monkeypatch.setattr(bench, "make_inputs", lambda n, cfg, device: calls.append(n) or real(n, cfg, device))
    impls = [
        ("la-torch-eq7", "linear", "torch", "eq7"),
        ("la-reference-eq7", "linear", "reference", "eq7"),
        ("sdpa-math", "softmax", "math", None),
    ]
    cases = bench.sweep(dict(_TINY, modes=("fwd", "fwdbwd")), "cpu", impls, progress=False)
    assert calls == [16, 32, 64, 128] and all(c.status == "ok" for c in cases)


# --------------------------------------------------------------------------- issue 14: robust, sliced, planned
def test_repetitions_are_interleaved_across_implementations():
    from linrepro.utils.measure import time_interleaved

    order = []
    fns = {k: (lambda k=k: order.append(k)) for k in "AB"}
    got = time_interleaved(fns, torch.device("cpu"), warmup=1, runs=3, budget_s=10.0)
    assert order == ["A", "B"] + ["A", "B"] * 3  # warm-ups, then ABABAB (never AAABBB)
    assert all(len(got[k][0]) == 3 and got[k][1] == 3 for k in "AB")

    def boom():
        raise RuntimeError("refuses")

    got = time_interleaved({"A": lambda: None, "bad": boom}, torch.device("cpu"), 0, 2, 10.0)
    assert isinstance(got["bad"], RuntimeError) and len(got["A"][0]) == 2  # one failure, the other goes on


def test_theil_sen_is_not_swung_by_one_slow_point():
    n = np.array([2**e for e in range(10, 19)], float)
    t = 1e-9 * n
    t[4] *= 8  # one point timed while the machine was busy
    robust = timing.fit_slope(n, t)
    assert abs(robust["slope"] - 1) < 0.05 and robust["ci_low"] <= 1 <= robust["ci_high"]
    from scipy import stats

    ols = stats.linregress(np.log(n), np.log(t))
    assert abs(ols.slope - 1) > abs(robust["slope"] - 1)  # least squares is pulled by it


def test_sliced_softmax_is_marked_checked_and_never_mixed_silently(tmp_path):
    cfg = bench.config_from_params(
        2, 2, 16, "float32", [6, 8], [6, 8], 1, 3, 10.0, ["fwd"], ["eq7"], {}, 1, slice_from_n=256
    )
    doc = bench.measure(cfg, "cpu", tmp_path, progress=False)
    df = timing.frame(doc["cases"])
    sm = df[(df.method == "softmax") & (df.role == "point")]
    for impl in ("sdpa-flash", "sdpa-math"):
        assert list(sm[sm.impl == impl].sort_values("n").sliced) == [False, False, True]
    assert (sm.sliced == (sm.n >= 256)).all()
    assert not df[df.method == "linear"].sliced.any()
    checks = timing.slice_checks(df)
    assert set(checks.n) == {128} and set(checks.impl) == {"sdpa-flash", "sdpa-math"}  # the last full N
    assert {"full_s", "sliced_x_bh_s", "rel_diff", "agrees"} <= set(checks.columns)
    res = timing.analyse(doc, "test")
    sp = res["speedup"]
    assert list(sp.sort_values("n").sliced) == [False, False, True]
    assert (res["fits"][res["fits"].method == "softmax"].n_sliced == 1).all()
    assert (tmp_path / "bench.csv").read_text().splitlines()[0].count("sliced") == 1
    assert "*" in timing.report_text(doc, res) and "slice check" in timing.report_text(doc, res)
    # a sliced case's time is the slice's × B·H, and every point has its roofline prediction
    c = next(c for c in doc["cases"] if c["sliced"] and c["extra"].get("role") != "slice check")
    assert c["extra"]["slice_factor"] == 4 and c["median_s"] == pytest.approx(4 * c["extra"]["slice_median_s"])
    assert all(c["predicted_s"] and c["predicted_s"] > 0 for c in doc["cases"] if c["status"] == "ok")
    assert doc["copy_bandwidth_Bps"] > 0 and doc["matmul_peak_flops"] > 0


def test_h200_plan_lists_the_longest_softmax_as_sliced_with_a_predicted_time():
    r = _bench("--profile", "h200", "--out", "unused", "--plan", timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("sdpa-flash") and "4,194,304" in ln]
    assert lines and all("sliced" in ln for ln in lines), r.stdout[-2000:]
    assert all("skip" not in ln for ln in lines)
    assert "slice check" in r.stdout and "nominal" in r.stdout and "predicted total" in r.stdout
    # the prediction is the roofline's: 4·B·H·N²·D FLOPs at the nominal peak
    fwd = next(ln for ln in lines if " fwd " in ln)
    pred = float(fwd.split()[-3].rstrip("s"))
    assert pred == pytest.approx(4 * 4 * 8 * 2**44 * 64 / 989e12, rel=0.01)


def test_timing_threads_leave_a_busy_core_alone():
    from linrepro.utils.measure import busy_cores, timing_threads

    assert timing_threads(3) == (3, None)
    with pytest.raises(ValueError, match="-1"):
        timing_threads(-1)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        busy = busy_cores(0.8)
        threads, seen = timing_threads(0, interval=0.8)
    finally:
        hog.kill()
    assert busy is not None and busy >= 0.7  # the hog's core is seen as busy
    assert seen >= 0.7 and threads <= max(1, (os.cpu_count() or 1) - 1)
