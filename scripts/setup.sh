#!/usr/bin/env bash
# Create .venv at the repo root and install onnxc (editable) with its test extras
# ($ONNXC_EXTRAS: e.g. "test,ray,dask" for the batch-engine tests, as .ci/run does).
# Afterwards the command line is .venv/bin/onnxc (or `source .venv/bin/activate`, then onnxc).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
# setuptools says "Editable installation ... be careful with folders named like your package" on
# every editable install of a package-dir layout (compiler/ is the onnxc package): information
# only, and no such folder exists here.  Nothing else is silenced.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/pip install -q -e ".[${ONNXC_EXTRAS:-test}]"
