#!/usr/bin/env bash
# test_api_board_address: the operator confirms a board's address
# (POST /api/v1/boards/{mac}/address; issue 9 finding 3, follow-up).
#  - A board enrolled by a check-in without credentials has an unconfirmed
#    address: a push is refused (409 address_unconfirmed, naming the operator's
#    route) and nothing reaches the board.
#  - Refusals change nothing: a malformed IP or one no board can have (400, field
#    ip), neither or both of ip/accept_claim (400), an unknown member (422),
#    accept_claim with no pending claim (409 no_claim), a MAC without a record
#    (404), a malformed MAC (400), no token (401).
#  - {"ip": A} confirms A (source "operator", a board.address event with old/new);
#    the board's own check-ins without credentials from A keep it confirmed; the
#    next push goes to A and passes.
#  - The board moves (DHCP): its check-ins from B, without credentials, are only a
#    claim; {"accept_claim": true} confirms B (event old A, new B), the claim is gone,
#    and the next push goes to B.
#  - One address, one confirmed board (DHCP gave B to another board since): the
#    operator confirming B for a second board M2 takes it from M (M's address is
#    unconfirmed, ip_source "taken", a board.address event on M with taken_by M2;
#    a push to M is refused 409 address_unconfirmed), and so does M2's own check-in
#    with the profile's checkin_auth from B after the operator gave B back to M.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw1" demo 1.0.0 esp32 60000 81
fw_set "$WORK/fw2" demo 2.0.0 esp32 61000 82
fw_set "$WORK/fw3" demo 3.0.0 esp32 62000 83
OTA_PORT=$(free_port)
URL="http://127.0.0.1:$OTA_PORT/ota/update"
TOKEN=t0k3n-addr
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ota": {"listen": "127.0.0.1:$OTA_PORT", "unknown_boards": "enrol"},
 "profiles": {"line": {"ota_firmware": {"esp32": "demo@1.0.0"}, "ota_password": "pw-addr",
                       $CHECKIN_AUTH_JSON}}}
JSON
start_api_daemon "$CFG"
upload_fw "$WORK/fw1"
upload_fw "$WORK/fw2"
upload_fw "$WORK/fw3"

