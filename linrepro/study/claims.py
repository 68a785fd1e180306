"""The seed report's 17 claims, each bound to a check of what linrepro measured.

The seed report (kept in the repository as ``tests/fixtures/seed_report.txt``) lists 17 claims
extracted from arXiv:2604.10064, each with a "Verified" mark and a confidence. What is known about
the paper, and what linrepro reconstructs, is set out in the module docstring of
:mod:`linrepro.attention`. Here every claim gets one of four verdicts from the runs on disk:

``supported`` / ``contradicted``
    a measurement of this package agrees / disagrees, by the tolerance written in the check;
``inconclusive``
    it was measured, but the numbers cannot decide (for example an interval straddling the bar);
``not testable here``
    the check needs something this machine does not have (LAION-400M, an H200 run, the paper's
    own code), and says which. A claim about the paper's *setup* (hardware, batch sizes, library,
    data) cannot be verified without the paper's code; for those the evidence states what
    linrepro's ``paper``/``h200`` profiles configure, so the reproduction matches the claim.

Evidence comes from the latest finished run of each notebook (``results.json``), looked up
first among recorded runs in ``outputs/reference/<profile>/`` and then in ``outputs/<profile>/``.
Each verdict carries its numbers, the run it read and a link to the report section. A run whose
results cannot be read (truncated, corrupt) makes the claims that need it ``inconclusive`` with
the reason ``unreadable evidence`` and the file's path; the rest of the ledger goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from linrepro.study.runs import finished_runs, load_results
from linrepro.utils import project

VERDICTS = ("supported", "contradicted", "inconclusive", "not testable here")
COLOURS = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700", "not testable here": "#57606a"}


@dataclass(frozen=True)
class Claim:
    n: int
    claim: str
    seed_verified: bool
    seed_confidence: float
    kind: str  # "result", "math" or "setup"
    check: Callable[[Evidence], dict]


# --------------------------------------------------------------------------- evidence on disk
def _anchor(heading: str) -> str:
    """The id nbconvert gives a markdown heading (its own converter, so links always match)."""
    try:
        from nbconvert.filters.strings import _convert_header_id
    except ImportError:  # pragma: no cover - the same rule, should nbconvert move it
        from urllib.parse import quote

        def _convert_header_id(text):
            return quote(text.replace(" ", "-"), safe="?/:@!$&'()*+,;=")

    return _convert_header_id(heading.strip())


class UnreadableEvidence(Exception):
    """The run a claim needs has a results.json that cannot be read; ``run`` is its folder."""

    def __init__(self, run: Path, error: str):
        super().__init__(error)
        self.run, self.error = Path(run), error


class Evidence:
    """Finds the latest finished run of each notebook (recorded reference runs first)."""

    def __init__(self, out_root: Path | None = None, profiles: tuple[str, ...] = ("cpu",)):
        self.root = Path(out_root) if out_root else project.outputs_dir()
        self.profiles = profiles
        self._cache: dict = {}

    def run(self, notebook: str, profiles: tuple[str, ...] | None = None) -> tuple[Path, dict] | None:
        """(run folder, results) of the latest ok run of ``notebook`` in the first profile that has one;
        :class:`UnreadableEvidence` if that run's results cannot be read (every time it is asked for)."""
        key = (notebook, profiles or self.profiles)
        if key not in self._cache:
            self._cache[key] = None
            for prof in key[1]:
                found = [
                    d
                    for base in (self.root / "reference" / prof / notebook, self.root / prof / notebook)
                    for d in finished_runs(base)
                ]
                if found:
                    try:
                        self._cache[key] = (found[-1], load_results(found[-1]))
                    except (OSError, ValueError) as e:  # load_results names the file and the run
                        self._cache[key] = UnreadableEvidence(found[-1], str(e))
                    break
        got = self._cache[key]
        if isinstance(got, UnreadableEvidence):
            raise UnreadableEvidence(got.run, got.error)
        return got

    def link(self, run_dir: Path, heading: str | None = None) -> str:
        """Path of the run's report relative to the outputs folder, with the section anchor."""
        rel = (Path(run_dir) / "report.html").relative_to(self.root).as_posix()
        return rel + (f"#{_anchor(heading)}" if heading else "")


def _profile_params(profile: str, notebook: str) -> dict:
    p = project.params_dir() / profile / f"{notebook}.yaml"
    return (yaml.safe_load(p.read_text()) or {}) if p.exists() else {}


