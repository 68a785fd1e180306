"""The speed table of :mod:`linrepro.study.speed` in a report: run it in its own process, then tables,
a figure and the acceptance ratios as plain numbers.

* :func:`check_params`: the notebook's ``speed_*`` parameters, refused by name before anything runs.
* :func:`run_speed`: ``python -m linrepro.study.speed ... --json out_json`` in a subprocess (its
  ``"reused"`` allocator mode calls glibc's ``mallopt`` process-wide, so it must not run in the
  notebook's kernel); returns the parsed results.
* :func:`recorded`: the ``speed.json`` of a recorded run folder, or None.
* :func:`tables`, :func:`figure`, :func:`summary`: what the notebook shows and what results.json keeps.

Nothing here times anything: every number comes from the subprocess's one run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

MEMORY_MODES = ("default", "reused")  # as linrepro.study.speed.MEMORY_MODES (not imported: that imports torch)
TINY_MODELS = ("tiny-XS", "tiny-S", "tiny-B", "tiny-L")  # as linrepro.clip.TINY_MODELS (a test checks)
SPEED_JSON = "speed.json"
DEFAULT_TIMEOUT_S = 3 * 3600.0
PEAK_LINE_PCT = 80.0  # the reference line on the % of matmul peak panel
STDERR_TAIL = 3000  # characters of a failed run's stderr quoted in the error


# ----------------------------------------------------------------------------------- arguments
def _positive_ints(name: str, value, allow_empty: bool) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of positive integers, got {value!r}")
    vals = list(value)
    if not vals and not allow_empty:
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {value!r}")
    bad = [x for x in vals if isinstance(x, bool) or not isinstance(x, int) or x < 1]
    if bad:
        raise ValueError(f"{name} must be positive integers, got {bad[0]!r} in {value!r}")
    return vals


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_params(
    short_n: Sequence[int],
    long_n: Sequence[int],
    reps: int,
    long_reps: int,
    train_models: Sequence[str],
    train_rounds: int,
    memory: Sequence[str] = MEMORY_MODES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> dict:
    """The arguments of :func:`run_speed` checked and normalised to lists; a bad one raises a
    ValueError naming the parameter, the value given and what is expected."""
    out = {
        "short_n": _positive_ints("short_n", short_n, allow_empty=True),
        "long_n": _positive_ints("long_n", long_n, allow_empty=True),
        "reps": _positive_int("reps", reps),
        "long_reps": _positive_int("long_reps", long_reps),
        "train_rounds": _positive_int("train_rounds", train_rounds),
    }
    if isinstance(train_models, (str, bytes)) or not isinstance(train_models, Sequence):
        raise ValueError(f"train_models must be a list of model names from {list(TINY_MODELS)}, got {train_models!r}")
    bad = [m for m in train_models if m not in TINY_MODELS]
    if bad:
        raise ValueError(f"train_models: unknown model {bad[0]!r}; expected names from {list(TINY_MODELS)}")
    if len(set(train_models)) != len(train_models):
        raise ValueError(f"train_models must not repeat a model, got {list(train_models)!r}")
    out["train_models"] = list(train_models)
    if isinstance(memory, (str, bytes)) or not isinstance(memory, Sequence) or not memory:
        raise ValueError(f"memory must be a non-empty list of modes from {list(MEMORY_MODES)}, got {memory!r}")
    bad = [m for m in memory if m not in MEMORY_MODES]
    if bad:
        raise ValueError(f"memory: unknown mode {bad[0]!r}; expected modes from {list(MEMORY_MODES)}")
    if list(memory) != sorted(set(memory), key=MEMORY_MODES.index):
        raise ValueError(f"memory must list each mode once, in the order {list(MEMORY_MODES)}, got {list(memory)!r}")
    out["memory"] = list(memory)
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
    ):
        raise ValueError(f"timeout_s must be a positive number of seconds (or None), got {timeout_s!r}")
    out["timeout_s"] = timeout_s
    return out


def wanted(short_n: Sequence[int], long_n: Sequence[int], train_models: Sequence[str]) -> bool:
    """Whether there is anything to measure (the notebook skips the section when not)."""
    return bool(list(short_n) or list(long_n) or list(train_models))


# ----------------------------------------------------------------------------------- running
def _root() -> Path:
    try:
        from linrepro.utils import project

        return project.root()
    except FileNotFoundError:
        return Path(__file__).resolve().parents[2]  # the folder holding the linrepro package


def command(
    out_json: Path,
    *,
    short_n: Sequence[int],
    long_n: Sequence[int],
    reps: int,
    long_reps: int,
    memory: Sequence[str],
    train_models: Sequence[str],
    train_rounds: int,
) -> list[str]:
    """The argv of the speed CLI for these (already checked) arguments."""
    return [
        sys.executable,
        "-m",
        "linrepro.study.speed",
        "--short-n",
        *map(str, short_n),
        "--long-n",
        *map(str, long_n),
        "--reps",
        str(reps),
        "--long-reps",
        str(long_reps),
        "--memory",
        *memory,
        "--train",
        *train_models,
        "--train-rounds",
        str(train_rounds),
        "--json",
        str(out_json),
    ]


def run_speed(
    out_json: Path,
    *,
    short_n: Sequence[int],
    long_n: Sequence[int],
    reps: int,
    long_reps: int,
    memory: Sequence[str] = MEMORY_MODES,
    train_models: Sequence[str] = (),
    train_rounds: int = 20,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    echo: bool = True,
) -> dict:
    """Run the speed CLI in its own process and return its results dict ("short", "long", "train",
    "matmul_gflops", "provenance"), also written to ``out_json``.

    The subprocess writes a temp file beside ``out_json``, renamed onto it only when the run
    succeeded: a failed or timed-out run leaves no ``out_json`` that looks complete (and keeps an
    earlier one). A failure raises a RuntimeError quoting the tail of its stderr. ``echo`` prints
    the CLI's table when it is done."""
    from linrepro.utils.io import read_json

    a = check_params(short_n, long_n, reps, long_reps, train_models, train_rounds, memory, timeout_s)
    if not wanted(a["short_n"], a["long_n"], a["train_models"]):
        raise ValueError("short_n, long_n and train_models are all empty: nothing to measure")
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(f".{out_json.name}.{os.getpid()}.tmp")
    argv = command(
        tmp,
        short_n=a["short_n"],
        long_n=a["long_n"],
        reps=a["reps"],
        long_reps=a["long_reps"],
        memory=a["memory"],
        train_models=a["train_models"],
        train_rounds=a["train_rounds"],
    )
    root = _root()
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])  # the subprocess imports this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    try:
        try:
            r = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=a["timeout_s"])
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise RuntimeError(
                f"the speed run did not finish within timeout_s={a['timeout_s']!r} s: {' '.join(argv[1:])}\n"
                f"stderr (tail):\n{err[-STDERR_TAIL:]}"
            ) from None
        if r.returncode != 0:
            raise RuntimeError(
                f"the speed run failed (exit status {r.returncode}): {' '.join(argv[1:])}\n"
                f"stderr (tail):\n{r.stderr[-STDERR_TAIL:]}"
            )
        if not tmp.exists():
            raise RuntimeError(
                f"the speed run exited 0 but wrote no {tmp.name}: {' '.join(argv[1:])}\n"
                f"stderr (tail):\n{r.stderr[-STDERR_TAIL:]}"
            )
        res = read_json(tmp, "speed results")
        os.replace(tmp, out_json)
    finally:
        tmp.unlink(missing_ok=True)
    if echo and r.stdout.strip():
        print(r.stdout.rstrip())
    return res


