#!/usr/bin/env bash
# Installs the interoperability peers (idempotent), pinned by
# tests/peers/requirements.txt and tests/peers/package-lock.json:
#   Python websockets in the venv .ci/.venv
#   Node ws in tests/peers/node_modules
# tests/interop.rs finds them there (or through AIRWS_PYTHON / AIRWS_NODE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .ci/.venv/bin/python ]; then
  python3 -m venv .ci/.venv
fi
.ci/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
echo "python websockets $(.ci/.venv/bin/python -c 'import websockets; print(websockets.__version__)')"

(cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
echo "node $(node --version), ws $(node -p "require('./tests/peers/node_modules/ws/package.json').version")"
