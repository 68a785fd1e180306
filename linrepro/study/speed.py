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
from pathlib import Path

import torch

from linrepro.attention import linear_attention
from linrepro.attention.dispatch import choose_form
from linrepro.utils.measure import _sync


def _median_s(fn, reps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _block_s(fn, calls: int, device: torch.device) -> float:
    """Seconds per call of ``calls`` calls back to back (one sample)."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / calls


def _median_pair_s(fa, fb, reps: int, warmup: int, device: torch.device, block_s: float = 0.0) -> tuple[float, float]:
    """Medians of ``fa`` and ``fb`` timed alternately (a, b, a, b, ...), so that a drift of the machine
    falls on both alike. Each sample is a block of calls back to back, as many as take about ``block_s``
    seconds (at least one), so that a sub-millisecond call is not timed alone against the timer's and
    the scheduler's noise."""
    for _ in range(warmup):
        fa()
        fb()
    _sync(device)
    calls = max(1, int(block_s / max(_block_s(fa, 1, device), _block_s(fb, 1, device), 1e-7)))
    ta, tb = [], []
    for _ in range(reps):
        ta.append(_block_s(fa, calls, device))
        tb.append(_block_s(fb, calls, device))
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
    ns=(17, 65, 257, 1025),
    b: int = 64,
    h: int = 2,
    d: int = 32,
    reps: int = 15,
    warmup: int = 5,
    device="cpu",
    block_s: float = 0.01,
) -> list[dict]:
    """Per N: forward + backward ms of LA auto (eq7, s = 1/N) and of SDPA (blocks of calls of about
    ``block_s`` seconds, timed alternately after ``warmup`` calls of each), their ratio, and auto's form."""
    _check_positive(ns=list(ns), b=b, h=h, d=d, reps=reps)
    device = torch.device(device)
    rows = []
    for n in ns:
        q, k, v = _qkv(b, h, n, d, device, True)
        go = torch.randn(b, h, n, d, device=device)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        la, sd = _median_pair_s(
            _fwdbwd(_la_auto, q, k, v, go), _fwdbwd(sdpa, q, k, v, go), reps, warmup, device, block_s
        )
        form = choose_form(q, v, causal=False) if device.type != "cuda" else "triton"
        rows.append({"N": n, "la_auto_ms": la * 1e3, "sdpa_ms": sd * 1e3, "sdpa_over_la": sd / la, "form": form})
    return rows


def _products(q, k, v):
    """The forward's two products alone on the same operands, as torch runs them: S = KᵀV, O = QS
    (no normalisation, no Σv, no scale): the ceiling a composition of torch's products can reach."""
    b, h, n, d = q.shape
    q3, k3, v3 = q.reshape(b * h, n, d), k.reshape(b * h, n, d), v.reshape(b * h, n, v.shape[-1])

    def run():
        with torch.no_grad():
            return torch.bmm(q3, torch.bmm(k3.transpose(1, 2), v3))

    return run


def long_n(
    ns=(65536, 262144), b: int = 1, h: int = 4, d: int = 64, reps: int = 5, warmup: int = 2, device="cpu"
) -> list[dict]:
    """Per N: LA auto forward ms and GFLOP/s (4·N·D·Dv per head), forward + backward ms and their ratio,
    and the two products alone (:func:`_products`) in ms and GFLOP/s, under the allocator as it is now."""
    _check_positive(ns=list(ns), b=b, h=h, d=d, reps=reps)
    device = torch.device(device)
    rows = []
    for n in ns:
        q, k, v = _qkv(b, h, n, d, device, True)
        go = torch.randn(b, h, n, d, device=device)
        tf = _median_s(_fwd(_la_auto, q, k, v), reps, warmup, device)
        tfb = _median_s(_fwdbwd(_la_auto, q, k, v, go), reps, warmup, device)
        tp = _median_s(_products(q, k, v), reps, warmup, device)
        flops = 4.0 * b * h * n * d * d
        rows.append(
            {
                "N": n,
                "fwd_ms": tf * 1e3,
                "gflops": flops / tf / 1e9,
                "fwdbwd_ms": tfb * 1e3,
                "fwdbwd_over_fwd": tfb / tf,
                "products_ms": tp * 1e3,
                "products_gflops": flops / tp / 1e9,
            }
        )
        del q, k, v, go
    return rows


