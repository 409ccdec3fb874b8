#!/usr/bin/env bash
# The release check: build the sdist and the wheel from this checkout, check them with twine,
# install the wheel (not editable) with the harness and data extras into an environment of its
# own, and run, from outside the checkout, the README's "Use" example and `torch-imbalance
# datasets`. The environment is kept between runs (its dependencies are large), but the
# package in it is always the wheel just built.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/env.sh" dev  # build and twine
venv="${TORCH_IMBALANCE_WHEEL_VENV:-$root/.venv-wheel}"
python="${PYTHON:-python3}"
dist="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$dist" "$work"' EXIT

echo "[torch-imbalance] building the sdist and the wheel"
python -m build --sdist --wheel --outdir "$dist" "$root" > "$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; exit 1; }
python -m twine check --strict "$dist"/*
wheel="$(ls "$dist"/torch_imbalance-*.whl)"
python - "$wheel" <<'PY' || exit 1
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
missing = [
    wanted
    for wanted, found in [
        ("torch_imbalance/py.typed", "torch_imbalance/py.typed" in names),
        ("the LICENSE", any(name.endswith(".dist-info/licenses/LICENSE") for name in names)),
    ]
    if not found
]
sys.exit(f"missing from the wheel: {', '.join(missing)}" if missing else 0)
PY

if [ ! -x "$venv/bin/python" ]; then
  echo "[torch-imbalance] creating the wheel's environment in $venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip uninstall --quiet --yes torch-imbalance 2>/dev/null || true
"$venv/bin/python" -m pip install --progress-bar off --quiet "$wheel[harness,data]" \
  2> >(grep -v "^WARNING: Location" >&2)

# The README's "Use" example, from a folder where the checkout is not importable.
sed -n '/^## Use$/,/^## /p' "$root/README.md" | sed -n '/^```python$/,/^```$/p' | sed '1d;$d' \
  > "$work/readme_use.py"
cat >> "$work/readme_use.py" <<'PY'
import pathlib
where = pathlib.Path(ti.__file__).resolve()
assert "site-packages" in where.parts, f"not the installed wheel: {where}"
print(f"[torch-imbalance] README example ran on the wheel ({ti.__version__}, {where.parent})")
PY
cd "$work"
"$venv/bin/python" readme_use.py
"$venv/bin/torch-imbalance" datasets --no-counts > datasets.txt
grep -q "digits-lt" datasets.txt || { cat datasets.txt; exit 1; }
echo "[torch-imbalance] wheel check passed: $(basename "$wheel")"
