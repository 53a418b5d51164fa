#!/usr/bin/env bash
# Sets up a virtual environment with radsight[train,test,parity] and runs the test suite.
# torchvision (for torchxrayvision and the CheXNet parity tests) needs the torch build it was made with.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" \
    -e ".[train,test,parity,serve]"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
