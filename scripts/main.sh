#!/usr/bin/env bash
# The main job: a quick comparison of losses on br35h-lt (real brain-MRI slices, training split
# long-tailed 10:1), timm resnet18 from scratch, one seed, small images, a few epochs; prints the
# summary table and where the plots are. Finished runs are kept and skipped, so running it again
# prints the table at once (delete runs/quick-compare to start over). Extra arguments go to
# `torch-imbalance compare` (see `torch-imbalance compare --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" harness,data
torch-imbalance compare --dataset br35h-lt --losses ce,focal,ldam_drw,lmf --seeds 0 \
  --model resnet18 --image-size 64 --epochs 6 --batch-size 32 --lr 1e-3 \
  --out runs/quick-compare "$@"
