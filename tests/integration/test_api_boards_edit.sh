#!/usr/bin/env bash
# test_api_boards_edit: board notes and groups over real HTTP. Three
# network-only virtual ESP32 boards (esp_netdev) enrol by check-in. PUT
# /api/v1/boards/{mac} sets notes and groups (partial updates: an absent member
# is kept, null clears); 401 without or with a wrong token, 404 for an unknown
# MAC, 400 for a malformed MAC or invalid JSON, 415 for a non-JSON body, 422
# naming the field for unknown members, bad group names, more than 16 groups
# and over-long notes. Board JSON (list and detail) carries "groups";
# GET /boards?group=NAME filters (400 for a bad name). Each change posts one
# board.updated event. A pull bulk selected by group updates exactly the
# group's boards; a group nobody is in is a 404 naming the selection.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"
source "$(dirname "$0")/ota_daemon_lib.sh"

fw_set "$WORK/fw2" demo 2.0.0 esp32 30000 51
import_fw "$WORK/fw2"
OTA_PORT=$(free_port)
TOKEN=edit-token
cat >"$WORK/station.json" <<JSON
{"api": {"token": "$TOKEN"}, "ota": {"listen": "127.0.0.1:$OTA_PORT"}}
JSON
start_api_daemon "$WORK/station.json"

M1=24:6f:28:00:0b:01
M2=24:6f:28:00:0b:02
M3=24:6f:28:00:0b:03
for i in 1 2 3; do
    start_netdev "$WORK/nd$i" --chip esp32 --mac "24:6f:28:00:0b:0$i" --bind "$TNET.$((90 + i))" \
        --version 1.0.0 --checkin "http://127.0.0.1:$OTA_PORT/ota/update" --interval 300
done
wait_sql "SELECT count(*) FROM boards WHERE online_state = 'online';" 3 30

# --- a fresh board has no groups ----------------------------------------------------------------
api GET "/api/v1/boards/$M1"
expect_status 200
expect_jq '.groups == [] and .notes == null'

# --- authentication and errors ------------------------------------------------------------------
api PUT "/api/v1/boards/$M1" -H 'Content-Type: application/json' --data-binary '{"notes": "x"}'
expect_error 401 unauthorized
api PUT "/api/v1/boards/$M1" -H 'Authorization: Bearer wrong' -H 'Content-Type: application/json' \
    --data-binary '{"notes": "x"}'
expect_error 401 unauthorized
apij PUT /api/v1/boards/24:6f:28:00:0b:99 '{"notes": "x"}'
expect_error 404 not_found mac
apij PUT /api/v1/boards/not-a-mac '{"notes": "x"}'
expect_error 400 bad_request mac
apij PUT "/api/v1/boards/$M1" '{"notes": "x"'
expect_error 400 invalid_json
apij PUT "/api/v1/boards/$M1" ''
expect_error 400 invalid_json
apit PUT "/api/v1/boards/$M1" -H 'Content-Type: text/plain' --data-binary '{"notes": "x"}'
expect_error 415 unsupported_media_type
apij PUT "/api/v1/boards/$M1" '{"note": "typo"}'
expect_error 422 validation_failed note
apij PUT "/api/v1/boards/$M1" '{"notes": 5}'
expect_error 422 validation_failed notes
apij PUT "/api/v1/boards/$M1" "{\"notes\": \"$(head -c 600 /dev/zero | tr '\0' n)\"}"
expect_error 422 validation_failed notes
apij PUT "/api/v1/boards/$M1" '{"groups": "line-a"}'
expect_error 422 validation_failed groups
for bad in '""' '"has space"' '"a/b"' '"comma,g"' '7' \
    "\"$(head -c 65 /dev/zero | tr '\0' g)\""; do
    apij PUT "/api/v1/boards/$M1" "{\"groups\": [\"ok\", $bad]}"
    expect_error 422 validation_failed groups
    expect_jq '.error.message | test("groups\\[1\\]")'
done
apij PUT "/api/v1/boards/$M1" "{\"groups\": [$(seq -s, -f '"g%g"' 1 17)]}"
expect_error 422 validation_failed groups
expect_jq '.error.message | test("at most 16")'
apij PUT "/api/v1/boards/$M1" '[]'
expect_error 422 validation_failed
# nothing of the refused requests was written
api GET "/api/v1/boards/$M1"
expect_jq '.groups == [] and .notes == null'
[ "$(db "SELECT count(*) FROM events WHERE kind = 'board.updated';")" = 0 ] ||
    fail "a refused PUT posted board.updated"

