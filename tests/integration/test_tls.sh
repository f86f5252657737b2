#!/usr/bin/env bash
# test_tls: HTTPS on the REST API/status page (api.tls) and on the device OTA endpoint
# (ota.tls), with a CA and certificates made here (openssl).
# 1. Start-up refusals: a missing certificate, a key of another certificate, a garbage
#    certificate, a garbage or encrypted key (either server) -> espstationd exits non-zero
#    with a message naming the file and what to do.
# 2. The REST API: curl --cacert ca.pem -> 200 (slots, the status page, a same-origin change
#    from https://); without the CA -> verification fails; plain HTTP to the TLS port gets
#    no HTTP answer.
# 3. Pulls over HTTPS as the updaters make them: esp_netdev (the ESP32 HTTPUpdate model
#    verifies the chain against the CA and the URL's host the way Mbed TLS 2.x does; the
#    ESP8266 model pins the certificate's SHA-1 fingerprint, as setFingerprint) is answered
#    200 + the image for a board whose target differs, applies it, then gets 304; curl with
#    the exact ESP32 updater headers gets 200 + an image whose x-MD5 is its MD5 and the
#    catalog's, and 304 once it reports the target's version. A board given another CA, or a
#    wrong fingerprint, does not connect (and is not enrolled); plain HTTP to the TLS port gets
#    no answer; the daemon's warnings say why.
# 4. Robustness: idle connections, half a ClientHello, a whole ClientHello and then silence
#    (to both servers), and garbage bytes do not block other clients: with all of them still
#    open (idle timeouts 600 s), a board pulls over HTTPS and the API answers; the garbage
#    connection is closed by the server.
# 5. Reload (SIGHUP): a renewed certificate is served to new connections (an IP-only
#    certificate: the Mbed TLS 2.x model refuses it, the 3.x model with --tls-ip-san takes
#    it); a broken one is refused and the endpoint keeps the one it had.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
command -v openssl >/dev/null || fail "openssl is needed (apt-get install openssl)"

