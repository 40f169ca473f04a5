#!/usr/bin/env bash
# The dashboard plugin's unit tests, in the Horizon venv (tests/dashboard
# makes it: horizon and trove-dashboard 27.0.0 from PyPI).
# Usage: packaging/dashboard/tests/run.sh PYTHON
set -euo pipefail
python=${1:?usage: run.sh PYTHON (the Horizon venv python)}
cd "$(dirname "$0")"
PYTHONPATH=../src "$python" -m pytest -q -p no:cacheprovider .