def _out(
    verdict: str,
    evidence: str,
    numbers: dict | None = None,
    source=None,
    link: str | None = None,
    reason: str | None = None,
) -> dict:
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    return {
        "verdict": verdict,
        "evidence": evidence,
        "numbers": numbers or {},
        "source_run": str(source) if source else None,
        "link": link,
        "reason": reason,
    }


def _unreadable(e: UnreadableEvidence, ev: Evidence) -> dict:
    report = e.run / "report.html"
    return _out(
        "inconclusive",
        f"unreadable evidence: {e.error}",
        source=e.run,
        link=ev.link(e.run) if report.exists() and e.run.is_relative_to(ev.root) else None,
        reason="unreadable evidence",
    )


def _not_run(notebook: str, ev: Evidence) -> dict:
    return _out(
        "inconclusive",
        f"no finished {notebook} run found under {ev.root} for profile(s) "
        f"{', '.join(ev.profiles)}; run `linrepro reproduce`",
        reason=f"{notebook} has not run",
    )


# --------------------------------------------------------------------------- timing (02)
_TIMING_HEAD = "Log-log slopes with 95% intervals"


def _timing(ev: Evidence):
    """The best timing evidence: a recorded/finished H200 run if any, else the CPU run."""
    return ev.run("02_attention_timing", ("h200",)) or ev.run("02_attention_timing")


def _slope_check(ev: Evidence, which: str, target: float, tol: float, label: str) -> dict:
    got = _timing(ev)
    if got is None:
        return _not_run("02_attention_timing", ev)
    d, r = got
    impl = r.get("la_impl") if which == "linear" else r.get("softmax_impl")
    fits = [f for f in r.get("fits", []) if f["impl"] == impl and f["mode"] == "fwd"]
    if not fits:
        return _out("inconclusive", f"no forward-time fit for {impl} in {d.name}", source=d)
    f = fits[0]
    if f.get("slope") is None or f.get("ci_low") is None or f.get("ci_high") is None:
        start = f"N ≥ {int(f['n_from']):,}" if f.get("n_from") else "the fit's start"
        return _out(
            "inconclusive",
            f"{label}: too few timed lengths at or above {start} to fit a slope with an interval in {d.name}",
            source=d,
            link=ev.link(d, _TIMING_HEAD),
            reason="too few points for a slope",
        )
    lo, hi = f["ci_low"], f["ci_high"]
    where = r.get("source", "").split(" on ")[-1].rstrip(".") or "?"
    text = (
        f"{label} time log-log slope {f['slope']:.2f}, 95% CI [{lo:.2f}, {hi:.2f}], {impl}, "
        f"N = {f['n_from']:,}…{f['n_to']:,}, measured on {where}"
    )
    if lo <= target + tol and hi >= target - tol:
        verdict = "supported" if abs(f["slope"] - target) <= tol else "inconclusive"
    else:
        verdict = "contradicted"
    return _out(
        verdict,
        text + f" (bar: slope within ±{tol} of {target:g})",
        {"slope": f["slope"], "ci_low": lo, "ci_high": hi, "impl": impl, "n_from": f["n_from"], "n_to": f["n_to"]},
        d,
        ev.link(d, _TIMING_HEAD),
    )


def check_softmax_scaling(ev):
    return _slope_check(ev, "softmax", 2.0, 0.25, "softmax")


def check_la_scaling(ev):
    return _slope_check(ev, "linear", 1.0, 0.25, "LA")


def check_speedup_4m(ev):
    h200 = ev.run("02_attention_timing", ("h200",))
    cpu = ev.run("02_attention_timing")
    if h200:
        d, r = h200
        sp = r.get("speedup") or []
        if not sp:
            return _out("inconclusive", "the H200 run has no point where both LA and softmax were measured", source=d)
        last = sp[-1]
        ok_n = last["n"] >= 2**21
        import math

        near = abs(math.log10(last["speedup"]) - 3) <= 0.5
        verdict = ("supported" if near else "contradicted") if ok_n else "inconclusive"
        return _out(
            verdict,
            f"H200: LA {last['speedup']:.3g}× faster than {r.get('softmax_impl')} at "
            f"N = {last['n']:,} (bar: within half a decade of 10³ at N ≥ 2²¹)",
            {"speedup": last["speedup"], "n": last["n"]},
            d,
            ev.link(d, "Speed-up of LA over softmax"),
        )
    extra = ""
    numbers = {}
    if cpu:
        d, r = cpu
        sp = r.get("speedup") or []
        if sp:
            last = sp[-1]
            extra = (
                f" On this CPU LA was {last['speedup']:.3g}× faster at N = {last['n']:,}, the largest N where "
                f"softmax was measured; that is not 4×10⁶ and not an H200."
            )
            numbers = {"cpu_speedup": last["speedup"], "cpu_n": last["n"]}
        return _out(
            "not testable here",
            "needs an H200 run at ≈4×10⁶ tokens; none recorded." + extra,
            numbers,
            d,
            ev.link(d, "Speed-up of LA over softmax"),
            reason="needs an H200 run; none recorded",
        )
    return _out(
        "not testable here",
        "needs an H200 run at ≈4×10⁶ tokens; none recorded",
        reason="needs an H200 run; none recorded",
    )


