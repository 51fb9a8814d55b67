#!/usr/bin/env bash
# Installs the interoperability peers of tests/interop.rs (idempotent; run it
# again at any time), at the versions pinned in tests/peers/:
#   Python websockets (requirements.txt)  -> the venv .ci/.venv
#   Node ws (package.json + package-lock)  -> tests/peers/node_modules
#
#   bash .ci/peers.sh
#   cargo test --features interop --test interop
#
# The tests find the peers there, relative to the crate root, or through
#   AIRWS_PYTHON  a Python that has websockets (default .ci/.venv/bin/python)
#   AIRWS_NODE    the node binary (default: node on PATH; ws is always taken
#                 from tests/peers/node_modules)
# Needs python3 (with venv: Debian's python3-venv, installed here when
# missing and this runs as root) and node with npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.ci/.venv

# A venv whose pip does not work (say, made before python3-venv was
# installed) is made again.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "peers.sh: python3 -m venv fails; installing python3-venv"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    else
      echo "peers.sh: 'python3 -m venv' fails: install python3-venv (Debian) and run again" >&2
      exit 1
    fi
  fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r tests/peers/requirements.txt

(
  cd tests/peers
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
)

echo "python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')," \
  "websockets $("$venv/bin/python" -c 'import websockets; print(websockets.__version__)')" \
  "in $venv"
echo "node $(node --version)," \
  "ws $(node -p "require('./tests/peers/node_modules/ws/package.json').version")" \
  "in tests/peers/node_modules"
echo "peers ready: cargo test --features interop --test interop"