def recorded(reference_dir: str | Path) -> dict | None:
    """The ``speed.json`` of a recorded run (the folder, or a file in it, such as its bench.json;
    a relative path is read from the project root), or None when the run recorded none."""
    from linrepro.utils.io import read_json

    p = Path(reference_dir)
    p = p if p.is_absolute() else _root() / p
    folder = p if p.is_dir() else p.parent
    f = folder / SPEED_JSON
    return read_json(f, "recorded speed results") if f.is_file() else None


def _provenance_note(res: dict) -> str:
    prov = res.get("provenance") or {}
    dev = prov.get("device") or {}
    where = dev.get("cpu") or "this machine's CPU"
    threads = prov.get("threads")
    bits = [f"on {where}" + (f" with {threads} torch threads" if threads else ""), str(prov.get("date", "?"))]
    commit = (prov.get("git") or {}).get("commit")
    if commit:
        bits.append(f"commit {str(commit)[:10]}")
    note = ", ".join(bits)
    modes = list(dict.fromkeys(r.get("memory", "default") for r in res.get("long") or []))
    if res.get("long") and "reused" not in modes and prov.get("reuse_freed_memory_applied") is False:
        note += "; the 'reused' allocator mode could not be set here (not glibc), so long N ran in 'default' only"
    return note