def check_timing_protocol(ev):
    p = _profile_params("h200", "02_attention_timing")
    h200 = ev.run("02_attention_timing", ("h200",))
    conf = f"linrepro's h200 profile configures warmup = {p.get('warmup')}, runs = {p.get('runs')}"
    if h200:
        d, r = h200
        c = r.get("config", {})
        dev = (r.get("provenance", {}).get("device") or {}).get("cuda")
        same = c.get("warmup") == 100 and c.get("runs") == 1000 and dev and "H200" in str(dev)
        return _out(
            "supported" if same else "inconclusive",
            f"{conf}; the recorded run used warmup {c.get('warmup')}, runs {c.get('runs')} on {dev}",
            {"warmup": c.get("warmup"), "runs": c.get("runs"), "device": dev},
            d,
            ev.link(d),
        )
    return _out(
        "not testable here",
        f"a statement of the paper's protocol; {conf} to match. No H200 run recorded.",
        {"warmup": p.get("warmup"), "runs": p.get("runs")},
        reason="needs an H200 run; none recorded",
    )


def check_baselines(ev):
    got = _timing(ev)
    impls = ""
    if got:
        d, r = got
        impls = (
            f" In this package's run the fastest softmax was {r.get('softmax_impl')} (torch SDPA; "
            f"FlashAttention-2 kernels on CUDA) and LA was {r.get('la_impl')}."
        )
    return _out(
        "not testable here",
        "a statement of the paper's setup, and reference [13]'s code is not available (linrepro.attention, "
        "module docstring: most likely the authors' Fastmax CUDA kernels, unconfirmed). linrepro times "
        "torch SDPA's flash/efficient/math backends against its own Triton (GPU) and chunked torch (CPU) "
        "LA." + impls,
        {},
        got[0] if got else None,
        ev.link(got[0]) if got else None,
        reason="the paper's LA implementation [13] is not available",
    )


# --------------------------------------------------------------------------- math (01)
def _from_derivation(check):
    """Run ``check(ev, run_dir, results)`` on the latest 01_kernel_derivation run, if there is one."""
    import functools

    @functools.wraps(check)
    def wrapped(ev):
        got = ev.run("01_kernel_derivation")
        return check(ev, *got) if got else _not_run("01_kernel_derivation", ev)

    return wrapped


@_from_derivation
def check_affine_kernel(ev, d, r):
    return _out(
        "not testable here",
        f"the paper's text is not available to confirm its kernel; linrepro implements f(x) = 1 + x on "
        f"L2-normalised q, k (spec: linrepro.attention, module docstring), and its factorised form matches "
        f"the N×N form to {r['factorisation_max_rel_err']:.1e} (float64)",
        {"factorisation_max_rel_err": r["factorisation_max_rel_err"]},
        d,
        ev.link(d, "1 · Softmax and the affine kernel"),
        reason="a statement of the paper's method",
    )


@_from_derivation
def check_affine_complexity(ev, d, r):
    err = r["factorisation_max_rel_err"]
    la = check_la_scaling(ev)
    slope = la["numbers"].get("slope")
    ok = err < 1e-10
    verdict = (
        "supported"
        if ok and la["verdict"] == "supported"
        else ("contradicted" if not ok or la["verdict"] == "contradicted" else "inconclusive")
    )
    text = f"the O(N·D²) factorisation (state S = K̂ᵀV) equals the O(N²·D) form to {err:.1e} in float64" + (
        f", and its measured time grows with slope {slope:.2f} in N" if slope is not None else ""
    )
    return _out(
        verdict,
        text,
        {"factorisation_max_rel_err": err, "la_slope": slope},
        d,
        ev.link(d, "Check: the factorised form equals the quadratic form"),
    )


