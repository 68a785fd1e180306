"""linrepro.study.speed_report: the speed CLI run in its own process, and its tables, figure and
summary (behaviour only; no timing is asserted)."""

from __future__ import annotations

import json
import sys

import pytest

from linrepro.study import speed_report as sr


def _hand_built() -> dict:
    """A result as the speed CLI writes it, with numbers chosen by hand."""
    long = []
    for mode, base in (("default", 40.0), ("reused", 70.0)):
        for n, bump in ((65536, 0.0), (262144, 5.0)):
            long.append(
                {
                    "memory": mode,
                    "N": n,
                    "fwd_ms": 10.0 + bump,
                    "gflops": 50.0,
                    "fwdbwd_ms": 30.0,
                    "fwdbwd_over_fwd": 3.0 + bump / 10,
                    "products_ms": 5.0,
                    "products_gflops": 100.0,
                    "pct_of_matmul_peak": base + bump,
                    "products_pct_of_matmul_peak": 90.0 + bump,
                }
            )
    return {
        "short": [
            {"N": 17, "la_auto_ms": 2.0, "sdpa_ms": 1.0, "sdpa_over_la": 0.5, "form": "quadratic"},
            {"N": 257, "la_auto_ms": 1.0, "sdpa_ms": 1.5, "sdpa_over_la": 1.5, "form": "chunked"},
        ],
        "long": long,
        "train": [
            {
                "model": "tiny-B",
                "resolution": 64,
                "softmax_images_per_s": 100.0,
                "eq7_images_per_s": 120.0,
                "ratio": 1.2,
                "ratio_q1": 1.1,
                "ratio_q3": 1.3,
            },
            {
                "model": "tiny-S",
                "resolution": 32,
                "softmax_images_per_s": 200.0,
                "eq7_images_per_s": 180.0,
                "ratio": 0.9,
                "ratio_q1": 0.8,
                "ratio_q3": 0.95,
            },
        ],
        "matmul_gflops": 111.0,
        "provenance": {"date": "2026-12-01T00:00:00+00:00", "threads": 2, "device": {"cpu": "test CPU"}},
    }


ARGS = dict(short_n=[9], long_n=[256], reps=1, long_reps=1, train_models=[], train_rounds=1)


# ----------------------------------------------------------------------------------- running
def test_run_speed_through_the_real_cli(tmp_path):
    out = tmp_path / "run" / "speed.json"
    res = sr.run_speed(
        out,
        short_n=[9],
        long_n=[256],
        reps=1,
        long_reps=1,
        memory=["default", "reused"],
        train_models=["tiny-XS"],
        train_rounds=1,
        timeout_s=600,
        echo=False,
    )
    assert set(res) >= {"short", "long", "train", "matmul_gflops", "provenance"}
    assert [r["N"] for r in res["short"]] == [9]
    assert [r["model"] for r in res["train"]] == ["tiny-XS"]
    modes = [r["memory"] for r in res["long"]]
    if res["provenance"].get("reuse_freed_memory_applied"):  # glibc: both modes, in order
        assert modes == ["default", "reused"]
    else:
        assert modes == ["default"]
    assert json.loads(out.read_text()) == res
    assert sorted(p.name for p in out.parent.iterdir()) == ["speed.json"]  # no temp file left
    s = sr.summary(res)
    assert set(s["pct_of_matmul_peak"]) == set(modes)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("short_n", [0], r"short_n must be positive integers, got 0"),
        ("short_n", "17", r"short_n must be a list of positive integers, got '17'"),
        ("long_n", [256, 2.5], r"long_n must be positive integers, got 2.5"),
        ("reps", 0, r"reps must be a positive integer, got 0"),
        ("long_reps", True, r"long_reps must be a positive integer, got True"),
        ("train_rounds", -1, r"train_rounds must be a positive integer, got -1"),
        ("train_models", ["ViT-Z"], r"train_models: unknown model 'ViT-Z'"),
        ("train_models", ["tiny-S", "tiny-S"], r"train_models must not repeat a model"),
        ("memory", ["fast"], r"memory: unknown mode 'fast'"),
        ("memory", ["reused", "default"], r"memory must list each mode once, in the order"),
        ("memory", [], r"memory must be a non-empty list"),
        ("timeout_s", 0, r"timeout_s must be a positive number of seconds"),
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        sr.run_speed(tmp_path / "speed.json", **{**ARGS, key: value})
    assert not (tmp_path / "speed.json").exists()