def measure_or_load(reference_dir: str, out_json: Path, **params) -> tuple[dict | None, str, str | None]:
    """(results or None, a sentence for the report, "measured" / "recorded" / None).

    With ``reference_dir`` (a recorded run replayed) nothing is measured: its ``speed.json`` is
    shown if it has one. Otherwise :func:`run_speed` into ``out_json``, unless there is nothing to
    measure (short N, long N and training models all empty). ``params``: those of :func:`check_params`."""
    a = check_params(**params)
    if reference_dir:
        res = recorded(reference_dir)
        if res is None:
            return None, f"The recorded run `{reference_dir}` has no speed tables ({SPEED_JSON}): none are shown.", None
        note = f"**Recorded run**, loaded from `{reference_dir}`: measured {_provenance_note(res)}. Not measured in this run."
        return res, note, "recorded"
    if not wanted(a["short_n"], a["long_n"], a["train_models"]):
        return (
            None,
            "Skipped: `speed_short_n`, `speed_long_n` and `speed_train_models` are all empty in this profile.",
            None,
        )
    res = run_speed(out_json, echo=False, **a)  # the report shows the tables itself
    return res, f"**Measured in this run**, in a process of its own, {_provenance_note(res)}.", "measured"


# ----------------------------------------------------------------------------------- tables
SHORT_COLUMNS = {
    "N": "N",
    "la_auto_ms": "LA auto fwd+bwd (ms)",
    "form": "LA form",
    "sdpa_ms": "SDPA fwd+bwd (ms)",
    "sdpa_over_la": "SDPA / LA",
}
LONG_COLUMNS = {
    "memory": "memory",
    "N": "N",
    "fwd_ms": "LA fwd (ms)",
    "gflops": "LA fwd (GFLOP/s)",
    "pct_of_matmul_peak": "LA fwd (% of matmul peak)",
    "fwdbwd_ms": "LA fwd+bwd (ms)",
    "fwdbwd_over_fwd": "fwd+bwd / fwd",
    "products_ms": "products alone (ms)",
    "products_gflops": "products alone (GFLOP/s)",
    "products_pct_of_matmul_peak": "products alone (% of matmul peak)",
}


def _attention(train_rows: list[dict]) -> str:
    """The attention compared with softmax in the training rows (``eq7`` from ``eq7_images_per_s``)."""
    for r in train_rows:
        for k in r:
            if k.endswith("_images_per_s") and not k.startswith("softmax"):
                return k[: -len("_images_per_s")]
    return "eq7"


