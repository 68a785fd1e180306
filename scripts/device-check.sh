#!/usr/bin/env bash
# One prepared GPU check (run from the repo root on a CUDA machine; see ../shared/device/README.md):
#  1. every Triton kernel against the float64 reference in fp32, fp16 and bf16 (the CPU tests, compiled for real);
#  2. the forward timing sweep at the paper's shape (B=4, H=8, D=64, bf16), LA backends and SDPA backends,
#     with the device copy bandwidth measured in the same run.
# Results go to $OUT (or outputs/reference/<gpu>/<date>/): pytest log, bench.json, bench.csv.
set -uo pipefail
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name(0).split()[-1].lower())" 2>/dev/null || echo gpu)
dest=${OUT:-outputs/reference/$gpu/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$dest"
python3 -m pytest -q tests/test_triton_kernels.py tests/test_attention.py 2>&1 | tail -30 | tee "$dest/kernel-tests.log"
python3 -m linrepro.bench --profile h200 --device cuda --out "$dest" --modes fwd \
    --la-log2 ${LA_LOG2:-10 22} --softmax-log2 ${SM_LOG2:-10 17} --warmup ${WARMUP:-20} --runs ${RUNS:-100} \
    --budget-s ${BUDGET_S:-20} 2>&1 | tee "$dest/bench.log"
echo "results in $dest"
