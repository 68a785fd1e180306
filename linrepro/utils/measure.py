"""Measuring one callable: time per call (CPU or CUDA) and the peak memory one call adds."""

from __future__ import annotations

import math
import os
import time

import torch


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


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def reuse_freed_memory(nbytes: int = 2**31 - 1) -> bool:
    """Have glibc's malloc serve allocations up to ``nbytes`` from its heap and keep what is freed
    (``mallopt`` of M_MMAP_THRESHOLD and M_TRIM_THRESHOLD), as a GPU's caching allocator does: a freed
    64 MiB tensor's pages are then reused by the next allocation of that size, instead of being unmapped
    and faulted in again 4 KiB at a time on first write. By default glibc maps every allocation above
    its adaptive threshold (at most 32 MiB) afresh, so a CPU call whose output is larger pays about
    0.3 ms per MiB of it in page faults (measured on the development machine). Process-wide and not
    undone; the same as starting Python with ``MALLOC_MMAP_THRESHOLD_=<bytes> MALLOC_TRIM_THRESHOLD_=<bytes>``
    in the environment. ``mallopt`` takes a C int: ``nbytes`` above 2³¹ − 1 is refused (ValueError), not
    truncated. True where applied (glibc), False elsewhere."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 0 < nbytes < 2**31:
        raise ValueError(f"nbytes must be an int in [1, 2**31 - 1] (mallopt takes a C int), got {nbytes!r}")
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        value = ctypes.c_int(nbytes)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(M_TRIM_THRESHOLD, value))
    except (OSError, AttributeError):
        return False


def measure_peak(fn, device: torch.device) -> int | None:
    """Peak memory one call of ``fn`` adds above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    _malloc_trim()  # give freed heap pages back, so the call's allocations show up in the RSS
    if not _reset_hwm():
        return None
    base = _rss_bytes()
    fn()
    hwm = _rss_hwm_bytes()
    return None if base is None or hwm is None else max(hwm - base, 0)


# --------------------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device: torch.device, warmup: int, runs: int, budget_s: float) -> tuple[list[float], int]:
    """Per-call seconds after ``warmup`` calls, and the number of calls timed; stops early past the
    budget. CPU: one sample per call. GPU: calls back to back between two CUDA events in up to
    ``GPU_GROUPS`` groups; one sample (elapsed / calls) per group, so host overhead is hidden
    wherever the kernels take longer to run than to launch."""
    got = time_interleaved({0: fn}, device, warmup, runs, budget_s)[0]
    if isinstance(got, BaseException):
        raise got
    return got


GPU_GROUPS = 10


