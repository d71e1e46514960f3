#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# -n: one pytest worker per core (most of a test's time is the C compiler, one process each)
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-auto}" "$@"