MEMORY_MODES = ("default", "reused")  # glibc's allocator as it starts; freed memory reused (reuse_freed_memory)


def training_throughput(
    models=("tiny-S", "tiny-B", "tiny-L"),
    attention: str = "eq7",
    score_scale="1/N",
    batch: int = 64,
    rounds: int = 20,
    warmup: int = 5,
) -> list[dict]:
    """Per tiny model: training images/s of softmax and of ``attention`` at the model's own image size
    (one optimiser step: the CLIP loss of random images and tokens, its backward, AdamW), steps of the two
    alternated ``rounds`` times after ``warmup`` steps of each. Returns per model the median images/s of
    each, their ratio, and the quartiles of the per-round ratio (attention / softmax)."""
    import open_clip

    from linrepro import clip

    _check_positive(batch=batch, rounds=rounds)
    clip.register_models()
    rows = []
    for name in models:
        cfg = open_clip.get_model_config(name)
        if cfg is None:
            raise ValueError(f"unknown model {name!r}; linrepro's: {clip.model_names()}")
        side = cfg["vision_cfg"]["image_size"]
        side = side[0] if isinstance(side, (list, tuple)) else side
        ctx = cfg["text_cfg"].get("context_length", 77)
        g = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, side, side, generator=g)
        tokens = torch.randint(1, 1000, (batch, ctx), generator=g)
        steps = {}
        for att in ("softmax", attention):
            torch.manual_seed(0)
            kw = {} if att == "softmax" else {"score_scale": score_scale}
            model = clip.create_model(name, att, **kw)[0].train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            loss = open_clip.ClipLoss()

            def step(model=model, opt=opt, loss=loss, images=images, tokens=tokens):
                image_features, text_features, logit_scale = model(images, tokens)[:3]
                total = loss(image_features, text_features, logit_scale)
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()

            steps[att] = step
        base, other = steps["softmax"], steps[attention]
        for _ in range(warmup):
            base()
            other()
        tb, to = [], []
        for _ in range(rounds):
            tb.append(_block_s(base, 1, torch.device("cpu")))
            to.append(_block_s(other, 1, torch.device("cpu")))
        ratios = sorted(b_ / o_ for b_, o_ in zip(tb, to))
        q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
        rows.append(
            {
                "model": name,
                "resolution": side,
                "softmax_images_per_s": batch / statistics.median(tb),
                f"{attention}_images_per_s": batch / statistics.median(to),
                "ratio": statistics.median(tb) / statistics.median(to),
                "ratio_q1": q1,
                "ratio_q3": q3,
            }
        )
    return rows


def speed_table(
    short_ns=(17, 65, 257, 1025),
    long_ns=(65536, 262144),
    reps: int = 15,
    long_reps: int = 5,
    device="cpu",
    memory=MEMORY_MODES,
    train_models=(),
    train_rounds: int = 20,
) -> dict:
    """The tables from one run: {"short": [...], "long": [...], "train": [...], "matmul_gflops", "provenance"}.

    The long cases run once per allocator mode in ``memory``, in that order: ``"default"`` (glibc as the
    process started: an output above its mmap threshold is mapped afresh and faulted in page by page) and
    ``"reused"`` (after :func:`linrepro.utils.measure.reuse_freed_memory`, which is process-wide and not
    undone: run this in its own process, as the CLI does). Each long row carries its ``memory`` mode,
    ``pct_of_matmul_peak`` and ``products_pct_of_matmul_peak`` (the matmul measured before and after the
    long cases, the best kept). ``train_models``: tiny models whose training images/s are compared
    (:func:`training_throughput`); none by default."""
    from linrepro.utils.measure import reuse_freed_memory
    from linrepro.utils.provenance import device_info, git_commit, now_utc

    bad = [m for m in memory if m not in MEMORY_MODES]
    if bad or list(memory) != sorted(memory, key=MEMORY_MODES.index):
        raise ValueError(f"memory must be modes of {MEMORY_MODES} in that order, got {list(memory)!r}")
    device = torch.device(device)
    peak0 = matmul_gflops(device=device)
    short = short_n(short_ns, reps=reps, device=device) if short_ns else []
    train = training_throughput(train_models, rounds=train_rounds) if train_models else []
    long, applied = [], {}
    for mode in memory:
        if mode == "reused":
            applied[mode] = device.type == "cpu" and reuse_freed_memory()
            if not applied[mode]:
                continue  # not glibc, or a GPU (whose caching allocator reuses memory anyway): no such mode
        rows = long_n(long_ns, reps=long_reps, device=device) if long_ns else []
        long += [{"memory": mode, **r} for r in rows]
    peak = max(peak0, matmul_gflops(device=device))
    for r in long:
        r["pct_of_matmul_peak"] = 100.0 * r["gflops"] / peak
        r["products_pct_of_matmul_peak"] = 100.0 * r["products_gflops"] / peak
    prov = {"date": now_utc(), "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32"}
    prov.update({"device": device_info(), "git": git_commit(), "reuse_freed_memory_applied": applied.get("reused")})
    return {"short": short, "long": long, "train": train, "matmul_gflops": peak, "provenance": prov}


