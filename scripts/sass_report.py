"""SASS of the Triton kernels, compiled ahead of time for sm_90 (H100/H200) on a machine without a GPU.

    python scripts/sass_report.py --out /tmp/sass/before                      # every kernel, every config
    python scripts/sass_report.py --dims 64 --dtypes bf16 --kernels _state_kernel --out /tmp/sass/b
    python scripts/sass_report.py --kernels-dir /tmp/kernels_new --baseline /tmp/sass/b/sass_report.json \\
        --dims 64 --dtypes bf16 --kernels _state_kernel --out /tmp/sass/a      # before/after table

What is compiled is what the launchers launch. For each configuration (form noncausal/causal, pass
fwd/bwd, variant eq4/eq7, dtype, D and Dv) the launchers of ``kernels/noncausal.py`` and
``kernels/causal.py`` run on ``meta`` tensors, with ``_Cfg`` told it is on a CUDA device with
``--sm-count`` SMs, and ``_launch`` (and every ``*_kernel`` launched directly) recording instead of
launching. Each recorded launch (kernel, arguments, constexprs, num_warps, num_stages) is
specialised by Triton's own binder, as a real launch would be (tensors as 16-byte aligned
pointers, integers by divisibility by 16 and ==1), and compiled with ``triton.compile`` for
``GPUTarget("cuda", 90, 32)``, i.e. sm_90a as on an H200. No kernel runs; no GPU is needed.

The cubin is read with the ``cuobjdump`` bundled with Triton (``-sass`` and ``-res-usage``). Per
kernel launch the report gives:

* ``sass``: static SASS instructions (NOPs not counted);
* ``loop``: static instructions in the main loop body, the longest range [target, branch] closed
  by a backward ``BRA`` (the kernels' ``for t in range(nblk)`` row loop; with ``num_stages > 1``
  the pipelined steady state, prologue and epilogue outside it). The body is executed once per
  block of BLOCK_N (BLOCK_C) rows, by every warp: these are instructions per warp and per row
  block, counting forward branches inside the body as if nothing were skipped;
* ``shfl`` / ``bar``: SHFL and BAR instructions in the loop body (and in the whole kernel);
* ``spill``: LDL + STL instructions (local-memory loads/stores: register spills) in the loop body
  and in the whole kernel, and ``local``, the bytes of local memory per thread (``-res-usage``);
* ``regs``: registers per thread; ``smem``: the dynamic shared memory the launch requests
  (compiler metadata; over 227 KiB the launcher's retry with fewer stages / smaller blocks kicks in);
* ``blk/SM``: resident blocks per SM allowed by registers, shared memory and warps (sm_90: 64K
  registers allocated per warp in units of 256, 228 KiB shared memory with 1 KiB reserved per
  block, 64 warps, 32 blocks): an estimate for wave counts, not a measurement.

Outputs under ``--out``: ``sass_report.md`` (the table, also printed), ``sass_report.json`` (all the
numbers, the loop's opcode histogram, the configurations) and ``sass/<kernel>-<id>.sass`` (the
disassembly, addresses and instructions). ``--baseline`` (a previous ``sass_report.json``) adds a
before/after table for the launches both runs have.

``--kernels-dir`` points at another copy of ``kernels/`` (same file layout), imported as a separate
package, so a changed copy can be measured against the checkout without touching ``kernels/``.
Only one kernels copy is imported per process (``autograd.py`` registers ``linrepro::`` custom ops).
Compiles are cached by Triton (``~/.triton/cache``): a second run of the same kernels is fast.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FILES = ("__init__.py", "common.py", "noncausal.py", "causal.py", "autograd.py")
DTYPES = ("fp32", "fp16", "bf16")
VARIANTS = ("eq7", "eq4")
FORMS = ("noncausal", "causal")
PASSES = ("fwd", "bwd")
SM90_REGS = 65536  # registers per SM
SM90_SMEM = 228 * 1024  # shared memory per SM (bytes)
SM90_SMEM_BLOCK = 227 * 1024  # largest opt-in shared memory of one block
SM90_MAX_WARPS = 64
SM90_MAX_BLOCKS = 32


class SassReportError(RuntimeError):
    """The report cannot be made; the message names the bad value, file or tool."""


# =========================================================================== SASS parsing (pure)
_LINE = re.compile(r"^\s*/\*([0-9a-fA-F]{4,})\*/\s+(.*?)\s*;")
_PRED = re.compile(r"^@!?[A-Za-z]*P[A-Za-z0-9]*\s+")
_HEX = re.compile(r"0x([0-9a-fA-F]+)")


@dataclass
class Instr:
    addr: int
    text: str
    op: str  # full opcode with modifiers, e.g. SHFL.BFLY
    base: str  # opcode without modifiers, e.g. SHFL


def parse_sass(text: str) -> list[Instr]:
    """Instructions of a ``cuobjdump -sass`` / ``nvdisasm`` listing (one function): address, text, opcode."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        body = m.group(2).strip()
        bare = _PRED.sub("", body)
        op = bare.split()[0] if bare.split() else ""
        out.append(Instr(int(m.group(1), 16), body, op, op.split(".")[0]))
    return out


