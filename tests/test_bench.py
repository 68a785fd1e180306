"""The timing harness: a real `python -m linrepro.bench` call, and the analysis on known data."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from linrepro import bench, timing

ROOT = Path(__file__).resolve().parents[1]


def test_cli_tiny_sweep(tmp_path):
    r = subprocess.run([sys.executable, "-m", "linrepro.bench", "--profile", "smoke", "--out", str(tmp_path),
                        "--la-log2", "6", "8", "--softmax-log2", "6", "7", "--runs", "2", "--warmup", "1",
                        "--impls", "la-torch-eq7", "sdpa-math"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["provenance"]["versions"]["torch"] and doc["provenance"]["device"]["cpu"]
    cases = doc["cases"]
    assert {c["impl"] for c in cases} == {"la-torch-eq7", "sdpa-math"}
    assert len(cases) == 2 * (3 + 2)  # fwd and fwdbwd
    for c in cases:
        assert c["status"] == "ok" and c["runs"] == 2 and c["median_s"] > 0 and c["mean_s"] >= c["min_s"]
    rows = list(csv.DictReader(open(tmp_path / "bench.csv")))
    assert len(rows) == len(cases)
    assert "median time (ms)" in r.stdout and "log-log slopes" in r.stdout


def test_cli_rejects_unknown_implementation(tmp_path):
    r = subprocess.run([sys.executable, "-m", "linrepro.bench", "--profile", "smoke", "--out", str(tmp_path),
                        "--impls", "la-cuda-eq9"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "la-cuda-eq9" in r.stderr


def _synthetic(exponent, ns, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [3e-9 * n ** exponent * float(np.exp(rng.normal(0, noise))) for n in ns]


def test_fit_slope_recovers_known_exponents():
    ns = [2 ** e for e in range(10, 19)]
    for k in (1.0, 2.0):
        f = timing.fit_slope(ns, _synthetic(k, ns, noise=0.05))
        assert f["ci_low"] <= k <= f["ci_high"] and abs(f["slope"] - k) < 0.1
        assert (f["n_from"], f["n_to"], f["n_points"]) == (ns[0], ns[-1], len(ns))
    f = timing.fit_slope(ns, _synthetic(1.0, ns), n_min=2 ** 15)
    assert f["n_from"] == 2 ** 15 and f["n_points"] == 4 and f["slope"] == pytest.approx(1.0)


def _frame():
    ns = [2 ** e for e in range(10, 15)]
    rows = []
    for impl, method, k in (("la-torch-eq7", "linear", 1.0), ("sdpa-flash", "softmax", 2.0)):
        for n, t in zip(ns, _synthetic(k, ns)):
            rows.append(dict(impl=impl, method=method, mode="fwd", n=n, status="ok", median_s=t, io_bytes=4 * n * 256))
    rows.append(dict(impl="sdpa-flash", method="softmax", mode="fwd", n=2 ** 15, status="skipped", median_s=None,
                     io_bytes=None))
    return pd.DataFrame(rows)


def test_speedups_slopes_claims_and_extrapolation_are_marked():
    df = _frame()
    sp = timing.speedups(df, "la-torch-eq7", "sdpa-flash")
    assert list(sp.n) == [2 ** e for e in range(10, 15)]
    assert sp.speedup.tolist() == pytest.approx([n for n in sp.n])  # n²/n with equal constants
    fits = timing.slopes(df, n_min=0)
    assert dict(zip(fits.impl, fits.slope.round(6))) == {"la-torch-eq7": 1.0, "sdpa-flash": 2.0}
    ext = timing.extrapolate(df, fits, "sdpa-flash", "fwd", [2 ** 14, 2 ** 22])
    assert list(ext.n) == [2 ** 22] and ext.extrapolated.all()  # the measured N is never "extrapolated"
    claims = timing.claims_table(df, fits, "la-torch-eq7", "sdpa-flash")
    assert claims.value.tolist()[:2] == pytest.approx([1.0, 2.0]) and "16,384" in claims.measured.iloc[2]
    roof = timing.roofline(df[df.method == "linear"], bandwidth_Bps=1e9)
    assert (roof.pct_of_copy_bw > 0).all()


def test_budget_prediction_skips_with_reason():
    cfg = dict(bench.PROFILES["smoke"], budget_s=1.0, warmup=1)
    prev = [bench.Case("x", "softmax", "math", None, "fwd", n, 1, 1, 8, "float32", "cpu", median_s=t)
            for n, t in ((1024, 0.01), (2048, 0.04))]
    assert bench._predicted_too_slow(prev, 4096, cfg) is None          # 0.16 s predicted
    reason = bench._predicted_too_slow(prev, 16384, cfg)                 # 2.56 s predicted
    assert reason and "budget" in reason and "2.56" in reason


def test_cpu_peak_memory_sees_an_allocation_that_reuses_freed_memory():
    """A 16 MB temporary, made after the same temporary was freed: glibc (its mmap threshold raised
    by the first free) serves it from heap memory the process already holds, which read as 0."""
    from linrepro.bench import measure_peak

    def fn():
        return torch.ones(4 * 2 ** 20).sum()   # 16 MB of float32

    fn()
    fn()
    peak = measure_peak(fn, torch.device("cpu"))
    if peak is None:
        pytest.skip("/proc/self/clear_refs is not writable here")
    assert 15 * 2 ** 20 <= peak <= 100 * 2 ** 20