# --- certificates ----------------------------------------------------------------------
C=$WORK/certs
mkdir -p "$C"
# ca NAME: a self-signed CA (EC P-256) in $C/NAME.pem, key $C/NAME.key
ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$C/$1.key" -out "$C/$1.pem" -subj "/CN=espstation test $1" 2>"$C/$1.err" ||
        fail "openssl: CA $1: $(cat "$C/$1.err")"
}
# leaf NAME CA SAN: a server certificate signed by CA for the subjectAltName SAN
leaf() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$C/$1.key" -out "$C/$1.csr" -subj "/CN=127.0.0.1" 2>"$C/$1.err" ||
        fail "openssl: request $1: $(cat "$C/$1.err")"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$3" \
        >"$C/$1.ext"
    openssl x509 -req -in "$C/$1.csr" -CA "$C/$2.pem" -CAkey "$C/$2.key" -CAcreateserial \
        -days 2 -extfile "$C/$1.ext" -out "$C/$1.pem" 2>"$C/$1.err" ||
        fail "openssl: certificate $1: $(cat "$C/$1.err")"
}
ca ca
ca other
# The address as an IP and as a DNS name: curl (and Mbed TLS 3.5+) match the iPAddress entry,
# Mbed TLS 2.x (arduino-esp32 2.x) only a DNS entry spelling the address (docs/OTA.md).
leaf srv ca "IP:127.0.0.1,DNS:127.0.0.1"
leaf iponly ca "IP:127.0.0.1"
leaf stranger other "IP:127.0.0.1,DNS:127.0.0.1"
CA=$C/ca.pem
FP=$(openssl x509 -in "$C/srv.pem" -noout -fingerprint -sha1 | sed 's/^.*=//')
[ ${#FP} = 59 ] || fail "cannot take the certificate's SHA-1 fingerprint: '$FP'"
head -c 700 /dev/urandom >"$C/garbage.pem"
openssl pkey -in "$C/srv.key" -aes256 -passout pass:secret -out "$C/encrypted.key" 2>/dev/null ||
    fail "openssl: cannot encrypt a key"

# --- 1. start-up refusals --------------------------------------------------------------
# refused NAME API_TLS OTA_TLS PATTERN...: the daemon with these "tls" objects exits non-zero,
# its output matching every PATTERN (grep -F).
refused() {
    local name=$1 api=$2 ota=$3 rc=0 p
    shift 3
    cat >"$WORK/$name.json" <<JSON
{"ports": [], "api": {$api}, "ota": {"listen": "127.0.0.1:0"$ota},
 "profiles": {"line": {"firmware": {}}}}
JSON
    timeout 60 "$ESPSTATIOND" --config "$WORK/$name.json" --data-dir "$WORK/data-$name" \
        --stub-dir "$STUB_DIR" --no-udev --listen 127.0.0.1:0 >"$WORK/$name.out" 2>&1 || rc=$?
    [ "$rc" != 0 ] || fail "$name: espstationd started (exit 0): $(tail -n 5 "$WORK/$name.out")"
    [ "$rc" != 124 ] || fail "$name: espstationd did not exit (timeout)"
    ! grep -Eq 'Sanitizer|runtime error' "$WORK/$name.out" || fail "$name: sanitizer report"
    grep -q 'station running' "$WORK/$name.out" && fail "$name: the station ran"
    for p in "$@"; do
        grep -qF -- "$p" "$WORK/$name.out" ||
            fail "$name: the message lacks '$p': $(grep -v '^<[67]>' "$WORK/$name.out" | tail -n 3)"
    done
    log "$name: refused with exit $rc: $(grep -F -- "$1" "$WORK/$name.out" | head -n 1)"
}
tls() { printf '"tls": {"cert": "%s", "key": "%s"}' "$1" "$2"; }
refused missing-cert "" ", $(tls "$C/nothere.pem" "$C/srv.key")" \
    "ota.tls.cert: cannot read $C/nothere.pem: No such file or directory"
refused mismatch "" ", $(tls "$C/srv.pem" "$C/iponly.key")" \
    "ota.tls.key: $C/iponly.key is not the private key of the certificate in $C/srv.pem"
refused garbage-cert "" ", $(tls "$C/garbage.pem" "$C/srv.key")" \
    "ota.tls.cert: $C/garbage.pem holds no PEM certificate"
refused swapped "" ", $(tls "$C/srv.key" "$C/srv.pem")" \
    "ota.tls.cert: $C/srv.key holds no PEM certificate (it holds a private key: are cert and key swapped?)"
refused encrypted-key "" ", $(tls "$C/srv.pem" "$C/encrypted.key")" \
    "ota.tls.key: $C/encrypted.key is encrypted"
refused api-garbage-key "$(tls "$C/srv.pem" "$C/garbage.pem")" "" \
    "api.tls.key: $C/garbage.pem holds no PEM private key"
refused api-missing-key "$(tls "$C/srv.pem" "$C/nothere.key")" "" \
    "api.tls.key: cannot read $C/nothere.key: No such file or directory"
refused api-mismatch "$(tls "$C/iponly.pem" "$C/srv.key")" "" \
    "api.tls.key: $C/srv.key is not the private key of the certificate in $C/iponly.pem"
refused tls-no-key "" ', "tls": {"cert": "x.pem"}' "ota.tls.key: is required"

# --- the station, HTTPS on both servers --------------------------------------------------
fw_set "$WORK/fw2" demo 2.0.0 esp32 60000 31
import_fw "$WORK/fw2"
fw_set "$WORK/e2" e8266 2.0.0 esp8266 50000 32
import_fw "$WORK/e2"
cp "$C/srv.pem" "$C/ota.pem"
cp "$C/srv.key" "$C/ota.key"
OTA_PORT=$(free_port)
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [],
 "api": {"token": "$TOKEN", "idle_timeout_s": 600, $(tls "$C/srv.pem" "$C/srv.key")},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol", "idle_timeout_s": 600,
         $(tls "$C/ota.pem" "$C/ota.key")},
 "profiles": {"line": {"firmware": {"esp32": "demo@2.0.0", "esp8266": "e8266@2.0.0"}}}}
