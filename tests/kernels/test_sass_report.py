"""scripts/sass_report.py: the kernels compiled ahead of time for sm_90 and their SASS counted, without a GPU.

The parser is checked on a hand-written listing whose counts are known; the real CLI compiles one
small configuration (skipped when triton's NVIDIA backend or its bundled cuobjdump is missing) and
its counts are checked against the disassembly it saved; bad arguments are named in the error."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sass_report.py"
_spec = importlib.util.spec_from_file_location("sass_report", SCRIPT)
sr = importlib.util.module_from_spec(_spec)
sys.modules["sass_report"] = sr  # its dataclasses look their module up
_spec.loader.exec_module(sr)


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
    )


# a cuobjdump -sass listing in its real layout (address comment, instruction, encoding comment on
# two lines): 3 instructions before a loop [0x30, 0x90] of 7 instructions closed by a predicated
# backward branch, 3 after it, the function's closing self-branch and NOP padding
LISTING = """
	code for sm_90a
		Function : _toy_kernel
	.headerflags	@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
                                                                          /* 0x000e700000000800 */
        /*0010*/                   S2R R3, SR_CTAID.X ;                   /* 0x0000000000037919 */
                                                                          /* 0x000ee20000002500 */
        /*0020*/              @!P0 BRA 0xa0 ;                             /* 0x0000000000008947 */
                                                                          /* 0x000fea0003800000 */
        /*0030*/                   LDG.E R4, desc[UR4][R2.64] ;           /* 0x0000000402047981 */
                                                                          /* 0x000ea8000c1e1900 */
        /*0040*/                   SHFL.BFLY PT, R5, R4, 0x1, 0x1f ;      /* 0x0c201f0004057f89 */
                                                                          /* 0x004e2400000e0000 */
        /*0050*/                   STL [R1], R5 ;                         /* 0x0000000501007387 */
                                                                          /* 0x0011e80000100800 */
        /*0060*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;          /* 0x0000000000007b1d */
                                                                          /* 0x000fec0000010000 */
        /*0070*/                   NOP ;                                  /* 0x0000000000007918 */
                                                                          /* 0x000fc00000000000 */
        /*0080*/                   LDL R6, [R1] ;                         /* 0x0000000001067983 */
                                                                          /* 0x000e280000100800 */
        /*0090*/               @P1 BRA 0x30 ;                             /* 0xffffffff00641947 */
                                                                          /* 0x000fea000383ffff */
        /*00a0*/                   SHFL.DOWN PT, R7, R6, 0x2, 0x1f ;      /* 0x08401f0006077f89 */
                                                                          /* 0x000e2400000e0000 */
        /*00b0*/                   STG.E desc[UR4][R2.64], R7 ;           /* 0x0000000702007986 */
                                                                          /* 0x001fe2000c101904 */
        /*00c0*/                   EXIT ;                                 /* 0x000000000000794d */
                                                                          /* 0x000fea0003800000 */
        /*00d0*/                   BRA 0xd0;                              /* 0xfffffffc00fc7947 */
                                                                          /* 0x000fc0000383ffff */
        /*00e0*/                   NOP;                                   /* 0x0000000000007918 */
                                                                          /* 0x000fc00000000000 */
        /*00f0*/                   NOP;                                   /* 0x0000000000007918 */
                                                                          /* 0x000fc00000000000 */
		..........
