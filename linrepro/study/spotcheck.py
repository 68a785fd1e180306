"""A spot check of the Triton kernels at the paper's shape, against float64 on the same device.

The kernel tests stop at a few hundred tokens, where every offset fits in 32 bits. At the
paper's shape (B=4, H=8, N=2^22, D=64) the last head, (b=3, h=7), starts at element
31·2^22·64 ≈ 8.3·10^9 > 2^31, so only a run at that size shows whether the int64 offsets
hold. The whole batch runs through ``linear_attention(backend="triton")``, forward and
backward; the last head alone is recomputed in float64 (the factorised reference for the
non-causal form; the chunked torch path, itself tested against the N×N float64 form, for the
causal one, whose reference would need N·D·Dv memory) and compared.

    python -m linrepro.study.spotcheck --out DIR                # the paper's shape, on CUDA
    python -m linrepro.study.spotcheck --out DIR --log2n 9 --batch 2 --heads 2 --dtype float32 --device cpu
                                                          # a rehearsal under TRITON_INTERPRET=1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# Relative error bars, max |x − ref| / max |ref| over the head. bf16 inputs carry about 2^-8
# relative rounding; the kernels compute in fp32.
TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-4}


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach(), ref.detach()
    return float((x.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def check(
    log2n: int = 22,
    batch: int = 4,
    heads: int = 8,
    dim: int = 64,
    dtype: str = "bfloat16",
    device: str = "cuda",
    variants=("eq4", "eq7"),
    causal=(False, True),
    seed: int = 0,
) -> list[dict]:
    """One row per (variant, causal): relative errors of o, dq, dk, dv of the last head, and whether
    every value of the whole output and gradients is finite."""
    from linrepro.attention import linear_attention

    dev = torch.device(device)
    if dtype not in TOLERANCE:
        raise ValueError(f"dtype {dtype!r}: expected one of {sorted(TOLERANCE)}")
    n = 2**log2n
    g = torch.Generator(device=dev).manual_seed(seed)
    shape = (batch, heads, n, dim)
    q, k, v, go = (torch.randn(shape, generator=g, device=dev, dtype=getattr(torch, dtype)) for _ in range(4))
    rows = []
    for variant in variants:
        for c in causal:
            t0 = time.perf_counter()
            qq, kk, vv = (t.detach().requires_grad_(True) for t in (q, k, v))
            kw = dict(variant=variant, causal=c, score_scale="1/N" if variant == "eq7" else 0.5)
            o = linear_attention(qq, kk, vv, backend="triton", **kw)
            dq, dk, dv = torch.autograd.grad(o, (qq, kk, vv), go)
            finite = all(bool(torch.isfinite(t).all()) for t in (o, dq, dk, dv))
            last = (batch - 1, heads - 1)
            q64, k64, v64 = (t[last].double()[None, None].requires_grad_(True) for t in (q, k, v))
            ref_backend = "torch" if c else "reference"
            o64 = linear_attention(q64, k64, v64, backend=ref_backend, **kw)
            r64 = torch.autograd.grad(o64, (q64, k64, v64), go[last].double()[None, None])
            errs = {"o": _rel(o[last], o64[0, 0].detach())}
            errs.update({name: _rel(x[last], r[0, 0]) for name, x, r in zip(("dq", "dk", "dv"), (dq, dk, dv), r64)})
            tol = TOLERANCE[dtype]
            if device != "cpu":
                torch.cuda.synchronize()
            rows.append(
                {
                    "variant": variant,
                    "causal": c,
                    "n": n,
                    "batch": batch,
                    "heads": heads,
                    "dim": dim,
                    "dtype": dtype,
                    "device": str(dev),
                    "head": list(last),
                    "first_element_of_head": (last[0] * heads + last[1]) * n * dim,
                    "finite": finite,
                    "rel_err": errs,
                    "tolerance": tol,
                    "ok": finite and all(e <= tol for e in errs.values()),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            del qq, kk, vv, o, dq, dk, dv, q64, k64, v64, o64, r64
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m linrepro.study.spotcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for spotcheck.json")
    ap.add_argument("--log2n", type=int, default=22)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(TOLERANCE))
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("spotcheck: no CUDA device; use --device cpu under TRITON_INTERPRET=1 for a rehearsal", file=sys.stderr)
        return 2
    from linrepro.utils import provenance
    from linrepro.utils.io import write_json

    rows = check(a.log2n, a.batch, a.heads, a.dim, a.dtype, a.device)
    write_json(Path(a.out) / "spotcheck.json", {"provenance": provenance.collect(), "rows": rows})
    for r in rows:
        e = r["rel_err"]
        print(
            f"{r['variant']} causal={r['causal']!s:<5} N={r['n']:,} {r['dtype']}: "
            + " ".join(f"{k} {v:.2e}" for k, v in e.items())
            + f"  (bar {r['tolerance']:g}) finite={r['finite']} {'OK' if r['ok'] else 'FAIL'} {r['seconds']} s"
        )
    print(json.dumps({"spotcheck_ok": all(r["ok"] for r in rows)}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
