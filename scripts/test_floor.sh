#!/usr/bin/env bash
# The loss core's tests (and its doctests) on the oldest torch the project declares
# (pyproject.toml: torch>=X.Y), in a second environment with only the core's dependencies:
# torch, numpy and the test tools. The compiled kernels are tested on this floor and on the
# current torch (scripts/test.sh); outside that range they fall back to the eager driver.
# Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TORCH_IMBALANCE_FLOOR_VENV:-$root/.venv-floor}"
python="${PYTHON:-python3}"
floor="$(grep -oE '"torch>=[0-9.]+"' "$root/pyproject.toml" | head -1 | grep -oE '[0-9.]+[0-9]')"
if [ ! -x "$venv/bin/python" ]; then
  echo "[torch-imbalance] creating the torch $floor environment in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.torch-imbalance-floor-$floor-$(sha1sum "$root/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[torch-imbalance] installing torch==$floor.* with the loss core's test tools"
  "$venv/bin/python" -m pip install --progress-bar off --quiet "torch==$floor.*" numpy \
    pytest pytest-xdist hypothesis 2> >(grep -v "^WARNING: Location" >&2)
  "$venv/bin/python" -m pip install --progress-bar off --quiet --no-deps -e "$root" \
    2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi
cd "$root"
"$venv/bin/python" -c "import torch; print('[torch-imbalance] loss core on torch', torch.__version__)"
"$venv/bin/python" -m pytest -n 2 -p no:cacheprovider \
  tests/functional tests/losses tests/test_checks.py tests/test_weights.py \
  src/torch_imbalance/functional src/torch_imbalance/losses src/torch_imbalance/weights.py \
  src/torch_imbalance/_checks.py "$@"
