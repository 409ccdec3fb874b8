#!/usr/bin/env bash
# Loss speed/memory benchmark against F.cross_entropy and the peers (kornia, MONAI, smp,
# torchvision). Writes benchmarks/results/bench_losses.{md,json}. Arguments go to the script,
# e.g. `bash scripts/bench.sh --shapes seg-19 --no-memory`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" dev,bench
python benchmarks/bench_losses.py "$@"
