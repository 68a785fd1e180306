"""linrepro.study.speed: the side-by-side speed table (behaviour only; no timing is asserted)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from linrepro.attention.dispatch import FORMS
from linrepro.study import speed

ROOT = Path(__file__).resolve().parents[2]


def test_speed_table_reports_both_ratios_from_one_run():
    res = speed.speed_table(short_ns=(5, 33), long_ns=(300,), reps=1, long_reps=1)
    assert [r["N"] for r in res["short"]] == [5, 33] and [r["N"] for r in res["long"]] == [300]
    for r in res["short"]:
        assert r["form"] in FORMS
        assert math.isclose(r["sdpa_over_la"], r["sdpa_ms"] / r["la_auto_ms"])
    for r in res["long"]:
        assert math.isclose(r["gflops"], 4 * 4 * 300 * 64 * 64 / (r["fwd_ms"] / 1e3) / 1e9)
        assert math.isclose(r["pct_of_matmul_peak"], 100 * r["gflops"] / res["matmul_gflops"])
        assert math.isclose(r["fwdbwd_over_fwd"], r["fwdbwd_ms"] / r["fwd_ms"])
    assert res["matmul_gflops"] > 0 and res["provenance"]["dtype"] == "float32"
    text = speed.format_table(res)
    assert "SDPA/LA" in text and "% peak" in text and f"{res['matmul_gflops']:.1f} GFLOP/s" in text


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_sizes_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=r"ns must be positive integers, got \["):
        speed.short_n([bad])
    with pytest.raises(ValueError, match="reps must be positive integers"):
        speed.long_n([8], reps=bad)


def test_cli_prints_the_table():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "linrepro.study.speed",
            "--short-n",
            "9",
            "--long-n",
            "128",
            "--reps",
            "1",
            "--long-reps",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "LA auto vs SDPA" in r.stdout and "% peak" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "linrepro.study.speed", "--short-n", "0"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 2 and "ns must be positive integers, got [0]" in r.stderr
