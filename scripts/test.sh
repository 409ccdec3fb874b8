#!/usr/bin/env bash
# The full test suite: unit, reference, property, distributed and compile tests, doctests of
# every public docstring, lint, and line coverage of the package (must stay >= 90 %).
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh" dev
ruff check src tests benchmarks
# Types: the whole package, the loss core strictly ([tool.mypy] in pyproject.toml).
mypy
# Layering: the loss core imports no harness module or library, the engine has no import cycle
# ([tool.importlinter] in pyproject.toml; imports inside functions count).
lint-imports --no-cache
python -m pytest -n 2 --dist worksteal --cov=torch_imbalance --cov-report=term-missing:skip-covered \
  --cov-fail-under=90 "$@"
# The release check: sdist and wheel built and checked, the wheel installed (not editable) in an
# environment of its own, the README's example and `torch-imbalance datasets` run from it.
bash "$(dirname "${BASH_SOURCE[0]}")/test_wheel.sh"
