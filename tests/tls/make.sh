#!/usr/bin/env bash
# Regenerates the test certificates (valid for 100 years):
#   ca.pem                       a test CA (its key is thrown away)
#   localhost.pem / .key         leaf for DNS:localhost and IP:127.0.0.1, signed by the CA
#   wrong-host.pem / .key        leaf for DNS:wrong.example only, signed by the CA
# Keys are PKCS#8 PEM, as native_tls::Identity::from_pkcs8 wants them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -sha256 \
  -subj "/CN=airws test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca.key" -out ca.pem

leaf() { # name subject-alt-names
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$1" \
    -keyout "$tmp/$1.key" -out "$tmp/$1.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$2" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.pem -CAkey "$tmp/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
    -days 36500 -sha256 -extfile "$tmp/$1.ext" -out "$1.pem"
  openssl pkcs8 -topk8 -nocrypt -in "$tmp/$1.key" -out "$1.key"
}
leaf localhost "DNS:localhost,IP:127.0.0.1"
leaf wrong-host "DNS:wrong.example"
