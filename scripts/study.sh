#!/usr/bin/env bash
# The loss study behind docs/results.md (benchmarks/study.py, configurations of `compare`):
# pretrained EfficientNet-Lite0 on br35h-lt, elpv and a low-data br35h-lt (9 losses); pretrained
# Unet on dsb2018-nuclei and mni152-tissue in rotating folds (Dual Focal and its ablation); 5
# seeds, deterministic. About 5 hours on 2 CPU cores. Resumable: finished runs (kept in
# benchmarks/results/study) are skipped and a killed run resumes, so run it again after an
# interruption, in as many sittings as it takes.
# Extra arguments go to `benchmarks/study.py run`, e.g. `--studies dsb2018-nuclei --seeds 0`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" harness,data,pretrained
python benchmarks/study.py run "$@"
