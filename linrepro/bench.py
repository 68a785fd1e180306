"""Timing harness: affine LA against softmax (SDPA) over sequence length N.

Runs without Jupyter: ``python -m linrepro.bench --profile cpu --out DIR`` (only torch needed,
triton for the Triton backend). The notebook ``02_attention_timing`` calls the same functions.

* implementations: ``la-<backend>-<variant>`` for each LA backend that can run here, and
  ``sdpa-<backend>`` for each SDPA backend (flash, cudnn, efficient, math), each forced with
  ``torch.nn.attention.sdpa_kernel`` so the recorded backend is the one that ran (a backend
  that cannot run a case raises, and the case is recorded as skipped with torch's reason).
* modes: ``fwd`` and ``fwdbwd``.
* GPU timing: CUDA events around each run after ``warmup`` runs; CPU: ``time.perf_counter``.
  Median and mean over ``runs`` (fewer when a point would exceed its budget: the count used
  is recorded).
* peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the rise of the process's
  peak resident set (VmHWM, reset through /proc/self/clear_refs, after glibc's malloc_trim so
  reused free memory does not hide the call's allocations) during one run.
* a case that cannot run (out of memory, over the int32 index limit of FlashAttention-2, over
  the time budget, predicted from the slope so far) is recorded as ``skipped`` with its reason.
  Nothing is extrapolated here; ``extrapolate`` in :mod:`linrepro.timing` marks its rows.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from linrepro import provenance

SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math")
INT32_LIMIT = 2 ** 31

PROFILES = {
    # name: sweep settings. N grid is 2**lo .. 2**hi.
    "smoke": dict(batch=1, heads=2, head_dim=32, dtype="float32", la_log2=(8, 12), softmax_log2=(8, 11),
                  warmup=1, runs=3, budget_s=5.0, modes=("fwd", "fwdbwd"), variants=("eq4", "eq7")),
    "cpu": dict(batch=1, heads=4, head_dim=64, dtype="float32", la_log2=(10, 18), softmax_log2=(10, 15),
                warmup=2, runs=5, budget_s=60.0, modes=("fwd", "fwdbwd"), variants=("eq4", "eq7")),
    "h200": dict(batch=4, heads=8, head_dim=64, dtype="bfloat16", la_log2=(10, 22), softmax_log2=(10, 22),
                 warmup=100, runs=1000, budget_s=60.0, modes=("fwd", "fwdbwd"), variants=("eq4", "eq7")),
}


@dataclass
class Case:
    impl: str            # la-torch-eq4, sdpa-flash, ...
    method: str          # linear | softmax
    backend: str         # torch | triton | flash | cudnn | efficient | math
    variant: str | None
    mode: str            # fwd | fwdbwd
    n: int
    batch: int
    heads: int
    head_dim: int
    dtype: str
    device: str
    status: str = "ok"   # ok | skipped
    reason: str | None = None
    runs: int = 0
    warmup: int = 0
    median_s: float | None = None
    mean_s: float | None = None
    min_s: float | None = None
    peak_mem_bytes: int | None = None
    io_bytes: int | None = None
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- memory
def _proc_kib(path: str, key: str) -> int | None:
    """A ``key: N kB`` line of a /proc file, in bytes (None where /proc is missing)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss_hwm_bytes() -> int | None:
    return _proc_kib("/proc/self/status", "VmHWM")


def _rss_bytes() -> int | None:
    return _proc_kib("/proc/self/status", "VmRSS")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    """glibc keeps freed memory for reuse; without returning it, a call that reuses it adds nothing to
    the resident set and its peak reads as 0."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak(fn, device: torch.device) -> int | None:
    """Peak memory one call of ``fn`` adds above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    _malloc_trim()   # give freed heap pages back, so the call's allocations show up in the RSS
    if not _reset_hwm():
        return None
    base = _rss_bytes()
    fn()
    hwm = _rss_hwm_bytes()
    return None if base is None or hwm is None else max(hwm - base, 0)


