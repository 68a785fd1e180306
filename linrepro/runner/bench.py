"""The timing harness's command line: ``python -m linrepro.runner.bench --profile P --out DIR``.

It reads the same config as notebook 02 (the notebook's parameters cell, then
``params/<profile>/02_attention_timing.yaml``, then the flags), runs
:func:`linrepro.study.bench.measure`, prints :func:`linrepro.study.timing.report_text`, and with
``--record`` makes ``DIR`` a finished ``02_attention_timing`` run that the claims ledger reads.
It needs no Jupyter, papermill or plotly: a bare GPU image runs it from the repository root.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import torch

from linrepro.runner import params
from linrepro.study import timing
from linrepro.study.bench import (
    CONFIG_KEYS,
    NOTEBOOK,
    Case,
    config_from_params,
    device_name,
    implementations,
    load,
    measure,
    write,
)
from linrepro.utils import project, provenance
from linrepro.utils.io import atomic_write_text, write_json


def load_config(profile: str, overrides: dict | None = None) -> tuple[dict, dict]:
    """(sweep config, all parameters) of notebook 02 for ``profile``: the notebook's defaults,
    then ``params/<profile>/02_attention_timing.yaml``, then ``overrides``, validated as a run
    validates them. The one source of the timing grid for the CLI and the notebook."""
    values = params.resolve(project.notebooks_dir() / f"{NOTEBOOK}.py", profile, overrides or {})
    return config_from_params(**{k: values[k] for k in CONFIG_KEYS}), values


def record_run(doc: dict, source: str, run_dir: Path, profile: str, values: dict) -> Path:
    """Make ``run_dir`` a finished 02_attention_timing run, as the ledger reads one
    (``outputs/reference/<profile>/02_attention_timing/<run>/``): results.json from
    :func:`linrepro.study.timing.analyse`, run.json, params.yaml and provenance.json beside bench.json.
    No report.html: replay it with ``linrepro run 02 -p reference_dir=<run_dir>``."""
    import yaml

    run_dir = Path(run_dir)
    res = timing.analyse(doc, source, recorded=False)
    write_json(run_dir / "results.json", res)
    write_json(run_dir / "provenance.json", doc["provenance"])
    atomic_write_text(run_dir / "params.yaml", yaml.safe_dump(values, sort_keys=False))
    write_json(
        run_dir / "run.json",
        {
            "notebook": NOTEBOOK,
            "profile": profile,
            "status": "ok",
            "created_by": "python -m linrepro.runner.bench --record",
            "finished": provenance.now_utc(),
            "report": None,
            "sweep": (doc.get("sweep") or {}).get("status", "complete"),
        },
    )
    return run_dir


def _plan(cfg: dict, device: torch.device, names=None) -> int:
    """``--plan``: the sweep's points and predicted times, with no GPU needed."""
    from linrepro.study.bench import H200_COPY_BPS, H200_PEAK_FLOPS, plan, plan_text
    from linrepro.utils.measure import copy_bandwidth, matmul_peak

    if device.type == "cuda" and not torch.cuda.is_available():
        bw, peak = H200_COPY_BPS, H200_PEAK_FLOPS.get(cfg["dtype"], 989e12)
        source = "an H200's nominal figures (no GPU here)"
    else:
        bw, peak = copy_bandwidth(device), matmul_peak(device, getattr(torch, cfg["dtype"]))
        source = f"bandwidth and peak measured now on {device.type}"
    impls = implementations(device, cfg["variants"], interpreted=False)
    if device.type == "cuda" and not any(i[2] == "triton" for i in impls):
        impls = [(f"la-triton-{v}", "linear", "triton", v) for v in cfg["variants"]] + impls
    if names:
        bad = sorted(set(names) - {i[0] for i in impls})
        if bad:
            print(f"unknown implementation(s) {bad}; available: {sorted(i[0] for i in impls)}", file=sys.stderr)
            return 2
        impls = [i for i in impls if i[0] in names]
    print(plan_text(plan(cfg, device, bw, peak, impls), bw, peak, source))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m linrepro.runner.bench",
        description="Time affine LA against softmax over N; the grid of notebook 02 for a profile.",
    )
    ap.add_argument(
        "--profile",
        default="cpu",
        help="a profile folder under params/ (reads params/<profile>/02_attention_timing.yaml)",
    )
    ap.add_argument("--out", required=True, help="folder for bench.json and bench.csv")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the profile's; auto = cuda if available)")
    ap.add_argument("--la-log2", type=int, nargs=2, metavar=("LO", "HI"), help="LA N grid 2^LO..2^HI")
    ap.add_argument("--softmax-log2", type=int, nargs=2, metavar=("LO", "HI"))
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--budget-s", type=float)
    ap.add_argument("--modes", nargs="+", choices=["fwd", "fwdbwd"])
    ap.add_argument("--impls", nargs="+", help="subset of implementation names, e.g. la-torch-eq7 sdpa-flash")
    ap.add_argument(
        "--plan",
        action="store_true",
        help="print every point the sweep would run (sliced or not) with roofline-predicted times, and exit; "
        "needs no GPU (a cuda profile is planned with an H200's nominal bandwidth and peak)",
    )
    ap.add_argument(
        "--record",
        action="store_true",
        help="also write results.json and run.json, so --out is a finished 02 run the ledger reads",
    )
    a = ap.parse_args(argv)
    over = {
        k: (list(v) if isinstance(v, (list, tuple)) else v)
        for k, v in (
            ("la_log2", a.la_log2),
            ("softmax_log2", a.softmax_log2),
            ("warmup", a.warmup),
            ("runs", a.runs),
            ("budget_s", a.budget_s),
            ("modes", a.modes),
        )
        if v is not None
    }
    try:
        cfg, values = load_config(a.profile, over)
    except (params.ParamError, ValueError, FileNotFoundError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    want = a.device or values.get("device") or "auto"
    device = torch.device(
        "cuda" if want == "auto" and torch.cuda.is_available() else ("cpu" if want == "auto" else want)
    )
    if a.plan:
        return _plan(cfg, device, a.impls)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench: device cuda was asked for but torch sees no CUDA device", file=sys.stderr)
        return 2
    impls = implementations(device, cfg["variants"])
    if a.impls:  # named on purpose: Triton under the interpreter may be asked for on CPU
        allowed = implementations(device, cfg["variants"], interpreted=True)
        names = {i[0] for i in allowed}
        bad = [x for x in a.impls if x not in names]
        if bad:
            print(f"unknown implementation(s) {bad}; available here: {sorted(names)}", file=sys.stderr)
            return 2
        impls = [i for i in allowed if i[0] in a.impls]
    out = Path(a.out)
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` sends SIGTERM: keep and record what was measured
    try:
        doc = measure(cfg, device, out, impls)
    except KeyboardInterrupt:
        if not (out / "bench.json").exists():
            print("bench: interrupted before the first case finished; nothing to keep", file=sys.stderr)
            return 130
        doc = load(out)
        doc["sweep"] = {"status": "interrupted"}
        write(
            [Case(**{**c, "extra": c.get("extra") or {}}) for c in doc["cases"]],
            out,
            cfg,
            {"sweep": doc["sweep"]},
            doc["provenance"],
        )
        print(f"bench: interrupted; {len(doc['cases'])} case(s) kept in {out / 'bench.json'}", file=sys.stderr)
    res = timing.analyse(
        doc, f"**Measured** by `python -m linrepro.runner.bench` on {device_name(doc)} ({device.type})."
    )
    print(timing.report_text(doc, res))
    if a.record:
        record_run(doc, res["source"], out, a.profile, {**values, "device": device.type})
    print(f"wrote {out / 'bench.json'}")
    return 1 if res["n_failed"] else 0  # a case that raised is a defect to look at, not a skip


if __name__ == "__main__":
    sys.exit(main())
