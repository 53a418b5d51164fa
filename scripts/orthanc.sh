#!/usr/bin/env bash
# Start Orthanc with its DICOMweb plugin, reachable on loopback only: scripts/orthanc.sh DATA_DIR HTTP_PORT DICOM_PORT
# Installs Debian's orthanc, orthanc-dicomweb and socat first when they are missing. Prints the PID of a process
# group holding everything it started (kill -- -PID stops it all).
#
# Debian's Orthanc (1.10.1) has no bind-address option (its binary knows no "HttpBindAddress" or
# "DicomBindAddress"; unknown options are ignored) and listens on 0.0.0.0. So Orthanc runs in a network namespace of
# its own, where nothing outside can reach it, and socat bridges 127.0.0.1:HTTP_PORT and :DICOM_PORT to it through
# UNIX sockets in DATA_DIR. Where namespaces cannot be made (no CAP_SYS_ADMIN), Orthanc listens on every address
# and the script says so on stderr.
set -euo pipefail
data=$(realpath -m "${1:?data dir}"); http=${2:-8042}; dicom=${3:-4242}
missing=()
command -v Orthanc >/dev/null || missing+=(orthanc orthanc-dicomweb)
command -v socat >/dev/null || missing+=(socat)
if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$data/storage"
isolated=1
unshare --net true 2>/dev/null || isolated=0
inner_http=$http; inner_dicom=$dicom
if ((isolated)); then inner_http=8042; inner_dicom=4242; fi
cat > "$data/orthanc.json" <<JSON
{
  "Name": "radsight-test-pacs",
  "StorageDirectory": "$data/storage",
  "IndexDirectory": "$data/storage",
  "HttpPort": $inner_http,
  "DicomPort": $inner_dicom,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "StableAge": 2,
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
rm -f "$data/http.sock" "$data/dicom.sock"
if ((isolated)); then
    # inside the namespace: loopback up, UNIX sockets in front of Orthanc's ports; outside: loopback-only bridges
    setsid bash -c "
        unshare --net bash -c '
            ip link set lo up
            socat UNIX-LISTEN:$data/http.sock,fork TCP:127.0.0.1:$inner_http &
            socat UNIX-LISTEN:$data/dicom.sock,fork TCP:127.0.0.1:$inner_dicom &
            exec Orthanc $data/orthanc.json' &
        socat TCP-LISTEN:$http,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:$data/http.sock &
        socat TCP-LISTEN:$dicom,bind=127.0.0.1,reuseaddr,fork UNIX-CONNECT:$data/dicom.sock &
        wait" > "$data/orthanc.log" 2>&1 < /dev/null &
else
    echo "orthanc.sh: cannot make a network namespace here; Orthanc listens on every address (ports $http, $dicom)" >&2
    setsid Orthanc "$data/orthanc.json" > "$data/orthanc.log" 2>&1 < /dev/null &
fi
pid=$!
for _ in $(seq 150); do
    if curl -sf "http://127.0.0.1:$http/system" >/dev/null; then echo "$pid"; exit 0; fi
    sleep 0.2
done
echo "Orthanc did not start; see $data/orthanc.log" >&2
kill -- -"$pid" 2>/dev/null || true
exit 1
