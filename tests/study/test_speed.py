"""linrepro.study.speed: the side-by-side speed table (behaviour only; no timing is asserted)."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from linrepro.attention.dispatch import FORMS
from linrepro.study import speed

ROOT = Path(__file__).resolve().parents[2]


def test_speed_table_reports_both_ratios_from_one_run():
    # in-process: the default allocator only (the "reused" mode is process-wide: tested through the CLI)
    res = speed.speed_table(short_ns=(5, 33), long_ns=(300,), reps=1, long_reps=1, memory=("default",))
    assert [r["N"] for r in res["short"]] == [5, 33] and [r["N"] for r in res["long"]] == [300]
    for r in res["short"]:
        assert r["form"] in FORMS
        assert math.isclose(r["sdpa_over_la"], r["sdpa_ms"] / r["la_auto_ms"])
    for r in res["long"]:
        flops = 4 * 4 * 300 * 64 * 64
        assert r["memory"] == "default"
        assert math.isclose(r["gflops"], flops / (r["fwd_ms"] / 1e3) / 1e9)
        assert math.isclose(r["products_gflops"], flops / (r["products_ms"] / 1e3) / 1e9)
        assert math.isclose(r["pct_of_matmul_peak"], 100 * r["gflops"] / res["matmul_gflops"])
        assert math.isclose(r["products_pct_of_matmul_peak"], 100 * r["products_gflops"] / res["matmul_gflops"])
        assert math.isclose(r["fwdbwd_over_fwd"], r["fwdbwd_ms"] / r["fwd_ms"])
    assert res["train"] == [] and res["matmul_gflops"] > 0 and res["provenance"]["dtype"] == "float32"
    assert res["provenance"]["reuse_freed_memory_applied"] is None  # not asked for
    text = speed.format_table(res)
    assert "SDPA/LA" in text and "% peak" in text and f"{res['matmul_gflops']:.1f} GFLOP/s" in text


def test_products_alone_compute_the_unnormalised_forward():
    """The ceiling times the very products of LA's forward: QS with S = KᵀV (checked against float64)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 40, 8, generator=g) for _ in range(3))
    got = speed._products(q, k, v)()
    ref = (q.double() @ (k.double().transpose(-1, -2) @ v.double())).reshape(2, 40, 8)
    assert torch.allclose(got.double(), ref, rtol=1e-5, atol=1e-4)


def test_training_throughput_alternates_real_training_steps():
    rows = speed.training_throughput(["tiny-XS"], rounds=3, warmup=1, batch=4)
    (r,) = rows
    assert r["model"] == "tiny-XS" and r["resolution"] > 0
    assert r["softmax_images_per_s"] > 0 and r["eq7_images_per_s"] > 0
    assert math.isclose(r["ratio"], r["eq7_images_per_s"] / r["softmax_images_per_s"])
    assert 0 < r["ratio_q1"] <= r["ratio_q3"]  # per-round quartiles inside the data (inclusive method)
    with pytest.raises(ValueError, match="unknown model 'tiny-Q'"):
        speed.training_throughput(["tiny-Q"], rounds=1)


@pytest.mark.parametrize("memory", [("reused", "default"), ("fast",)])
def test_memory_modes_are_checked_by_name_and_order(memory):
    with pytest.raises(ValueError, match="memory must be modes of"):
        speed.speed_table(short_ns=(), long_ns=(8,), memory=memory)


@pytest.mark.parametrize("bad", [0, 2**31, -1, True, 1.5])
def test_reuse_freed_memory_refuses_what_mallopt_cannot_take(bad):
    from linrepro.utils.measure import reuse_freed_memory

    with pytest.raises(ValueError, match=r"nbytes must be an int in \[1, 2\*\*31 - 1\]"):
        reuse_freed_memory(bad)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the reused mode is glibc's mallopt")
def test_cli_measures_both_allocator_modes_in_its_own_process(tmp_path):
    out = tmp_path / "speed.json"
    r = subprocess.run(
        [sys.executable, "-m", "linrepro.study.speed", "--short-n", "--long-n", "256", "--long-reps", "1"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert [row["memory"] for row in res["long"]] == ["default", "reused"] and res["short"] == []
    assert res["provenance"]["reuse_freed_memory_applied"] is True  # glibc (Linux CI)
    assert " default " in r.stdout and " reused " in r.stdout


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
