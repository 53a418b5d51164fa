#!/usr/bin/env bash
# Start Orthanc with its DICOMweb plugin on loopback: scripts/orthanc.sh DATA_DIR HTTP_PORT DICOM_PORT
# Installs Debian's orthanc and orthanc-dicomweb first when they are missing. Prints Orthanc's PID.
set -euo pipefail
data=${1:?data dir}; http=${2:-8042}; dicom=${3:-4242}
if ! command -v Orthanc >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
fi
mkdir -p "$data/storage"
cat > "$data/orthanc.json" <<JSON
{
  "Name": "radsight-test-pacs",
  "StorageDirectory": "$data/storage",
  "IndexDirectory": "$data/storage",
  "HttpPort": $http,
  "DicomPort": $dicom,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpBindAddress": "127.0.0.1",
  "DicomBindAddress": "127.0.0.1",
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "StableAge": 2,
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
Orthanc "$data/orthanc.json" > "$data/orthanc.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    if curl -sf "http://127.0.0.1:$http/system" >/dev/null; then echo "$pid"; exit 0; fi
    sleep 0.2
done
echo "Orthanc did not start; see $data/orthanc.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
