#!/usr/bin/env bash
# Installs the pinned third-party Dataverse clients the suite drives (tests/all/clients.rs) into
# target/clients/: a Python virtual environment with Microsoft's SDK and dataverse-api, and an npm
# prefix with dynamics-web-api. Idempotent: a client already at its pinned version is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/clients
mkdir -p "$dir"

PY_PINS=(powerplatform-dataverse-client==1.1.0 dataverse-api==1.4.3)
NPM_PIN=dynamics-web-api@2.5.0

if ! "$dir/venv/bin/python" -c 'import importlib.metadata as m, sys
pins = dict(p.split("==") for p in sys.argv[1:])
sys.exit(any(m.version(n) != v for n, v in pins.items()))' "${PY_PINS[@]}" 2>/dev/null; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PINS[@]}"
fi

if [ "$(node -p 'require(process.argv[1]).version' "$PWD/$dir/node/node_modules/dynamics-web-api/package.json" 2>/dev/null)" != "${NPM_PIN#*@}" ]; then
  npm install --silent --no-audit --no-fund --prefix "$dir/node" "$NPM_PIN"
fi
echo "clients installed in $dir"
