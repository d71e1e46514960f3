#!/usr/bin/env bash
# Install torch, torchvision and transformers into PYTHON's environment, then export models/.
# torchvision goes in with --no-deps: it would otherwise pull another torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" -m pip install -q -r scripts/requirements-models.txt
"$PY" -m pip install -q --no-deps torchvision==0.28.0
"$PY" scripts/export_models.py "${@:2}"
