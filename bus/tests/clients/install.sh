#!/usr/bin/env bash
# Installs the official Azure SDKs the AMQP tests drive (amqp/tests/sdk.rs), hyco-https (bus/tests/hyco.rs)
# and the REST-era libraries bus/tests/legacy_clients.rs and the management tests (amqp/tests/manage_sdk.rs)
# drive, into target/bus-clients/,
# pinned, with the ordinary clients (npm, pip). Idempotent: a second run with everything present does nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
dest="${WEFT_BUS_CLIENTS:-$root/target/bus-clients}"
mkdir -p "$dest/node" "$dest/python"

node_pkgs=("@azure/service-bus@7.9.5" "@azure/event-hubs@6.0.4" "hyco-https@1.4.5" "azure-sb@0.11.2")
# True when every pinned npm package is installed at its version.
node_current() {
    local spec name version
    for spec in "${node_pkgs[@]}"; do
        name="${spec%@*}" version="${spec##*@}"
        grep -q "\"version\": \"$version\"" "$dest/node/node_modules/$name/package.json" 2>/dev/null || return 1
    done
}
if command -v npm >/dev/null; then
    if ! node_current; then
        (cd "$dest/node" && [ -f package.json ] || echo '{"private":true}' > package.json
         npm install --no-audit --no-fund --silent "${node_pkgs[@]}")
    fi
else
    echo "install.sh: npm not found, the Node SDK tests will be skipped" >&2
fi

py_pkgs=("azure-servicebus==7.15.0" "azure-eventhub==5.15.1")
if command -v python3 >/dev/null; then
    if ! PYTHONPATH="$dest/python" python3 -c '
import sys, azure.servicebus as s, azure.eventhub as e
sys.exit(s.__version__ != "7.15.0" or e.__version__ != "5.15.1")' 2>/dev/null; then
        python3 -m pip install --quiet --disable-pip-version-check --target "$dest/python" --upgrade "${py_pkgs[@]}"
    fi
else
    echo "install.sh: python3 not found, the Python SDK tests will be skipped" >&2
fi
# Microsoft's REST-era libraries (bus/tests/legacy_clients.rs): npm azure-sb and PyPI azure-servicebus 0.21,
# whose package name is the 7.x SDK's, so both live apart under legacy/.
legacy="$dest/legacy"
mkdir -p "$legacy/node" "$legacy/python"
if command -v npm >/dev/null; then
    if ! grep -q '"version": "0.11.2"' "$legacy/node/node_modules/azure-sb/package.json" 2>/dev/null; then
        (cd "$legacy/node" && [ -f package.json ] || echo '{"private":true}' > package.json
         npm install --no-audit --no-fund --silent "azure-sb@0.11.2")
    fi
fi
if command -v python3 >/dev/null; then
    if ! grep -qx "Version: 0.21.1" "$legacy"/python/azure_servicebus-0.21.1.dist-info/METADATA 2>/dev/null; then
        python3 -m pip install --quiet --disable-pip-version-check --target "$legacy/python" --upgrade \
            "azure-servicebus==0.21.1"
    fi
fi
echo "bus clients in $dest"
