#!/usr/bin/env bash
# The loss study behind docs/results.md (benchmarks/study.py): pretrained EfficientNet-Lite0 on
# br35h-lt, a low-data br35h-lt and elpv (10 losses); pretrained Unet on dsb2018-nuclei and
# mni152-tissue (Dual Focal and its ablation); 3 seeds. About 4¾ hours on 2 CPU cores. Resumable:
# finished runs are skipped and a killed run resumes, so run it again after an interruption.
# Extra arguments go to `benchmarks/study.py run`, e.g. `--studies dsb2018-nuclei --seeds 0`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" harness,data,pretrained
python benchmarks/study.py run "$@"