def time_interleaved(fns: dict, device: torch.device, warmup: int, runs: int, budget_s: float) -> dict:
    """Time several callables **interleaved**: after each one's warm-up, repetition r of every
    callable runs before repetition r + 1 of any (ABAB…, not AAAA BBBB), so a burst of load on a
    shared machine hits them all alike. Returns ``{key: (samples, calls timed)}``, or ``{key:
    exception}`` for a callable that raised (the others go on). Each stops past ``budget_s`` of its
    own time. CPU: one sample per call (``perf_counter``). GPU: each sample is one group of calls
    issued back to back between two CUDA events (elapsed / calls), up to ``GPU_GROUPS`` groups."""
    out: dict = {}
    state: dict = {}
    for key, fn in fns.items():
        try:
            t0 = time.perf_counter()
            for _ in range(warmup):
                fn()
                if time.perf_counter() - t0 > budget_s / 2:
                    break
            _sync(device)
            if device.type == "cuda":
                first = _cuda_group(fn, 1)  # a probe, to size the groups to the budget
                total = max(1, min(runs, int(0.9 * budget_s / max(first, 1e-7))))
                rounds = min(GPU_GROUPS, total)
                state[key] = {"fn": fn, "per": total // rounds, "rounds": rounds, "samples": [], "spent": 0.0}
            else:
                state[key] = {"fn": fn, "per": 1, "rounds": runs, "samples": [], "spent": 0.0}
        except Exception as e:  # recorded for this key; KeyboardInterrupt and SystemExit propagate
            out[key] = e
    for r in range(max((st["rounds"] for st in state.values()), default=0)):
        for key, st in list(state.items()):
            if r >= st["rounds"] or st["spent"] > budget_s:
                continue
            try:
                if device.type == "cuda":
                    t = _cuda_group(st["fn"], st["per"])
                else:
                    t0 = time.perf_counter()
                    st["fn"]()
                    t = time.perf_counter() - t0
            except Exception as e:
                out[key] = e
                del state[key]
                continue
            st["samples"].append(t)
            st["spent"] += t * st["per"]
    for key, st in state.items():
        out[key] = (st["samples"], st["per"] * len(st["samples"]))
    return {k: out[k] for k in fns}  # in the callers' order


def _cuda_group(fn, m: int) -> float:
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(m):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / 1e3 / m


def copy_bandwidth(device: torch.device, nbytes: int | None = None, runs: int = 20) -> float:
    """Copy bandwidth measured now (bytes/s; read + write counted): device-to-device on a GPU
    (1 GiB), a 256 MiB buffer in RAM on CPU (far past the caches)."""
    nbytes = nbytes or (2**30 if device.type == "cuda" else 2**28)
    a = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    b = torch.empty_like(a)
    times, _ = time_fn(lambda: b.copy_(a), device, 3, runs, 30.0)
    return 2 * nbytes / min(times)


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, runs: int = 10
) -> float:
    """FLOP/s of one square matmul measured now (2n³ FLOP per call; the best of ``runs``): n = 2048
    on CPU, 8192 on a GPU. The machine's practical peak for dense products of that dtype."""
    n = n or (8192 if device.type == "cuda" else 2048)
    if device.type == "cpu" and dtype not in (torch.float32, torch.float64):
        dtype = torch.float32  # CPU half-precision matmuls are not the peak of anything
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g, device=device, dtype=dtype)
    times, _ = time_fn(lambda: a @ b, device, 2, runs, 30.0)
    return 2 * n**3 / min(times)


# --------------------------------------------------------------------------- a busy machine
def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return sum(vals) - idle, sum(vals)


def _own_jiffies() -> int:
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime of this process (all its threads)
    except (OSError, ValueError, IndexError):
        return 0


def busy_cores(interval: float = 1.0) -> float | None:
    """How many cores *other* processes kept busy over the next ``interval`` seconds (from
    /proc/stat, minus this process's own time); None where /proc is missing."""
    a, own_a = _cpu_jiffies(), _own_jiffies()
    if a is None:
        return None
    time.sleep(interval)
    b, own_b = _cpu_jiffies(), _own_jiffies()
    if b is None or b[1] == a[1]:
        return None
    ncpu = os.cpu_count() or 1
    busy = (b[0] - a[0]) - (own_b - own_a)
    return max(0.0, ncpu * busy / (b[1] - a[1]))


def timing_threads(requested: int = 0, interval: float = 1.0) -> tuple[int, float | None]:
    """CPU threads to time with, and the busy cores seen. ``requested`` > 0 is used as given; 0
    picks the cores other processes leave free (at least 1): on a machine where another process
    holds a core, a parallel region whose threads outnumber the free cores waits a scheduler time
    slice for a descheduled thread at every barrier, and many small regions (the chunked LA path)
    then time 10-30x slower, while one large matmul barely notices."""
    if requested < 0:
        raise ValueError(f"threads must be ≥ 0 (0: the free cores), got {requested!r}")
    ncpu = os.cpu_count() or 1
    busy = busy_cores(interval) if requested == 0 else None
    if requested:
        return requested, busy
    free = ncpu - int(math.floor((busy or 0.0) + 0.5))
    return max(1, min(torch.get_num_threads(), free)), busy
