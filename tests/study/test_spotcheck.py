"""The paper-shape spot check (linrepro.study.spotcheck), rehearsed on tiny shapes: it passes on the real
kernels and fails when one head's output is wrong. On a GPU, device-check.sh runs it at N = 2^22."""

import pytest
import torch

from linrepro import attention
from linrepro.study import spotcheck

TINY = dict(log2n=6, batch=2, heads=2, dim=16, dtype="float32", device="cpu")


def _cuda_or_interpreter():
    import os

    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")


def test_spot_check_passes_on_the_kernels():
    _cuda_or_interpreter()
    rows = spotcheck.check(**TINY)
    assert len(rows) == 4 and all(r["ok"] and r["finite"] for r in rows), rows
    assert rows[0]["head"] == [1, 1] and rows[0]["first_element_of_head"] == 3 * 64 * 16


def test_spot_check_fails_when_the_last_head_is_wrong(monkeypatch):
    _cuda_or_interpreter()
    real = attention.linear_attention

    def off_in_last_head(q, k, v, **kw):
        o = real(q, k, v, **kw)
        if kw.get("backend") == "triton":
            bump = torch.zeros_like(o)
            bump[-1, -1, -1] = 0.05 * o.detach().abs().max()
            o = o + bump
        return o

    monkeypatch.setattr(attention, "linear_attention", off_in_last_head)
    rows = spotcheck.check(**TINY, variants=("eq7",), causal=(False,))
    assert not rows[0]["ok"] and rows[0]["rel_err"]["o"] > rows[0]["tolerance"]


def test_spot_check_rejects_an_unknown_dtype():
    with pytest.raises(ValueError, match="float64"):
        spotcheck.check(**{**TINY, "dtype": "float64"})
