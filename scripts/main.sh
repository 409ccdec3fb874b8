#!/usr/bin/env bash
# The main job: train a small classifier on long-tailed digits with several losses and print
# a macro-F1 comparison table. Extra arguments go to examples/digits_lt.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" examples
python examples/digits_lt.py "$@"