def branch_target(ins: Instr) -> int | None:
    """Target address of a direct ``BRA`` (None for other instructions or indirect branches)."""
    if ins.base != "BRA":
        return None
    m = _HEX.search(ins.text.split(None, 2)[-1] if ins.text.startswith("@") else ins.text)
    return int(m.group(1), 16) if m else None


def find_loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """Loops as (first, last) addresses: a backward ``BRA`` at ``last`` to ``first`` < ``last``
    (branches to the same target merged; the ``BRA`` to itself that ends every function is not a loop)."""
    ends: dict[int, int] = {}
    for ins in instrs:
        t = branch_target(ins)
        if t is not None and t < ins.addr:
            ends[t] = max(ends.get(t, t), ins.addr)
    return sorted(ends.items())


def _counts(instrs: list[Instr]) -> dict[str, int]:
    ops = [i.base for i in instrs if i.base != "NOP"]
    return {
        "instructions": len(ops),
        "shfl": sum(o == "SHFL" for o in ops),
        "bar": sum(o == "BAR" for o in ops),
        "ldl": sum(o == "LDL" for o in ops),
        "stl": sum(o == "STL" for o in ops),
        "mma": sum(o in ("HMMA", "HGMMA", "IMMA", "IGMMA", "DMMA", "QGMMA", "BGMMA") for o in ops),
        "ldg": sum(o == "LDG" for o in ops),
        "stg": sum(o == "STG" for o in ops),
        "lds": sum(o in ("LDS", "LDSM") for o in ops),
        "sts": sum(o == "STS" for o in ops),
    }


