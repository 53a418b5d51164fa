#!/usr/bin/env bash
# Sets up a virtual environment with radsight[train,test,parity,serve,ray] and runs the test suite.
# torchvision (for torchxrayvision and the CheXNet parity tests) needs the torch build it was made with.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers the integration tests start on loopback: Orthanc with DICOMweb, and Chromium for the web page; and the
# DICOM tools they talk to radsight with: DCMTK (echoscu, storescu, storescp) and dicom3tools (dciodvfy); and
# PostgreSQL for the replica tests (scripts/postgres.sh starts a throwaway cluster).
if ! command -v Orthanc >/dev/null || ! command -v chromium >/dev/null || ! command -v storescu >/dev/null \
        || ! command -v dciodvfy >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb chromium \
            dcmtk dicom3tools postgresql >/dev/null
    else
        echo "note: orthanc/chromium/dcmtk/dicom3tools/postgresql missing and not installable here; their tests will skip" >&2
    fi
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" \
    -e ".[train,test,parity,serve,ray]"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