@_from_derivation
def check_dot_bound(ev, d, r):
    dr = r["dot_range"]
    ok = dr["min"] >= -1 - 1e-12 and dr["max"] <= 1 + 1e-12
    return _out(
        "supported" if ok else "contradicted",
        f"over {dr['n_pairs']:,} pairs (D = {dr['D']}) q̂·k̂ ranged over [{dr['min']:.6f}, {dr['max']:.6f}]",
        dr,
        d,
        ev.link(d, "2 · Bounds on the scores"),
    )


@_from_derivation
def check_denominator_decay(ev, d, r):
    s = r["needle_max_weight_loglog_slope"]
    norm = r.get("output_norm_loglog_slope", {})
    ok = s["eq4"] < -0.8 and abs(s["eq7"]) < 0.1
    return _out(
        "supported" if ok else "contradicted",
        f"Eq. 7 is Eq. 4 without its denominator; with it (eq4) the largest weight decays as N^{s['eq4']:.2f}, "
        f"without it (eq7) as N^{s['eq7']:.2f}: the decay is gone. The price: eq7's output norm grows "
        f"as N^{norm.get('eq7', float('nan')):.2f} (eq4: N^{norm.get('eq4', float('nan')):.2f}).",
        {"max_weight_slope": s, "output_norm_slope": norm},
        d,
        ev.link(d, "4 · Attention-score decay"),
    )


@_from_derivation
def check_eq7_range(ev, d, r):
    w = r["weight_properties"]
    lo = min(w["noncausal"]["eq7_min_score"], w["causal"]["eq7_min_score"])
    hi = max(w["noncausal"]["eq7_max_score"], w["causal"]["eq7_max_score"])
    s = r.get("params", {}).get("score_scale", 0.5)
    ok = lo >= -1e-12 and hi <= 1 + 1e-12
    return _out(
        "supported" if ok else "contradicted",
        f"with s = {s} every eq7 score s(1 + q̂·k̂) lay in [{lo:.3g}, {hi:.3g}] (the paper's exact scale is "
        f"not known; s = ½ is the one that gives [0, 1])",
        {"min": lo, "max": hi, "score_scale": s},
        d,
        ev.link(d, "2 · Bounds on the scores"),
    )


# --------------------------------------------------------------------------- setup (03/04 paper profile)
def _setup(text: str, reason: str) -> dict:
    return _out("not testable here", text, reason=reason)


def check_openclip(ev):
    got = ev.run("03_clip_training")
    used = ""
    if got:
        d, r = got
        used = (
            f" This package's {d.parent.parent.name} training run used open_clip_train itself (summaries in {d.name})."
        )
    return _out(
        "not testable here",
        "a statement of the paper's code, which is not available. linrepro trains every "
        "profile, `paper` included, through open_clip/open_clip_train with only the attention swapped." + used,
        {},
        got[0] if got else None,
        ev.link(got[0]) if got else None,
        reason="the paper's code is not available",
    )


def check_models_laion(ev):
    p = _profile_params("paper", "03_clip_training")
    return _setup(
        f"needs LAION-400M, which is not on this machine. linrepro's paper profile configures models "
        f"{p.get('models')} on train_data {p.get('train_data')!r}.",
        "needs LAION-400M",
    )


def check_batch_sizes(ev):
    p = _profile_params("paper", "03_clip_training")
    bs = p.get("batch_sizes", {})
    match = [bs.get(m) for m in ("ViT-S-16", "ViT-B-16", "ViT-L-16")] == [64, 16, 4]
    return _setup(
        f"a statement of the paper's setup. linrepro's paper profile configures global batch sizes {bs}"
        f" ({'the same' if match else 'NOT the same'} as claimed); running it needs LAION-400M and GPUs.",
        "needs LAION-400M and 4 GPUs",
    )


def check_gpus(ev):
    p = _profile_params("paper", "03_clip_training")
    return _setup(
        f"a statement of the paper's hardware. linrepro's paper profile runs nproc = {p.get('nproc')} "
        f"processes through torchrun (one per GPU); the GPU model is whatever the machine has.",
        "needs four GPUs (A5500 in the paper)",
    )