# --------------------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device: torch.device, warmup: int, runs: int, budget_s: float) -> tuple[list[float], int]:
    """Per-run seconds after ``warmup`` runs; stops early (recording how many ran) past the budget."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
        if time.perf_counter() - t0 > budget_s / 2:
            break
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(runs):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        if times and time.perf_counter() - start > budget_s:
            break
    return times, len(times)


# --------------------------------------------------------------------------- cases
def _make(n, cfg, device, requires_grad):
    dtype = getattr(torch, cfg["dtype"])
    g = torch.Generator(device="cpu").manual_seed(n)
    shape = (cfg["batch"], cfg["heads"], n, cfg["head_dim"])
    return [torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=dtype)
            .requires_grad_(requires_grad) for _ in range(3)]


def _la_fn(backend, variant):
    from linrepro.attention import linear_attention

    return lambda q, k, v: linear_attention(q, k, v, variant=variant, backend=backend)


def _sdpa_fn(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    enum = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None),
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]
    if enum is None:
        raise RuntimeError(f"this torch has no SDPA backend {backend!r}")

    def fn(q, k, v):
        with sdpa_kernel([enum]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return fn


def available_la_backends(device: torch.device) -> list[str]:
    out = ["torch"]
    if device.type == "cuda":
        try:
            import triton  # noqa: F401

            out.insert(0, "triton")
        except ImportError:
            pass
    return out


def implementations(device: torch.device, variants) -> list[tuple[str, str, str, str | None]]:
    impls = [(f"la-{b}-{v}", "linear", b, v) for b in available_la_backends(device) for v in variants]
    sd = SDPA_BACKENDS if device.type == "cuda" else ("flash", "math")
    impls += [(f"sdpa-{b}", "softmax", b, None) for b in sd]
    return impls


def _io_bytes(method, n, cfg, mode) -> int:
    """Bytes that must cross memory at least once: q, k, v read and o written (fwd);
    bwd adds do read, dq/dk/dv written and q, k, v, o read again."""
    el = torch.finfo(getattr(torch, cfg["dtype"])).bits // 8
    t = cfg["batch"] * cfg["heads"] * n * cfg["head_dim"] * el
    return 4 * t if mode == "fwd" else 4 * t + 8 * t


def _mem_available() -> int:
    """MemAvailable (free plus reclaimable page cache), in bytes."""
    return _proc_kib("/proc/meminfo", "MemAvailable") or 8 * 2 ** 30


def _cpu_softmax_mem_guard(backend, n, cfg) -> str | None:
    """The math backend materialises B·H·N² scores (three copies with softmax and grad)."""
    if backend != "math":
        return None
    need = 3 * cfg["batch"] * cfg["heads"] * n * n * torch.finfo(getattr(torch, cfg["dtype"])).bits // 8
    avail = _mem_available()
    if need > 0.5 * avail:
        return f"needs about {need / 2**30:.1f} GiB for the N×N scores; {avail / 2**30:.1f} GiB free"
    return None


def run_case(impl, method, backend, variant, mode, n, cfg, device) -> Case:
    c = Case(impl, method, backend, variant, mode, n, cfg["batch"], cfg["heads"], cfg["head_dim"],
             cfg["dtype"], str(device), warmup=cfg["warmup"], io_bytes=_io_bytes(method, n, cfg, mode))
    numel = cfg["batch"] * cfg["heads"] * n * cfg["head_dim"]
    if method == "softmax" and backend in ("flash", "efficient") and device.type == "cuda" and numel >= INT32_LIMIT:
        c.status, c.reason = "skipped", f"B·H·N·D = {numel:,} ≥ 2^31: FlashAttention-style int32 indexing may overflow"
        return c
    if device.type == "cpu" and method == "softmax":
        guard = _cpu_softmax_mem_guard(backend, n, cfg)
        if guard:
            c.status, c.reason = "skipped", guard
            return c
    fn = _la_fn(backend, variant) if method == "linear" else _sdpa_fn(backend)
    try:
        q, k, v = _make(n, cfg, device, requires_grad=(mode == "fwdbwd"))
        if mode == "fwd":
            def call():
                with torch.no_grad():
                    return fn(q, k, v)
        else:
            go = torch.randn_like(q[..., : v.shape[-1]])

            def call():
                o = fn(q, k, v)
                torch.autograd.grad(o, (q, k, v), go)
        times, used = time_fn(call, device, cfg["warmup"], cfg["runs"], cfg["budget_s"])
        c.runs = used
        c.median_s, c.mean_s, c.min_s = statistics.median(times), statistics.fmean(times), min(times)
        c.peak_mem_bytes = measure_peak(call, device)
    except torch.cuda.OutOfMemoryError as e:  # type: ignore[attr-defined]
        c.status, c.reason = "skipped", f"out of memory: {str(e).splitlines()[0][:200]}"
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        c.status, c.reason = "skipped", f"{backend} cannot run this case: {(msg[0] if msg else type(e).__name__)[:300]}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return c


def _predicted_too_slow(prev: list[Case], n: int, cfg) -> str | None:
    """Predict the next point's total time (warm-up + one run) from the last two; skip past budget."""
    ok = [c for c in prev if c.status == "ok" and c.median_s]
    if not ok:
        return None
    last = ok[-1]
    slope = 2.0
    if len(ok) >= 2 and ok[-2].median_s and ok[-2].median_s > 0:
        slope = min(2.5, max(1.0, math.log(last.median_s / ok[-2].median_s) / math.log(last.n / ok[-2].n)))
    pred = last.median_s * (n / last.n) ** slope
    if pred * (1 + min(cfg["warmup"], 1)) > cfg["budget_s"]:
        return (f"predicted {pred:.3g} s per run from the slope so far ({slope:.2f}); "
                f"over the {cfg['budget_s']:g} s budget per point")
    return None