def _train_columns(att: str) -> dict[str, str]:
    return {
        "model": "model",
        "resolution": "image side (px)",
        "softmax_images_per_s": "softmax (images/s)",
        f"{att}_images_per_s": f"{att} (images/s)",
        "ratio": f"{att} / softmax",
        "ratio_q1": "per-round ratio, 1st quartile",
        "ratio_q3": "per-round ratio, 3rd quartile",
    }


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows or [], columns=None if rows else list(columns))
    order = [c for c in columns if c in df.columns] + [c for c in df.columns if c not in columns]
    return df[order].rename(columns=columns)


def tables(res: dict) -> dict[str, pd.DataFrame]:
    """{"short", "long", "train"}: the result's rows as frames with readable column names (an empty
    frame with those names where the run measured none)."""
    train = res.get("train") or []
    return {
        "short": _frame(res.get("short") or [], SHORT_COLUMNS),
        "long": _frame(res.get("long") or [], LONG_COLUMNS),
        "train": _frame(train, _train_columns(_attention(train))),
    }


# ----------------------------------------------------------------------------------- summary
def _f(x) -> float | None:
    return None if x is None else float(x)


def summary(res: dict, source: str | None = None) -> dict:
    """The acceptance ratios as plain numbers, keyed by N (as a string, as JSON keeps it) and memory
    mode, plus the matmul peak, the provenance and ``source`` (e.g. "measured", "recorded") if given:

    ``sdpa_over_la`` {N: ratio}, ``la_form`` {N: form}, ``pct_of_matmul_peak`` {memory: {N: %}},
    ``fwdbwd_over_fwd`` {memory: {N: ratio}}, ``products_pct_of_matmul_peak`` {memory: {N: %}},
    ``train_ratio`` {model: attention / softmax images/s}, ``train_ratio_iqr`` {model: [q1, q3]}."""
    short, long, train = res.get("short") or [], res.get("long") or [], res.get("train") or []
    out: dict = {
        "sdpa_over_la": {str(r["N"]): _f(r["sdpa_over_la"]) for r in short},
        "la_form": {str(r["N"]): r.get("form") for r in short},
    }
    for key in ("pct_of_matmul_peak", "fwdbwd_over_fwd", "products_pct_of_matmul_peak"):
        per: dict[str, dict[str, float | None]] = {}
        for r in long:
            per.setdefault(str(r.get("memory", "default")), {})[str(r["N"])] = _f(r.get(key))
        out[key] = per
    out["train_attention"] = _attention(train) if train else None
    out["train_ratio"] = {r["model"]: _f(r["ratio"]) for r in train}
    out["train_ratio_iqr"] = {r["model"]: [_f(r.get("ratio_q1")), _f(r.get("ratio_q3"))] for r in train}
    out["matmul_gflops"] = _f(res.get("matmul_gflops"))
    out["provenance"] = res.get("provenance") or {}
    if source is not None:
        out["source"] = source
    return out


# ----------------------------------------------------------------------------------- figure
MODE_COLOURS = {"default": "#4D4D4D", "reused": "#D55E00"}  # plotting.NEUTRAL and an Okabe-Ito vermilion


