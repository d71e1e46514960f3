#!/usr/bin/env bash
# Create .venv at the repo root and install onnxc (editable) with its test extras
# ($ONNXC_EXTRAS: e.g. "test,ray,dask" for the batch-engine tests, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e ".[${ONNXC_EXTRAS:-test}]"