def sweep(cfg: dict, device: str | torch.device = "cpu", impls=None, progress: bool | None = None,
          log=print) -> list[Case]:
    """Every implementation × mode × N. ``progress=None``: a bar unless inside a linrepro run
    (there papermill shows per-cell progress and a bar would only fill the report)."""
    import os

    if progress is None:
        progress = not os.environ.get("LINREPRO_RUN_DIR")
    device = torch.device(device)
    impls = impls or implementations(device, cfg["variants"])
    grid = {m: [2 ** e for e in range(cfg[f"{m}_log2"][0], cfg[f"{m}_log2"][1] + 1)]
            for m in ("la", "softmax")}
    jobs = [(i, mode) for i in impls for mode in cfg["modes"]]
    total = sum(len(grid["la" if i[1] == "linear" else "softmax"]) for i, _ in jobs)
    bar = None
    if progress:
        from linrepro.runs import progress as _bar

        bar = _bar(total, "bench", unit="case")
    out: list[Case] = []
    for (impl, method, backend, variant), mode in jobs:
        prev: list[Case] = []
        stop_reason = None
        for n in grid["la" if method == "linear" else "softmax"]:
            if stop_reason is None:
                stop_reason = _predicted_too_slow(prev, n, cfg)
            if stop_reason:
                c = Case(impl, method, backend, variant, mode, n, cfg["batch"], cfg["heads"], cfg["head_dim"],
                         cfg["dtype"], str(device), status="skipped", reason=stop_reason)
            else:
                c = run_case(impl, method, backend, variant, mode, n, cfg, device)
                if c.status == "skipped" and c.reason and "out of memory" in c.reason:
                    stop_reason = f"a smaller N ran out of memory ({c.reason[:80]})"
            prev.append(c)
            out.append(c)
            if bar is not None:
                bar.set_postfix_str(f"{impl} {mode} N={n}")
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def copy_bandwidth(device: torch.device, nbytes: int = 2 ** 30, runs: int = 20) -> float | None:
    """Device-to-device copy bandwidth (bytes/s; read + write counted) on a GPU, measured now."""
    if device.type != "cuda":
        return None
    a = torch.empty(nbytes // 2, dtype=torch.float16, device=device)
    b = torch.empty_like(a)
    times, _ = time_fn(lambda: b.copy_(a), device, 5, runs, 30.0)
    return 2 * nbytes / statistics.median(times)


# --------------------------------------------------------------------------- output
def write(cases: list[Case], out_dir: Path, cfg: dict, extra: dict | None = None) -> dict:
    """bench.json (provenance, config, cases) and bench.csv, each written atomically."""
    from linrepro.runs import atomic_write_text, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"provenance": provenance.collect(), "config": cfg, "cases": [asdict(c) for c in cases], **(extra or {})}
    doc["provenance"]["sdpa_note"] = "each sdpa case forces one backend with torch.nn.attention.sdpa_kernel"
    write_json(out_dir / "bench.json", doc)
    rows = [asdict(c) for c in cases]
    if rows:
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=[k for k in rows[0] if k != "extra"])
        w.writeheader()
        for r in rows:
            r.pop("extra", None)
            w.writerow(r)
        atomic_write_text(out_dir / "bench.csv", buf.getvalue())
    return doc


