#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the project with extras.
# Usage: source scripts/env.sh EXTRAS      e.g. `source scripts/env.sh dev,examples`
# Re-installs only when pyproject.toml or the extras change. Set TORCH_IMBALANCE_VENV to use
# another environment, PYTHON to pick the interpreter that creates it (Python >= 3.10).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TORCH_IMBALANCE_VENV:-$root/.venv}"
extras="${1:-dev}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[torch-imbalance] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.torch-imbalance-$(echo "$extras" | tr ',' '-')-$(sha1sum "$root/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[torch-imbalance] installing the project with extras [$extras] (first run: torch is large, a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
  "$venv/bin/python" -m pip install --progress-bar off -e "$root[$extras]" \
    2> >(grep -v "^WARNING: Location" >&2) | grep -E "^(Successfully|ERROR)" || true
  "$venv/bin/python" -c "import torch_imbalance" # fail here, clearly, if the install did not work
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
