#!/usr/bin/env bash
# test_daemon_per_board: per-board data pools (profile "per_board"). The profile puts
# one file of a pool directory (two .bin files; a hidden .bin and a .txt that must be
# ignored) at 0x9000 of every board next to the firmware set:
#  - A1 and A2 each get a different file, written at 0x9000 (the virtual flash holds
#    it), recorded in pool_items, shown in GET /boards/{mac} and /pools.
#  - A3, attached later over REST, finds the pool exhausted: the job fails at stage
#    "prepare" with "pool nvs is exhausted" and what to do, a pool.failed event, and
#    nothing is written; /metrics espstation_pool_free is 0.
#  - An empty file added to the directory is refused by name (not given to A3); filled,
#    a re-flash of A3 takes it.
#  - A forced re-flash of A1 writes A1's own file again (no new file used); a plain
#    re-flash of A2 is skipped (the flash already holds the set and A2's file).
#  - A2's file changed on disk: a forced re-flash of A2 fails ("changed since it was
#    given") instead of writing other data.
#  - The records survive a restart: after it, A1 still owns its file.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 7

POOL=$WORK/pool
mkdir -p "$POOL"
head -c 3000 /dev/urandom >"$POOL/0001.bin"
head -c 5000 /dev/urandom >"$POOL/0002.bin"
head -c 100 /dev/urandom >"$POOL/.hidden.bin"
echo "not a pool file" >"$POOL/notes.txt"

M1=24:6f:28:00:0b:01
M2=24:6f:28:00:0b:02
M3=24:6f:28:00:0b:03
start_sim esp32 --mac $M1
S1=$SIM_DIR
start_sim esp32 --mac $M2
S2=$SIM_DIR
start_sim esp32 --mac $M3
S3=$SIM_DIR
TOKEN=per-board-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ports": [{"uri": "$S1/tty", "label": "A1"}, {"uri": "$S2/tty", "label": "A2"}],
 "profiles": {"line": {"firmware": {"esp32": "app@1.0"}, "retries": 0,
                       "per_board": [{"name": "nvs", "offset": "0x9000", "dir": "$POOL"}]}}}
JSON
start_api_daemon "$CFG"

file_of() { db "SELECT file FROM pool_items WHERE pool = 'nvs' AND mac = '$1';"; }

# --- A1 and A2: one file each ------------------------------------------------------------
wait_sql "SELECT count(*) FROM jobs WHERE slot IN ('A1', 'A2') AND state = 'passed'" 2 60
F1=$(file_of $M1)
F2=$(file_of $M2)
[ -n "$F1" ] && [ -n "$F2" ] && [ "$F1" != "$F2" ] || fail "files: A1 '$F1', A2 '$F2'"
[[ "$F1 $F2" =~ ^(0001|0002)\.bin\ (0001|0002)\.bin$ ]] || fail "unexpected pool files: $F1 $F2"
flash_region_equals "$S1" 0x9000 "$POOL/$F1"
flash_region_equals "$S2" 0x9000 "$POOL/$F2"
flash_region_equals "$S1" 0x10000 "$FW/app.bin"
flash_region_equals "$S2" 0x10000 "$FW/app.bin"
[ "$(db "SELECT md5 FROM pool_items WHERE mac = '$M1';")" = "$(md5sum <"$POOL/$F1" | cut -c1-32)" ] ||
    fail "recorded MD5 of $F1"
J1=$(db "SELECT id FROM jobs WHERE slot = 'A1' AND state = 'passed'")
[ "$(db "SELECT job_id FROM pool_items WHERE mac = '$M1';")" = "$J1" ] || fail "pool item job id"
ev=$(db "SELECT data FROM events WHERE kind = 'pool.assigned' AND board_mac = '$M1'")
[ "$(jq -c '[.pool, .file, .offset, .reused]' <<<"$ev")" = "[\"nvs\",\"$F1\",36864,false]" ] ||
    fail "pool.assigned: $ev"
api GET "/api/v1/boards/$M1"
expect_status 200
expect_jq ".per_board | length == 1 and .[0].pool == \"nvs\" and .[0].file == \"$F1\" and .[0].job_id == $J1"
api GET /api/v1/pools
expect_status 200
expect_jq '.pools | length == 1'
expect_jq ".pools[0] | .name == \"nvs\" and .offset == \"0x9000\" and .files == 2 and .used == 2 and .free == 0 and .active == true and .profiles == [\"line\"]"
api GET /api/v1/profiles/line
expect_jq ".per_board == [{\"name\": \"nvs\", \"offset\": \"0x9000\", \"dir\": \"$POOL\"}]"

