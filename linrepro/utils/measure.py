"""Measuring one callable: time per call (CPU or CUDA) and the peak memory one call adds."""

from __future__ import annotations

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
        torch.cuda.synchronize()


def time_fn(fn, device: torch.device, warmup: int, runs: int, budget_s: float) -> tuple[list[float], int]:
    """Per-call seconds after ``warmup`` calls, and the number of calls timed; stops early past the
    budget. CPU: one sample per call. GPU: calls back to back between two CUDA events in up to
    ``GPU_GROUPS`` groups; one sample (elapsed / calls) per group, so host overhead is hidden
    wherever the kernels take longer to run than to launch."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
        if time.perf_counter() - t0 > budget_s / 2:
            break
    _sync(device)
    if device.type == "cuda":
        return _time_cuda(fn, runs, budget_s)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return times, len(times)


GPU_GROUPS = 10


def _time_cuda(fn, runs: int, budget_s: float) -> tuple[list[float], int]:
    def group(m: int) -> float:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(m):
            fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / 1e3 / m

    first = group(1)  # a probe, to size the groups to the budget
    affordable = max(1, int(0.9 * budget_s / max(first, 1e-7)))
    total = max(1, min(runs, affordable))
    groups = min(GPU_GROUPS, total)
    per = total // groups
    samples = [group(per) for _ in range(groups)]
    return samples, per * groups