def format_table(res: dict) -> str:
    lines = []
    if res["short"]:
        lines += [
            "LA auto vs SDPA, forward + backward (eq7, s = 1/N)",
            f"{'N':>7} {'LA auto ms':>11} {'form':>10} {'SDPA ms':>10} {'SDPA/LA':>8}",
        ]
        for r in res["short"]:
            lines.append(
                f"{r['N']:>7} {r['la_auto_ms']:>11.3f} {r['form']:>10} {r['sdpa_ms']:>10.3f} {r['sdpa_over_la']:>8.2f}"
            )
        lines.append("")
    if res["long"]:
        lines += [
            f"LA auto forward at long N; 2048² fp32 matmul in the same run: {res['matmul_gflops']:.1f} GFLOP/s",
            f"{'memory':>8} {'N':>7} {'fwd ms':>9} {'GFLOP/s':>8} {'% peak':>7} {'fwd+bwd ms':>11} {'fb/fwd':>7}"
            f" {'products':>9} {'% peak':>7}",
        ]
        for r in res["long"]:
            lines.append(
                f"{r['memory']:>8} {r['N']:>7} {r['fwd_ms']:>9.2f} {r['gflops']:>8.1f} {r['pct_of_matmul_peak']:>7.1f} "
                f"{r['fwdbwd_ms']:>11.2f} {r['fwdbwd_over_fwd']:>7.2f} {r['products_ms']:>9.2f}"
                f" {r['products_pct_of_matmul_peak']:>7.1f}"
            )
        lines.append("")
    if res.get("train"):
        att = next(k for k in res["train"][0] if k.endswith("_images_per_s") and not k.startswith("softmax"))
        lines += [
            "Training images/s (one AdamW step of the CLIP loss, alternated)",
            f"{'model':>8} {'px':>4} {'softmax':>9} {att.split('_')[0]:>9} {'ratio':>6} {'per-round IQR':>15}",
        ]
        for r in res["train"]:
            lines.append(
                f"{r['model']:>8} {r['resolution']:>4} {r['softmax_images_per_s']:>9.0f} {r[att]:>9.0f} "
                f"{r['ratio']:>6.2f} {r['ratio_q1']:>7.2f}-{r['ratio_q3']:.2f}"
            )
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m linrepro.study.speed", description=__doc__.splitlines()[0])
    ap.add_argument("--short-n", type=int, nargs="*", default=[17, 65, 257, 1025])
    ap.add_argument("--long-n", type=int, nargs="*", default=[65536, 262144])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--long-reps", type=int, default=5)
    ap.add_argument("--memory", nargs="+", default=list(MEMORY_MODES), choices=MEMORY_MODES)
    ap.add_argument("--train", nargs="*", default=[], metavar="MODEL", help="tiny models to time in training")
    ap.add_argument("--train-rounds", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = speed_table(
            a.short_n,
            a.long_n,
            reps=a.reps,
            long_reps=a.long_reps,
            device=a.device,
            memory=a.memory,
            train_models=a.train,
            train_rounds=a.train_rounds,
        )
    except ValueError as e:
        ap.error(str(e))
    print(format_table(res))
    if a.json is not None:
        from linrepro.utils.io import write_json

        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
