#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# -n: one pytest worker per core (most of a test's time is the C compiler, one process each);
# --durations: the slowest tests in the log, since CI must stay under its 40 minutes
.venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-auto}" --durations=25 "$@"
