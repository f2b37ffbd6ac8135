#!/usr/bin/env bash
# The one prepared device check of issue 14, for a bare lent GPU machine without network:
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# 1. installs this checkout (no network: --no-deps --no-build-isolation --no-index -e .)
# 2. fastnn info (card, compute capability, CUDA versions, which extra fits)
# 3. pytest --require-gpu -m gpu (every GPU test; a skip is a failure) + a short CPU subset
# 4. benchmarks/gpu_bench.py (churn / mid / big vs PyTorch eager and PyTorch CUDA graph)
#
# Everything lands in OUTDIR: env.txt, install.log, info.txt, test.log, bench.log,
# results.json, results.md, summary.txt. Bounded to 8 minutes in all: each stage has a
# timeout, and the benchmark gets what is left (its own budget stops it in time).
set -u -o pipefail

OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TOTAL=${GPU_CHECK_SECONDS:-470}
START=$(date +%s)
export PYTHONUNBUFFERED=1 CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/fastnn-numba-cache}
export FASTNN_REQUIRE_GPU=1

left() { echo $((TOTAL - ($(date +%s) - START))); }
stage() { echo "== $1 ($(left) s left)" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

stage "environment"
{
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi not available"
  "$PY" -c "import cupy; cupy.show_config()" 2>&1 || echo "cupy not importable"
  "$PY" -m pip list 2>/dev/null | grep -iE "cupy|torch|numpy|numba|pytest|nvidia" || true
} > "$OUT/env.txt" 2>&1

stage "install (no network)"
if ! timeout 120 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    > "$OUT/install.log" 2>&1; then
  echo "install FAILED (see install.log)" | tee -a "$OUT/summary.txt"
fi

stage "fastnn info"
timeout 60 "$PY" -m fastnn.cli info > "$OUT/info.txt" 2>&1
cat "$OUT/info.txt"

stage "GPU tests"
timeout 200 "$PY" -m pytest --require-gpu -q -p no:cacheprovider -m gpu tests 2>&1 \
  | tee "$OUT/test.log" | tail -5
echo "gpu tests exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

stage "CPU subset"
timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda_sources.py \
  tests/test_gpu_info.py tests/test_gpu_bench.py 2>&1 | tee -a "$OUT/test.log" | tail -3
echo "cpu subset exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"

stage "benchmarks"
BUDGET=$(( $(left) - 45 ))
if [ "$BUDGET" -gt 20 ]; then
  timeout $(( BUDGET + 40 )) "$PY" benchmarks/gpu_bench.py --out "$OUT" --budget-s "$BUDGET" \
    2>&1 | tee "$OUT/bench.log" | tail -40
  echo "bench exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
else
  echo "no time left for the benchmarks" | tee -a "$OUT/summary.txt"
fi
stage "done after $(( $(date +%s) - START )) s"