def check_imagenet21k(ev):
    p = _profile_params("paper", "04_zero_shot_eval")
    got = ev.run("04_zero_shot_eval", ("paper",))
    if got:
        d, r = got
        names = [s["name"] for s in r.get("sets", [])]
        if "imagenet21k" in names:
            return _out(
                "supported",
                f"a paper-profile 04 run evaluated ImageNet-21K zero-shot ({d.name})",
                {"sets": names},
                d,
                ev.link(d),
            )
    return _setup(
        f"needs ImageNet-21K, which is not on this machine. linrepro's paper profile evaluates "
        f"imagenet21k_root = {p.get('imagenet21k_root')!r} with open_clip's zero-shot classifier.",
        "needs ImageNet-21K",
    )


# --------------------------------------------------------------------------- the 17 claims, in seed order
CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Standard attention scales as $O(N^2D)$.", False, 0.04, "result", check_softmax_scaling),
    Claim(2, "Linear Attention (LA) scales as $O(ND^2)$.", True, 0.16, "result", check_la_scaling),
    Claim(
        3,
        "Runtime measurements were averaged over 1000 runs after 100 warm-up iterations on an H200 GPU.",
        False,
        0.00,
        "setup",
        check_timing_protocol,
    ),
    Claim(
        4,
        "The experiment used FlashAttention-2 for standard attention and an optimized LA implementation "
        "from reference [13].",
        False,
        0.04,
        "setup",
        check_baselines,
    ),
    Claim(
        5, "Log-log plot slopes show a scaling of $O(N)$ for Linear Attention.", False, 0.10, "result", check_la_scaling
    ),
    Claim(
        6,
        "Log-log plot slopes show a scaling of $O(N^2)$ for standard attention.",
        False,
        0.04,
        "result",
        check_softmax_scaling,
    ),
    Claim(
        7,
        "Linear Attention reaches approximately 10^3 lower time than standard attention at token lengths of 4×10^6 .",
        False,
        0.07,
        "result",
        check_speedup_4m,
    ),
    Claim(8, "Experiments were implemented using OpenCLIP.", False, 0.02, "setup", check_openclip),
    Claim(
        9,
        "ViT-S-16, ViT-B-16, and ViT-L-16 models were trained on the LAION-400M dataset.",
        True,
        0.29,
        "setup",
        check_models_laion,
    ),
    Claim(
        10,
        "Global batch sizes for ViT-S-16, ViT-B-16, and ViT-L-16 were 64, 16, and 4 respectively.",
        True,
        0.18,
        "setup",
        check_batch_sizes,
    ),
    Claim(11, "Training was conducted on four A5500 GPUs.", False, 0.01, "setup", check_gpus),
    Claim(
        12,
        "Validation performance was measured using ImageNet21K zero-shot accuracy.",
        False,
        0.10,
        "setup",
        check_imagenet21k,
    ),
    Claim(
        13, "The study employs an affine kernel defined as $f(x) = 1 + x$.", False, 0.02, "math", check_affine_kernel
    ),
    Claim(
        14,
        "The affine kernel formulation can be computed in $O(ND^2)$ time.",
        False,
        0.02,
        "math",
        check_affine_complexity,
    ),
    Claim(
        15,
        "Normalizing query and key vectors ensures that the dot product $q_i \\cdot k_n$ is bounded between -1 and 1.",
        False,
        0.02,
        "math",
        check_dot_bound,
    ),
    Claim(
        16,
        "The proposed modification omits the denominator in Equation 4 to address attention score decay.",
        False,
        0.02,
        "math",
        check_denominator_decay,
    ),
    Claim(
        17, "The proposed Equation 7 maintains attention scores between 0 and 1.", False, 0.03, "math", check_eq7_range
    ),
)


def evaluate(out_root: Path | None = None, profiles: tuple[str, ...] = ("cpu",)) -> list[dict]:
    """Every claim with its verdict; a check that raises is recorded as inconclusive with the error."""
    ev = Evidence(out_root, profiles)
    rows = []
    for c in CLAIMS:
        try:
            v = c.check(ev)
        except UnreadableEvidence as e:
            v = _unreadable(e, ev)
        except Exception as e:
            v = _out("inconclusive", f"the check failed: {type(e).__name__}: {e}", reason="check error")
        rows.append(
            {
                "n": c.n,
                "claim": c.claim,
                "kind": c.kind,
                "seed_verified": c.seed_verified,
                "seed_confidence": c.seed_confidence,
                **v,
            }
        )
    return rows