def figure(res: dict):
    """One row of panels, each only where the run has its data: SDPA ÷ LA forward+backward time
    against short N (log x, a dashed line at 1); % of the same run's matmul peak at long N for the LA
    forward (solid) and the two products alone (dotted, the ceiling) per allocator mode (a dashed line
    at 80%); eq7 ÷ softmax training images/s per tiny model with the per-round IQR (a dashed line at 1)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from linrepro.utils import plotting as pl

    short, long, train = res.get("short") or [], res.get("long") or [], res.get("train") or []
    att = _attention(train)
    peak = res.get("matmul_gflops")
    panels = []
    if short:
        panels.append(("short", "short N: SDPA ÷ LA time,<br>forward + backward"))
    if long:
        ptitle = "long N: LA forward, % of matmul peak"
        panels.append(("long", ptitle + (f"<br>(2048², {peak:.0f} GFLOP/s in this run)" if peak else "")))
    if train:
        panels.append(("train", f"training: {att} ÷ softmax images/s,<br>bars: per-round IQR"))
    if not panels:
        return go.Figure().update_layout(title="no speed data in this run")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels], horizontal_spacing=0.09)
    for col, (kind, _) in enumerate(panels, start=1):
        if kind == "short":
            rows = sorted(short, key=lambda r: r["N"])
            fig.add_trace(
                go.Scatter(
                    x=[r["N"] for r in rows],
                    y=[r["sdpa_over_la"] for r in rows],
                    mode="lines+markers",
                    name="SDPA÷LA time",  # no attention type in the name: style() leaves it neutral
                    text=[r.get("form") for r in rows],
                    hovertemplate="N = %{x}<br>SDPA ÷ LA = %{y:.3g}<br>LA form: %{text}<extra></extra>",
                    line_color=pl.NEUTRAL,
                    showlegend=False,  # the panel's title says what it is
                ),
                row=1,
                col=col,
            )
            fig.add_hline(y=1.0, line_dash="dash", line_color=pl.NEUTRAL, line_width=1, row=1, col=col)
            fig.update_xaxes(type="log", title_text="sequence length N (tokens)", row=1, col=col)
            fig.update_yaxes(title_text="SDPA time ÷ LA time (> 1: LA faster)", row=1, col=col)
        elif kind == "long":
            modes = list(dict.fromkeys(r.get("memory", "default") for r in long))
            for mode in modes:
                rows = sorted((r for r in long if r.get("memory", "default") == mode), key=lambda r: r["N"])
                colour = MODE_COLOURS.get(mode, pl.attention_colour(mode))
                for key, what, dash in (
                    ("pct_of_matmul_peak", "LA forward", "solid"),
                    ("products_pct_of_matmul_peak", "products alone", "dot"),
                ):
                    fig.add_trace(
                        go.Scatter(
                            x=[r["N"] for r in rows],
                            y=[r[key] for r in rows],
                            mode="lines+markers",
                            name=f"{what}, {mode} memory",
                            legendgroup=mode,
                            line={"color": colour, "dash": dash},
                            marker={"symbol": "circle" if dash == "solid" else "diamond-open"},
                        ),
                        row=1,
                        col=col,
                    )
            fig.add_hline(y=PEAK_LINE_PCT, line_dash="dash", line_color=pl.NEUTRAL, line_width=1, row=1, col=col)
            fig.update_xaxes(type="log", title_text="sequence length N (tokens)", row=1, col=col)
            fig.update_yaxes(title_text="% of the matmul's GFLOP/s", rangemode="tozero", row=1, col=col)
        else:
            rows = [next(r for r in train if r["model"] == m) for m in pl.model_order(r["model"] for r in train)]
            ratio = [r["ratio"] for r in rows]
            q1 = [r.get("ratio_q1", r["ratio"]) for r in rows]
            q3 = [r.get("ratio_q3", r["ratio"]) for r in rows]
            fig.add_trace(
                go.Scatter(
                    x=[r["model"] for r in rows],
                    y=ratio,
                    mode="markers",
                    name=f"{att} ÷ softmax images/s",
                    marker={"size": 11, "color": pl.attention_colour(att)},
                    error_y=pl.error_y(ratio, q1, q3),
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
            fig.add_hline(y=1.0, line_dash="dash", line_color=pl.NEUTRAL, line_width=1, row=1, col=col)
            fig.update_xaxes(title_text="model", type="category", row=1, col=col)
            fig.update_yaxes(title_text=f"{att} ÷ softmax images/s", row=1, col=col)
    return fig.update_layout(
        title="Where users spend their time, measured side by side in one run",
        height=560,
        width=max(560, 440 * len(panels)),
        margin={"t": 120, "b": 150},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.22, "yanchor": "top"},
    )