M=24:6f:28:00:aa:01
A=$TNET.31
B=$TNET.32
addr() { db "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source || ' ' || coalesce(ip_claim, '') FROM boards WHERE mac = '$M';"; }
n_addr_events() { db "SELECT count(*) FROM events WHERE kind = 'board.address' AND board_mac = '$M';"; }
last_addr_event() { db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$M' ORDER BY id DESC LIMIT 1;"; }

# --- a board known only from a check-in without credentials: unconfirmed, no push -----------
# (a setup()-only sketch: one check-in at boot; SIGUSR1 makes it check in again)
start_netdev "$WORK/a" --chip esp32 --mac "$M" --bind "$A" --version 1.0.0 --ota-port 3232 \
    --password pw-addr --checkin "$URL" --interval once --checkin-auth none
PA=$NETDEV_PID
wait_sql "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$M';" \
    "$A 0 checkin" 20
api GET "/api/v1/boards/$M"
expect_status 200
expect_jq ".ip == \"$A\" and .ip_confirmed == false and .ip_source == \"checkin\" and .ip_claim == null and .ip_claim_source == null"
apij POST "/api/v1/boards/$M/ota" '{"firmware": "demo@2.0.0"}'
expect_error 409 address_unconfirmed mac
jqr .error.message | grepq -F "POST /api/v1/boards/$M/address" ||
    fail "the refusal does not name the operator's route: $RESP"
grep -q 'ota: udp reply' "$WORK/a/netdev.log" && fail "an invitation reached the unconfirmed address"

# --- refusals: each leaves the record as it was ------------------------------------------------
before=$(addr)
nev=$(n_addr_events)
for bad in '"999.1.1.1"' '"10.0.0"' '"10.0.0.1/24"' '" 10.0.0.1"' '"010.0.0.1"' '"0.0.0.0"' \
    '"224.0.0.251"' '"255.255.255.255"' '"::1"' '"board.local"' '""' '1234' 'true'; do
    apij POST "/api/v1/boards/$M/address" "{\"ip\": $bad}"
    expect_error 400 bad_request ip "ip $bad"
done
apij POST "/api/v1/boards/$M/address" '{}'
expect_error 400 bad_request ip
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$A\", \"accept_claim\": true}"
expect_error 400 bad_request accept_claim
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$A\", \"port\": 3232}"
expect_error 422 validation_failed port
apij POST "/api/v1/boards/$M/address" '{"accept_claim": "yes"}'
expect_error 422 validation_failed accept_claim
apij POST "/api/v1/boards/$M/address" '{"accept_claim": true}'
expect_error 409 no_claim accept_claim
apij POST "/api/v1/boards/24:6f:28:00:aa:ff/address" "{\"ip\": \"$A\"}"
expect_error 404 not_found mac
apij POST "/api/v1/boards/24:6f:28:00:aa:ff/address" '{"accept_claim": true}'
expect_error 404 not_found mac
apij POST "/api/v1/boards/not-a-mac/address" "{\"ip\": \"$A\"}"
expect_error 400 bad_request mac
api POST "/api/v1/boards/$M/address" -H 'Content-Type: application/json' --data-binary "{\"ip\": \"$A\"}"
expect_error 401 unauthorized
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$A\""
expect_error 400 invalid_json
[ "$(addr)" = "$before" ] || fail "a refused request changed the address: $(addr)"
[ "$(n_addr_events)" = "$nev" ] || fail "a refused request posted board.address"

# --- the operator confirms the address: the push goes there ------------------------------------
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$A\"}"
expect_status 200
expect_jq ".mac == \"$M\" and .ip == \"$A\" and .ip_confirmed == true and .ip_source == \"operator\" and .ip_claim == null"
[ "$(addr)" = "$A 1 operator " ] || fail "record after the operator's confirmation: $(addr)"
[ "$(n_addr_events)" = $((nev + 1)) ] || fail "board.address events: $(n_addr_events), want $((nev + 1))"
ev=$(last_addr_event)
[ "$(jq -c '[.old, .new, .source, .confirmed, .previous_confirmed, .claim]' <<<"$ev")" = \
    "[\"$A\",\"$A\",\"operator\",true,false,false]" ] || fail "confirmation event: $ev"
# confirming it again changes nothing and posts nothing
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$A\"}"
expect_status 200
[ "$(n_addr_events)" = $((nev + 1)) ] || fail "a repeated confirmation posted an event"
# the board's own check-in without credentials, from that address: still confirmed
n_ci=$(jq -r '.checkins // 0' <<<"$(curl -sS "$API/api/v1/boards/$M/ota")")
kill -USR1 "$PA"
wait_api "/api/v1/boards/$M/ota" ".checkins > $n_ci" 20
[ "$(addr)" = "$A 1 operator " ] || fail "the board's check-in changed the confirmed address: $(addr)"
apij POST "/api/v1/boards/$M/ota" '{"firmware": "demo@2.0.0"}'
expect_status 202 "push to the confirmed address"
J1=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J1;" passed 60
grep -q 'ota: udp reply' "$WORK/a/netdev.log" || fail "the push did not reach $A"
grep -q 'applied .* version now 2.0.0' "$WORK/a/netdev.log" || fail "the board at $A did not apply 2.0.0"

# --- the board moves to B: only a claim until the operator accepts it --------------------------
kill -TERM "$PA"
wait "$PA" 2>/dev/null || true
start_netdev "$WORK/b" --chip esp32 --mac "$M" --bind "$B" --version 1.0.0 --ota-port 3232 \
    --password pw-addr --checkin "$URL" --interval once --checkin-auth none
wait_sql "SELECT ip || ' ' || ip_confirmed || ' ' || ip_claim FROM boards WHERE mac = '$M';" \
    "$A 1 $B" 20
api GET "/api/v1/boards/$M"
expect_jq ".ip == \"$A\" and .ip_confirmed == true and .ip_claim == \"$B\" and .ip_claim_source == \"checkin\""
nev=$(n_addr_events)
apij POST "/api/v1/boards/$M/address" '{"accept_claim": true}'
expect_status 200
expect_jq ".ip == \"$B\" and .ip_confirmed == true and .ip_source == \"operator\" and .ip_claim == null and .ip_claim_source == null"
[ "$(addr)" = "$B 1 operator " ] || fail "record after accepting the claim: $(addr)"
[ "$(n_addr_events)" = $((nev + 1)) ] || fail "accepting the claim: $(n_addr_events) events, want $((nev + 1))"
ev=$(last_addr_event)
[ "$(jq -c '[.old, .new, .source, .confirmed, .previous_confirmed, .claim]' <<<"$ev")" = \
    "[\"$A\",\"$B\",\"operator\",true,true,false]" ] || fail "accept_claim event: $ev"
# the claim was used up
apij POST "/api/v1/boards/$M/address" '{"accept_claim": true}'
expect_error 409 no_claim accept_claim
apij POST "/api/v1/boards/$M/ota" '{"firmware": "demo@3.0.0"}'
expect_status 202 "push after accepting the claim"
J2=$(jqr .job_id)
wait_sql "SELECT state FROM jobs WHERE id = $J2;" passed 60
grep -q 'ota: udp reply' "$WORK/b/netdev.log" || fail "the push did not reach $B"
grep -q 'applied .* version now 3.0.0' "$WORK/b/netdev.log" || fail "the board at $B did not apply 3.0.0"
grep -q "push of demo@3.0.0.* to $B: OK" "$DAEMON_LOG" || fail "the daemon did not push 3.0.0 to $B"
grep -q "push of demo@3.0.0.* to $A" "$DAEMON_LOG" && fail "3.0.0 went to the old address $A"

# --- one address, one confirmed board ------------------------------------------------------------
M2=24:6f:28:00:aa:02
C=$TNET.33
addr_of() { db "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$1';"; }
last_event_of() { db "SELECT data FROM events WHERE kind = 'board.address' AND board_mac = '$1' ORDER BY id DESC LIMIT 1;"; }
start_netdev "$WORK/c" --chip esp32 --mac "$M2" --bind "$C" --version 1.0.0 --ota-port 3232 \
    --password pw-addr --checkin "$URL" --interval once --checkin-auth none
PC=$NETDEV_PID
wait_sql "SELECT ip || ' ' || ip_confirmed FROM boards WHERE mac = '$M2';" "$C 0" 20
# the operator confirms B, M's confirmed address, for M2: M loses it
nev=$(n_addr_events)
apij POST "/api/v1/boards/$M2/address" "{\"ip\": \"$B\"}"
expect_status 200
expect_jq ".ip == \"$B\" and .ip_confirmed == true and .ip_source == \"operator\""
[ "$(addr_of "$M")" = "$B 0 taken" ] || fail "M keeps the address the operator gave M2: $(addr_of "$M")"
[ "$(n_addr_events)" = $((nev + 1)) ] || fail "M: $(n_addr_events) board.address events, want $((nev + 1))"
ev=$(last_event_of "$M")
[ "$(jq -c '[.old, .new, .source, .confirmed, .previous_confirmed, .claim, .taken_by]' <<<"$ev")" = \
    "[\"$B\",\"$B\",\"operator\",false,true,false,\"$M2\"]" ] || fail "M's event: $ev"
api GET "/api/v1/boards/$M"
expect_jq ".ip == \"$B\" and .ip_confirmed == false and .ip_source == \"taken\""
apij POST "/api/v1/boards/$M/ota" '{"firmware": "demo@2.0.0"}'
expect_error 409 address_unconfirmed mac
jqr .error.message | grepq -F "confirmed for another board" || fail "the refusal does not say why: $RESP"
# the operator gives B back to M: now M2 loses it
apij POST "/api/v1/boards/$M/address" "{\"ip\": \"$B\"}"
expect_status 200
[ "$(addr_of "$M")" = "$B 1 operator" ] || fail "M after the operator gave B back: $(addr_of "$M")"
[ "$(addr_of "$M2")" = "$B 0 taken" ] || fail "M2 after the operator gave B back: $(addr_of "$M2")"
[ "$(jq -r .taken_by <<<"$(last_event_of "$M2")")" = "$M" ] || fail "M2's event: $(last_event_of "$M2")"
# DHCP moves B to M2: M leaves, M2 checks in from B with the profile's checkin_auth
kill -TERM "$PC" "$NETDEV_PID" 2>/dev/null || true
wait "$PC" "$NETDEV_PID" 2>/dev/null || true
start_netdev "$WORK/d" --chip esp32 --mac "$M2" --bind "$B" --version 1.0.0 --ota-port 3232 \
    --password pw-addr --checkin "$URL" --interval once
wait_sql "SELECT ip || ' ' || ip_confirmed || ' ' || ip_source FROM boards WHERE mac = '$M2';" \
    "$B 1 checkin-auth" 20
[ "$(addr_of "$M")" = "$B 0 taken" ] || fail "M keeps B after M2's authenticated check-in: $(addr_of "$M")"
ev=$(last_event_of "$M")
[ "$(jq -c '[.source, .confirmed, .taken_by]' <<<"$ev")" = "[\"checkin-auth\",false,\"$M2\"]" ] ||
    fail "M's event after M2's check-in: $ev"
n_conf=$(db "SELECT count(*) FROM boards WHERE ip = '$B' AND ip_confirmed = 1;")
[ "$n_conf" = 1 ] || fail "$n_conf boards hold $B confirmed"

stop_daemon
integrity_ok
done_ok
