#!/usr/bin/env bash
# The CUDA checks and benchmarks in one run, for a machine with an NVIDIA GPU (the CI
# machines have none: every test here is skipped there). Each step's output goes to the
# terminal and to "$OUT/<step>.txt" ($OUT defaults to ./gpu-check); a failing step does
# not stop the later ones, and the exit status says whether any failed.
#
#     bash scripts/gpu_check.sh            # tests, then solver and generation benches
#     QUICK=1 bash scripts/gpu_check.sh    # tests and the solver bench only
#
# It needs torch with CUDA, transformers, numpy, numba and scikit-learn (Triton for the
# fixed-schedule kernel); not the service's packages: the SDK tests run with their own
# conftest only (--confcutdir), so psycopg and PostgreSQL are not needed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="sdk${PYTHONPATH:+:$PYTHONPATH}"
failed=0

step() {
    local name=$1
    shift
    echo "== $name: $*"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc in $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed=1
}

step device "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
step tests "$PY" -m pytest -c /dev/null --confcutdir=tests/sdk -q -p no:cacheprovider \
    -k "cuda or triton or graph" \
    tests/sdk/test_solver.py tests/sdk/test_solver_fixed.py tests/sdk/test_solver_host_rounds.py \
    tests/sdk/test_steering_cuda.py
step solver_bench "$PY" bench/solver_bench.py --device cuda --sklearn-rows 0
step solver_rounds "$PY" bench/solver_rounds.py --device cuda --dtype float16
if [ -z "${QUICK:-}" ]; then
    step steering_overhead "$PY" bench/steering_overhead.py --device cuda --new-tokens 16 --repeats 2
fi
exit "$failed"
