#!/usr/bin/env bash
# test_tls_reload: renewing the certificates of both HTTPS servers (api.tls: the REST API and
# status page, libmicrohttpd with GnuTLS; ota.tls: the OTA endpoint, libssl) takes a reload
# (SIGHUP), not a restart.
# 1. Started with certificate A on both: new connections get A (SHA-256 fingerprint), and
#    /metrics gives A's not-after as espstation_tls_cert_expiry_seconds{server=...}.
# 2. Connections opened with A and held: a keep-alive REST API client (one request done) and
#    an OTA client (handshake done, no request yet).
# 3. Renewed to B (api: the certbot way, live/ symlinks moved to new archive/ files; ota: the
#    files overwritten in place), SIGHUP: "tls: <server> certificate reloaded (subject, not
#    after DATE)" for both; new connections get B; the held ones still answer (200 on the
#    REST API, 404 on the OTA endpoint) on their A sessions; /metrics gives B's not-after and
#    passes promtool. A SIGHUP with the files unchanged reloads nothing.
# 4. Broken renewals (api: the key link to a garbage file; ota: the certificate file removed),
#    SIGHUP: a log line naming each file and what is wrong; both servers keep serving B (never
#    plain HTTP), /metrics still gives B's not-after, the daemon runs on.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"
source "$(dirname "$0")/tls_lib.sh"
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}

# --- certificates: one CA, leaves A (30 days) and B (90 days), each with its own key --------
C=$WORK/certs
mkdir -p "$C/archive" "$C/live"
tls_ca "$C" "espstation reload CA" 100
leaf() { tls_leaf "$C" "$C/archive" "$1" "$2"; } # leaf NAME DAYS: $C/archive/NAME.pem and .key
leaf a 30
leaf b 90
head -c 500 /dev/urandom >"$C/archive/garbage.key"
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'; }
end_of() { date -u -d "$(openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//')" +%s; }
FP_A=$(fp_of "$C/archive/a.pem")
FP_B=$(fp_of "$C/archive/b.pem")
END_A=$(end_of "$C/archive/a.pem")
END_B=$(end_of "$C/archive/b.pem")
[ ${#FP_A} = 95 ] && [ "$FP_A" != "$FP_B" ] && [ "$END_A" != "$END_B" ] ||
    fail "cannot tell A from B: $FP_A/$END_A $FP_B/$END_B"
# api.tls: live/ symlinks (certbot); ota.tls: plain files overwritten in place
ln -s ../archive/a.pem "$C/live/api.pem"
ln -s ../archive/a.key "$C/live/api.key"
install -m 600 "$C/archive/a.pem" "$C/ota.pem"
install -m 600 "$C/archive/a.key" "$C/ota.key"

OTA_PORT=$(free_port)
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [],
 "api": {"idle_timeout_s": 600, "tls": {"cert": "$C/live/api.pem", "key": "$C/live/api.key"}},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "idle_timeout_s": 600,
         "tls": {"cert": "$C/ota.pem", "key": "$C/ota.key"}},
 "profiles": {"line": {"firmware": {}}}}
JSON
export CURL_CA_BUNDLE=$C/ca.pem
start_api_daemon "$CFG"
API=${API/http:/https:}
API_PORT=${API##*:}

# served PORT: the SHA-256 fingerprint of the certificate a new connection to PORT gets
served() {
    local out
    out=$(timeout 30 openssl s_client -connect "127.0.0.1:$1" -CAfile "$C/ca.pem" </dev/null \
        2>"$WORK/s_client.err") || true
    openssl x509 -noout -fingerprint -sha256 <<<"$out" 2>/dev/null | sed 's/^.*=//'
}
# expect_served WHAT FP: both servers' new connections get FP (WHAT names it)
expect_served() {
    local p got
    for p in "$API_PORT" "$OTA_PORT"; do
        got=$(served "$p")
        [ "$got" = "$2" ] ||
            fail "port $p (api $API_PORT, ota $OTA_PORT) serves '$got', expected $1 ($2): $(tail -n 3 "$WORK/s_client.err")"
    done
    api GET /api/v1/slots # curl verifies the chain and the address against the CA
    expect_status 200
}
# expect_expiry WHAT END: /metrics gives END as both servers' not-after
expect_expiry() {
    api GET /metrics
    expect_status 200
    printf '%s\n' "$RESP" >"$WORK/metrics"
    local s
    for s in api ota; do
        grep -qx "espstation_tls_cert_expiry_seconds{server=\"$s\"} $2" "$WORK/metrics" ||
            fail "/metrics: $s's not-after is not $1's $2: $(grep -E 'tls|^# .*tls' "$WORK/metrics")"
    done
}

# --- 1. certificate A ----------------------------------------------------------------------
expect_served A "$FP_A"
expect_expiry A "$END_A"
log "A served on both servers, /metrics: not-after $END_A"

# --- 2. connections held across the renewal ------------------------------------------------
cat >"$WORK/hold.py" <<'PY'
import hashlib, os, socket, ssl, sys, time
api, ota, ca, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
def fp(s):
    return ':'.join('%02X' % b for b in hashlib.sha256(s.getpeercert(True)).digest())
def answer(s):
    # the status line, then the rest of the head and a body of Content-Length bytes
    buf = b''
    while b'\r\n\r\n' not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b'\r\n\r\n')
    n = 0
    for line in head.split(b'\r\n')[1:]:
        k, _, v = line.partition(b':')
        if k.strip().lower() == b'content-length':
            n = int(v)
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return head.split(b'\r\n')[0].decode(errors='replace') if head else 'no answer'
def get(s, port, path, close):
    s.sendall(('GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n' %
               (path, port, 'Connection: close\r\n' if close else '')).encode())
    return answer(s)
