#!/usr/bin/env bash
# Sets up a virtual environment with radsight[train,test] (PyTorch CPU build) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[train,test]"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
