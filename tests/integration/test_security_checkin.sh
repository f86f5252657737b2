#!/usr/bin/env bash
# test_security_checkin: check-ins come from an untrusted network (issue 9, finding 3).
#  - A board whose updater sends the profile's checkin_auth credentials (esp_netdev
#    --checkin-auth, the sketch's setAuthorization) gets a confirmed address
#    (board.address event, source checkin-auth).
#  - A spoofer sends a check-in with that board's MAC from another address, without
#    credentials, claiming version 9.9.9: the board's record keeps its address, its
#    version and its history; the other address is only a claim (board.address
#    event, claim true). The spoofer then listens on the board's web-form port at its
#    own address: a web-form push with the profile's password goes to the board (it
#    logs the Basic user, its version moves), the spoofer receives nothing.
#  - A board enrolled by check-ins without credentials has an unconfirmed address: a
#    push is refused (409 address_unconfirmed, saying how to confirm it) and nothing
#    reaches that address; once the same board checks in with the credentials the
#    address is confirmed and an espota push passes.
#  - Wrong credentials are refused (403) and change nothing, also for an unknown MAC;
#    checkin_auth "required" refuses check-ins without credentials.
#  - Enrolment without credentials is rate-limited: 200 invented MACs enrol at most the
#    bucket (ota.enrol_rate_per_min 5, plus what refills while the flood runs), the rest
#    get 429 and one ota.enrol_limited event says so; ota.enrol_max caps the boards known
#    only that way (403 beyond it).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 71
fw_set "$WORK/fw2" demo 2.0.0 esp32 61000 72
OTA_PORT=$(free_port)
URL="http://127.0.0.1:$OTA_PORT/ota/update"
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol", "enrol_rate_per_min": 5},
 "profiles": {"line": {"ota_firmware": {"esp32": "demo@1.0.0"}, "ota_password": "web-pw-9",
                       $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$CFG"
upload_fw "$WORK/fw1"
upload_fw "$WORK/fw2"

# checkin SRC_IP MAC VERSION [USER:PASS]: one ESP32 HTTPUpdate check-in from SRC_IP (the
# spoofer: any host on the device network); prints "STATUS BODY-FIRST-LINE".
CHECKIN_FROM=$(dirname "$0")/checkin_from.py
checkin() { python3 "$CHECKIN_FROM" --reason "$OTA_PORT" "$@"; }

# --- a board with credentials: confirmed address ------------------------------------------
MB=24:6f:28:00:99:01
start_netdev "$WORK/b" --chip esp32 --mac "$MB" --bind "$TNET.21" --version 1.0.0 --http-port 0 \
    --password web-pw-9 --checkin "$URL" --interval 300
WPORT=$(sed -n 's/.*http=\([0-9]*\).*/\1/p' "$WORK/b/ready")
wait_sql "SELECT count(*) FROM events WHERE kind = 'board.address' AND board_mac = '$MB';" 1 20
[ "$(db "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$MB';")" = \
    "$TNET.21 1 checkin-auth" ] || fail "the authenticated board's address"
api GET "/api/v1/boards/$MB"
expect_jq ".ip == \"$TNET.21\" and .ip_confirmed == true and .ip_source == \"checkin-auth\""
ev=$(db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$MB';")
[ "$(jq -c '[.new, .source, .confirmed, .claim]' <<<"$ev")" = "[\"$TNET.21\",\"checkin-auth\",true,false]" ] ||
    fail "board.address for the authenticated board: $ev"

# --- the spoofer: the board's MAC from another address, no credentials ----------------------
SPOOF=$TNET.66
ans=$(checkin "$SPOOF" "$MB" 9.9.9)
log "spoofed check-in answered: $ans"
# (the board's own check-ins, with credentials from its address, drop the claim again)
sleep 0.5
[ "$(db "SELECT ip || ' ' || ip_confirmed || ' ' || running_version FROM boards WHERE mac = '$MB';")" = \
    "$TNET.21 1 1.0.0" ] ||
    fail "a spoofed check-in changed the board's record: $(db "SELECT ip, ip_confirmed, running_version FROM boards WHERE mac = '$MB';")"
ev=$(db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$MB' AND data LIKE '%\"claim\":true%';")
[ "$(jq -c '[.old, .new, .source, .confirmed]' <<<"$ev")" = "[\"$TNET.21\",\"$SPOOF\",\"checkin\",false]" ] ||
    fail "board.address claim event: '$ev'"
[ "$(db "SELECT count(*) FROM jobs WHERE board_mac = '$MB';")" = 0 ] ||
    fail "the spoofer's pull went into the board's history"
[ "$(db "SELECT count(*) FROM events WHERE kind IN ('board.version', 'board.online') AND board_mac = '$MB' AND data LIKE '%9.9.9%';")" = 0 ] ||
    fail "the spoofer's version was announced"

# the spoofer listens on the board's web-form port at its own address
python3 - "$SPOOF" "$WPORT" "$WORK/spoofer.log" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
open(sys.argv[3] + ".ready", "w").close()
while True:
    c, _ = s.accept()
    c.settimeout(2)
    data = b""
    try:
        while len(data) < 65536:
            b = c.recv(4096)
            if not b:
                break
            data += b
    except OSError:
        pass
    with open(sys.argv[3], "ab") as f:
        f.write(data[:2048] + b"\n--\n")
    c.close()
PY
NETDEV_PIDS+=("$!")
wait_ready "$WORK/spoofer.log.ready" 10 "the spoofer's listener"
# the claim again, right before the push (the board's check-ins may have dropped it)
checkin "$SPOOF" "$MB" 9.9.9 >/dev/null
apij POST "/api/v1/boards/$MB/ota" "{\"method\": \"webform\", \"firmware\": \"demo@2.0.0\", \"port\": $WPORT}"
expect_status 202
J1=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J1;" passed 60
[ -s "$WORK/spoofer.log" ] && fail "the spoofer received the push: $(head -c 400 "$WORK/spoofer.log")"
grep -q 'web: Basic auth as user admin' "$WORK/b/netdev.log" || fail "the board did not get the push"
grep -q 'web: applied .* version now 2.0.0' "$WORK/b/netdev.log" || fail "the board did not apply the push"

# --- a board enrolled without credentials: unconfirmed, no push ------------------------------
MU=24:6f:28:00:99:02
start_netdev "$WORK/u" --chip esp32 --mac "$MU" --bind "$TNET.22" --version 1.0.0 --ota-port 3232 \
    --password web-pw-9 --checkin "$URL" --interval 300 --checkin-auth none
UPID=$NETDEV_PID
wait_sql "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$MU';" \
    "$TNET.22 0 checkin" 20
api GET "/api/v1/boards/$MU"
expect_jq ".ip == \"$TNET.22\" and .ip_confirmed == false and .ip_source == \"checkin\""
apij POST "/api/v1/boards/$MU/ota" '{"firmware": "demo@2.0.0"}'
expect_error 409 address_unconfirmed mac
jqr .error.message | grepq 'not confirmed.*checkin_auth.*boot_check' || fail "unconfirmed push message: $RESP"
grep -q 'ota: udp reply' "$WORK/u/netdev.log" && fail "an invitation reached the unconfirmed address"
# the same board with credentials (the sketch now calls setAuthorization): confirmed
kill -TERM "$UPID"
wait "$UPID" 2>/dev/null || true
start_netdev "$WORK/u" --chip esp32 --mac "$MU" --bind "$TNET.22" --version 1.0.0 --ota-port 3232 \
    --password web-pw-9 --checkin "$URL" --interval 300
wait_sql "SELECT count(*) FROM events WHERE kind = 'board.address' AND board_mac = '$MU' AND data LIKE '%checkin-auth%';" 1 20
[ "$(db "SELECT ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$MU';")" = "1 checkin-auth" ] ||
    fail "the board's address after a check-in with credentials"
ev=$(db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$MU' ORDER BY id DESC LIMIT 1;")
[ "$(jq -c '[.old, .new, .source, .confirmed, .previous_confirmed]' <<<"$ev")" = \
    "[\"$TNET.22\",\"$TNET.22\",\"checkin-auth\",true,false]" ] || fail "confirmation event: $ev"
apij POST "/api/v1/boards/$MU/ota" '{"firmware": "demo@2.0.0"}'
expect_status 202
J2=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J2;" passed 60

# --- wrong credentials: refused, nothing recorded -------------------------------------------
nev=$(db "SELECT count(*) FROM events WHERE kind = 'board.address';")
ans=$(checkin "$TNET.67" "$MB" 1.0.0 "$CHECKIN_USER:not-the-password")
[[ $ans == "403 wrong check-in credentials"* ]] || fail "wrong credentials answered: $ans"
ans=$(checkin "$TNET.67" 24:6f:28:00:99:0f 1.0.0 "$CHECKIN_USER:not-the-password")
[[ $ans == 403* ]] || fail "wrong credentials (unknown MAC) answered: $ans"
[ "$(db "SELECT count(*) FROM boards WHERE mac = '24:6f:28:00:99:0f';")" = 0 ] ||
    fail "a check-in with wrong credentials enrolled a board"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'board.address';")" = "$nev" ] ||
    fail "a refused check-in changed an address"
[ "$(board_col "$MB" ip)" = "$TNET.21" ] || fail "a refused check-in moved the board"

# --- enrolment flood without credentials: rate-limited ------------------------------------------
flood() { # flood SRC FIRST N: N check-ins with invented MACs 02:00:00:00:FIRST+i; prints "SECONDS STATUS..."
    python3 "$CHECKIN_FROM" --time "$OTA_PORT" "$1" "$(printf '02:00:00:00:%02X:%02X' $(($2 >> 8)) $(($2 & 255)))+$3" 1.0.0
}
res=$(flood "$TNET.70" 0 200)
elapsed=${res%% *}
codes=${res#* }
n_ok=$(tr ' ' '\n' <<<"$codes" | grep -cv '^429$' || true)
n_429=$(tr ' ' '\n' <<<"$codes" | grep -c '^429$' || true)
enrolled=$(db "SELECT count(*) FROM boards WHERE mac LIKE '02:00:00:00:%';")
# the bucket held 5, the unauthenticated board took 1; what refilled during the flood on top
max=$(python3 -c "import math; print(4 + math.ceil($elapsed * 5 / 60) + 1)")
log "flood: $enrolled enrolled, $n_429 answered 429 in ${elapsed}s (at most $max may enrol)"
[ "$enrolled" = "$n_ok" ] || fail "flood: $enrolled records but $n_ok check-ins answered"
if [ "$enrolled" -lt 4 ] || [ "$enrolled" -gt "$max" ]; then
    fail "flood: $enrolled boards enrolled, want 4..$max"
fi
[ $((n_ok + n_429)) = 200 ] || fail "flood answers: $codes"
nev=$(db "SELECT count(*) FROM events WHERE kind = 'ota.enrol_limited';")
if [ "$nev" -lt 1 ] || [ "$nev" -gt $((1 + ${elapsed%.*} / 60)) ]; then
    fail "ota.enrol_limited events: $nev"
fi
ev=$(db "SELECT data FROM events WHERE kind = 'ota.enrol_limited' LIMIT 1;")
[ "$(jq -r .reason <<<"$ev")" = rate ] || fail "ota.enrol_limited: $ev"
wait_log 'enrolment of unknown boards by check-ins without credentials refused \(rate' 5

# --- the cap: at most ota.enrol_max boards known only from such check-ins ----------------------
known=$(db "SELECT count(*) FROM boards b WHERE ip_confirmed = 0 AND ip_source = 'checkin' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.board_mac = b.mac AND j.kind = 'flash');")
stop_daemon
jq --argjson m $((known + 3)) '.ota.enrol_rate_per_min = 6000 | .ota.enrol_max = $m' "$CFG" >"$CFG.cap"
start_api_daemon "$CFG.cap"
res=$(flood "$TNET.71" 1000 10)
codes=${res#* }
[ "$codes" = "304 304 304 403 403 403 403 403 403 403" ] || fail "cap: answers $codes"
ans=$(checkin "$TNET.71" 02:00:00:00:07:ff 1.0.0)
[[ $ans == "403 enrolment refused: the station knows $((known + 3)) board(s) only from check-ins without credentials"* ]] ||
    fail "cap refusal: $ans"
# a board with the credentials still enrols
ans=$(checkin "$TNET.72" 24:6f:28:00:99:0a 1.0.0 "$CHECKIN_USER:$CHECKIN_PASS")
[[ $ans == 304* ]] || fail "an authenticated check-in at the cap: $ans"
[ "$(board_col 24:6f:28:00:99:0a ip_confirmed)" = 1 ] || fail "authenticated enrolment not confirmed"

# --- checkin_auth "required": check-ins without credentials are refused ------------------------
apij PUT /api/v1/profiles/line "{\"ota_firmware\": {\"esp32\": \"demo@1.0.0\"}, \"ota_password\": \"web-pw-9\",
  \"checkin_auth\": {\"user\": \"$CHECKIN_USER\", \"password\": \"$CHECKIN_PASS\", \"required\": true}}"
expect_status 200
ans=$(checkin "$TNET.22" "$MU" 2.0.0)
[[ $ans == "403 check-in credentials required"* ]] || fail "required: $ans"
ans=$(checkin "$TNET.22" "$MU" 2.0.0 "$CHECKIN_USER:$CHECKIN_PASS")
[[ $ans == 304* ]] || fail "required, with credentials: $ans"

stop_daemon
integrity_ok
done_ok