# --- happy path ---------------------------------------------------------------------------------
apij PUT "/api/v1/boards/$M1" '{"notes": "bench 3, cracked USB", "groups": ["line-a", "batch-42", "line-a"]}'
expect_status 200
expect_jq '.mac == "24:6f:28:00:0b:01" and .notes == "bench 3, cracked USB"'
expect_jq '.groups == ["batch-42", "line-a"]'
apij PUT "/api/v1/boards/${M2^^}" '{"groups": ["line-a"]}' # any case
expect_status 200
expect_jq '.mac == "24:6f:28:00:0b:02" and .groups == ["line-a"] and .notes == null'
apij PUT "/api/v1/boards/$M3" "{\"groups\": [\"line-b\", \"$(head -c 64 /dev/zero | tr '\0' g)\"]}"
expect_status 200
expect_jq '.groups | length == 2'
# 16 distinct groups are allowed
apij PUT "/api/v1/boards/$M3" "{\"groups\": [$(seq -s, -f '"g%g"' 1 16), \"g1\"]}"
expect_status 200
expect_jq '.groups | length == 16'
apij PUT "/api/v1/boards/$M3" '{"groups": ["line-b"]}'
expect_status 200

# partial update: notes only keeps the groups; groups only keeps the notes
apij PUT "/api/v1/boards/$M1" '{"notes": "re-tested"}'
expect_status 200
expect_jq '.notes == "re-tested" and .groups == ["batch-42", "line-a"]'
apij PUT "/api/v1/boards/$M1" '{"groups": ["line-a", "batch-42", "rework"]}'
expect_status 200
expect_jq '.notes == "re-tested" and .groups == ["batch-42", "line-a", "rework"]'
apij PUT "/api/v1/boards/$M1" '{}'
expect_status 200
expect_jq '.notes == "re-tested" and (.groups | length == 3)'

# detail and list show the groups; the store holds them
api GET "/api/v1/boards/$M1"
expect_status 200
expect_jq '.groups == ["batch-42", "line-a", "rework"] and (.jobs | type == "array")'
[ "$(db "SELECT group_concat(name, ' ') FROM (SELECT name FROM board_groups WHERE mac = '$M1' ORDER BY name);")" = "batch-42 line-a rework" ] ||
    fail "board_groups rows do not match"
api GET "/api/v1/boards"
expect_jq '[.boards[] | select(.mac == "24:6f:28:00:0b:02") | .groups] == [["line-a"]]'
api GET "/api/v1/boards?group=line-a"
expect_status 200
expect_jq '[.boards[].mac] | sort == ["24:6f:28:00:0b:01", "24:6f:28:00:0b:02"]'
api GET "/api/v1/boards?group=rework"
expect_jq '[.boards[].mac] == ["24:6f:28:00:0b:01"]'
api GET "/api/v1/boards?group=Line-A" # names are case-sensitive
expect_jq '.boards == []'
api GET "/api/v1/boards?group=line-b&chip=ESP32&limit=5"
expect_jq '[.boards[].mac] == ["24:6f:28:00:0b:03"]'
api GET "/api/v1/boards?group=bad%20name"
expect_error 400 bad_request group

# clearing: null notes and null / empty groups
apij PUT "/api/v1/boards/$M1" '{"notes": null, "groups": ["line-a"]}'
expect_status 200
expect_jq '.notes == null and .groups == ["line-a"]'
apij PUT "/api/v1/boards/$M3" '{"groups": null}'
expect_status 200
expect_jq '.groups == []'
apij PUT "/api/v1/boards/$M3" '{"groups": []}'
expect_status 200

# one board.updated event per accepted change, with what changed
n=$(db "SELECT count(*) FROM events WHERE kind = 'board.updated';")
[ "$n" = 10 ] || fail "expected 10 board.updated events, got $n"
ev=$(db "SELECT data FROM events WHERE kind = 'board.updated' AND board_mac = '$M1' ORDER BY id DESC LIMIT 1;")
jq -e '.changed == ["notes", "groups"] and .notes == null and .groups == ["line-a"]' <<<"$ev" >/dev/null ||
    fail "board.updated data: $ev"

# --- a bulk by group updates exactly the group's boards -------------------------------------------
apij POST /api/v1/bulk '{"select": {"group": "nobody"}, "firmware": "demo@2.0.0"}'
expect_error 404 not_found select
expect_jq '.error.message | test("group \"nobody\"")'
apij POST /api/v1/bulk '{"select": {"group": "bad name"}, "firmware": "demo@2.0.0"}'
expect_error 422 validation_failed select
apij POST /api/v1/bulk '{"select": {"group": "line-a"}, "firmware": "demo@2.0.0", "method": "pull",
  "concurrency": 2, "timeout_s": 30}'
expect_status 202
BID=$(jqr .id)
expect_jq '.counts.total == 2 and ([.boards[].mac] | sort == ["24:6f:28:00:0b:01", "24:6f:28:00:0b:02"])'
expect_jq '.select == {"group": "line-a"}'
wait_api "/api/v1/bulk/$BID" '.state == "passed" and .counts.passed == 2' 60
[ "$(cat "$WORK/nd1/version")" = 2.0.0 ] || fail "board 1 (line-a) was not updated"
[ "$(cat "$WORK/nd2/version")" = 2.0.0 ] || fail "board 2 (line-a) was not updated"
[ "$(cat "$WORK/nd3/version")" = 1.0.0 ] || fail "board 3 (not in line-a) was updated"
[ -z "$(board_col "$M3" target_firmware)" ] || fail "board 3 got a target pinned"

stop_daemon
integrity_ok
done_ok
