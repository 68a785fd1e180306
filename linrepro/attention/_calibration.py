"""Cost-model coefficients of ``backend="auto"`` (see linrepro.attention.dispatch), fitted to times
measured by ``python -m linrepro.attention.dispatch --calibrate``. Generated: do not edit by hand.
"""

PROVENANCE = {
    "date": "2026-12-01T11:30:09+00:00",
    "torch": "2.14.1+cu130",
    "threads": 2,
    "dtype": "float32",
    "device": {"cpu": "AMD EPYC", "cpu_count": 2, "cuda": None, "torch_threads": 2},
    "git": {"commit": "ce6c0fea63b38ca5fc817663bcdc1259e0634821", "dirty": True},
}

COEFFICIENTS = {
    "quadratic/full": [0.00013803388496273864, 6.272429563129187e-11, 4.719564904349993e-11, 1.0948706580149943e-11],
    "reference/full": [0.00043093322482227065, 4.162645876514916e-09, 1.1049946839344751e-12, 6.935786368627821e-11],
    "torch/full": [0.00019179683207574537, 1.0031900691300041e-09, 1.839966957459798e-13, 7.707960056724162e-11],
    "quadratic/causal": [0.0001457087577975059, 6.212424459930944e-10, 4.816139473601087e-11, 0.0],
    "reference/causal": [6.356592131634147e-05, 0.0, 2.0565104483782463e-10, 4.563467889815165e-09],
    "torch/causal": [0.00047111352545360484, 6.864743265145577e-09, 2.271130810820191e-12, 1.4400298991281072e-11],
}