JSON
export CURL_CA_BUNDLE=$CA # every curl of api_lib.sh trusts the test's CA
start_api_daemon "$CFG" --log-level debug # every failed handshake's reason (debug lines)
API=${API/http:/https:}
API_PORT=${API##*:}
grep -q "status page and REST API on https://127.0.0.1:$API_PORT/" "$DAEMON_LOG" ||
    fail "the daemon does not say the API speaks HTTPS"
grep -qF "OTA update endpoint speaks HTTPS only (ota.tls): certificate /CN=127.0.0.1, names IP:127.0.0.1 DNS:127.0.0.1" "$DAEMON_LOG" ||
    fail "the daemon does not describe the OTA certificate"
grep -qF "SHA-1 fingerprint $FP" "$DAEMON_LOG" ||
    fail "the daemon's SHA-1 fingerprint is not openssl's $FP"

# --- 2. the REST API and the status page over HTTPS -----------------------------------------
api GET /api/v1/slots
expect_status 200
expect_jq '.slots'
api GET /
expect_status 200
grep -qi '^content-type: text/html' "$WORK/resp.headers" || fail "the status page is not HTML"
api GET /app.js
expect_status 200
# a change from the status page itself (its origin is https://127.0.0.1:PORT)
apij PUT /api/v1/profiles/line '{"firmware": {"esp32": "demo@2.0.0", "esp8266": "e8266@2.0.0"}}' \
    -H "Origin: https://127.0.0.1:$API_PORT" -H 'Sec-Fetch-Site: same-origin'
expect_status 200
rc=0
env -u CURL_CA_BUNDLE timeout 30 curl -sS -o /dev/null "$API/api/v1/slots" 2>"$WORK/noca.err" || rc=$?
[ "$rc" = 60 ] || fail "curl without the CA: exit $rc, expected 60 (verification): $(cat "$WORK/noca.err")"
rc=0
code=$(timeout 30 curl -sS -o "$WORK/plain.body" -w '%{http_code}' "http://127.0.0.1:$API_PORT/api/v1/slots" \
    2>"$WORK/plain.err") || rc=$?
[ "$rc" != 0 ] && [ "$code" = 000 ] ||
    fail "plain HTTP to the API's TLS port got an answer (exit $rc, status $code): $(head -c 200 "$WORK/plain.body")"
log "API: https 200, no CA -> curl exit 60, plain HTTP -> curl exit $rc"
# nothing older than TLS 1.2 on either server
for p in "$API_PORT" "$OTA_PORT"; do
    echo | timeout 30 openssl s_client -connect "127.0.0.1:$p" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' \
        >"$WORK/tls11.out" 2>&1 || true
    grep -q 'Cipher is (NONE)' "$WORK/tls11.out" ||
        fail "port $p took TLS 1.1: $(grep -E 'Protocol|Cipher' "$WORK/tls11.out")"
done

# --- 3. pulls over HTTPS -------------------------------------------------------------------
OTA_URL=https://127.0.0.1:$OTA_PORT/ota/update
M1=24:6f:28:00:71:01
start_netdev "$WORK/nd1" --chip esp32 --mac "$M1" --bind $TNET.11 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$CA"
M8=18:fe:34:00:71:08
start_netdev "$WORK/nd8" --chip esp8266 --mac "$M8" --bind $TNET.12 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --fingerprint "$FP"
for nd in nd1 nd8; do
    wait_file_log 'pull: applied .* version now 2.0.0' "$WORK/$nd/netdev.log" 30
    wait_file_log 'checkin: status=304 version=2.0.0' "$WORK/$nd/netdev.log" 30
    grep -q 'checkin: status=200 version=1.0.0' "$WORK/$nd/netdev.log" ||
        fail "$nd: no 200 for the first check-in: $(cat "$WORK/$nd/netdev.log")"
done
grep -q 'checkin: TLS TLSv1.2 .*server certificate verified against the CA' "$WORK/nd1/netdev.log" ||
    fail "the ESP32 model did not verify the server against the CA: $(cat "$WORK/nd1/netdev.log")"
grep -q 'checkin: TLS TLSv1.2 .*matches the pinned SHA-1 fingerprint' "$WORK/nd8/netdev.log" ||
    fail "the ESP8266 model did not pin: $(cat "$WORK/nd8/netdev.log")"
wait_sql "SELECT state || ' ' || firmware FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M1';" \
    "passed demo@2.0.0" 10
wait_sql "SELECT state || ' ' || firmware FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M8';" \
    "passed e8266@2.0.0" 10
# the image went whole, and the pull ended with the board's close (the duration is known)
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M1' AND bytes = $(stat -c %s "$WORK/fw2/app.bin") AND seconds > 0;")" = 1 ] ||
    fail "pull job: $(db "SELECT bytes, seconds FROM jobs WHERE kind = 'ota-pull' AND board_mac = '$M1';")"

# curl with the exact ESP32 updater request (esp_netdev's check-in)
M2=24:6f:28:00:71:02
updater_get() { # VERSION: one check-in of M2; sets code, body in $WORK/pull.bin
    code=$(timeout 60 curl -sS --http1.0 -o "$WORK/pull.bin" -D "$WORK/pull.head" -w '%{http_code}' \
        -H 'Accept:' -H 'User-Agent: ESP32-http-Update' -H 'Connection: close' \
        -H 'Cache-Control: no-cache' -H "x-ESP32-STA-MAC: $M2" -H 'x-ESP32-AP-MAC: 24:6f:28:00:71:03' \
        -H 'x-ESP32-free-space: 1310720' -H 'x-ESP32-sketch-size: 300000' \
        -H 'x-ESP32-sketch-md5: 0123456789abcdef0123456789abcdef' -H 'x-ESP32-chip-size: 4194304' \
        -H 'x-ESP32-sdk-version: v4.4.7-dirty' -H 'x-ESP32-mode: sketch' -H "x-ESP32-version: $1" \
        "$OTA_URL") || fail "curl check-in over HTTPS failed"
}
updater_get 1.0.0
[ "$code" = 200 ] || fail "updater check-in over HTTPS: $code $(cat "$WORK/pull.head")"
want=$(md5sum <"$WORK/fw2/app.bin" | cut -d' ' -f1)
got=$(md5sum <"$WORK/pull.bin" | cut -d' ' -f1)
xmd5=$(tr -d '\r' <"$WORK/pull.head" | sed -n 's/^x-MD5: //p')
[ "$got" = "$want" ] && [ "$xmd5" = "$want" ] ||
    fail "image over HTTPS: body md5 $got, x-MD5 '$xmd5', catalog $want"
updater_get 2.0.0
[ "$code" = 304 ] || fail "updater check-in on the target's version: $code, expected 304"
log "pulls over HTTPS: esp32 (CA) and esp8266 (pinned) applied 2.0.0; curl 200 (x-MD5 ok) then 304"
# ESP8266 BearSSL can shrink its buffers when the server takes the maximum fragment length
# extension (probeMaxFragmentLength, setBufferSizes; docs/OTA.md "HTTPS")
echo | timeout 30 openssl s_client -connect "127.0.0.1:$OTA_PORT" -tls1_2 -maxfraglen 1024 \
    -tlsextdebug -CAfile "$CA" >"$WORK/mfl.out" 2>&1 || true
grep -q 'TLS server extension "max fragment length"' "$WORK/mfl.out" ||
    fail "the OTA endpoint did not take the maximum fragment length: $(grep -i extension "$WORK/mfl.out")"

# a board that does not trust the certificate, one with a wrong pin, an http:// URL: no pull
M3=24:6f:28:00:71:04
start_netdev "$WORK/nd3" --chip esp32 --mac "$M3" --bind $TNET.13 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$C/other.pem"
wait_file_log 'checkin: TLS handshake with 127.0.0.1:[0-9]+ failed: unable to get local issuer certificate' \
    "$WORK/nd3/netdev.log" 30
wait_log "TLS handshake with $TNET.13 failed: the client does not trust the certificate \(alert: unknown CA\)" 20
M4=18:fe:34:00:71:05
# a pin that differs from the certificate's in its first byte (00 unless that is the real one)
BADFP="00:${FP:3}"
[ "$BADFP" != "$FP" ] || BADFP="01:${FP:3}"
start_netdev "$WORK/nd4" --chip esp8266 --mac "$M4" --bind $TNET.14 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --fingerprint "$BADFP"
wait_file_log 'checkin: TLS handshake with 127.0.0.1:[0-9]+ failed' "$WORK/nd4/netdev.log" 30
wait_log "TLS handshake with $TNET.14 failed: the client refused the certificate" 20
M5=24:6f:28:00:71:06
start_netdev "$WORK/nd5" --chip esp32 --mac "$M5" --bind $TNET.15 --version 1.0.0 \
    --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval once
wait_file_log 'checkin: no answer' "$WORK/nd5/netdev.log" 30
wait_log "TLS handshake with $TNET.15 failed: a plain HTTP request on the TLS port" 20
for m in "$M3" "$M4" "$M5"; do
    [ "$(db "SELECT count(*) FROM boards WHERE mac = '$m';")" = 0 ] ||
        fail "$m was enrolled without a TLS session"
done
! grep -q 'status=' "$WORK/nd3/netdev.log" "$WORK/nd4/netdev.log" ||
    fail "a board without the CA or with a wrong pin got an HTTP answer"

# --- 4. stalled and garbage clients do not block the others ---------------------------------
cat >"$WORK/stall.py" <<'PY'
import os, socket, ssl, sys, time
host, ota, api, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = ctx.wrap_bio(i, o)
    try:
        t.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()
def state(s, wait):
    # 'closed' once the server closed or reset it, 'open' while it stays silent for wait s
    s.settimeout(wait)
    try:
        while True:
            if not s.recv(65536):
                return 'closed'
    except socket.timeout:
        return 'open'
    except OSError:
        return 'closed'
ch = client_hello()
held = []
for port in (ota, api):
    s = socket.create_connection((host, port)); held.append(('idle', port, s))
    s = socket.create_connection((host, port)); s.sendall(ch[:len(ch) // 2]); held.append(('half-hello', port, s))
    s = socket.create_connection((host, port)); s.sendall(ch); held.append(('hello-then-silence', port, s))
garbage = []
for port in (ota, api):
    g = socket.create_connection((host, port))
    try:
        g.sendall(os.urandom(65536))
    except OSError:
        pass
    garbage.append((port, state(g, 30)))
with open(out + '.tmp', 'w') as f:
    f.write(' '.join('garbage:%d:%s' % x for x in garbage) + '\n')
os.rename(out + '.tmp', out)
deadline = time.time() + 300
while not os.path.exists(out + '.release') and time.time() < deadline:
    time.sleep(0.1)
with open(out + '.after.tmp', 'w') as f:
    f.write(' '.join('%s:%d:%s' % (k, p, state(s, 0.5)) for k, p, s in held) + '\n')
os.rename(out + '.after.tmp', out + '.after')
PY
python3 "$WORK/stall.py" 127.0.0.1 "$OTA_PORT" "$API_PORT" "$WORK/stall" 2>"$WORK/stall.err" &
STALL_PID=$!
# stopped by its pid on any exit (it would otherwise wait for its release file)
trap 'rc=$?; kill "$STALL_PID" 2>/dev/null || true
if [ "$rc" -eq 0 ]; then _ota_cleanup; else (exit "$rc") || _ota_cleanup; fi' EXIT
deadline=$((SECONDS + 60))
until [ -s "$WORK/stall" ]; do
    kill -0 "$STALL_PID" 2>/dev/null || fail "stall.py died: $(cat "$WORK/stall.err")"
    [ $SECONDS -lt $deadline ] || fail "stall.py did not set up its connections"
    sleep 0.1
done
[ "$(cat "$WORK/stall")" = "garbage:$OTA_PORT:closed garbage:$API_PORT:closed" ] ||
    fail "garbage connections: $(cat "$WORK/stall") (the servers should close them)"
# with 6 connections stalled (idle, half a ClientHello, a ClientHello then silence, on both)
M6=24:6f:28:00:71:07
start_netdev "$WORK/nd6" --chip esp32 --mac "$M6" --bind $TNET.16 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$CA"
wait_file_log 'pull: applied .* version now 2.0.0' "$WORK/nd6/netdev.log" 60
api GET /api/v1/slots
expect_status 200
touch "$WORK/stall.release"
wait "$STALL_PID" || fail "stall.py failed: $(cat "$WORK/stall.err")"
after=$(cat "$WORK/stall.after")
for k in idle half-hello hello-then-silence; do
    for p in "$OTA_PORT" "$API_PORT"; do
        grep -q "$k:$p:open" <<<"$after" ||
            fail "the stalled connection $k to port $p did not stay open: $after"
    done
done
log "stalled clients held ($after) while a board pulled over HTTPS and the API answered"

# --- 5. reload: a renewed certificate, then a broken one ------------------------------------
cp "$C/iponly.pem" "$C/ota.pem"
cp "$C/iponly.key" "$C/ota.key"
kill -HUP "$DAEMON_PID"
wait_log 'tls: ota certificate reloaded \(/CN=127.0.0.1, not after .*\): the OTA update endpoint speaks HTTPS with certificate /CN=127.0.0.1, names IP:127.0.0.1,' 20
M7=24:6f:28:00:71:09
start_netdev "$WORK/nd7" --chip esp32 --mac "$M7" --bind $TNET.17 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$CA"
wait_file_log 'checkin: TLS handshake with 127.0.0.1:[0-9]+ failed: [Hh]ostname mismatch' "$WORK/nd7/netdev.log" 30
M9=24:6f:28:00:71:0a
start_netdev "$WORK/nd9" --chip esp32 --mac "$M9" --bind $TNET.19 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$CA" --tls-ip-san
wait_file_log 'pull: applied .* version now 2.0.0' "$WORK/nd9/netdev.log" 30
cp "$C/garbage.pem" "$C/ota.pem"
kill -HUP "$DAEMON_PID"
wait_log "ota.tls.cert: $C/ota.pem holds no PEM certificate.*keeps the certificate it had" 20
M10=24:6f:28:00:71:0b
start_netdev "$WORK/nd10" --chip esp32 --mac "$M10" --bind $TNET.20 --version 1.0.0 \
    --checkin "$OTA_URL" --interval once --ca "$CA" --tls-ip-san
wait_file_log 'pull: applied .* version now 2.0.0' "$WORK/nd10/netdev.log" 30
log "reload: renewed certificate served (Mbed TLS 2.x model refuses an IP-only one), broken one refused"

stop_daemon
done_ok
