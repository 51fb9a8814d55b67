#!/usr/bin/env bash
# Regenerates the test certificates in this directory (see README.md).
#   ca.pem                  a test CA (its key is thrown away)
#   localhost.pem / .key    leaf for DNS:localhost and IP:127.0.0.1, signed by the CA
#   wrong-host.pem / .key   leaf for DNS:wrong.example only, signed by the CA
#   localhost.p12           the localhost key, its certificate and the CA in
#                           PKCS#12, password "airws test"
# Keys are RSA 2048 in PKCS#8 PEM, as native_tls::Identity::from_pkcs8 wants.
# Validity: 2000-01-01 to 2126-01-01, fixed rather than "from now", so that a
# machine whose clock is behind the one that made them still accepts them
# (and so that macOS's 825-day rule, for certificates issued after
# 2019-07-01, does not apply).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

start=20000101000000Z
end=21260101000000Z
touch "$tmp/index.txt"
cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test_ca
[test_ca]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_localhost]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,IP:127.0.0.1
[v3_wrong-host]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:wrong.example
CNF
echo 1000 > "$tmp/serial"

# The CA: a key, a request, and the request signed by its own key.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/ca.key"
openssl req -new -key "$tmp/ca.key" -subj "/CN=airws test CA" -out "$tmp/ca.csr"
openssl ca -batch -notext -config "$tmp/ca.cnf" -selfsign -keyfile "$tmp/ca.key" \
  -startdate "$start" -enddate "$end" -extensions v3_ca -in "$tmp/ca.csr" -out ca.pem

# A leaf: name, common name; its extensions are the [v3_<name>] section.
leaf() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$tmp/$1.csr"
  openssl ca -batch -notext -config "$tmp/ca.cnf" -cert ca.pem -keyfile "$tmp/ca.key" \
    -startdate "$start" -enddate "$end" -extensions "v3_$1" -in "$tmp/$1.csr" -out "$1.pem"
}
leaf localhost localhost
leaf wrong-host wrong.example

# The localhost identity as PKCS#12, with the algorithms every native-tls
# backend reads (3DES and a SHA-1 MAC rather than OpenSSL 3's AES default).
openssl pkcs12 -export -in localhost.pem -inkey localhost.key -certfile ca.pem \
  -name localhost -passout 'pass:airws test' \
  -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out localhost.p12
chmod 644 ./*.pem ./*.key ./*.p12
