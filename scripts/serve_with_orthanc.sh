#!/usr/bin/env bash
# One command: Orthanc (DICOMweb) and radsight serve on loopback, radsight polling Orthanc and storing its
# SR and overlay back. Usage: scripts/serve_with_orthanc.sh [DATA_DIR]   (token: $RADSIGHT_API_TOKEN)
# Then send a radiograph to Orthanc:  curl -X POST http://127.0.0.1:8042/instances --data-binary @cxr.dcm
# and open http://127.0.0.1:8000 for the worklist.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-radsight-data}
: "${RADSIGHT_API_TOKEN:=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')}"
export RADSIGHT_API_TOKEN
if [ ! -x .venv/bin/radsight ] || ! .venv/bin/python -c 'import fastapi, highdicom' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[serve,example]"
fi
orthanc_pid=$(bash scripts/orthanc.sh "$data/orthanc" 8042 4242)
trap 'kill -- -$orthanc_pid 2>/dev/null || true' EXIT
echo "Orthanc on http://127.0.0.1:8042 (process group $orthanc_pid); radsight on http://127.0.0.1:8000"
echo "API token (the page asks for it once): $RADSIGHT_API_TOKEN"
.venv/bin/radsight serve --data-dir "$data" --orthanc http://127.0.0.1:8042 --port 8000