def summarise_sass(instrs: list[Instr]) -> dict:
    """Whole-kernel counts, the main loop (the longest one) with its counts and opcode histogram, and
    every loop's range. Counts leave NOPs out."""
    loops = find_loops(instrs)
    res = {"total": _counts(instrs), "loops": [{"first": a, "last": b} for a, b in loops], "loop": None}
    if loops:
        first, last = max(loops, key=lambda ab: (ab[1] - ab[0], -ab[0]))
        body = [i for i in instrs if first <= i.addr <= last]
        hist: dict[str, int] = {}
        for i in body:
            if i.base != "NOP":
                hist[i.op] = hist.get(i.op, 0) + 1
        inner = sum(1 for a, b in loops if first <= a and b <= last and (a, b) != (first, last))
        res["loop"] = {
            "first": first,
            "last": last,
            "inner_loops": inner,
            **_counts(body),
            "opcodes": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
    return res


_RES = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def parse_res_usage(text: str) -> dict[str, int]:
    """REG / STACK / SHARED / LOCAL of the (single) function in a ``cuobjdump -res-usage`` listing."""
    m = _RES.search(text)
    if not m:
        raise SassReportError(f"cuobjdump -res-usage printed no REG/STACK/SHARED/LOCAL line:\n{text[:500]}")
    return dict(zip(("regs", "stack", "static_shared", "local"), map(int, m.groups()), strict=True))


def blocks_per_sm(regs: int, num_warps: int, shared: int) -> int:
    """Resident blocks per sm_90 SM allowed by registers (per-warp allocation in units of 256),
    shared memory (1 KiB reserved per block), warps and the block limit: an occupancy estimate."""
    per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    by_regs = (SM90_REGS // per_warp) // num_warps
    by_smem = SM90_SMEM // (shared + 1024) if shared <= SM90_SMEM_BLOCK else 0
    return max(0, min(by_regs, by_smem, SM90_MAX_WARPS // num_warps, SM90_MAX_BLOCKS))


# =========================================================================== tools
def find_tools() -> dict[str, Path]:
    """Triton with its NVIDIA backend and the bundled ``cuobjdump`` / ``ptxas``; a clear error if missing."""
    try:
        import triton  # noqa: F401
        from triton import knobs
        from triton.backends import backends
    except Exception as e:  # pragma: no cover - depends on the environment
        raise SassReportError(f"triton is not importable ({e}); install it to compile the kernels") from None
    if "nvidia" not in backends:
        raise SassReportError("this triton has no NVIDIA backend (triton.backends.nvidia): cannot compile for sm_90")
    tools = {}
    for name in ("cuobjdump", "ptxas"):
        try:
            p = getattr(knobs.nvidia, name).path
        except Exception:  # pragma: no cover - an older knobs layout
            p = None
        p = Path(p) if p else Path(backends["nvidia"].compiler.__file__).parent / "bin" / name
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise SassReportError(f"{name} not found or not executable at {p} (it ships with triton's NVIDIA backend)")
        tools[name] = p
    return tools


# =========================================================================== kernels copy
def load_kernels(kdir: Path) -> SimpleNamespace:
    """Import the kernels copy at ``kdir`` as a package of its own; its modules common / noncausal /
    causal / autograd. Errors name the directory."""
    kdir = Path(kdir).expanduser().resolve()
    if not kdir.is_dir():
        raise SassReportError(f"--kernels-dir {kdir}: no such directory")
    missing = [f for f in KERNEL_FILES if not (kdir / f).is_file()]
    if missing:
        raise SassReportError(f"--kernels-dir {kdir}: missing {', '.join(missing)} (expected a copy of kernels/)")
    name = "_sass_kernels_" + hashlib.sha256(str(kdir).encode()).hexdigest()[:10]
    if name not in sys.modules:
        others = [m for m in sys.modules if m.startswith("_sass_kernels_") and "." not in m]
        if others or "linrepro.kernels" in sys.modules:
            raise SassReportError(f"--kernels-dir {kdir}: another kernels copy is already imported in this process")
        spec = importlib.util.spec_from_file_location(
            name, kdir / "__init__.py", submodule_search_locations=[str(kdir)]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[m]
            raise SassReportError(f"--kernels-dir {kdir}: importing it failed: {type(e).__name__}: {e}") from e
    pkg = SimpleNamespace(dir=kdir, name=name, **{m[:-3]: sys.modules[f"{name}.{m[:-3]}"] for m in KERNEL_FILES[1:]})
    need = {
        "autograd": ("_Cfg",),
        "noncausal": ("_nc_forward", "_nc_backward"),
        "causal": ("_c_forward", "_c_backward"),
    }
    for mod, names in need.items():
        for n in names:
            if not hasattr(getattr(pkg, mod), n):
                raise SassReportError(f"--kernels-dir {kdir}: {mod}.py has no {n} (expected a copy of kernels/)")
    return pkg


def kernels_digest(kdir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(kdir).glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# =========================================================================== capturing launches
@dataclass
class Config:
    form: str
    pass_: str
    variant: str
    dtype: str
    D: int
    DV: int

    @property
    def label(self) -> str:
        return f"{'nc' if self.form == 'noncausal' else 'c'}.{self.pass_} {self.variant} {self.dtype} D{self.D}/Dv{self.DV}"


@dataclass
class Launch:
    kernel: str
    fn: object  # triton JITFunction
    grid: tuple
    args: tuple
    kwargs: dict
    config: Config | None = None
    index: int = 0
    compile_id: str = ""
    meta: dict = field(default_factory=dict)


class _Recorder:
    """Stands in for a JIT kernel in a launcher module: ``k[grid](*args, **kw)`` records the launch."""

    def __init__(self, fn, name, sink):
        self.fn, self.name, self.sink = fn, name, sink

    def __getitem__(self, grid):
        def rec(*args, **kwargs):
            self.sink.append(Launch(self.name, self.fn, tuple(grid), args, dict(kwargs)))

        return rec


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def capture(pkg: SimpleNamespace, cfg: Config, B: int, H: int, N: int, sm_count: int) -> list[Launch]:
    """The launches the launchers of ``pkg`` make for one configuration on an ``sm_count``-SM GPU, on
    meta tensors (nothing runs)."""
    import torch
    from triton.runtime.jit import JITFunction

    sink: list[Launch] = []
    mods = (pkg.common, pkg.noncausal, pkg.causal)
    saved: list[tuple[object, str, object]] = []

    def patch(mod, name, val):
        saved.append((mod, name, getattr(mod, name)))
        setattr(mod, name, val)

    def launch(kernel, grid, args, meta, block_key, num_warps, num_stages):
        kernel[grid](*args, num_warps=num_warps, num_stages=num_stages, **meta)

    try:
        for mod in mods:
            for name, val in list(vars(mod).items()):
                if name.endswith("_kernel") and isinstance(val, JITFunction):
                    patch(mod, name, _Recorder(val, name, sink))
            if hasattr(mod, "_launch"):
                patch(mod, "_launch", launch)
            if hasattr(mod, "_interpret"):
                patch(mod, "_interpret", lambda: False)
        patch(pkg.autograd, "_interpret", lambda: False)
        patch(pkg.autograd, "_sm_count", lambda device: sm_count)
        dt = _torch_dtype(cfg.dtype)
        dev = SimpleNamespace(type="cuda", index=0)
        kcfg = pkg.autograd._Cfg(
            SimpleNamespace(shape=(B, H, N, cfg.D), dtype=dt, device=dev),
            SimpleNamespace(shape=(B, H, N, cfg.DV), dtype=dt, device=dev),
            cfg.form == "causal",
        )
        meta = torch.device("meta")
        q, k = (torch.empty(B, H, N, cfg.D, dtype=dt, device=meta) for _ in range(2))
        v, g = (torch.empty(B, H, N, cfg.DV, dtype=dt, device=meta) for _ in range(2))
        eq4, scale, eps = cfg.variant == "eq4", 0.5, 1e-6
        if cfg.form == "noncausal":
            fwd, bwd = pkg.noncausal._nc_forward, pkg.noncausal._nc_backward
        else:
            fwd, bwd = pkg.causal._c_forward, pkg.causal._c_backward
        if cfg.pass_ == "fwd":
            fwd(kcfg, q, k, v, eq4, scale, eps)
        else:
            state_shape = (kcfg.BH, kcfg.n_splits, kcfg.L) if cfg.form == "causal" else (kcfg.BH, kcfg.L)
            state = torch.empty(state_shape, dtype=torch.float32, device=meta)
            bwd(kcfg, q, k, v, g, state, eq4, scale, eps)
    finally:
        for mod, name, val in reversed(saved):
            setattr(mod, name, val)
    for i, la in enumerate(sink):
        la.config, la.index = cfg, i
    return sink


# =========================================================================== compiling
_TARGET = None


def _target():
    global _TARGET
    if _TARGET is None:
        from triton.backends.compiler import GPUTarget

        _TARGET = GPUTarget("cuda", 90, 32)
    return _TARGET


def specialise(la: Launch):
    """(signature, constexprs, attrs, options) exactly as Triton's launch path derives them."""
    import torch
    from triton.compiler import make_backend
    from triton.runtime.jit import MockTensor, create_function_from_signature

    fn = la.fn
    backend = make_backend(_target())
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    args = tuple(MockTensor(a.dtype) if isinstance(a, torch.Tensor) else a for a in la.args)
    kwargs = dict(la.kwargs)
    bound, spec, opts = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, opts)
    return signature, constexprs, attrs, options


def compile_id(la: Launch, sig, constexprs, attrs, options) -> str:
    key = f"{la.fn.cache_key}|{sorted(sig.items())}|{sorted(constexprs.items())}|{sorted(attrs.items())}|{options}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _run_tool(tool: Path, args: list[str], path: Path) -> str:
    r = subprocess.run([str(tool), *args, str(path)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SassReportError(f"{tool.name} {' '.join(args)} {path} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return r.stdout


def analyse(la: Launch, tools: dict[str, Path], sass_dir: Path | None, spec=None) -> dict:
    """Compile one launch for sm_90 and read its cubin: counts, registers, shared memory."""
    import triton
    from triton.compiler import ASTSource

    sig, constexprs, attrs, options = spec if spec is not None else specialise(la)
    cid = compile_id(la, sig, constexprs, attrs, options)
    t0 = time.perf_counter()
    ck = triton.compile(ASTSource(la.fn, sig, constexprs, attrs), target=_target(), options=options.__dict__)
    secs = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as td:
        cub = Path(td) / f"{la.kernel}.cubin"
        cub.write_bytes(ck.asm["cubin"])
        sass = _run_tool(tools["cuobjdump"], ["-sass"], cub)
        res = parse_res_usage(_run_tool(tools["cuobjdump"], ["-res-usage"], cub))
    instrs = parse_sass(sass)
    if not instrs:
        raise SassReportError(f"cuobjdump -sass printed no instructions for {la.kernel}")
    summ = summarise_sass(instrs)
    shared = int(ck.metadata.shared)
    arch = re.search(r"code for (sm_\w+)", sass)
    names = la.fn.arg_names
    const = {names[k[0]]: v for k, v in constexprs.items() if len(k) == 1 and names[k[0]] in _constexpr_names(la.fn)}
    out = {
        "compile_id": cid,
        "arch": arch.group(1) if arch else None,
        "num_warps": options.num_warps,
        "num_stages": options.num_stages,
        "constexprs": const,
        "specialised_to_1": sorted(names[k[0]] for k in constexprs if names[k[0]] not in const),
        **res,
        "shared": shared,
        "fits_one_block": shared <= SM90_SMEM_BLOCK,
        "blocks_per_sm": blocks_per_sm(res["regs"], options.num_warps, shared),
        "total": summ["total"],
        "loop": summ["loop"],
        "loops": summ["loops"],
        "compile_s": round(secs, 2),
    }
    if sass_dir is not None:
        from linrepro.utils.io import atomic_write_text

        lines = [f"// {la.kernel} {cid} warps={options.num_warps} stages={options.num_stages} {const}"]
        lines += [f"/*{i.addr:05x}*/ {i.text} ;" for i in instrs]
        atomic_write_text(sass_dir / f"{la.kernel}-{cid}.sass", "\n".join(lines) + "\n")
        out["sass_file"] = f"sass/{la.kernel}-{cid}.sass"
    return out


def _constexpr_names(fn) -> set[str]:
    return {p.name for p in fn.params if p.is_constexpr}


# =========================================================================== report
def _tile(r: dict) -> str:
    c = r["constexprs"]
    blk = c.get("BLOCK_N", c.get("BLOCK_C", c.get("BLOCK")))
    if "BD" in c:
        s = f"{c['BD']}×{c['BV']}" + (f"×{c['NVT']}" if c.get("NVT", 1) != 1 else "") + f" /{blk}"
    else:
        s = f"/{blk}"
    extra = [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in c.items() if k in ("Z_MODE", "ROW_C", "REVERSE")]
    return s + (" " + " ".join(extra) if extra else "")


def _loop(r: dict, key: str) -> str:
    lp = r["loop"]
    return f"{lp[key]}/{r['total'][key]}" if lp else f"–/{r['total'][key]}"


def _spill(r: dict) -> str:
    lp = r["loop"]
    tot = r["total"]["ldl"] + r["total"]["stl"]
    inl = lp["ldl"] + lp["stl"] if lp else 0
    return f"{inl}/{tot}"


HEADER = (
    "| config | kernel | tile /block | w/s | SASS | loop | SHFL loop/all | BAR loop/all | LDL+STL loop/all "
    "| local B | regs | smem KiB | blk/SM |"
)


def markdown(rows: list[dict]) -> str:
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['kernel']} | {_tile(r)} | {r['num_warps']}/{r['num_stages']} | "
            f"{r['total']['instructions']} | {r['loop']['instructions'] if r['loop'] else '–'} | "
            f"{_loop(r, 'shfl')} | {_loop(r, 'bar')} | {_spill(r)} | {r['local']} | {r['regs']} | "
            f"{r['shared'] / 1024:.1f}{'' if r['fits_one_block'] else ' (too big)'} | {r['blocks_per_sm']} |"
        )
    return "\n".join(lines) + "\n"


def _key(r: dict) -> tuple:
    return (r["config"], r["kernel"], r["index"])


def compare(before: list[dict], after: list[dict]) -> str:
    """Before → after per launch both runs have (matched by config, kernel and launch order)."""
    old = {_key(r): r for r in before}
    head = "| config | kernel | loop instr | SHFL/loop | BAR/loop | LDL+STL (all) | regs | blk/SM |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def lp(r, k):
        return r["loop"][k] if r["loop"] else 0

    def arrow(a, b):
        return f"{a} → {b}" if a != b else f"{a}"

    n = 0
    for r in after:
        b = old.get(_key(r))
        if b is None:
            continue
        n += 1
        sp_b = b["total"]["ldl"] + b["total"]["stl"]
        sp_a = r["total"]["ldl"] + r["total"]["stl"]
        lines.append(
            f"| {r['config']} | {r['kernel']} | {arrow(lp(b, 'instructions'), lp(r, 'instructions'))} | "
            f"{arrow(lp(b, 'shfl'), lp(r, 'shfl'))} | {arrow(lp(b, 'bar'), lp(r, 'bar'))} | {arrow(sp_b, sp_a)} | "
            f"{arrow(b['regs'], r['regs'])} | {arrow(b['blocks_per_sm'], r['blocks_per_sm'])} |"
        )
    if not n:
        return "(no launch in common with the baseline)\n"
    return "\n".join(lines) + "\n"


# =========================================================================== CLI
def _csv(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [s.strip() for s in value.split(",") if s.strip()]
    if not items:
        raise SassReportError(f"{what}: empty list {value!r}")
    if allowed is not None:
        bad = [s for s in items if s not in allowed]
        if bad:
            raise SassReportError(f"{what}: unknown {', '.join(map(repr, bad))}; expected some of {', '.join(allowed)}")
    return items


def _dims(value: str) -> list[tuple[int, int]]:
    out = []
    for s in _csv(value, None, "--dims"):
        parts = s.lower().split("x")
        try:
            d, dv = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
        except ValueError:
            d = dv = 0
        if d <= 0 or dv <= 0:
            raise SassReportError(f"--dims: bad head dims {s!r}; expected D (D = Dv) or DxDv, e.g. 64 or 64x128")
        out.append((d, dv))
    return out


def _positive(value: str, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise SassReportError(f"{what}: expected a positive integer, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--kernels-dir", default=str(ROOT / "kernels"), help="the kernels copy to compile (default: kernels/)"
    )
    p.add_argument("--out", help="write sass_report.md, sass_report.json and sass/*.sass here")
    p.add_argument("--dims", default="32,64,128,256", help="head dims, D (D = Dv) or DxDv (default: 32,64,128,256)")
    p.add_argument("--dtypes", default=",".join(DTYPES), help=f"some of {','.join(DTYPES)}")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {','.join(VARIANTS)}")
    p.add_argument("--forms", default=",".join(FORMS), help=f"some of {','.join(FORMS)}")
    p.add_argument("--passes", default=",".join(PASSES), help=f"some of {','.join(PASSES)}")
    p.add_argument("--kernels", help="only these kernels (comma-separated names, e.g. _state_kernel,_nc_out_kernel)")
    p.add_argument(
        "--shape", default="4,8,4096", help="B,H,N the launch configuration is derived for (default 4,8,4096)"
    )
    p.add_argument("--sm-count", default="132", help="SMs of the GPU the launchers size their grids for (H200: 132)")
    p.add_argument("--baseline", help="a previous sass_report.json: add a before/after table")
    return p


def run(argv: list[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    dims = _dims(a.dims)
    dtypes = _csv(a.dtypes, DTYPES, "--dtypes")
    variants = _csv(a.variants, VARIANTS, "--variants")
    forms = _csv(a.forms, FORMS, "--forms")
    passes = _csv(a.passes, PASSES, "--passes")
    only = set(_csv(a.kernels, None, "--kernels")) if a.kernels else None
    try:
        B, H, N = (_positive(s, "--shape") for s in a.shape.split(","))
    except ValueError:
        raise SassReportError(f"--shape: expected B,H,N, got {a.shape!r}") from None
    sm_count = _positive(a.sm_count, "--sm-count")
    baseline = None
    if a.baseline:
        from linrepro.utils.io import read_json

        try:
            baseline = read_json(Path(a.baseline), "--baseline")
        except (FileNotFoundError, ValueError) as e:
            raise SassReportError(str(e)) from None
        if not isinstance(baseline, dict) or not isinstance(baseline.get("launches"), list):
            raise SassReportError(f"--baseline {a.baseline}: not a sass_report.json (no 'launches' list)")

    # the kernels must be JIT functions, not the interpreter's: decided when triton.jit runs
    os.environ["TRITON_INTERPRET"] = "0"
    pkg = load_kernels(Path(a.kernels_dir))
    tools = find_tools()
    out = Path(a.out).expanduser() if a.out else None
    sass_dir = out / "sass" if out else None

    configs = [
        Config(f, p, v, dt, d, dv) for f in forms for p in passes for v in variants for dt in dtypes for d, dv in dims
    ]
    launches = []
    for cfg in configs:
        try:
            launches += capture(pkg, cfg, B, H, N, sm_count)
        except SassReportError:
            raise
        except Exception as e:
            raise SassReportError(
                f"{pkg.dir}: capturing the launches of {cfg.label} failed: {type(e).__name__}: {e}"
            ) from e
    if only is not None:
        known = {la.kernel for la in launches}
        unknown = sorted(only - known)
        if unknown:
            raise SassReportError(
                f"--kernels: {', '.join(unknown)} not launched here; launched: {', '.join(sorted(known))}"
            )
        launches = [la for la in launches if la.kernel in only]

    cache: dict[str, dict] = {}
    rows = []
    t0 = time.perf_counter()
    for i, la in enumerate(launches, 1):
        spec = specialise(la)
        cid = compile_id(la, *spec)
        if cid not in cache:
            print(f"[{i}/{len(launches)}] compiling {la.kernel} for {la.config.label} ...", file=sys.stderr, flush=True)
            try:
                cache[cid] = analyse(la, tools, sass_dir, spec)
            except SassReportError:
                raise
            except Exception as e:
                raise SassReportError(
                    f"compiling {la.kernel} for {la.config.label} failed: {type(e).__name__}: {e}"
                ) from e
        rows.append(
            {"config": la.config.label, "kernel": la.kernel, "index": la.index, "grid": list(la.grid), **cache[cid]}
        )

    import triton

    report = {
        "target": "cuda sm_90 (warp 32)",
        "triton": triton.__version__,
        "kernels_dir": str(pkg.dir),
        "kernels_digest": kernels_digest(pkg.dir),
        "shape": {"B": B, "H": H, "N": N},
        "sm_count": sm_count,
        "configs": [cfg.label for cfg in configs],
        "unique_compiles": len(cache),
        "seconds": round(time.perf_counter() - t0, 1),
        "launches": rows,
    }
    md = (
        f"# SASS report (sm_90, triton {triton.__version__})\n\n"
        f"kernels: `{pkg.dir}` (sha256 {report['kernels_digest'][:12]}), B,H,N = {B},{H},{N}, {sm_count} SMs. "
        "Counts are static SASS instructions (NOPs left out); *loop* is the main row loop's body (once per row "
        "block per warp); x/y = in the loop / in the whole kernel.\n\n" + markdown(rows)
    )
    if baseline is not None:
        md += f"\n## Before → after (baseline `{a.baseline}`)\n\n" + compare(baseline["launches"], rows)
    if out is not None:
        from linrepro.utils.io import atomic_write_text, write_json

        write_json(out / "sass_report.json", report)
        atomic_write_text(out / "sass_report.md", md)
    report["markdown"] = md
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        report = run(argv)
    except SassReportError as e:
        print(f"sass_report: error: {e}", file=sys.stderr)
        return 2
    print(report["markdown"], end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