def summary(rows: list[dict]) -> dict:
    """Counts of verdicts, and how they line up with the seed's verified marks."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    seed_marked = [r for r in rows if r["seed_verified"]]
    return {
        "n": len(rows),
        "counts": counts,
        "seed_verified": len(seed_marked),
        "seed_verified_and_supported": sum(r["verdict"] == "supported" for r in seed_marked),
        "seed_unverified_but_supported": sum(r["verdict"] == "supported" and not r["seed_verified"] for r in rows),
    }


def findings(out_root: Path | None = None, profiles: tuple[str, ...] = ("cpu",)) -> list[dict]:
    """Beyond the 17 claims: the seed's research question as this package's runs answer it
    (training, scaling, resolution), each line computed by the notebook it links to."""
    from linrepro.study.scaling import verdict_text

    ev = Evidence(out_root, profiles)
    rows: list[dict] = []

    def training(d, r):
        top = r.get("digits_top1") or {}
        if top:
            txt = "; ".join(f"{k} {v:.3f}" for k, v in top.items())
            rows.append(
                {
                    "topic": "zero-shot top-1 on digits after training (03)",
                    "text": txt,
                    "link": ev.link(d, "Zero-shot top-1 on each domain's held-out split"),
                }
            )

    def scaling(d, r):
        verdict = "Verdict" + verdict_text(r["fits"]).split("Verdict", 1)[-1].replace("**", "")
        rows.append(
            {
                "topic": "same scaling law? (05)",
                "text": verdict.strip(),
                "link": ev.link(d, "The claim, as these runs answer it"),
            }
        )

    def resolution(d, r):
        for line in r.get("conclusions", []):
            rows.append(
                {
                    "topic": "domains × resolutions (06)",
                    "text": line.lstrip("- ").replace("**", ""),
                    "link": ev.link(d, "What the numbers say"),
                }
            )

    topics = {
        "03_clip_training": ("training (03)", training),
        "05_scaling_laws": ("scaling (05)", scaling),
        "06_resolution_domain": ("domains × resolutions (06)", resolution),
    }
    for notebook, (topic, add) in topics.items():
        try:
            got = ev.run(notebook)
            if got:
                add(*got)
        except UnreadableEvidence as e:  # one bad run: say so, and go on with the rest
            rows.append({"topic": topic, "text": f"unreadable evidence: {e.error}", "link": None})
        except Exception as e:
            rows.append({"topic": topic, "text": f"could not be summarised: {type(e).__name__}: {e}", "link": None})
    return rows


def _href(link: str, out_root: Path, link_base: Path) -> str:
    import os

    target, _, anchor = link.partition("#")
    return os.path.relpath(Path(out_root) / target, link_base) + (f"#{anchor}" if anchor else "")


def findings_html(rows: list[dict], out_root: Path, link_base: Path) -> str:
    import html

    if not rows:
        return "<p class=muted>No training, scaling or resolution runs yet.</p>"
    items = [
        f"<li><b>{html.escape(r['topic'])}</b>: {html.escape(r['text'])} "
        + (f"<a href='{html.escape(_href(r['link'], out_root, link_base))}'>report</a>" if r.get("link") else "")
        + "</li>"
        for r in rows
    ]
    return "<ul class='findings'>" + "".join(items) + "</ul>"


def ledger_html(rows: list[dict], out_root: Path, link_base: Path) -> str:
    """The ledger as an HTML table; report links are made relative to ``link_base`` (the folder of
    the page that shows it), so they work from the run's report and from the site alike."""
    import html

    from linrepro.utils.mathml import latex_to_mathml

    out = [
        "<table class='ledger'><tr><th>#</th><th>claim</th><th>seed</th><th>verdict</th><th>evidence</th><th></th></tr>"
    ]
    for r in rows:
        seed = f"{'✓' if r['seed_verified'] else '×'} ({r['seed_confidence']:.2f})"
        link = f"<a href='{html.escape(_href(r['link'], out_root, link_base))}'>report</a>" if r.get("link") else ""
        reason = f"<br><i>{html.escape(r['reason'])}</i>" if r.get("reason") and r["verdict"] != "supported" else ""
        out.append(
            f"<tr><td>{r['n']}</td><td>{latex_to_mathml(html.escape(r['claim'], quote=False))}</td><td>{seed}</td>"
            f"<td class='verdict' style='color:{COLOURS[r['verdict']]};font-weight:600'>{r['verdict']}"
            f"{reason}</td><td>{html.escape(r['evidence'])}</td><td>{link}</td></tr>"
        )
    return "\n".join(out + ["</table>"])
