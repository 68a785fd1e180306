"""Speed where users spend their time, measured side by side in one run (issue 20's acceptance figures).

* :func:`short_n`: forward + backward of LA (``backend="auto"``, eq7, s = 1/N) against SDPA at short N
  (default B=64, H=2, D=32), the ratio SDPA / LA, and the form ``auto`` ran.
* :func:`long_n`: the LA forward at long N (default B=1, H=4, D=64) in GFLOP/s (4·N·D·Dv per head:
  its two products K̂ᵀV and Q̂S) as a percentage of a 2048² fp32 matmul's GFLOP/s measured in the
  same run (:func:`matmul_gflops`), and forward + backward over forward.
* :func:`speed_table`: both, with provenance; ``python -m linrepro.study.speed`` prints it.

Times are medians of ``reps`` calls after ``warmup`` calls (``time.perf_counter``; CUDA synchronised); at
short N, LA and SDPA calls alternate.
Run it alone on the machine: the numbers are only as good as the quiet around them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from linrepro.attention import linear_attention
from linrepro.attention.dispatch import choose_form


def _median_s(fn, reps: int, warmup: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _median_pair_s(fa, fb, reps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Medians of ``fa`` and ``fb`` timed alternately (a, b, a, b, ...), so that a drift of the machine
    falls on both alike."""
    ta, tb = [], []
    for i in range(warmup + reps):
        a = _median_s(fa, 1, 0, device)
        b = _median_s(fb, 1, 0, device)
        if i >= warmup:
            ta.append(a)
            tb.append(b)
    return statistics.median(ta), statistics.median(tb)


def _check_positive(**kw) -> None:
    for name, val in kw.items():
        vals = val if isinstance(val, (list, tuple)) else [val]
        if not vals or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in vals):
            raise ValueError(f"{name} must be positive integers, got {val!r}")


def matmul_gflops(n: int = 2048, reps: int = 5, warmup: int = 2, device: str | torch.device = "cpu") -> float:
    """GFLOP/s (2n³ per product) of an n×n fp32 matmul on ``device``: the machine's practical peak."""
    _check_positive(n=n, reps=reps)
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=g, device=device) for _ in range(2))
    out = torch.empty(n, n, device=device)
    t = _median_s(lambda: torch.matmul(a, b, out=out), reps, warmup, device)
    return 2.0 * n**3 / t / 1e9


def _la_auto(q, k, v):
    return linear_attention(q, k, v, score_scale="1/N", backend="auto")


def _fwdbwd(f, q, k, v, go):
    return lambda: torch.autograd.grad(f(q, k, v), (q, k, v), go)


def _fwd(f, q, k, v):
    def run():
        with torch.no_grad():
            return f(q, k, v)

    return run


def _qkv(b, h, n, d, device, grad):
    g = torch.Generator(device=device).manual_seed(n)
    return [torch.randn(b, h, n, d, generator=g, device=device).requires_grad_(grad) for _ in range(3)]


def short_n(
    ns=(17, 65, 257, 1025), b: int = 64, h: int = 2, d: int = 32, reps: int = 9, warmup: int = 5, device="cpu"
) -> list[dict]:
    """Per N: forward + backward ms of LA auto (eq7, s = 1/N) and of SDPA (timed alternately, after
    ``warmup`` calls of each), their ratio, and auto's form."""
    _check_positive(ns=list(ns), b=b, h=h, d=d, reps=reps)
    device = torch.device(device)
    rows = []
    for n in ns:
        q, k, v = _qkv(b, h, n, d, device, True)
        go = torch.randn(b, h, n, d, device=device)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        la, sd = _median_pair_s(_fwdbwd(_la_auto, q, k, v, go), _fwdbwd(sdpa, q, k, v, go), reps, warmup, device)
        form = choose_form(q, v, causal=False) if device.type != "cuda" else "triton"
        rows.append({"N": n, "la_auto_ms": la * 1e3, "sdpa_ms": sd * 1e3, "sdpa_over_la": sd / la, "form": form})
    return rows


