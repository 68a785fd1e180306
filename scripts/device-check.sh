#!/usr/bin/env bash
# The one prepared GPU check, for a lent H200 (see README "A lent GPU"). Runs from the repository
# root of an UNINSTALLED copy of the tree, on the bare image (torch, triton, numpy, scipy, pandas,
# pyyaml, tqdm, pytest, pytest-xdist, pytest-timeout, hypothesis; no open_clip, papermill, plotly).
#
#   bash scripts/device-check.sh             # on the GPU: about 8 minutes, each step under its own timeout
#   bash scripts/device-check.sh --dry-run   # on CPU under TRITON_INTERPRET=1, tiny shapes, < 1 minute (CI)
#
# Steps (real run; the budget of each is its `timeout`):
#   1. env      30 s   nvidia-smi; import linrepro.kernels, attention, bench, spotcheck
#   2. tests   150 s   Triton kernels vs float64 in fp32/fp16/bf16 on CUDA, pytest -n 8, 120 s per test,
#                      LINREPRO_NAN_POISON=1 (outputs and scratch start as NaN: unwritten rows show)
#   3. spot     60 s   the paper's shape N=2^22, B=4, H=8, D=64, bf16: last head vs float64 on the GPU
#   4. bench   360 s   shortened h200 sweep (forward; Triton LA eq4/eq7 and SDPA flash, N = 2^10..2^22; softmax past
#                      2^20 timed on one (batch, head) slice x B*H, with the slice check at 2^19; 20 runs, 30 s a point).
#                      Plan it without a GPU: python -m linrepro.runner.bench --profile h200 --plan <same flags>
# Writes to $OUT (or outputs/device-check/<stamp>/): device-check.log, spotcheck.json, and
# <run-id>/ = a finished 02_attention_timing run (bench.json, bench.csv, results.json, run.json,
# params.yaml, provenance.json). Commit it as outputs/reference/h200/02_attention_timing/<run-id>/.
set -uo pipefail
DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    *) echo "usage: bash scripts/device-check.sh [--dry-run]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
stamp=$(date -u +%Y%m%d-%H%M%S)
dest=${OUT:-outputs/device-check/$stamp}
run_id="$stamp-device-check"
mkdir -p "$dest/$run_id"
log="$dest/device-check.log"
summary=$(mktemp)
: >"$log"

if [ $DRY = 1 ]; then
    export TRITON_INTERPRET=1
    T_ENV=60 T_TESTS=60 T_SPOT=60 T_BENCH=60
    tests=(-p no:cacheprovider -q -n 2 --timeout 60 tests/kernels/test_triton_kernels.py tests/study/test_spotcheck.py
           -k "poison or float64 or spot")
    spot=(--log2n 7 --batch 2 --heads 2 --dim 16 --dtype float32 --device cpu)
    bench=(--device cpu --la-log2 6 7 --softmax-log2 6 6 --runs 1 --warmup 0 --budget-s 2
           --impls la-triton-eq7 la-torch-eq7 sdpa-math)
else
    export TRITON_INTERPRET=0
    T_ENV=30 T_TESTS=150 T_SPOT=60 T_BENCH=360
    tests=(-p no:cacheprovider -q -n 8 --timeout 120 tests/kernels/test_triton_kernels.py tests/study/test_spotcheck.py)
    spot=()
    bench=(--la-log2 10 22 --softmax-log2 10 22 --runs 20 --warmup 2 --budget-s 30
           --impls la-triton-eq4 la-triton-eq7 sdpa-flash)
fi

step() {  # step NAME LIMIT_S COMMAND...: run under timeout, log everything, note rc and seconds
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
    timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    local note=""
    [ $rc = 124 ] || [ $rc = 137 ] && note=" (timed out)"
    echo "$name|$rc$note|$((SECONDS - t0))" >>"$summary"
    tail -n 4 "$log"
}

step env "$T_ENV" bash -c "(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv) || echo 'no nvidia-smi';
    $PY -c 'import sys, torch, triton, linrepro, linrepro.kernels, linrepro.attention, linrepro.study.bench, linrepro.study.spotcheck
print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"triton\", triton.__version__, \"cuda\", torch.cuda.is_available())
print(\"linrepro.kernels from\", linrepro.kernels.__file__)'"
LINREPRO_NAN_POISON=1 step tests "$T_TESTS" "$PY" -m pytest "${tests[@]}"
step spot "$T_SPOT" "$PY" -m linrepro.study.spotcheck --out "$dest" "${spot[@]}"
step bench "$T_BENCH" "$PY" -m linrepro.runner.bench --profile h200 --modes fwd --out "$dest/$run_id" --record "${bench[@]}"

echo
echo "device check ($([ $DRY = 1 ] && echo dry run on CPU || echo GPU)): step | exit status | seconds" | tee -a "$log"
awk -F'|' '{printf "  %-6s %-16s %s s\n", $1, $2, $3}' "$summary" | tee -a "$log"
grep -h -E "passed|failed|error" "$log" | grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed)" | tail -n 1 | tee -a "$log"
grep -h -E "^(eq4|eq7) causal" "$log" | tee -a /dev/null
grep -h -A 40 "^log-log slopes" "$log" | grep -E "^  |speed-up" | head -n 20
echo "results in $dest (run folder $run_id)"
failed=$(awk -F'|' '$2 != "0"' "$summary" | wc -l)
rm -f "$summary"
[ "$failed" = 0 ]
