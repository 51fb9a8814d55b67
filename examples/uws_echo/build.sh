#!/usr/bin/env bash
# Build the uWebSockets echo server used by examples/bench.rs.
#
# Usage: UWS_SRC=/path/to/uWebSockets bash examples/uws_echo/build.sh [OUTPUT]
#
# UWS_SRC must be a uWebSockets checkout with its uSockets submodule checked
# out at "$UWS_SRC/uSockets". OUTPUT defaults to target/uws_echo.
# Extra compiler flags may be passed via CXXFLAGS (e.g. CXXFLAGS=-march=native).
set -euo pipefail

usage() {
    echo "usage: UWS_SRC=/path/to/uWebSockets bash $0 [OUTPUT]" >&2
    echo "  UWS_SRC: uWebSockets checkout with uSockets at \$UWS_SRC/uSockets" >&2
    echo "  OUTPUT:  path of the binary to build (default: target/uws_echo)" >&2
}

if [[ -z "${UWS_SRC:-}" ]]; then
    usage
    exit 2
fi
if [[ ! -f "$UWS_SRC/src/App.h" || ! -f "$UWS_SRC/uSockets/Makefile" ]]; then
    echo "error: $UWS_SRC does not look like a uWebSockets checkout with uSockets inside" >&2
    usage
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-target/uws_echo}"
mkdir -p "$(dirname "$out")"

CC="${CC:-cc}"
CXX="${CXX:-g++}"

# uSockets: its Makefile's default target builds uSockets.a (and *.o) with
# -O3 -flto, and with -DLIBUS_NO_SSL when no WITH_*SSL variable is set to 1.
make -C "$UWS_SRC/uSockets" CC="$CC" WITH_OPENSSL=0 WITH_BORINGSSL=0 WITH_WOLFSSL=0

# uWebSockets is header-only. Compression is disabled in echo.cpp, so build
# with UWS_NO_ZLIB (as upstream's WITH_ZLIB=0 does) and skip -lz.
# -flto matches upstream's default build (uSockets.a holds LTO objects).
# shellcheck disable=SC2086
"$CXX" -O3 -flto=auto -std=c++20 -DUWS_NO_ZLIB -DLIBUS_NO_SSL \
    -Wall -Wextra ${CXXFLAGS:-} \
    -I"$UWS_SRC/src" -I"$UWS_SRC/uSockets/src" \
    "$here/echo.cpp" "$UWS_SRC/uSockets/uSockets.a" \
    -o "$out"

echo "built $out"