def load(path: Path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "bench.json"
    if not p.exists():
        raise FileNotFoundError(f"no bench.json at {path}")
    return json.loads(p.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m linrepro.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILES)}")
    ap.add_argument("--out", required=True, help="folder for bench.json and bench.csv")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--la-log2", type=int, nargs=2, metavar=("LO", "HI"), help="LA N grid 2^LO..2^HI")
    ap.add_argument("--softmax-log2", type=int, nargs=2, metavar=("LO", "HI"))
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--budget-s", type=float)
    ap.add_argument("--modes", nargs="+", choices=["fwd", "fwdbwd"])
    ap.add_argument("--impls", nargs="+", help="subset of implementation names, e.g. la-torch-eq7 sdpa-flash")
    a = ap.parse_args(argv)
    if a.profile not in PROFILES:
        print(f"unknown bench profile {a.profile!r}; expected one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    cfg = dict(PROFILES[a.profile])
    for key in ("la_log2", "softmax_log2", "warmup", "runs", "budget_s", "modes"):
        val = getattr(a, key)
        if val is not None:
            cfg[key] = tuple(val) if isinstance(val, list) else val
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    impls = implementations(device, cfg["variants"])
    if a.impls:
        names = {i[0] for i in impls}
        bad = [x for x in a.impls if x not in names]
        if bad:
            print(f"unknown implementation(s) {bad}; available here: {sorted(names)}", file=sys.stderr)
            return 2
        impls = [i for i in impls if i[0] in a.impls]
    cases = sweep(cfg, device, impls)
    bw = copy_bandwidth(device)
    write(cases, Path(a.out), cfg, {"copy_bandwidth_Bps": bw})
    from linrepro import timing

    print(timing.summary_table(cases))
    df = timing.frame(cases)
    fits = timing.slopes(df, n_min=None, frac=0.0)
    if len(fits):
        print("\nlog-log slopes over every measured N (95% interval):")
        for r in fits.itertuples():
            print(f"  {r.impl:<14} {r.mode:<7} {r.slope:6.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]  N = {r.n_from:,}…{r.n_to:,}")
    la, sm = timing.fastest(df, "linear"), timing.fastest(df, "softmax")
    if la and sm:
        for mode in cfg["modes"]:
            sp = timing.speedups(df, la, sm, mode)
            if len(sp):
                print(f"speed-up {sm}/{la} ({mode}): " + ", ".join(f"N={int(r.n):,}: {r.speedup:.1f}×" for r in sp.itertuples()))
    print(f"wrote {Path(a.out) / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
