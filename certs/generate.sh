#!/usr/bin/env bash
# Regenerates elbe's development CA and certificates in this folder.
# FOR DEVELOPMENT AND TESTS ONLY: never trust this CA outside tests.
#
# Usage: certs/generate.sh          (from anywhere; writes next to this script)
# Needs: bash and the openssl command line tool (1.1.1 or 3.x).
set -eu

cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

days=3650
banner="FOR DEVELOPMENT AND TESTS ONLY: never trust this CA outside tests (elbe certs/README.md)"

# Prepends a one-line comment to a PEM file. PEM parsers (openssl, rustls-pki-types) skip text outside
# the BEGIN/END lines, so the files stay parseable.
mark() {
    { echo "# $banner"; cat "$1"; } > "$work/marked"
    mv "$work/marked" "$1"
}

ecdsa_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# Development CA (ECDSA P-256, self-signed).
ecdsa_key dev-ca.key
cat > "$work/ca.ext" <<'EXT'
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
openssl req -new -x509 -key dev-ca.key -sha256 -days "$days" \
    -subj "/O=elbe development/CN=elbe development CA (DO NOT TRUST)" \
    -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$work/ca.ext") \
    -out dev-ca.crt

# leaf NAME SAN KEYUSAGE CN: writes NAME.crt for NAME.key, signed by the development CA.
leaf() {
    local name=$1 san=$2 usage=$3 cn=$4
    cat > "$work/$name.ext" <<EXT
basicConstraints = critical, CA:false
keyUsage = critical, $usage
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    openssl req -new -key "$name.key" -subj "/O=elbe development/CN=$cn" -out "$work/$name.csr"
    openssl x509 -req -in "$work/$name.csr" -CA dev-ca.crt -CAkey dev-ca.key -CAcreateserial \
        -CAserial "$work/serial" -sha256 -days "$days" -extfile "$work/$name.ext" -out "$name.crt" 2>/dev/null
}

# localhost: ECDSA P-256, PKCS#8 key.
ecdsa_key localhost.key
leaf localhost "DNS:localhost, IP:127.0.0.1" "digitalSignature" "localhost"

# example: RSA 2048, PKCS#8 key, an exact name and a one-label wildcard.
rsa_key example.key
leaf example "DNS:www.example.test, DNS:*.example.test" "digitalSignature, keyEncipherment" "www.example.test"

# expired / not-yet-valid: fixed validity windows for the loader's date checks. `openssl ca` takes explicit
# -startdate/-enddate (openssl 3.0 has no `x509 -not_after`), so no faketime is needed.
mkdir -p "$work/db"
: > "$work/db/index.txt"
cat > "$work/ca.cnf" <<CNF
[ca]
default_ca = dev
[dev]
database = $work/db/index.txt
new_certs_dir = $work/db
serial = $work/db/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
organizationName = optional
commonName = supplied
CNF
openssl rand -hex 16 > "$work/db/serial"
dated() {
    local name=$1 start=$2 end=$3
    ecdsa_key "$name.key"
    openssl req -new -key "$name.key" -subj "/O=elbe development/CN=localhost" -out "$work/$name.csr"
    openssl ca -batch -notext -config "$work/ca.cnf" -cert dev-ca.crt -keyfile dev-ca.key \
        -startdate "$start" -enddate "$end" -extfile "$work/localhost.ext" \
        -in "$work/$name.csr" -out "$name.crt" 2>/dev/null
}
dated expired 20200101000000Z 20210101000000Z
dated not-yet-valid 20991231000000Z 21000101000000Z

for f in dev-ca.crt dev-ca.key localhost.crt localhost.key example.crt example.key \
         expired.crt expired.key not-yet-valid.crt not-yet-valid.key; do
    mark "$f"
done
chmod 644 ./*.crt ./*.key

openssl verify -CAfile dev-ca.crt localhost.crt example.crt
echo "generated in $(pwd); $banner"