"""


def test_parse_sass_reads_addresses_predicates_and_opcodes():
    ins = sr.parse_sass(LISTING)
    assert [i.addr for i in ins] == list(range(0, 0x100, 0x10))
    assert ins[2].text == "@!P0 BRA 0xa0" and ins[2].op == "BRA" and ins[2].base == "BRA"
    assert ins[4].op == "SHFL.BFLY" and ins[4].base == "SHFL"
    assert ins[6].base == "BAR"
    assert [sr.branch_target(i) for i in ins if i.base == "BRA"] == [0xA0, 0x30, 0xD0]


def test_loop_is_found_by_its_backward_branch_and_counted():
    s = sr.summarise_sass(sr.parse_sass(LISTING))
    # the self-branch at 0xd0 is not a loop; the forward branch at 0x20 is not one either
    assert s["loops"] == [{"first": 0x30, "last": 0x90}]
    lp, tot = s["loop"], s["total"]
    # loop body 0x30..0x90: LDG SHFL STL BAR (NOP) LDL BRA = 6 counted instructions
    assert (lp["instructions"], lp["shfl"], lp["bar"], lp["ldl"], lp["stl"], lp["ldg"]) == (6, 1, 1, 1, 1, 1)
    assert lp["inner_loops"] == 0
    assert lp["opcodes"]["SHFL.BFLY"] == 1 and "NOP" not in lp["opcodes"]
    # whole function: 16 instructions, 3 of them NOPs
    assert (tot["instructions"], tot["shfl"], tot["bar"], tot["ldl"], tot["stl"], tot["stg"]) == (13, 2, 1, 1, 1, 1)


def test_outermost_loop_is_the_main_one():
    text = "\n".join(
        f"        /*{a:04x}*/ {t} ;"
        for a, t in [
            (0x00, "MOV R0, RZ"),
            (0x10, "IADD3 R0, R0, 0x1, RZ"),  # outer loop 0x10..0x50
            (0x20, "SHFL.BFLY PT, R1, R0, 0x1, 0x1f"),  # inner loop 0x20..0x30
            (0x30, "@P0 BRA 0x20"),
            (0x40, "FADD R2, R2, R1"),
            (0x50, "@P1 BRA 0x10"),
            (0x60, "EXIT"),
        ]
    )
    s = sr.summarise_sass(sr.parse_sass(text))
    assert s["loop"]["first"] == 0x10 and s["loop"]["last"] == 0x50
    assert s["loop"]["instructions"] == 5 and s["loop"]["inner_loops"] == 1 and s["loop"]["shfl"] == 1


def test_kernel_without_loop_has_no_loop_entry():
    s = sr.summarise_sass(sr.parse_sass("        /*0000*/ MOV R0, RZ ;\n        /*0010*/ EXIT ;"))
    assert s["loop"] is None and s["total"]["instructions"] == 2


def test_res_usage_and_occupancy():
    text = " Function _state_kernel:\n  REG:124 STACK:16 SHARED:1024 LOCAL:8 CONSTANT[0]:648 TEXTURE:0\n"
    assert sr.parse_res_usage(text) == {"regs": 124, "stack": 16, "static_shared": 1024, "local": 8}
    with pytest.raises(sr.SassReportError, match="REG"):
        sr.parse_res_usage("nothing here")
    # 102 regs → 3328 per warp → 19 warps of 64K registers → 2 blocks of 8 warps
    assert sr.blocks_per_sm(102, 8, 32 * 1024) == 2
    # 32 regs, 4 warps: 16 by warps (64/4), shared 48 KiB + 1 KiB → 4
    assert sr.blocks_per_sm(32, 4, 48 * 1024) == 4
    # more shared memory than one block may have: does not fit at all
    assert sr.blocks_per_sm(32, 4, 228 * 1024) == 0


def _row(config, kernel, loop_instr, shfl, bar, regs, spills=0):
    return {
        "config": config,
        "kernel": kernel,
        "index": 0,
        "loop": {"instructions": loop_instr, "shfl": shfl, "bar": bar},
        "total": {"ldl": spills, "stl": 0},
        "regs": regs,
        "blocks_per_sm": 2,
    }


def test_compare_pairs_launches_and_shows_changes():
    before = [_row("nc.fwd eq4 bf16 D64/Dv64", "_state_kernel", 447, 86, 18, 124), _row("x", "_k", 1, 0, 0, 8)]
    after = [_row("nc.fwd eq4 bf16 D64/Dv64", "_state_kernel", 300, 20, 6, 128)]
    table = sr.compare(before, after)
    assert "| nc.fwd eq4 bf16 D64/Dv64 | _state_kernel | 447 → 300 | 86 → 20 | 18 → 6 | 0 | 124 → 128 | 2 |" in table
    assert "| x |" not in table
    assert "no launch in common" in sr.compare(before, [_row("y", "_k", 1, 0, 0, 8)])


# ------------------------------------------------------------------ the CLI: errors name the bad value
def test_missing_kernels_dir_is_named(tmp_path):
    bad = tmp_path / "no-such-kernels"
    r = _cli("--kernels-dir", str(bad), "--dims", "32")
    assert r.returncode == 2, r.stderr
    assert f"--kernels-dir {bad}: no such directory" in r.stderr


def test_incomplete_or_broken_kernels_dir_is_named(tmp_path):
    kdir = tmp_path / "half"
    kdir.mkdir()
    (kdir / "__init__.py").write_text("")
    (kdir / "common.py").write_text("")
    r = _cli("--kernels-dir", str(kdir))
    assert r.returncode == 2
    assert f"--kernels-dir {kdir}: missing noncausal.py, causal.py, autograd.py" in r.stderr

    for f in sr.KERNEL_FILES:
        (kdir / f).write_text("")
    (kdir / "__init__.py").write_text("raise ImportError('broken copy')\n")
    r = _cli("--kernels-dir", str(kdir))
    assert r.returncode == 2
    assert f"--kernels-dir {kdir}: importing it failed: ImportError: broken copy" in r.stderr


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--dims", "64,abc"], "--dims: bad head dims 'abc'"),
        (["--dtypes", "fp64"], "--dtypes: unknown 'fp64'"),
        (["--variants", "eq5"], "--variants: unknown 'eq5'"),
        (["--shape", "4,8"], "--shape: expected B,H,N, got '4,8'"),
        (["--sm-count", "0"], "--sm-count: expected a positive integer, got '0'"),
    ],
)
def test_bad_arguments_are_named(args, msg):
    r = _cli(*args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_bad_baseline_is_named(tmp_path):
    p = tmp_path / "b.json"
    p.write_text('{"launches": [')
    r = _cli("--baseline", str(p))
    assert r.returncode == 2 and f"--baseline {p} is not readable JSON" in r.stderr, r.stderr


# ------------------------------------------------------------------ the CLI: a real sm_90 compile
def _tools_or_skip():
    try:
        return sr.find_tools()
    except sr.SassReportError as e:
        pytest.skip(f"cannot compile for sm_90 here: {e}")


def _count(lines: list[str], opcode: str) -> int:
    """Instructions of a saved .sass file whose opcode (after an optional predicate) starts with ``opcode``."""
    pat = re.compile(rf"^/\*[0-9a-f]+\*/ (?:@!?\w+ )?{re.escape(opcode)}[ .;]")
    return sum(bool(pat.match(x)) for x in lines)


def test_compiles_one_small_configuration(tmp_path):
    _tools_or_skip()
    out = tmp_path / "rep"
    kernels = "_scan_splits_kernel,_state_kernel"
    r = _cli(
        *("--forms", "causal", "--passes", "fwd", "--variants", "eq7", "--dtypes", "fp16", "--dims", "32"),
        *("--kernels", kernels, "--out", str(out)),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "sass_report.json").read_text())
    assert (out / "sass_report.md").read_text().count("| c.fwd eq7 fp16 D32/Dv32 |") == 2
    assert rep["kernels_dir"] == str(ROOT / "kernels") and rep["shape"] == {"B": 4, "H": 8, "N": 4096}
    rows = {x["kernel"]: x for x in rep["launches"]}
    assert sorted(rows) == sorted(kernels.split(","))
    for name, x in rows.items():
        assert x["arch"] == "sm_90a"
        assert x["regs"] > 0 and x["total"]["instructions"] > 0
        lp = x["loop"]
        assert lp is not None and 0 < lp["instructions"] < x["total"]["instructions"], name
        for key in ("shfl", "bar", "ldl", "stl", "mma", "ldg"):
            assert 0 <= lp[key] <= x["total"][key], (name, key)
        # the counts are those of the disassembly it saved
        lines = (out / x["sass_file"]).read_text().splitlines()[1:]
        body = [ln for ln in lines if lp["first"] <= int(ln[2:7], 16) <= lp["last"]]
        assert len([ln for ln in lines if " NOP" not in ln]) == x["total"]["instructions"]
        assert len([ln for ln in body if " NOP" not in ln]) == lp["instructions"]
        assert _count(lines, "SHFL") == x["total"]["shfl"] and _count(body, "SHFL") == lp["shfl"]
        assert _count(lines, "BAR") == x["total"]["bar"] and _count(body, "BAR") == lp["bar"]
        # the loop is closed by a backward branch to its first instruction
        assert re.search(rf"BRA 0x0*{lp['first']:x}\b", body[-1]), body[-1]
    # the state pass holds a 32×32 fp32 tile with 4 warps: an MMA in its loop, with the launcher's constexprs
    st = rows["_state_kernel"]
    assert st["constexprs"]["BD"] == 32 and st["constexprs"]["BLOCK_N"] == 32 and st["num_warps"] == 4
    assert st["loop"]["mma"] > 0
    # the split scan is a load, an add and a store per split: no spills, no local memory
    sc = rows["_scan_splits_kernel"]
    assert sc["total"]["ldl"] == sc["total"]["stl"] == 0 and sc["local"] == 0
    assert sc["constexprs"] == {"REVERSE": False, "BLOCK": 1024} and sc["num_warps"] == 4
