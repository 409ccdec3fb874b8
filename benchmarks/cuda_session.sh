#!/usr/bin/env bash
# One GPU session's checks: the CUDA tests, then the loss benchmark on CUDA.
# Run from the repository root on a machine with a CUDA device and PyTorch (a lent GPU machine
# has PyTorch, timm, Lightning and torchmetrics but no network: the other harness and peer
# packages come as wheels in .whl/, see docs/benchmarks.md "CUDA").
#
#   bash benchmarks/cuda_session.sh tests            # tests/test_cuda.py
#   bash benchmarks/cuda_session.sh bench [ARGS...]   # bench_losses.py --device cuda ARGS
#   bash benchmarks/cuda_session.sh overhead          # bench_overhead.py: per call vs F.cross_entropy
#   bash benchmarks/cuda_session.sh loader            # bench_loader.py: loader vs training step
#
# A lent machine's torch may be outside the tested range (2.11 in 2026): "auto" then runs the
# eager driver; TORCH_IMBALANCE_COMPILE=always times the compiled kernels.
#
# Results go to $OUT (default benchmarks/results/cuda).
set -uo pipefail
stage="${1:-tests}"
shift || true
out="${OUT:-benchmarks/results/cuda}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
case "$stage" in
  tests)
    python3 -m pytest tests/test_cuda.py -q -n 8 -p no:cacheprovider -o addopts="" \
      --junitxml="$out/test_cuda.xml" 2>&1 | tail -40 | tee "$out/test_cuda.txt"
    ;;
  bench)
    python3 benchmarks/bench_losses.py --device cuda --out "$out" "$@" 2>&1 \
      | tee "$out/bench_losses.log" | grep -v "^\[" | tail -150
    ;;
  overhead)
    python3 benchmarks/bench_overhead.py --device cuda --shapes 32x10,4x4x512x512 --out "$out" \
      "$@" 2>&1 | tee "$out/bench_overhead.log" | tail -60
    ;;
  loader)
    python3 benchmarks/bench_loader.py --device cuda --out "$out" "$@" 2>&1 \
      | tee "$out/bench_loader.log" | tail -60
    ;;
  *)
    echo "unknown stage $stage (tests, bench, overhead or loader)" >&2
    exit 2
    ;;
esac