def test_nothing_to_measure_is_refused(tmp_path):
    with pytest.raises(ValueError, match="all empty: nothing to measure"):
        sr.run_speed(tmp_path / "speed.json", **{**ARGS, "short_n": [], "long_n": []})


def test_a_failing_run_raises_with_stderrs_tail_and_keeps_the_earlier_result(tmp_path, monkeypatch):
    out = tmp_path / "speed.json"
    out.write_text('{"earlier": true}\n')
    script = "import sys; sys.stderr.write('x' * 10000 + 'the last words of the run'); sys.exit(3)"
    monkeypatch.setattr(sr, "command", lambda tmp, **kw: [sys.executable, "-c", script])
    with pytest.raises(RuntimeError, match=r"exit status 3(.|\n)*the last words of the run") as e:
        sr.run_speed(out, **ARGS)
    assert len(str(e.value)) < 10000  # the tail, not all of it
    assert json.loads(out.read_text()) == {"earlier": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speed.json"]


def test_the_real_cli_refusing_its_arguments_raises_with_its_message(tmp_path, monkeypatch):
    real = sr.command
    monkeypatch.setattr(sr, "command", lambda tmp, **kw: [*real(tmp, **kw), "--device", "no-such-device"])
    with pytest.raises(RuntimeError, match=r"the speed run failed(.|\n)*stderr \(tail\):\n.*\S"):
        sr.run_speed(tmp_path / "speed.json", **ARGS)
    assert not (tmp_path / "speed.json").exists()


def test_a_run_past_its_timeout_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(sr, "command", lambda tmp, **kw: [sys.executable, "-c", "import time; time.sleep(30)"])
    with pytest.raises(RuntimeError, match=r"did not finish within timeout_s=0.5"):
        sr.run_speed(tmp_path / "speed.json", **{**ARGS, "timeout_s": 0.5})


def test_measure_or_load_replays_a_recorded_run_without_measuring(tmp_path, monkeypatch):
    def no_run(*a, **kw):
        raise AssertionError("a replay must not measure")

    monkeypatch.setattr(sr, "run_speed", no_run)
    rec = tmp_path / "recorded"
    rec.mkdir()
    res, note, source = sr.measure_or_load(str(rec), tmp_path / "now" / "speed.json", **ARGS)
    assert res is None and source is None and "has no speed tables" in note
    (rec / "speed.json").write_text(json.dumps(_hand_built()))
    for ref in (rec, rec / "bench.json"):  # the folder, or a file in it
        res, note, source = sr.measure_or_load(str(ref), tmp_path / "now" / "speed.json", **ARGS)
        assert res == _hand_built() and source == "recorded"
        assert "Recorded run" in note and "test CPU" in note
    res, note, source = sr.measure_or_load("", tmp_path / "x.json", **{**ARGS, "short_n": [], "long_n": []})
    assert res is None and source is None and note.startswith("Skipped")
    assert not (tmp_path / "now").exists()


def test_model_and_mode_names_agree_with_their_sources():
    from linrepro import clip
    from linrepro.study import speed

    assert sr.TINY_MODELS == tuple(clip.TINY_MODELS)
    assert sr.MEMORY_MODES == tuple(speed.MEMORY_MODES)


# ----------------------------------------------------------------------------------- reporting
def test_tables_have_readable_columns_and_the_rows_given():
    res = _hand_built()
    t = sr.tables(res)
    assert set(t) == {"short", "long", "train"}
    assert list(t["short"].columns) == list(sr.SHORT_COLUMNS.values())
    assert t["short"]["SDPA / LA"].tolist() == [0.5, 1.5]
    assert list(t["long"].columns) == list(sr.LONG_COLUMNS.values())
    assert t["long"]["memory"].tolist() == ["default", "default", "reused", "reused"]
    assert t["long"]["LA fwd (% of matmul peak)"].tolist() == [40.0, 45.0, 70.0, 75.0]
    assert "eq7 / softmax" in t["train"].columns and t["train"]["eq7 (images/s)"].tolist() == [120.0, 180.0]
    empty = sr.tables({"short": [], "long": [], "train": []})
    assert all(len(df) == 0 for df in empty.values())
    assert list(empty["long"].columns) == list(sr.LONG_COLUMNS.values())


def test_summary_is_the_results_numbers():
    res = _hand_built()
    s = sr.summary(res, source="measured")
    assert s["sdpa_over_la"] == {"17": 0.5, "257": 1.5}
    assert s["la_form"] == {"17": "quadratic", "257": "chunked"}
    assert s["pct_of_matmul_peak"] == {
        "default": {"65536": 40.0, "262144": 45.0},
        "reused": {"65536": 70.0, "262144": 75.0},
    }
    assert s["fwdbwd_over_fwd"] == {"default": {"65536": 3.0, "262144": 3.5}, "reused": {"65536": 3.0, "262144": 3.5}}
    assert s["products_pct_of_matmul_peak"]["reused"] == {"65536": 90.0, "262144": 95.0}
    assert s["train_ratio"] == {"tiny-B": 1.2, "tiny-S": 0.9}
    assert s["train_ratio_iqr"] == {"tiny-B": [1.1, 1.3], "tiny-S": [0.8, 0.95]}
    assert s["train_attention"] == "eq7" and s["matmul_gflops"] == 111.0
    assert s["provenance"] == res["provenance"] and s["source"] == "measured"
    assert json.loads(json.dumps(s)) == s  # plain JSON, as results.json keeps it
    empty = sr.summary({"short": [], "long": [], "train": [], "matmul_gflops": 1.0, "provenance": {}})
    assert empty["sdpa_over_la"] == {} and empty["pct_of_matmul_peak"] == {} and empty["train_ratio"] == {}


def _hlines(fig) -> list[float]:
    return sorted(float(s.y0) for s in fig.layout.shapes if s.y0 == s.y1)


def test_figure_has_a_panel_per_table_and_the_reference_lines():
    res = _hand_built()
    fig = sr.figure(res)
    assert len(fig.data) == 1 + 2 * 2 + 1  # the ratio; LA and products per memory mode; the training ratio
    assert _hlines(fig) == [1.0, 1.0, sr.PEAK_LINE_PCT]
    assert all(s.line.dash == "dash" for s in fig.layout.shapes)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    short = fig.data[0]
    assert list(short.x) == [17, 257] and list(short.y) == [0.5, 1.5]
    la_reused = next(tr for tr in fig.data if tr.name == "LA forward, reused memory")
    assert list(la_reused.y) == [70.0, 75.0]
    train = fig.data[-1]
    assert list(train.x) == ["tiny-S", "tiny-B"]  # S before B
    assert list(train.y) == [0.9, 1.2]
    assert list(train.error_y.array) == pytest.approx([0.05, 0.1])
    assert list(train.error_y.arrayminus) == pytest.approx([0.1, 0.1])


def test_figure_omits_empty_panels():
    res = _hand_built()
    only_short = sr.figure({**res, "long": [], "train": []})
    assert len(only_short.data) == 1 and _hlines(only_short) == [1.0]
    only_long = sr.figure({**res, "short": [], "train": []})
    assert len(only_long.data) == 4 and _hlines(only_long) == [sr.PEAK_LINE_PCT]
    assert len(sr.figure({"short": [], "long": [], "train": []}).data) == 0


def test_styling_keeps_the_figure_readable():
    from linrepro.utils import plotting

    fig = plotting.style(sr.figure(_hand_built()))
    assert fig.data[0].line.color == plotting.NEUTRAL  # a ratio, not an attention type
    assert fig.data[-1].marker.color == plotting.ATTENTION_COLOURS["eq7"]