a = ctx.wrap_socket(socket.create_connection(('127.0.0.1', api)), server_hostname='127.0.0.1')
first = get(a, api, '/api/v1/slots', False)
o = ctx.wrap_socket(socket.create_connection(('127.0.0.1', ota)), server_hostname='127.0.0.1')
with open(out + '.tmp', 'w') as f:
    f.write('api %s %s\nota %s\n' % (fp(a), first, fp(o)))
os.rename(out + '.tmp', out)
deadline = time.time() + 120
while not os.path.exists(out + '.release') and time.time() < deadline:
    time.sleep(0.05)
res = 'api %s %s\nota %s %s\n' % (fp(a), get(a, api, '/api/v1/slots', True), fp(o),
                                  get(o, ota, '/ota/fw/nope/1.bin', True))
with open(out + '.after.tmp', 'w') as f:
    f.write(res)
os.rename(out + '.after.tmp', out + '.after')
PY
python3 "$WORK/hold.py" "$API_PORT" "$OTA_PORT" "$C/ca.pem" "$WORK/hold" 2>"$WORK/hold.err" &
HOLD_PID=$!
trap 'rc=$?; kill "$HOLD_PID" 2>/dev/null || true
if [ "$rc" -eq 0 ]; then _ota_cleanup; else (exit "$rc") || _ota_cleanup; fi' EXIT
deadline=$((SECONDS + 30))
until [ -s "$WORK/hold" ]; do
    kill -0 "$HOLD_PID" 2>/dev/null || fail "hold.py died: $(cat "$WORK/hold.err")"
    [ $SECONDS -lt $deadline ] || fail "hold.py did not open its connections"
    sleep 0.05
done
[ "$(cat "$WORK/hold")" = "api $FP_A HTTP/1.1 200 OK
ota $FP_A" ] || fail "held connections before the renewal: $(cat "$WORK/hold")"

# --- 3. renewed to B ---------------------------------------------------------------------
ln -sfn ../archive/b.pem "$C/live/api.pem"
ln -sfn ../archive/b.key "$C/live/api.key"
cat "$C/archive/b.pem" >"$C/ota.pem"
cat "$C/archive/b.key" >"$C/ota.key"
kill -HUP "$DAEMON_PID"
UNTIL_B=$(openssl x509 -in "$C/archive/b.pem" -noout -enddate | sed 's/^notAfter=//')
for s in api ota; do
    wait_log "tls: $s certificate reloaded \(/CN=station-b, not after $UNTIL_B\)" 20
done
expect_served B "$FP_B"
log "B served to new connections on both servers after SIGHUP"
touch "$WORK/hold.release"
wait "$HOLD_PID" || fail "hold.py failed: $(cat "$WORK/hold.err")"
[[ "$(cat "$WORK/hold.after")" =~ ^"api $FP_A HTTP/1.1 200 OK
ota $FP_A HTTP/1."[01]" 404 " ]] ||
    fail "connections opened with A before the renewal: $(cat "$WORK/hold.after") $(cat "$WORK/hold.err")"
log "held connections (opened with A) still answered after the reload"
expect_expiry B "$END_B"
if [ -n "$PROMTOOL" ]; then
    rc=0
    "$PROMTOOL" check metrics <"$WORK/metrics" >"$WORK/promtool.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] && ! [ -s "$WORK/promtool.out" ] ||
        fail "promtool check metrics (exit $rc): $(cat "$WORK/promtool.out")"
    log "/metrics with espstation_tls_cert_expiry_seconds passes promtool"
else
    log "promtool not found: skipped its check (Debian package prometheus)"
fi
# a reload with the files unchanged reloads no certificate
n_reloaded=$(grep -c 'certificate reloaded' "$DAEMON_LOG")
n_config=$(grep -c 'configuration reloaded' "$DAEMON_LOG")
kill -HUP "$DAEMON_PID"
wait_log "configuration reloaded" 20
deadline=$((SECONDS + 20))
until [ "$(grep -c 'configuration reloaded' "$DAEMON_LOG")" -gt "$n_config" ]; do
    [ $SECONDS -lt $deadline ] || fail "the second SIGHUP was not taken"
    sleep 0.05
done
[ "$(grep -c 'certificate reloaded' "$DAEMON_LOG")" = "$n_reloaded" ] ||
    fail "a SIGHUP with unchanged files reloaded a certificate: $(grep 'certificate reloaded' "$DAEMON_LOG")"

# --- 4. broken renewals: refused, B kept -----------------------------------------------------
ln -sfn ../archive/garbage.key "$C/live/api.key"
rm "$C/ota.pem"
kill -HUP "$DAEMON_PID"
wait_log "tls: api certificate not reloaded: api.tls.key: $C/live/api.key holds no PEM private key.*keep the certificate they had \(/CN=station-b, not after $UNTIL_B\)" 20
wait_log "tls: ota certificate not reloaded: ota.tls.cert: cannot read $C/ota.pem: No such file or directory.*keeps the certificate it had \(/CN=station-b, not after $UNTIL_B\)" 20
kill -0 "$DAEMON_PID" || fail "espstationd died on a broken renewal"
expect_served B "$FP_B"
rc=0
code=$(timeout 30 curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$API_PORT/api/v1/slots" \
    2>/dev/null) || rc=$?
[ "$rc" != 0 ] && [ "$code" = 000 ] || fail "plain HTTP got an answer after a broken renewal ($code)"
expect_expiry B "$END_B"
log "broken key / missing certificate refused with the file named; B still served"

stop_daemon
done_ok