def long_n(
    ns=(65536, 262144), b: int = 1, h: int = 4, d: int = 64, reps: int = 5, warmup: int = 2, device="cpu"
) -> list[dict]:
    """Per N: LA auto forward ms and GFLOP/s (4·N·D·Dv per head), forward + backward ms, and their ratio."""
    _check_positive(ns=list(ns), b=b, h=h, d=d, reps=reps)
    device = torch.device(device)
    rows = []
    for n in ns:
        q, k, v = _qkv(b, h, n, d, device, True)
        go = torch.randn(b, h, n, d, device=device)
        tf = _median_s(_fwd(_la_auto, q, k, v), reps, warmup, device)
        tfb = _median_s(_fwdbwd(_la_auto, q, k, v, go), reps, warmup, device)
        flops = 4.0 * b * h * n * d * d
        rows.append(
            {
                "N": n,
                "fwd_ms": tf * 1e3,
                "gflops": flops / tf / 1e9,
                "fwdbwd_ms": tfb * 1e3,
                "fwdbwd_over_fwd": tfb / tf,
            }
        )
    return rows


def speed_table(
    short_ns=(17, 65, 257, 1025), long_ns=(65536, 262144), reps: int = 9, long_reps: int = 5, device="cpu"
) -> dict:
    """Both tables from one run: {"short": [...], "long": [...], "matmul_gflops", "provenance"}; each long row
    also carries ``pct_of_matmul_peak`` (the matmul measured before and after the long cases, the best kept)."""
    from linrepro.utils.provenance import device_info, git_commit, now_utc

    peak0 = matmul_gflops(device=device)
    short = short_n(short_ns, reps=reps, device=device)
    long = long_n(long_ns, reps=long_reps, device=device)
    peak = max(peak0, matmul_gflops(device=device))
    for r in long:
        r["pct_of_matmul_peak"] = 100.0 * r["gflops"] / peak
    prov = {"date": now_utc(), "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32"}
    prov.update({"device": device_info(), "git": git_commit()})
    return {"short": short, "long": long, "matmul_gflops": peak, "provenance": prov}


def format_table(res: dict) -> str:
    lines = [
        "LA auto vs SDPA, forward + backward (eq7, s = 1/N)",
        f"{'N':>7} {'LA auto ms':>11} {'form':>10} {'SDPA ms':>10} {'SDPA/LA':>8}",
    ]
    for r in res["short"]:
        lines.append(
            f"{r['N']:>7} {r['la_auto_ms']:>11.3f} {r['form']:>10} {r['sdpa_ms']:>10.3f} {r['sdpa_over_la']:>8.2f}"
        )
    lines += [
        "",
        f"LA auto forward at long N; 2048² fp32 matmul in the same run: {res['matmul_gflops']:.1f} GFLOP/s",
        f"{'N':>7} {'fwd ms':>9} {'GFLOP/s':>8} {'% peak':>7} {'fwd+bwd ms':>11} {'fb/fwd':>7}",
    ]
    for r in res["long"]:
        lines.append(
            f"{r['N']:>7} {r['fwd_ms']:>9.2f} {r['gflops']:>8.1f} {r['pct_of_matmul_peak']:>7.1f} "
            f"{r['fwdbwd_ms']:>11.2f} {r['fwdbwd_over_fwd']:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m linrepro.study.speed", description=__doc__.splitlines()[0])
    ap.add_argument("--short-n", type=int, nargs="+", default=[17, 65, 257, 1025])
    ap.add_argument("--long-n", type=int, nargs="+", default=[65536, 262144])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--long-reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = speed_table(a.short_n, a.long_n, reps=a.reps, long_reps=a.long_reps, device=a.device)
    except ValueError as e:
        ap.error(str(e))
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