# --- A3: the pool is exhausted ------------------------------------------------------------
apij POST /api/v1/ports "{\"uri\": \"$S3/tty\", \"label\": \"A3\"}"
expect_status 201 "attach A3"
wait_sql "SELECT state FROM jobs WHERE slot = 'A3'" failed 60
row=$(db "SELECT error_stage || '|' || error_message || '|' || error_advice FROM jobs WHERE slot = 'A3'")
[[ $row == "prepare|pool nvs is exhausted: all 2 .bin files in $POOL went to other boards"*"|add files to $POOL (one per board"* ]] ||
    fail "A3 failure: $row"
[ "$(db "SELECT count(*) FROM events WHERE kind = 'pool.failed' AND board_mac = '$M3'")" = 1 ] ||
    fail "no pool.failed event"
[ -z "$(file_of $M3)" ] || fail "A3 got a file"
if cmp -s -i 0x10000:0 -n "$(size_of "$FW/app.bin")" "$S3/flash.bin" "$FW/app.bin"; then
    fail "A3 was flashed although its per-board data was missing"
fi
api GET /metrics
grep -qx 'espstation_pool_free{pool="nvs"} 0' <<<"$RESP" || fail "pool metric: $(grep pool <<<"$RESP")"

# --- an empty file is refused by name; a real one: A3 takes it ----------------------------
: >"$POOL/0003.bin"
apij POST /api/v1/slots/A3/reflash '{}'
expect_status 202 "reflash A3 (empty pool file)"
JE=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JE" failed 60
msg=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE id = $JE")
[ "$msg" = "prepare|pool nvs: $POOL/0003.bin cannot be used: empty or larger than 16 MiB" ] ||
    fail "empty pool file: $msg"
[ -z "$(file_of $M3)" ] || fail "A3 was given the empty file"
head -c 4000 /dev/urandom >"$POOL/0003.bin"
apij POST /api/v1/slots/A3/reflash '{}'
expect_status 202 "reflash A3"
J3=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $J3" passed 60
[ "$(file_of $M3)" = 0003.bin ] || fail "A3 file: $(file_of $M3)"
flash_region_equals "$S3" 0x9000 "$POOL/0003.bin"
flash_region_equals "$S3" 0x10000 "$FW/app.bin"

# --- re-flashes: A1 gets its own file again; A2 is skipped --------------------------------
printf '\x55%.0s' $(seq 1 64) | dd of="$S1/flash.bin" bs=1 seek=$((0x9000)) conv=notrunc status=none
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202 "reflash A1"
JR=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JR" passed 60
flash_region_equals "$S1" 0x9000 "$POOL/$F1"
[ "$(db "SELECT count(*) FROM pool_items")" = 3 ] || fail "a re-flash used another file"
ev=$(db "SELECT data FROM events WHERE kind = 'pool.assigned' AND job_id = $JR")
[ "$(jq -c '[.file, .reused]' <<<"$ev")" = "[\"$F1\",true]" ] || fail "re-flash event: $ev"
apij POST /api/v1/slots/A2/reflash '{}'
expect_status 202 "reflash A2"
JS=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JS" skipped 60

# --- A2's file changed under it ------------------------------------------------------------
printf 'tampered' | dd of="$POOL/$F2" bs=1 conv=notrunc status=none
apij POST /api/v1/slots/A2/reflash '{"force": true}'
expect_status 202 "reflash A2 (forced)"
JT=$(jqr .id)
wait_sql "SELECT state FROM jobs WHERE id = $JT" failed 60
msg=$(db "SELECT error_stage || '|' || error_message FROM jobs WHERE id = $JT")
[[ $msg == "prepare|pool nvs: $POOL/$F2 changed since it was given to $M2"* ]] || fail "tampered: $msg"

# --- a restart keeps who owns what ------------------------------------------------------
stop_daemon
start_api_daemon "$CFG"
api GET "/api/v1/boards/$M1"
expect_jq ".per_board[0].file == \"$F1\""
api GET /api/v1/pools
expect_jq '.pools[0] | .files == 3 and .used == 3 and .free == 0'
stop_daemon
done_ok
