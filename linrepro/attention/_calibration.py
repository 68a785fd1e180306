"""Cost-model coefficients of ``backend="auto"`` (see linrepro.attention.dispatch), fitted to times
measured by ``python -m linrepro.attention.dispatch --calibrate``. Generated: do not edit by hand.
"""

PROVENANCE = {
    "date": "2026-12-01T03:54:09+00:00",
    "torch": "2.14.1+cu130",
    "threads": 2,
    "dtype": "float32",
    "device": {"cpu": "AMD EPYC", "cpu_count": 2, "cuda": None, "torch_threads": 2},
    "git": {"commit": "326ced46ddb5b6bc6f4acd2684dafa21aa89e539", "dirty": True},
}

COEFFICIENTS = {
    "quadratic/full": [0.00013225279233909068, 7.441000606626476e-10, 4.52876641765974e-11, 0.0],
    "reference/full": [0.00034346062228326595, 4.121879765294668e-09, 9.810863620189263e-13, 9.454445330243934e-11],
    "torch/full": [0.00020526660998743343, 8.798665475019137e-10, 2.5383457688867796e-13, 7.703043284146286e-11],
    "quadratic/causal": [0.0001361603928550946, 5.522814723214881e-10, 5.021909483018972e-11, 0.0],
    "reference/causal": [7.475906679524735e-05, 0.0, 1.7915800703313373e-10, 4.905382183934394e-09],
    "torch/causal": [0.0004249890239474951, 6.513801939354113e-09, 2.8281401391590607e-12, 3.698245732009463e-11],
}
