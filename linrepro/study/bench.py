"""Timing harness: affine LA against softmax (SDPA) over sequence length N.

Runs without Jupyter: ``python -m linrepro.runner.bench --profile cpu --out DIR``. It needs only torch,
numpy, scipy, pandas and pyyaml (triton for the Triton backend), and runs from an uninstalled
copy of the tree, as on a bare GPU image. Notebook ``02_attention_timing`` calls the same
functions, and both read one config: ``params/<profile>/02_attention_timing.yaml`` over the
notebook's defaults (:func:`load_config`).

* implementations: ``la-<backend>-<variant>`` for each LA backend that can run here, and
  ``sdpa-<backend>`` for each SDPA backend (flash, cudnn, efficient, math), each forced with
  ``torch.nn.attention.sdpa_kernel`` so the recorded backend is the one that ran.
* modes: ``fwd`` and ``fwdbwd``. Inputs are drawn on the device, once per N, and shared by every
  implementation at that N.
* GPU timing: after ``warmup`` calls, groups of calls issued back to back between two CUDA
  events, so the host's per-call Python overlaps the kernels and is not timed; the per-call time
  of each group is one sample. CPU: ``time.perf_counter`` around each call (the host is the
  device). Median and mean over the samples; the number of calls timed is recorded.
* peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the rise of the process's
  peak resident set (VmHWM, reset through /proc/self/clear_refs, after glibc's malloc_trim so
  reused free memory does not hide the call's allocations) during one run.
* a case that cannot run is ``skipped`` with its reason (out of memory, over the int32 index
  limit of FlashAttention-2, over the time budget predicted from the slope so far, an SDPA
  backend that refuses the shape); a case that raises anything else is ``failed`` with the
  exception, and the sweep goes on. ``bench.json`` is rewritten after every case, so a crash or
  a kill keeps what was measured. Nothing is extrapolated here.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from linrepro.utils import provenance
from linrepro.utils.measure import (
    _proc_kib,
    busy_cores,
    copy_bandwidth,
    matmul_peak,
    measure_peak,
    time_interleaved,
    timing_threads,
)

SDPA_BACKENDS = ("flash", "cudnn", "efficient", "math")
INT32_LIMIT = 2**31
NOTEBOOK = "02_attention_timing"


@dataclass
class Case:
    impl: str  # la-torch-eq4, sdpa-flash, ...
    method: str  # linear | softmax
    backend: str  # torch | triton | flash | cudnn | efficient | math
    variant: str | None
    mode: str  # fwd | fwdbwd
    n: int
    batch: int
    heads: int
    head_dim: int
    dtype: str
    device: str
    status: str = "ok"  # ok | skipped | failed
    reason: str | None = None
    runs: int = 0
    warmup: int = 0
    median_s: float | None = None
    mean_s: float | None = None
    min_s: float | None = None
    peak_mem_bytes: int | None = None
    io_bytes: int | None = None
    flops: float | None = None
    sliced: bool = False  # timed on one (batch, head) slice, ×B·H (softmax past the int32 limit)
    predicted_s: float | None = None  # roofline: max(bytes / copy bandwidth, FLOPs / matmul peak)
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- config
#: the sweep's settings, in :func:`config_from_params`' order: the notebook's parameters and the CLI's
CONFIG_KEYS = (
    "batch",
    "heads",
    "head_dim",
    "dtype",
    "la_log2",
    "softmax_log2",
    "warmup",
    "runs",
    "budget_s",
    "modes",
    "variants",
    "fit_from_n",
    "points_per_octave",
    "slice_from_n",
    "threads",
)


def config_from_params(
    batch,
    heads,
    head_dim,
    dtype,
    la_log2,
    softmax_log2,
    warmup,
    runs,
    budget_s,
    modes,
    variants,
    fit_from_n=None,
    points_per_octave=1,
    slice_from_n=0,
    threads=0,
) -> dict:
    """The sweep settings, checked: the notebook's parameters and the CLI both build them here."""
    if not hasattr(torch, dtype) or not isinstance(getattr(torch, dtype), torch.dtype):
        raise ValueError(f"dtype {dtype!r} is not a torch dtype; use float32, float16 or bfloat16")
    for name, rng in (("la_log2", la_log2), ("softmax_log2", softmax_log2)):
        if len(rng) != 2 or rng[0] > rng[1] or rng[0] < 0:
            raise ValueError(f"{name} must be [lo, hi] with 0 ≤ lo ≤ hi, got {rng!r}")
    for name, val in (("batch", batch), ("heads", heads), ("head_dim", head_dim), ("runs", runs)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer ≥ 0, got {warmup!r}")
    if not budget_s > 0:
        raise ValueError(f"budget_s must be positive, got {budget_s!r}")
    bad = [m for m in modes if m not in ("fwd", "fwdbwd")]
    if bad:
        raise ValueError(f"modes must be fwd and/or fwdbwd, got {bad}")
    fit = dict(fit_from_n or {})
    bad = [k for k in fit if k not in ("linear", "softmax")]
    if bad:
        raise ValueError(f"fit_from_n keys must be 'linear' and/or 'softmax', got {bad}")
    ppo = (
        points_per_octave
        if isinstance(points_per_octave, dict)
        else {"linear": points_per_octave, "softmax": points_per_octave}
    )
    bad = [k for k in ppo if k not in ("linear", "softmax")]
    if bad or any(not isinstance(v, int) or not 1 <= v <= 8 for v in ppo.values()):
        raise ValueError(
            f"points_per_octave must be an integer in [1, 8], or a dict of such per method ('linear', 'softmax'); "
            f"got {points_per_octave!r}"
        )
    points_per_octave = {"linear": ppo.get("linear", 1), "softmax": ppo.get("softmax", 1)}
    if not isinstance(slice_from_n, int) or slice_from_n < 0:
        raise ValueError(f"slice_from_n must be an integer ≥ 0 (0: only past the int32 limit), got {slice_from_n!r}")
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer ≥ 0 (0: the cores other processes leave free), got {threads!r}")
    return dict(
        threads=threads,
        points_per_octave=points_per_octave,
        slice_from_n=slice_from_n,
        batch=batch,
        heads=heads,
        head_dim=head_dim,
        dtype=dtype,
        la_log2=tuple(la_log2),
        softmax_log2=tuple(softmax_log2),
        warmup=warmup,
        runs=runs,
        budget_s=float(budget_s),
        modes=tuple(modes),
        variants=tuple(variants),
        fit_from_n=fit,
    )


# --------------------------------------------------------------------------- cases
def make_inputs(n: int, cfg: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of (B, H, n, D), drawn on the device in the benchmark's dtype (seeded by n)."""
    dtype = getattr(torch, cfg["dtype"])
    g = torch.Generator(device=device).manual_seed(n)
    shape = (cfg["batch"], cfg["heads"], n, cfg["head_dim"])
    return tuple(torch.randn(shape, generator=g, device=device, dtype=dtype) for _ in range(3))  # type: ignore[return-value]


def _la_fn(backend, variant):
    from linrepro.attention import linear_attention

    return lambda q, k, v: linear_attention(q, k, v, variant=variant, backend=backend)


def _sdpa_fn(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    enum = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": getattr(SDPBackend, "CUDNN_ATTENTION", None),
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }[backend]
    if enum is None:
        raise RuntimeError(f"this torch has no SDPA backend {backend!r}")

    def fn(q, k, v):
        with sdpa_kernel([enum]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    return fn


def available_la_backends(device: torch.device, interpreted: bool = False) -> list[str]:
    """LA backends that run on ``device``; ``interpreted``: also Triton on CPU when
    TRITON_INTERPRET is set (a rehearsal of the GPU sweep, far too slow to time anything)."""
    out = ["torch"]
    if device.type == "cuda" or (interpreted and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")):
        try:
            import triton  # noqa: F401

            out.insert(0, "triton")
        except ImportError:
            pass
    return out


def implementations(
    device: torch.device, variants, interpreted: bool = False
) -> list[tuple[str, str, str, str | None]]:
    impls = [(f"la-{b}-{v}", "linear", b, v) for b in available_la_backends(device, interpreted) for v in variants]
    sd = SDPA_BACKENDS if device.type == "cuda" else ("flash", "math")
    impls += [(f"sdpa-{b}", "softmax", b, None) for b in sd]
    return impls


def _io_bytes(n, cfg, mode) -> int:
    """Bytes that must cross memory at least once: q, k, v read and o written (fwd);
    bwd adds do read, dq/dk/dv written and q, k, v, o read again."""
    el = torch.finfo(getattr(torch, cfg["dtype"])).bits // 8
    t = cfg["batch"] * cfg["heads"] * n * cfg["head_dim"] * el
    return 4 * t if mode == "fwd" else 4 * t + 8 * t


def flop_count(method: str, mode: str, n: int, cfg: dict) -> float:
    """FLOPs of one call (the whole B·H, multiply-add = 2): softmax 4·B·H·N²·D forward (QKᵀ and
    PV); LA 4·B·H·N·D·Dv forward (the state K̂ᵀV and Q̂S). Forward + backward: softmax 3.5× the
    forward (FlashAttention-2's count: the backward recomputes P and does four more products), LA
    3× (each product has two gradient products)."""
    bh, d = cfg["batch"] * cfg["heads"], cfg["head_dim"]
    fwd = 4.0 * bh * n * n * d if method == "softmax" else 4.0 * bh * n * d * d
    return fwd if mode == "fwd" else fwd * (3.5 if method == "softmax" else 3.0)


def predict_s(case_io_bytes: float, flops: float, bandwidth_Bps: float | None, peak_flops: float | None):
    """Roofline time: the larger of bytes ÷ copy bandwidth and FLOPs ÷ matmul peak (both measured
    in the same run). A floor: no implementation can beat it."""
    parts = []
    if bandwidth_Bps:
        parts.append(case_io_bytes / bandwidth_Bps)
    if peak_flops:
        parts.append(flops / peak_flops)
    return max(parts) if parts else None


def _mem_available() -> int:
    """MemAvailable (free plus reclaimable page cache), in bytes."""
    return _proc_kib("/proc/meminfo", "MemAvailable") or 8 * 2**30


def _cpu_softmax_mem_guard(backend, n, cfg, factor: int = 1) -> str | None:
    """The math backend materialises B·H·N² scores (three copies with softmax and grad)."""
    if backend != "math":
        return None
    need = 3 * cfg["batch"] * cfg["heads"] // factor * n * n * torch.finfo(getattr(torch, cfg["dtype"])).bits // 8
    avail = _mem_available()
    if need > 0.5 * avail:
        return f"needs about {need / 2**30:.1f} GiB for the N×N scores; {avail / 2**30:.1f} GiB free"
    return None


def _first_line(e: BaseException, limit: int = 300) -> str:
    msg = str(e).strip().splitlines()
    return (msg[0] if msg else type(e).__name__)[:limit]


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return type(e).__name__ == "OutOfResources" or "out of memory" in str(e).lower()


def new_case(impl, method, backend, variant, mode, n, cfg, device, **fields) -> Case:
    """A Case of this config's shape and dtype on ``device``; ``fields`` sets the rest."""
    shape = (cfg["batch"], cfg["heads"], cfg["head_dim"], cfg["dtype"])
    return Case(impl, method, backend, variant, mode, n, *shape, str(device), **fields)


SLICEABLE = ("flash", "efficient", "cudnn")


def needs_slice(method: str, backend: str, n: int, cfg: dict, device) -> bool:
    """Is softmax at this N timed on one (batch, head) slice, ×B·H? On CUDA when the full call
    passes FlashAttention-style int32 indexing (B·H·N·D ≥ 2^31); anywhere from the config's
    ``slice_from_n`` (a rehearsal on CPU). Softmax's (batch, head) slices are independent."""
    if method != "softmax":
        return False
    if cfg.get("slice_from_n") and n >= cfg["slice_from_n"]:
        return True
    numel = cfg["batch"] * cfg["heads"] * n * cfg["head_dim"]
    return torch.device(device).type == "cuda" and backend in SLICEABLE and numel >= INT32_LIMIT


def _prepare(impl, method, backend, variant, mode, n, cfg, device, inputs, sliced=False):
    """(Case, the call to time or None). A case that cannot run is returned ``skipped`` with its
    reason and no call. ``sliced``: the call runs on one (batch, head) slice of the inputs."""
    device = torch.device(device)
    factor = cfg["batch"] * cfg["heads"] if sliced else 1
    c = new_case(
        impl,
        method,
        backend,
        variant,
        mode,
        n,
        cfg,
        device,
        warmup=cfg["warmup"],
        io_bytes=_io_bytes(n, cfg, mode),
        flops=flop_count(method, mode, n, cfg),
        sliced=sliced,
    )
    if sliced:
        c.extra["slice_factor"] = factor
    numel = cfg["batch"] * cfg["heads"] * n * cfg["head_dim"] // factor
    if method == "softmax" and backend in SLICEABLE and device.type == "cuda" and numel >= INT32_LIMIT:
        c.status, c.reason = "skipped", f"B·H·N·D = {numel:,} ≥ 2^31: FlashAttention-style int32 indexing may overflow"
        return c, None
    if device.type == "cpu" and method == "softmax":
        guard = _cpu_softmax_mem_guard(backend, n, cfg, factor)
        if guard:
            c.status, c.reason = "skipped", guard
            return c, None
    fn = _la_fn(backend, variant) if method == "linear" else _sdpa_fn(backend)
    base = inputs if inputs is not None else make_inputs(n, cfg, device)
    if sliced:
        base = tuple(t[:1, :1] for t in base)
    if mode == "fwd":
        q, k, v = base

        def call():
            with torch.no_grad():
                return fn(q, k, v)
    else:
        q, k, v = (t.detach().requires_grad_(True) for t in base)
        go = torch.ones_like(base[2])

        def call():
            o = fn(q, k, v)
            torch.autograd.grad(o, (q, k, v), go)

    return c, call


def _fail(c: Case, e: BaseException) -> Case:
    if _is_oom(e):
        c.status, c.reason = "skipped", f"out of memory: {_first_line(e, 200)}"
    elif c.method == "softmax" and isinstance(e, RuntimeError):
        c.status, c.reason = "skipped", f"{c.backend} cannot run this case: {_first_line(e)}"
    else:
        c.status, c.reason = "failed", f"{type(e).__name__}: {_first_line(e)}"
        c.extra["traceback"] = "".join(traceback.format_exception(e, limit=8))[-4000:]
    return c


def _finish(c: Case, got, call, device) -> Case:
    """Fill ``c`` from :func:`time_interleaved`'s result for it (samples, or the exception), then
    measure the peak memory of one call."""
    if isinstance(got, BaseException):
        return _fail(c, got)
    times, used = got
    if not times:
        c.status, c.reason = "skipped", "no repetition fitted in the time budget"
        return c
    factor = c.extra.get("slice_factor", 1)
    if factor != 1:
        c.extra["slice_median_s"] = statistics.median(times)
        times = [t * factor for t in times]
    c.runs = used
    c.median_s, c.mean_s, c.min_s = statistics.median(times), statistics.fmean(times), min(times)
    c.extra["timer"] = (
        "cuda-events, calls back to back" if device.type == "cuda" else "perf_counter per call"
    ) + ", repetitions interleaved across implementations"
    try:
        c.peak_mem_bytes = measure_peak(call, device)
    except Exception as e:
        c.extra["peak_mem_error"] = _first_line(e)
    return c


def time_cases(prepared: list, cfg: dict, device) -> list[Case]:
    """Time every prepared (Case, call) together, repetitions interleaved; never raises for a case:
    an out-of-memory or a backend that refuses the shape is ``skipped``, anything else ``failed``."""
    device = torch.device(device)
    calls = {i: call for i, (_, call) in enumerate(prepared) if call is not None}
    try:
        got = time_interleaved(calls, device, cfg["warmup"], cfg["runs"], cfg["budget_s"]) if calls else {}
        return [c if call is None else _finish(c, got[i], call, device) for i, (c, call) in enumerate(prepared)]
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_case(impl, method, backend, variant, mode, n, cfg, device, inputs=None, sliced=False) -> Case:
    """One (implementation, mode, N), timed alone. Never raises for a case (see :func:`time_cases`)."""
    try:
        prepared = _prepare(impl, method, backend, variant, mode, n, cfg, device, inputs, sliced)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        return _fail(new_case(impl, method, backend, variant, mode, n, cfg, torch.device(device)), e)
    return time_cases([prepared], cfg, device)[0]


def _predicted_too_slow(prev: list[Case], n: int, cfg, factor: int = 1) -> str | None:
    """Predict the next point's total time (warm-up + one run) from the last two; skip past budget.
    ``factor``: the next point runs on one of ``factor`` slices (its call takes 1/factor of it)."""
    ok = [c for c in prev if c.status == "ok" and c.median_s]
    if not ok:
        return None
    last = ok[-1]
    slope = 2.0
    if len(ok) >= 2 and ok[-2].median_s and ok[-2].median_s > 0:
        slope = min(2.5, max(1.0, math.log(last.median_s / ok[-2].median_s) / math.log(last.n / ok[-2].n)))
    pred = last.median_s * (n / last.n) ** slope / factor
    if pred * (1 + min(cfg["warmup"], 1)) > cfg["budget_s"]:
        return (
            f"predicted {pred:.3g} s per run from the slope so far ({slope:.2f}); "
            f"over the {cfg['budget_s']:g} s budget per point"
        )
    return None


def grid(cfg: dict) -> dict[str, list[int]]:
    """The N of each method ("linear", "softmax") in this config: 2^lo … 2^hi, with
    ``points_per_octave`` points per doubling (one number, or one per method; rounded to integers)."""
    ppo = cfg.get("points_per_octave") or 1
    out = {}
    for m, key in (("linear", "la"), ("softmax", "softmax")):
        k = int(ppo.get(m, 1) if isinstance(ppo, dict) else ppo)
        lo, hi = cfg[f"{key}_log2"]
        out[m] = sorted({round(2 ** (e / k)) for e in range(lo * k, hi * k + 1)})
    return out


def slice_check_n(method: str, backend: str, cfg: dict, device) -> int | None:
    """The largest N of this softmax job's grid at which the full call still runs, when a larger N
    of the grid is sliced: there a sliced call is timed beside the full one, to check that slice
    time × B·H agrees with the full call (within :data:`linrepro.study.rules.SLICE_AGREEMENT`)."""
    ns = grid(cfg)[method]
    sliced = [n for n in ns if needs_slice(method, backend, n, cfg, device)]
    full = [n for n in ns if not needs_slice(method, backend, n, cfg, device)]
    return max(full) if sliced and full else None


def plan(cfg: dict, device, bandwidth_Bps: float, peak_flops: float, impls=None) -> list[dict]:
    """Every point the sweep will run on ``device``, without running it: implementation, mode, N,
    whether it is sliced (or a slice check), the roofline-predicted time per call (from the given
    bandwidth and peak, e.g. an H200's nominal figures), and the predicted total for the point
    (warm-up and runs, each capped by the time budget as the sweep caps them)."""
    device = torch.device(device)
    impls = impls or implementations(device, cfg["variants"])
    ns = grid(cfg)
    rows = []
    for n in sorted(set(ns["linear"]) | set(ns["softmax"])):
        for impl, method, backend, _variant in impls:
            if n not in ns[method]:
                continue
            for mode in cfg["modes"]:
                sliced = needs_slice(method, backend, n, cfg, device)
                roles = [("point", sliced)]
                if n == slice_check_n(method, backend, cfg, device):
                    roles.append(("slice check", True))
                for role, sl in roles:
                    pred = predict_s(
                        _io_bytes(n, cfg, mode), flop_count(method, mode, n, cfg), bandwidth_Bps, peak_flops
                    )
                    per_call = pred / (cfg["batch"] * cfg["heads"]) if sl else pred
                    over = per_call * (1 + min(cfg["warmup"], 1)) > cfg["budget_s"]
                    warm = min(cfg["warmup"] * per_call, cfg["budget_s"] / 2 + per_call)
                    runs = min(cfg["runs"] * per_call, cfg["budget_s"] + per_call)
                    rows.append(
                        {
                            "impl": impl,
                            "mode": mode,
                            "n": n,
                            "role": role,
                            "sliced": sl,
                            "predicted_s": pred,
                            "predicted_call_s": per_call,
                            "predicted_total_s": 0.0 if over else warm + runs,
                            "over_budget": over,
                        }
                    )
    return rows


#: Nominal H200 figures for planning without the GPU (PAPER.md's hardware facts): a device-to-device
#: copy reaches about 90% of the 4.8 TB/s HBM3e, and dense bf16 peaks at 989 TFLOP/s. A run measures both.
H200_COPY_BPS = 0.9 * 4.8e12
H200_PEAK_FLOPS = {"bfloat16": 989e12, "float16": 989e12, "float32": 494e12}


def plan_text(rows: list[dict], bandwidth_Bps: float, peak_flops: float, source: str) -> str:
    """The plan as a terminal table, with the predicted total."""
    lines = [
        f"plan: {len(rows)} points; roofline from {source}: copy {bandwidth_Bps / 1e12:.3g} TB/s, "
        f"matmul peak {peak_flops / 1e12:.3g} TFLOP/s (floors: a real kernel is slower)",
        f"{'impl':<16}{'mode':<8}{'N':>10}  {'timed as':<22}{'predicted/call':>15}{'point total':>13}",
    ]
    for r in rows:
        how = "slice check (1 slice)" if r["role"] == "slice check" else ("sliced ×B·H" if r["sliced"] else "full call")
        tot = "skip: budget" if r["over_budget"] else f"{r['predicted_total_s']:.3g} s"
        lines.append(f"{r['impl']:<16}{r['mode']:<8}{r['n']:>10,}  {how:<22}{r['predicted_s']:>14.3g}s{tot:>13}")
    total = sum(r["predicted_total_s"] for r in rows)
    lines.append(f"predicted total: {total:.0f} s ({total / 60:.1f} min), before start-up and compilation")
    return "\n".join(lines)


def sweep(
    cfg: dict, device: str | torch.device = "cpu", impls=None, progress: bool | None = None, on_case=None
) -> list[Case]:
    """Every implementation × mode × N, N by N: one set of inputs per N, shared by every case at
    that N, and the repetitions of all the cases at that N interleaved (:func:`time_cases`).
    ``on_case(cases_so_far)`` is called after each N (the CLI writes bench.json there).
    ``progress=None``: a bar (inside a linrepro run, on the user's terminal, never in the report)."""
    if progress is None:
        progress = True  # inside a recorded run the bar goes to the terminal through progress.txt
    device = torch.device(device)
    impls = impls or implementations(device, cfg["variants"])
    ns = grid(cfg)
    jobs = [(i, mode) for i in impls for mode in cfg["modes"]]
    total = sum(len(ns[i[1]]) for i, _ in jobs)
    bar = None
    if progress:
        from linrepro.utils.progress import progress as _bar

        bar = _bar(total, "bench", unit="case")
    prev: dict[tuple, list[Case]] = {job_key: [] for job_key in ((i[0], m) for i, m in jobs)}
    stop: dict[tuple, str | None] = dict.fromkeys(prev)
    out: list[Case] = []
    for n in sorted(set(ns["linear"]) | set(ns["softmax"])):
        inputs = None
        prepared: list = []
        for (impl, method, backend, variant), mode in jobs:
            if n not in ns[method]:
                continue
            key = (impl, mode)
            sliced = needs_slice(method, backend, n, cfg, device)
            factor = cfg["batch"] * cfg["heads"] if sliced else 1
            if stop[key] is None:
                stop[key] = _predicted_too_slow(prev[key], n, cfg, factor)
            if stop[key]:
                c = new_case(impl, method, backend, variant, mode, n, cfg, device, status="skipped", reason=stop[key])
                c.sliced = sliced
                prepared.append((c, None))
                continue
            if inputs is None:
                try:
                    inputs = make_inputs(n, cfg, device)
                except Exception as e:
                    inputs = e
            roles = [sliced] + ([True] if n == slice_check_n(method, backend, cfg, device) else [])
            for j, sl in enumerate(roles):
                if isinstance(inputs, Exception):
                    why = f"inputs: {type(inputs).__name__}: {_first_line(inputs)}"
                    status = "skipped" if _is_oom(inputs) else "failed"
                    c = new_case(impl, method, backend, variant, mode, n, cfg, device, status=status, reason=why)
                    prepared.append((c, None))
                    continue
                try:
                    c, call = _prepare(impl, method, backend, variant, mode, n, cfg, device, inputs, sl)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as e:
                    c, call = _fail(new_case(impl, method, backend, variant, mode, n, cfg, device), e), None
                if j:
                    c.extra["role"] = "slice check"
                prepared.append((c, call))
        for c in time_cases(prepared, cfg, device):
            key = (c.impl, c.mode)
            if c.extra.get("role") != "slice check":
                prev[key].append(c)
                if c.status == "skipped" and c.reason and "out of memory" in c.reason:
                    stop[key] = f"a smaller N ran out of memory ({c.reason[:80]})"
                if bar is not None:
                    bar.set_postfix_str(f"{c.impl} {c.mode} N={n}")
                    bar.update(1)
            out.append(c)
        del inputs, prepared
        if on_case is not None:
            on_case(out)
    if bar is not None:
        bar.close()
    return out


# --------------------------------------------------------------------------- output
def write(cases: list[Case], out_dir: Path, cfg: dict, extra: dict | None = None, prov: dict | None = None) -> dict:
    """bench.json (provenance, config, cases) and bench.csv, each written atomically."""
    from linrepro.utils.io import atomic_write_text, write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "provenance": dict(prov or provenance.collect()),
        "config": cfg,
        "cases": [asdict(c) for c in cases],
        **(extra or {}),
    }
    doc["provenance"]["sdpa_note"] = "each sdpa case forces one backend with torch.nn.attention.sdpa_kernel"
    write_json(out_dir / "bench.json", doc)
    rows = [asdict(c) for c in cases]
    if rows:
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
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise ValueError(f"{p}: not a readable bench.json ({e})") from None


def measure(
    cfg: dict, device: str | torch.device, out_dir, impls=None, progress: bool | None = None, bandwidth: bool = True
) -> dict:
    """The sweep, with bench.json rewritten after every N (a kill keeps what was measured), then
    the copy bandwidth and the matmul peak measured in the same run, and each point's roofline
    prediction from them; returns the bench document."""
    device = torch.device(device)
    prov = provenance.collect()
    state: dict = {"status": "running"}
    before = torch.get_num_threads()
    if device.type == "cpu":  # fewer threads than free cores: a busy machine cannot stall a barrier
        state["cpu_threads"], state["busy_cores_before"] = timing_threads(cfg.get("threads", 0))
        torch.set_num_threads(state["cpu_threads"])
    try:
        cases = sweep(
            cfg, device, impls, progress, on_case=lambda so_far: write(so_far, out_dir, cfg, {"sweep": state}, prov)
        )
        state["status"] = "complete"
        bw = copy_bandwidth(device) if bandwidth else None
        peak = matmul_peak(device, getattr(torch, cfg["dtype"])) if bandwidth else None
    finally:
        torch.set_num_threads(before)
    if device.type == "cpu":
        state["busy_cores_after"] = busy_cores(0.5)
    for c in cases:
        if c.flops is not None and c.io_bytes is not None:
            c.predicted_s = predict_s(c.io_bytes, c.flops, bw, peak)
    return write(cases, out_dir, cfg, {"sweep": state, "copy_bandwidth_Bps": bw, "matmul_peak_flops": peak}, prov)


def measure_or_load(cfg: dict, reference_dir: str, device: str, out_dir) -> tuple[dict, str]:
    """Either load a recorded ``bench.json`` (e.g. outputs/reference/h200/…) or measure now.

    Returns the bench document and a sentence saying which it is, for the report.
    """
    from linrepro.utils import project

    if reference_dir:
        p = Path(reference_dir)
        p = p if p.is_absolute() else project.root() / p
        doc = load(p)
        return doc, (
            f"**Recorded run**, loaded from `{reference_dir}`: measured on {device_name(doc)} on "
            f"{doc['provenance']['date']} (commit {str(doc['provenance']['git'].get('commit'))[:10]}). "
            "Not measured in this run."
        )
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA device")
    doc = measure(cfg, dev, out_dir)
    return doc, f"**Measured in this run** on {device_name(doc)} ({dev.type}), {doc['provenance']['date']}."


def device_name(doc: dict) -> str:
    dev = doc["provenance"]["device"]
    return (dev.get("cuda") or {}).get("name") or dev.get("cpu") or "?"
