# tls_lib.sh: a test CA and server certificates for 127.0.0.1, made with openssl (EC
# P-256). Sourced by the TLS tests after lib.sh (for fail).
command -v openssl >/dev/null || fail "openssl is needed (apt-get install openssl)"

# tls_ca DIR CN DAYS: DIR/ca.pem and DIR/ca.key, a self-signed CA.
tls_ca() {
    mkdir -p "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$3" \
        -keyout "$1/ca.key" -out "$1/ca.pem" -subj "/CN=$2" 2>"$1/ca.err" ||
        fail "openssl: CA: $(cat "$1/ca.err")"
}

# tls_leaf DIR OUT NAME DAYS: OUT/NAME.pem and OUT/NAME.key (0600), CN=station-NAME, for
# 127.0.0.1, signed by DIR's CA; the request and its errors stay in DIR.
tls_leaf() {
    local c=$1 out=$2 n=$3
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$out/$n.key" -out "$c/$n.csr" -subj "/CN=station-$n" 2>"$c/$n.err" ||
        fail "openssl: request $n: $(cat "$c/$n.err")"
    printf 'subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$c/$n.ext"
    openssl x509 -req -in "$c/$n.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
        -days "$4" -extfile "$c/$n.ext" -out "$out/$n.pem" 2>"$c/$n.err" ||
        fail "openssl: certificate $n: $(cat "$c/$n.err")"
    chmod 600 "$out/$n.key"
}
